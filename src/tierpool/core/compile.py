"""Compile checks: every problem found before anything runs, reported together.

Structural checks (run by ``load_project``): unknown tables with the closest known
names, and dependency cycles with their path. Column checks (``check_project``):
each SQL model is qualified with sqlglot against its upstream schemas, in build
order, and each generic test's column must exist in its relation.

Schemas come from the target's adapter: seeds (CSV header sniffed by DuckDB,
declared types win), sources (DuckDB: DESCRIBE of the expression in a throwaway
in-memory database; Spark: the schema Spark reports for the relation), Python
outputs (declared columns) and upstream SQL models (their projected columns after
star expansion). Where a schema is unknown (a source whose files are missing, a
star over a table function, an unnamed expression column) the checks downstream
of it are skipped: a false "unknown column" is worse than a missed one.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import TYPE_CHECKING

from tierpool.adapters import Adapter, Schema, adapter_for
from tierpool.core.column_check import check_columns
from tierpool.core.nodes import TestSpec
from tierpool.core.project import NO_RELATION
from tierpool.core.references import structural_problems
from tierpool.errors import CompileErrors, SqlError, TierpoolError

if TYPE_CHECKING:
    from tierpool.core.project_model import Project


def relation_schemas(project: Project, adapter: Adapter | None = None) -> dict[str, Schema]:
    """Known column names and types of every relation, computed without a warehouse.

    Relations whose schema cannot be known at compile time (a source whose files
    are missing, a model selecting ``*`` from a table function, or a model
    downstream of either) are left out. SQL model column types are "UNKNOWN".

    Args:
        project: A loaded project.

    Returns:
        relation -> {column: DuckDB type}.
    """
    schemas, _ = _schemas_and_problems(project, adapter)
    return schemas


def _schemas_and_problems(
    project: Project, adapter: Adapter | None = None
) -> tuple[dict[str, Schema], list[TierpoolError]]:
    schemas: dict[str, Schema] = {}
    problems: list[TierpoolError] = []
    graph = project.graph()
    own = adapter is None
    adapter = adapter or adapter_for(project.target, project.root)
    try:
        for name in graph.topological_order():
            node = project.nodes[name]
            if node.kind == "seed":
                declared = {col.name: col.type for col in node.columns if col.type}
                schema = adapter.describe_seed(Path(str(node.path)), declared)
            elif node.kind == "source":
                expression = getattr(node, "expression", "")
                schema = None if expression == NO_RELATION else adapter.describe(expression)
            elif node.kind == "python":
                for out in getattr(node, "outputs", ()):
                    schemas[out.name] = {col.name: str(col.type) for col in out.columns}
                continue
            else:
                schema, found = _sql_schema(project, name, schemas)
                problems += found
            if schema is not None:
                schemas[name] = schema
    finally:
        if own:
            adapter.close()
    return schemas, problems


def _sql_schema(
    project: Project, name: str, schemas: dict[str, Schema]
) -> tuple[Schema | None, list[TierpoolError]]:
    query = project.parsed.get(name)
    node = project.nodes[name]
    if query is None or any(dep not in schemas for dep in node.depends_on):
        return None, []
    upstream = {dep: schemas[dep] for dep in node.depends_on}
    result = check_columns(query, upstream, project.display(node.path))
    schema = None if result.columns is None else {col: "UNKNOWN" for col in result.columns}
    return schema, list(result.problems)


def _test_column_problems(project: Project, schemas: dict[str, Schema]) -> list[TierpoolError]:
    problems: list[TierpoolError] = []
    for name, test in sorted(project.tests.items()):
        spec = test.spec
        if spec is None:
            continue
        problems += _missing_column(project, name, spec, spec.relation, spec.column, schemas)
        if spec.kind == "relationships":
            from tierpool.core.data_tests import relationship_target

            target = relationship_target(spec.args["to"])
            field = str(spec.args["field"]).lower()
            problems += _missing_column(project, name, spec, target, field, schemas)
    return problems


def _missing_column(
    project: Project, test: str, spec: TestSpec, relation: str, column: str | None,
    schemas: dict[str, Schema],
) -> list[TierpoolError]:
    schema = schemas.get(relation)
    if column is None or schema is None or column in schema:
        return []
    close = difflib.get_close_matches(column, sorted(schema), n=3)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    return [
        SqlError(
            f"{project.display(spec.source_file)}: data test '{test}': unknown column "
            f"'{column}' in table '{relation}' (columns: {', '.join(schema)}){hint}"
        )
    ]


def translation_problems(project: Project, adapter: Adapter) -> list[TierpoolError]:
    """SQL of models and data tests the target's engine cannot run faithfully."""
    problems: list[TierpoolError] = []
    for name, node in sorted(project.nodes.items()):
        if node.kind == "sql" and name in project.parsed:  # else its syntax error is reported
            problems += adapter.translation_problems(node.sql, project.display(node.path))
    for name, test in sorted(project.tests.items()):
        where = project.display(test.path) if test.path else f"data test '{name}'"
        problems += adapter.translation_problems(test.sql, where)
    return problems


def check_project(project: Project, adapter: Adapter | None = None) -> None:
    """Run every compile check and raise them all together.

    Args:
        project: A loaded project.
        adapter: The target's adapter (default: a new one, closed afterwards).

    Raises:
        CompileErrors: Unknown tables, cycles, unknown columns in SQL models and
            in generic tests, SQL the target's engine cannot run faithfully.
    """
    problems = structural_problems(project) + later_stage_problems(project, adapter)
    if problems:
        raise CompileErrors(problems)


def later_stage_problems(project: Project, adapter: Adapter | None = None) -> list[TierpoolError]:
    """Translation and column problems; run even when earlier stages found problems.

    Nodes that failed earlier (syntax errors, unknown tables, invalid sources) have no
    schema, so nothing downstream of them is checked; with a cycle there is no build
    order and the column checks are skipped.

    Args:
        project: A loaded project (possibly one whose loading found problems).
        adapter: The target's adapter (default: a new one, closed afterwards).
    """
    own = adapter is None
    adapter = adapter or adapter_for(project.target, project.root)
    try:
        problems = translation_problems(project, adapter)
        if project.graph().find_cycle() is None:
            schemas, found = _schemas_and_problems(project, adapter)
            problems += found + _test_column_problems(project, schemas)
    finally:
        if own:
            adapter.close()
    return problems
