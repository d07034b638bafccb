"""Gather what the docs site shows: the project's relations, the warehouse's columns, test statuses.

Everything comes from three places, none of them written to:

* the loaded :class:`~tierpool.core.project_model.Project`: relations, descriptions, declared
  columns, materializations, data tests and the lineage (relation level: each output of a
  Python model is its own relation);
* the warehouse, through a read-only adapter: which relations exist, and each one's columns
  with the engine's own type names (DuckDB ``BIGINT``, Spark ``bigint``);
* ``target/run_results.json``: the last status of every node and data test the latest command
  ran (only when it ran against the same target).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tierpool import constants as c
from tierpool.core.graph import Graph
from tierpool.errors import DatabaseError, TierpoolError

if TYPE_CHECKING:
    from tierpool.adapters import Adapter
    from tierpool.core.nodes import Column, DataTest, Node
    from tierpool.core.project_model import Project

# The adapters' message for a warehouse that does not exist yet (DuckDB file, Spark database):
# the site is still written, with every relation "not built".
_NOT_YET_BUILT = "run `tierpool build` first"
NOT_RUN = "not run"


@dataclass(frozen=True)
class ColumnDoc:
    """One column: its type in the warehouse (None when not built) and what properties yml says."""

    name: str
    type: str | None = None
    declared_type: str | None = None
    description: str = ""
    in_warehouse: bool = False
    declared: bool = False


@dataclass(frozen=True)
class TestDoc:
    """A data test on a relation, with its last status (``not run`` when run_results lacks it)."""

    name: str
    kind: str  # not_null, unique, ... or "singular"
    column: str | None
    severity: str
    status: str = NOT_RUN
    failures: int | None = None
    message: str = ""
    path: str = ""


@dataclass(frozen=True)
class RunDoc:
    """The last result of the node that builds a relation."""

    status: str
    rows: int | None = None
    seconds: float | None = None
    message: str = ""


@dataclass(frozen=True)
class RelationDoc:
    """Everything one relation's page shows.

    Attributes:
        name: The relation.
        kind: ``seed``, ``source``, ``sql`` or ``python``.
        node: The node that produces it (a Python model produces several relations).
        built: ``table`` or ``view`` as found in the warehouse; None when not built.
        siblings: Other outputs of the same Python model.
        code: The node's SQL, source expression or Python file (as written).
        columns_error: Why the warehouse's columns could not be read (built but unreadable).
    """

    name: str
    kind: str
    node: str
    materialized: str
    description: str = ""
    path: str = ""
    built: str | None = None
    columns: tuple[ColumnDoc, ...] = ()
    columns_error: str = ""
    tests: tuple[TestDoc, ...] = ()
    parents: tuple[str, ...] = ()
    children: tuple[str, ...] = ()
    siblings: tuple[str, ...] = ()
    last_run: RunDoc | None = None
    unique_key: tuple[str, ...] = ()
    code: str = ""


@dataclass(frozen=True)
class SiteDocs:
    """The whole site's data: relations by name plus the lineage graph between them."""

    project_name: str
    target_name: str
    warehouse: str
    relations: dict[str, RelationDoc]
    lineage: Graph
    generated_at: str
    run_info: dict[str, Any] | None = None
    notes: tuple[str, ...] = ()
    tests_by_status: dict[str, int] = field(default_factory=dict)


def relation_graph(project: Project) -> Graph:
    """The lineage between relations: each relation's parents are the relations its node reads.

    It follows the project's node graph (:meth:`Project.graph`), so a model reading its own
    previous output (Python, append) has no edge to itself.
    """
    nodes = project.graph()
    owner = project.relation_owner
    parents: dict[str, set[str]] = {}
    for name, node in project.nodes.items():
        upstream = set(nodes.parents(name))
        reads = {r for r in node.depends_on if owner.get(r) in upstream}
        for relation in node.relations:
            parents[relation] = set(reads)
    return Graph(parents)


def read_run_results(project: Project) -> tuple[dict[str, dict[str, Any]], dict[str, Any] | None, str]:
    """Results of target/run_results.json by name, its metadata and a note (empty when usable).

    Results from another target than the project's are not used: they describe another warehouse.
    """
    path = project.target_dir / c.RUN_RESULTS_FILE
    if not path.is_file():
        return {}, None, "No target/run_results.json yet: test statuses show as 'not run'."
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        results = {str(r["name"]): r for r in data.get("results", [])}
        meta = dict(data.get("metadata") or {})
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        return {}, None, f"target/run_results.json cannot be read ({exc}): test statuses show as 'not run'."
    ran_on = meta.get("target")
    if ran_on and ran_on != project.target.name:
        return {}, meta, (f"target/run_results.json is from target '{ran_on}', not '{project.target.name}': "
                          "test statuses show as 'not run'.")
    return results, meta, ""


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def warehouse_columns(reader: Adapter, relation: str) -> list[tuple[str, str]]:
    """Columns of a relation of the warehouse with the engine's type names, in order.

    ``DESCRIBE`` answers on DuckDB; Spark's adapter runs SELECTs only and answers through
    :meth:`Adapter.describe` (a zero-row SELECT in the warehouse's session).

    Raises:
        TierpoolError: Neither way can read the relation (e.g. a view over a deleted file).
    """
    try:
        result = reader.fetch(f"DESCRIBE {_quote(relation)}")
        names = [col.lower() for col in result.columns]
        if "column_name" in names and "column_type" in names:
            i, j = names.index("column_name"), names.index("column_type")
            return [(str(row[i]), str(row[j])) for row in result.rows]
        first_error = f"DESCRIBE returned columns {', '.join(result.columns)}"
    except DatabaseError:
        raise
    except Exception as exc:  # the engine's own error: try the engine-neutral way
        first_error = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    schema = reader.describe(_quote(relation))
    if schema is None:
        raise TierpoolError(first_error)
    return list(schema.items())


def _column_docs(declared: tuple[Column, ...], found: list[tuple[str, str]] | None) -> tuple[ColumnDoc, ...]:
    """Warehouse columns in the warehouse's order, then declared columns the warehouse lacks."""
    by_name = {col.name.lower(): col for col in declared}
    out: list[ColumnDoc] = []
    for name, type_ in found or []:
        col = by_name.pop(name.lower(), None)
        out.append(ColumnDoc(name=name, type=type_, declared_type=col.type if col else None,
                             description=col.description if col else "", in_warehouse=True,
                             declared=col is not None))
    for col in by_name.values():
        out.append(ColumnDoc(name=col.name, declared_type=col.type, description=col.description,
                             declared=True))
    return tuple(out)


def _test_docs(tests: list[DataTest], relation: str, results: dict[str, dict[str, Any]],
               project: Project) -> tuple[TestDoc, ...]:
    out = []
    for test in sorted(tests, key=lambda t: t.name):
        spec = test.spec
        column = spec.column if spec else None
        if spec and column and spec.relation != relation:
            column = f"{spec.relation}.{column}"
        result = results.get(test.name)
        if result is not None and result.get("resource_type") != "test":
            result = None
        failures = result.get("failures") if result else None
        out.append(TestDoc(
            name=test.name, kind=spec.kind if spec else "singular", column=column, severity=test.severity,
            status=str(result.get("status")) if result else NOT_RUN,
            failures=int(failures) if isinstance(failures, (int, float)) else None,
            message=str(result.get("message") or "") if result else "",
            path=project.display(test.path) if test.path else "",
        ))
    return tuple(out)


def _node_run(node: Node, results: dict[str, dict[str, Any]]) -> RunDoc | None:
    result = results.get(node.name)
    if result is None or result.get("resource_type") == "test":
        return None
    seconds = result.get("execution_time")
    return RunDoc(status=str(result.get("status")), rows=result.get("rows"),
                  seconds=float(seconds) if isinstance(seconds, (int, float)) else None,
                  message=str(result.get("message") or ""))


def _code(project: Project, node: Node) -> str:
    if node.kind == "source":
        return str(node.config.get("raw_expression") or getattr(node, "expression", ""))
    if node.kind == "seed" or node.path is None:
        return ""
    try:
        return Path(node.path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return ""


def _relation_doc(project: Project, relation: str, graph: Graph, built: str | None,
                  found: list[tuple[str, str]] | None, columns_error: str,
                  tests: list[DataTest], results: dict[str, dict[str, Any]]) -> RelationDoc:
    node = project.nodes[project.relation_owner[relation]]
    description, declared = node.description, node.columns
    materialized, unique_key = node.materialized, node.unique_key
    for output in getattr(node, "outputs", ()):
        if output.name == relation:
            description, declared = output.description, output.columns
            materialized, unique_key = output.materialized, output.unique_key
    return RelationDoc(
        name=relation, kind=node.kind, node=node.name, materialized=materialized, description=description,
        path=project.display(node.path) if node.path else "", built=built,
        columns=_column_docs(declared, found), columns_error=columns_error,
        tests=_test_docs(tests, relation, results, project),
        parents=tuple(graph.parents(relation)), children=tuple(graph.children(relation)),
        siblings=tuple(r for r in node.relations if r != relation), last_run=_node_run(node, results),
        unique_key=tuple(unique_key), code=_code(project, node),
    )


def _catalog(reader: Adapter, wait_s: float) -> tuple[dict[str, str], str]:
    """Relations in the warehouse (name -> table/view), or none with a note when it is not built."""
    try:
        reader.open(wait_s=wait_s)
        return reader.relation_kinds(), ""
    except DatabaseError as exc:
        if _NOT_YET_BUILT not in str(exc):
            raise
        return {}, f"No warehouse yet ({exc}): every relation shows as not built."


def collect_docs(project: Project, reader: Adapter, wait_s: float = 0.0) -> SiteDocs:
    """Read the project, the warehouse (read-only) and run_results.json into :class:`SiteDocs`.

    Args:
        project: The loaded project.
        reader: A read-only adapter of the project's target; closed before returning.
        wait_s: How long to wait while a build holds the warehouse (DuckDB).

    Raises:
        DatabaseError: The warehouse exists but cannot be opened (e.g. locked by a build).
    """
    graph = relation_graph(project)
    results, meta, results_note = read_run_results(project)
    tests_of: dict[str, list[DataTest]] = {}
    for test in project.tests.values():
        for relation in dict.fromkeys(test.attached_to):
            tests_of.setdefault(relation, []).append(test)
    relations: dict[str, RelationDoc] = {}
    try:
        kinds, catalog_note = _catalog(reader, wait_s)
        for relation in graph.topological_order():
            built = kinds.get(relation)
            found, error = None, ""
            if built is not None:
                try:
                    found = warehouse_columns(reader, relation)
                except DatabaseError:
                    raise
                except TierpoolError as exc:
                    error = str(exc)
            relations[relation] = _relation_doc(project, relation, graph, built, found, error,
                                                tests_of.get(relation, []), results)
        description = reader.description
    finally:
        reader.close()
    counts: dict[str, int] = {}
    for test in project.tests:
        result = results.get(test)
        status = str(result.get("status")) if result and result.get("resource_type") == "test" else NOT_RUN
        counts[status] = counts.get(status, 0) + 1
    return SiteDocs(
        project_name=str(project.settings.get("name") or project.root.name),
        target_name=project.target.name, warehouse=description, relations=relations, lineage=graph,
        generated_at=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), run_info=meta,
        notes=tuple(n for n in (catalog_note, results_note) if n), tests_by_status=counts,
    )
