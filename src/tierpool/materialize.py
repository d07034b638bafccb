"""Building one node: seed, source, SQL model or Python model, each in one transaction.

Python models get their inputs (and the previous contents of their outputs) as
DataFrames, then the warehouse connection is closed while ``model(ctx)`` runs and
reopened to write all outputs in a single transaction.
"""

from __future__ import annotations

import importlib.util
import itertools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tierpool import engine, seeds
from tierpool.context import ModelContext
from tierpool.errors import ModelError, TierpoolError
from tierpool.nodes import Node, OutputSpec, PythonModel

# Seconds a build waits to reopen the warehouse after a Python model, if an
# ad-hoc reader (tierpool query, DuckDB CLI) opened it meanwhile.
REOPEN_WAIT_S = 120.0
_module_ids = itertools.count()


class Session:
    """The build's read-write connection, which can be released and reopened."""

    def __init__(self, db_path: Path, root: Path) -> None:
        self.db_path = Path(db_path)
        self.root = Path(root)
        self.con: engine.Connection | None = None
        # Relation kinds, read once: this build is the only writer (it holds the lock).
        self.kinds: dict[str, str] | None = None
        # Rows written per output by the last Python model (build state fingerprints).
        self.written: dict[str, int] = {}

    def open(self, wait_s: float = 0.0) -> engine.Connection:
        """Open (or return) the connection; relative file paths resolve against the project."""
        if self.con is None:
            self.con = engine.connect(self.db_path, wait_s=wait_s)
            self.con.execute(f"SET file_search_path = '{str(self.root).replace(chr(39), chr(39) * 2)}'")
            if self.kinds is None:
                self.kinds = engine.relation_kinds(self.con)
        return self.con

    def kind(self, name: str) -> str | None:
        """Current kind of a relation ("table", "view" or None)."""
        self.open()
        assert self.kinds is not None
        return self.kinds.get(name.lower())

    def created(self, name: str, kind: str) -> None:
        """Record a committed write."""
        if self.kinds is not None:
            self.kinds[name.lower()] = kind

    def close(self) -> None:
        """Release the database so other processes can open it."""
        if self.con is not None:
            self.con.close()
            self.con = None


def resolve(root: Path, path: Path | None) -> Path:
    """A node path as an absolute path."""
    if path is None:
        raise ModelError("node has no file path")
    return Path(path) if Path(path).is_absolute() else Path(root) / path


def build_node(session: Session, node: Node, ctx_args: dict[str, Any]) -> tuple[int | None, str]:
    """Build one node; returns (rows, message). Raises on failure (nothing is changed)."""
    if node.kind == "seed":
        rows = seeds.load_seed(session.open(), node, session.root, session.kind(node.name))
        session.created(node.name, "table")
        return rows, ""
    if node.kind == "source":
        con, existing = session.open(), session.kind(node.name)
        with engine.transaction(con):
            engine.replace_relation(con, node.name, f"SELECT * FROM {node.expression}", "view", existing)
        session.created(node.name, "view")
        return None, ""
    if node.kind == "sql":
        rows = _build_sql(session.open(), node, session.kind(node.name))
        session.created(node.name, "view" if node.materialized == "view" else "table")
        return rows, ""
    if node.kind == "python":
        return build_python(session, node, **ctx_args)
    raise ModelError(f"cannot build node {node.name} of kind {node.kind}")


def _build_sql(con: engine.Connection, node: Node, existing: str | None) -> int | None:
    with engine.transaction(con):
        if node.materialized == "append":
            return engine.append_rows(con, node.name, node.sql, node.unique_key, existing)
        return engine.replace_relation(con, node.name, node.sql, node.materialized, existing)


def _import_model(path: Path) -> Any:
    name = f"tierpool_model_{path.stem}_{next(_module_ids)}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ModelError(f"{path}: cannot import Python model")
    module = importlib.util.module_from_spec(spec)
    # Registered while it runs so dataclasses/pickle inside the model can find it.
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module


def _split_outputs(node: PythonModel, shown: str, result: Any) -> dict[str, Any]:
    names = [o.name for o in node.outputs]
    if isinstance(result, dict):
        got = {str(k).lower(): v for k, v in result.items()}
        missing = [n for n in names if n not in got]
        extra = sorted(set(got) - set(names))
        if missing or extra:
            raise ModelError(
                f"{shown}: model() returned outputs {sorted(got)}, declared outputs are "
                f"{names}" + (f" (missing: {', '.join(missing)})" if missing else "")
                + (f" (not declared: {', '.join(extra)})" if extra else "")
            )
    elif len(names) == 1:
        got = {names[0]: result}
    else:
        raise ModelError(
            f"{shown}: model() must return a dict of output name -> DataFrame for its "
            f"{len(names)} outputs ({', '.join(names)}), got {type(result).__name__}"
        )
    for out, data in got.items():
        if not (hasattr(data, "columns") or hasattr(data, "column_names")):
            raise ModelError(
                f"{shown}: output '{out}' must be a pandas DataFrame, pyarrow Table or "
                f"DuckDB relation, got {type(data).__name__}"
            )
    return {k: engine.detach(v) for k, v in got.items()}


def _read_inputs(con: engine.Connection, node: PythonModel) -> tuple[dict, dict]:
    own = {o.name for o in node.outputs}
    inputs = {rel: engine.read_df(con, rel) for rel in node.depends_on if rel not in own}
    previous = {
        o.name: engine.read_df(con, o.name) if engine.relation_kind(con, o.name) else None
        for o in node.outputs
    }
    # A model may ref one of its own outputs: that is its previous version.
    inputs.update({rel: previous[rel] for rel in node.depends_on if rel in own})
    return inputs, previous


def build_python(
    session: Session,
    node: PythonModel,
    vars: dict[str, Any],
    options: dict[str, Any],
    target_dir: Path,
    log: Callable[[str], None],
    progress: bool = True,
) -> tuple[int, str]:
    """Run a Python model with the database released, then swap all outputs at once.

    Returns:
        (rows written over all outputs, ``ctx.message``).

    Raises:
        ModelError: Import/run failure, wrong return shape, column mismatch; no output
            is changed in that case.
    """
    path = resolve(session.root, node.path)
    shown = seeds.display_path(path, session.root)
    inputs, previous = _read_inputs(session.open(), node)
    session.close()
    try:
        ctx = ModelContext(
            node.name, Path(shown), inputs, previous, vars, options,
            session.root, target_dir, log, progress,
        )
        try:
            module = _import_model(path)
            model_fn = getattr(module, "model", None)
            if not callable(model_fn):
                raise ModelError(f"{shown}: no module-level function model(ctx)")
            outputs = _split_outputs(node, shown, model_fn(ctx))
        except TierpoolError:
            raise
        except Exception as exc:
            raise ModelError(f"{shown}: model() raised {type(exc).__name__}: {exc}") from exc
    finally:
        con = session.open(wait_s=REOPEN_WAIT_S)
    return _write_outputs(session, node, outputs), ctx.message


def _write_outputs(session: Session, node: PythonModel, outputs: dict[str, Any]) -> int:
    specs: dict[str, OutputSpec] = {o.name: o for o in node.outputs}
    con, total = session.open(), 0
    written: dict[str, int] = {}
    with engine.transaction(con):
        for name in specs:
            spec = specs[name]
            written[name] = engine.write_output(
                con, name, outputs[name], spec.columns, spec.materialized, spec.unique_key,
                session.kind(name),
            )
            total += written[name]
    session.written = written
    for name in specs:
        session.created(name, "table")
    return total
