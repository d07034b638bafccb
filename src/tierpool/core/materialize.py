"""Building one node (seed, source, SQL model or Python model) through the adapter.

Each write replaces its relation only once the new one is fully built. Python models
get their inputs (and the previous contents of their outputs) as DataFrames, then the
warehouse is released while ``model(ctx)`` runs and all outputs are swapped in together.

Write, audit, publish: given an ``audit`` (the runner's error-severity data tests), a
node's new relations are written unpublished, audited, and published only if the audit
returns; if it raises, every relation of the node stays as it was.
"""

from __future__ import annotations

import importlib.util
import itertools
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tierpool.adapters import Adapter, FrameOutput, adapter_for
from tierpool.core import incremental as inc
from tierpool.core.context import LazyFrames, ModelContext
from tierpool.core.nodes import Node, PythonModel
from tierpool.core.project_model import display_path
from tierpool.errors import ModelError, TierpoolError

if TYPE_CHECKING:
    from tierpool.core.config import Target
    from tierpool.core.state import BuildState

# Runs a node's data tests against its unpublished relations, given the names to read
# them by (relation -> staged name; absent: its own name); raises to refuse publishing.
Audit = Callable[[dict[str, str]], None]

# Seconds a build waits to reopen the warehouse after a Python model, if an
# ad-hoc reader (tierpool query, DuckDB CLI) opened it meanwhile.
REOPEN_WAIT_S = 120.0
_module_ids = itertools.count()


class Session:
    """The build's read-write adapter, which can be released and reopened."""

    def __init__(
        self, target: Target, root: Path, adapter: Adapter | None = None, full_refresh: bool = False
    ) -> None:
        self.root = Path(root)
        self.adapter = adapter or adapter_for(target, self.root)
        # --full-refresh: incremental models rebuild from scratch.
        self.full_refresh = full_refresh
        # The run's build state (target/state.json), set by the runner; None in library use.
        self.state: BuildState | None = None
        # Relation kinds, read once: this build is the only writer (it holds the lock).
        self.kinds: dict[str, str] | None = None
        # Rows written per output by the last Python model (build state fingerprints).
        self.written: dict[str, int] = {}

    def open(self, wait_s: float = 0.0) -> Adapter:
        """Open (or return) the adapter's connection."""
        self.adapter.open(wait_s=wait_s)
        if self.kinds is None:
            self.kinds = self.adapter.relation_kinds()
        return self.adapter

    def kind(self, name: str) -> str | None:
        """Current kind of a relation ("table", "view" or None)."""
        self.open()
        assert self.kinds is not None
        return self.kinds.get(name.lower())

    def created(self, name: str, kind: str) -> None:
        """Record a committed write."""
        if self.kinds is not None:
            self.kinds[name.lower()] = kind

    @contextmanager
    def publishing(self, audit: Audit | None) -> Iterator[None]:
        """Writes inside the block are published only once ``audit`` passes on them."""
        if audit is None:
            yield
            return
        try:
            with self.open().audited() as visible:
                yield
                audit(visible)
        except BaseException:
            self.kinds = None  # relations written in the block were rolled back: re-read
            raise

    def release(self) -> None:
        """Let other processes use the warehouse while a Python model runs."""
        self.adapter.release()

    def close(self) -> None:
        """Release the database so other processes can open it."""
        self.adapter.close()


def resolve(root: Path, path: Path | None) -> Path:
    """A node path as an absolute path."""
    if path is None:
        raise ModelError("node has no file path")
    return Path(path) if Path(path).is_absolute() else Path(root) / path


def build_node(
    session: Session, node: Node, ctx_args: dict[str, Any], audit: Audit | None = None
) -> tuple[int | None, str]:
    """Build one node; returns (rows, message). Raises on failure (nothing is changed)."""
    if node.kind == "python":
        return build_python(session, node, **ctx_args, audit=audit)
    with session.publishing(audit):
        return _write_node(session, node)


def _write_node(session: Session, node: Node) -> tuple[int | None, str]:
    """Write a seed, source or SQL model; returns (rows, message)."""
    adapter, existing = session.open(), session.kind(node.name)
    message = ""
    if node.kind == "seed":
        rows: int | None = adapter.load_seed(node, existing)
    elif node.kind == "source":
        adapter.create_view(node.name, f"SELECT * FROM {node.expression}", existing)
        rows = None
    elif node.kind == "sql" and node.materialized == "append":
        rows = adapter.append(node.name, node.sql, node.unique_key, existing)
    elif node.kind == "sql" and node.materialized == "incremental":
        rows, message = _write_incremental(session, node, adapter, existing)
    elif node.kind == "sql" and node.materialized == "table":
        rows = adapter.build_table(node.name, node.sql, existing)
    elif node.kind == "sql":
        adapter.create_view(node.name, node.sql, existing)
        rows = None
    else:
        raise ModelError(f"cannot build node {node.name} of kind {node.kind}")
    session.created(node.name, "view" if rows is None else "table")
    return rows, message


def _write_incremental(
    session: Session, node: Node, adapter: Adapter, existing: str | None
) -> tuple[int, str]:
    """Merge only the event parents' rows at or after the target's high-water mark, or
    rebuild the whole table and say why (see :mod:`tierpool.core.incremental`)."""
    column = str(node.config.get("event_time") or "")
    sql = getattr(node, "sql", "")
    shown = display_path(session.root, resolve(session.root, node.path))
    model_schema = adapter.query_schema(sql)  # from the plan: nothing runs
    missing = [c for c in (column, *node.unique_key) if c.lower() not in model_schema]
    if missing:
        raise ModelError(
            f"{shown}: incremental model {node.name} selects no column {', '.join(missing)} "
            f"(its event_time and unique_key; it selects {', '.join(model_schema)})"
        )
    parents = sorted({rel for rel in node.depends_on if rel != node.name})
    schemas = {rel: adapter.query_schema(f"SELECT * FROM {inc.quote(rel)}") for rel in parents}
    events = inc.event_parents(parents, schemas, column)
    if not events:
        raise ModelError(
            f"{shown}: incremental model {node.name}: none of its parents ({', '.join(parents)}) "
            f"has the event_time column '{column}': the new rows are read from the parents "
            "that have it"
        )
    lookups = [rel for rel in parents if rel not in events]
    contents = adapter.relation_digests(lookups)
    state = session.state
    code = state.incremental_code(node, events) if state is not None else \
        {node.name: inc.digest(sql, list(node.unique_key), column)}
    basis = inc.Basis(code, {rel: inc.digest(list(schemas[rel].items()), contents[rel]) for rel in lookups})
    reason: str | None
    if existing != "table":
        reason = "no table yet" if existing is None else f"replaces a {existing}"
    elif session.full_refresh:
        reason = "--full-refresh"
    else:
        stored = state.incremental_basis(node.name) if state is not None else None
        reason = inc.why_full(inc.Basis.from_dict(stored), basis)
    since = None
    if reason is None:
        target = adapter.query_schema(f"SELECT * FROM {inc.quote(node.name)}")
        since = adapter.high_water_mark(node.name, column)
        if list(model_schema.items()) != list(target.items()):
            reason = "columns changed"
        elif since is None:
            reason = "the table is empty"
    if reason is None and since is not None:
        filtered = inc.filter_reads(sql, events, inc.predicate(column, since))
        rows = adapter.merge(node.name, inc.new_rows_sql(filtered, node.name, column, since, node.unique_key),
                             node.unique_key, "table")
        message = f"incremental: {rows:,} new rows"
    else:
        rows = adapter.build_table(node.name, sql, existing)
        message = f"full rebuild: {reason}"
    if state is not None:
        state.note_incremental(node.name, basis.as_dict())
    return rows, message


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
    return {k: _detach(v) for k, v in got.items()}


def _detach(data: Any) -> Any:
    """Data returned by a model as something that outlives any connection it came from."""
    if hasattr(data, "to_arrow_table") and not hasattr(data, "column_names"):
        return data.to_arrow_table()  # a DuckDB relation
    return data


def _lazy_inputs(session: Session, node: PythonModel) -> tuple[LazyFrames, LazyFrames]:
    """The model's inputs and its outputs' previous contents, each read when first used.

    The session is released while the model runs; a read reopens it for that read only.
    """
    own = {o.name for o in node.outputs}

    def read(relation: str, previous: bool) -> Any:
        adapter = session.open(wait_s=REOPEN_WAIT_S)
        try:
            if previous and not session.kind(relation):
                return None
            return adapter.read_frame(relation)
        finally:
            session.release()

    previous = LazyFrames([o.name for o in node.outputs], lambda rel: read(rel, True))
    # A model may ref one of its own outputs: that is its previous version.
    inputs = LazyFrames(list(node.depends_on),
                        lambda rel: previous[rel] if rel in own else read(rel, False))
    return inputs, previous


def build_python(
    session: Session,
    node: PythonModel,
    vars: dict[str, Any],
    options: dict[str, Any],
    target_dir: Path,
    log: Callable[[str], None],
    progress: bool = True,
    audit: Audit | None = None,
) -> tuple[int, str]:
    """Run a Python model with the database released, then swap all outputs at once.

    Returns:
        (rows written over all outputs, ``ctx.message``).

    Raises:
        ModelError: Import/run failure, wrong return shape, column mismatch; no output
            is changed in that case.
    """
    path = resolve(session.root, node.path)
    shown = display_path(session.root, path)
    inputs, previous = _lazy_inputs(session, node)
    session.release()
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
        session.open(wait_s=REOPEN_WAIT_S)
    with session.publishing(audit):
        rows = _write_outputs(session, node, outputs)
    return rows, ctx.message


def _write_outputs(session: Session, node: PythonModel, outputs: dict[str, Any]) -> int:
    frames = [
        FrameOutput(o.name, outputs[o.name], o.columns, o.materialized, o.unique_key)
        for o in node.outputs
    ]
    existing = {o.name: session.kind(o.name) for o in node.outputs}
    written = session.open().write_frames(frames, existing)
    session.written = written
    for name in written:
        session.created(name, "table")
    return sum(written.values())
