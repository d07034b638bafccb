"""Data tests as data: a name plus SQL that selects the failing rows.

Generic tests are declared in properties yml and expanded here into SQL; singular
tests are ``tests/data/*.sql`` files holding a query that returns failing rows. A
test passes when its query returns no rows; its severity (``error`` or ``warn``)
decides whether a failure fails the build.

Generic kinds and the rows they return:

- ``not_null``: rows where the column is NULL.
- ``unique``: one row per duplicated non-NULL value (``unique_field``, ``n_records``).
- ``accepted_values`` (``values``, optional ``quote: false``): rows whose non-NULL
  value is not in the list.
- ``relationships`` (``to``: ``ref('x')`` or ``x``; ``field``): rows whose non-NULL
  value has no match in ``to.field``.
- ``accepted_range`` (``min_value`` and/or ``max_value``, ``inclusive`` default
  true): rows outside the range (NULLs pass).
- ``expression`` (``expression``): rows where the predicate is false (NULL passes,
  as in dbt). At column level an expression that starts with an operator
  (``>= 0``, ``in (...)``, ``is not null``, ``between ...``) is applied to the column.

Every kind accepts ``severity: error|warn`` and ``where`` (a predicate that
filters the rows tested), directly or under ``config:``. Singular tests set their
severity with a first-line comment ``-- severity: warn``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tierpool.core.nodes import DataTest, Severity, TestSpec
from tierpool.core.sql import (
    normalize_name,
    parse_select,
    referenced_tables,
    statement_text,
)
from tierpool.errors import ProjectError

if TYPE_CHECKING:
    from sqlglot import exp

GENERIC_KINDS = (
    "not_null",
    "unique",
    "accepted_values",
    "relationships",
    "accepted_range",
    "expression",
)
_ALIASES = {"expression_is_true": "expression"}
_REQUIRED = {
    "accepted_values": ("values",),
    "relationships": ("to", "field"),
    "expression": ("expression",),
}
_REF = re.compile(r"""^\s*ref\(\s*['"]([^'"]+)['"]\s*\)\s*$""")
_OPERATOR_START = re.compile(r"^\s*(>=|<=|<>|!=|=|>|<|(is|in|not|between|like|ilike)\b)", re.I)
_SEVERITY_COMMENT = re.compile(r"^\s*--\s*severity\s*:\s*(\w+)", re.I)


def canonical_kind(kind: str) -> str:
    """A test kind without a package prefix, aliases resolved.

    >>> canonical_kind("dbt_utils.expression_is_true")
    'expression'
    """
    bare = kind.strip().split(".")[-1].lower()
    return _ALIASES.get(bare, bare)


def check_test_args(kind: str, args: dict[str, Any], where: str) -> None:
    """Validate a generic test's kind and arguments.

    Args:
        kind: The canonical kind.
        args: The test's own keys.
        where: Who declares it (file and relation), named in errors.

    Raises:
        ProjectError: Unknown kind (the message lists the valid ones) or a
            missing argument.
    """
    if kind not in GENERIC_KINDS:
        raise ProjectError(
            f"{where}: unknown data test '{kind}'; valid kinds: {', '.join(GENERIC_KINDS)}"
        )
    missing = [key for key in _REQUIRED.get(kind, ()) if args.get(key) in (None, "", [])]
    if kind == "accepted_range" and args.get("min_value") is None and args.get("max_value") is None:
        missing.append("min_value or max_value")
    if missing:
        raise ProjectError(f"{where}: data test '{kind}' needs {', '.join(missing)}")


def ident(name: str) -> str:
    """Quote an identifier for DuckDB only when it needs quoting.

    >>> ident("estimate"), ident("my col")
    ('estimate', '"my col"')
    """
    from sqlglot import exp  # lazily: see tierpool.core.sql

    return exp.to_identifier(name).sql("duckdb", identify=False)


def literal(value: Any) -> str:
    """A Python scalar as a DuckDB literal.

    >>> literal("it's"), literal(3), literal(True)
    ("'it''s'", '3', 'true')
    """
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return "'" + str(value).replace("'", "''") + "'"


def relationship_target(to: Any) -> str:
    """The relation a relationships test points at: ``ref('x')`` or a bare ``x``.

    >>> relationship_target("ref('models')"), relationship_target("Models")
    ('models', 'models')
    """
    text = str(to)
    match = _REF.match(text)
    return normalize_name(match.group(1) if match else text)


def _tested(spec: TestSpec) -> str:
    rel = ident(spec.relation)
    return f"(select * from {rel} where {spec.where}) as t" if spec.where else f"{rel} as t"


def _not_null(spec: TestSpec, col: str) -> str:
    return f"select * from {_tested(spec)} where {col} is null"


def _unique(spec: TestSpec, col: str) -> str:
    return (
        f"select {col} as unique_field, count(*) as n_records from {_tested(spec)} "
        f"where {col} is not null group by {col} having count(*) > 1"
    )


def _accepted_values(spec: TestSpec, col: str) -> str:
    quote = spec.args.get("quote", True)
    values = ", ".join(literal(v) if quote else str(v) for v in spec.args["values"])
    return f"select * from {_tested(spec)} where {col} is not null and {col} not in ({values})"


def _relationships(spec: TestSpec, col: str) -> str:
    parent = ident(relationship_target(spec.args["to"]))
    field = ident(str(spec.args["field"]))
    return (
        f"select t.* from {_tested(spec)} left join {parent} as p on t.{col} = p.{field} "
        f"where t.{col} is not null and p.{field} is null"
    )


def _accepted_range(spec: TestSpec, col: str) -> str:
    inclusive = spec.args.get("inclusive", True)
    low, high = (">=", "<=") if inclusive else (">", "<")
    bounds = []
    if spec.args.get("min_value") is not None:
        bounds.append(f"{col} {low} {spec.args['min_value']}")
    if spec.args.get("max_value") is not None:
        bounds.append(f"{col} {high} {spec.args['max_value']}")
    return f"select * from {_tested(spec)} where not ({' and '.join(bounds)})"


def _expression(spec: TestSpec, col: str) -> str:
    predicate = str(spec.args["expression"])
    if spec.column and _OPERATOR_START.match(predicate):
        predicate = f"{col} {predicate.strip()}"
    return f"select * from {_tested(spec)} where not ({predicate})"


_TEMPLATES: dict[str, Callable[[TestSpec, str], str]] = {
    "not_null": _not_null,
    "unique": _unique,
    "accepted_values": _accepted_values,
    "relationships": _relationships,
    "accepted_range": _accepted_range,
    "expression": _expression,
}


def generic_test_sql(spec: TestSpec) -> str:
    """The SQL that selects the rows failing a generic test.

    Args:
        spec: The declared test (kind already validated).

    Returns:
        A SELECT statement; the test passes when it returns no rows.

    Examples:
        >>> generic_test_sql(TestSpec("not_null", "models", "model_id", where="active"))
        'select * from (select * from models where active) as t where model_id is null'
    """
    if spec.column is None and spec.kind != "expression":
        raise ProjectError(
            f"{spec.source_file}: data test '{spec.kind}' on '{spec.relation}' needs a column "
            "(declare it under columns:, or give column_name:)"
        )
    col = ident(spec.column) if spec.column else ""
    return _TEMPLATES[spec.kind](spec, col)


def base_test_name(spec: TestSpec) -> str:
    """dbt-style test name, before de-duplication.

    >>> base_test_name(TestSpec("relationships", "models", "family_id",
    ...                         {"to": "ref('families')", "field": "family_id"}))
    'relationships_models_family_id__family_id__families'
    """
    parts = [spec.kind, spec.relation] + ([spec.column] if spec.column else [])
    name = "_".join(parts)
    if spec.kind == "relationships":
        name += f"__{spec.args['field']}__{relationship_target(spec.args['to'])}"
    return re.sub(r"[^0-9a-zA-Z_]+", "_", name).lower()


def build_generic_tests(specs: Iterable[TestSpec], display: Callable[[Path], str]) -> list[DataTest]:
    """Expand generic test specs into DataTest nodes with unique names.

    Args:
        specs: Declared tests, in declaration order (names de-duplicate as
            ``name``, ``name_2``, ``name_3``... in that order).
        display: Turns a file path into the form used in messages.

    Returns:
        One DataTest per spec; ``depends_on`` holds every relation its SQL reads,
        ``attached_to`` the tested relation (and ``to`` for relationships).

    Raises:
        ProjectError / SqlError: for the first spec whose SQL cannot be built.
    """
    tests: list[DataTest] = []
    seen: dict[str, int] = {}
    for spec in specs:
        base = base_test_name(spec)
        seen[base] = seen.get(base, 0) + 1
        name = base if seen[base] == 1 else f"{base}_{seen[base]}"
        sql = generic_test_sql(spec)
        where = f"{display(spec.source_file) if spec.source_file else '<yml>'} (test {name})"
        query = parse_select(sql, where)
        attached = [spec.relation]
        if spec.kind == "relationships":
            attached.append(relationship_target(spec.args["to"]))
        tests.append(
            DataTest(
                name=name,
                path=spec.source_file,
                depends_on=tuple(r.name for r in referenced_tables(query)),
                sql=sql,
                severity=spec.severity,
                attached_to=tuple(dict.fromkeys(attached)),
                spec=spec,
            )
        )
    return tests


def read_severity(sql: str, where: str) -> Severity:
    """Severity of a singular test from its optional first-line comment.

    >>> read_severity("-- severity: warn\\nselect 1", "t.sql")
    'warn'
    """
    first = sql.lstrip().splitlines()[0] if sql.strip() else ""
    match = _SEVERITY_COMMENT.match(first)
    if not match:
        return "error"
    severity = match.group(1).lower()
    if severity not in ("error", "warn"):
        raise ProjectError(f"{where}:1: severity must be 'error' or 'warn', got '{severity}'")
    return "warn" if severity == "warn" else "error"


def load_singular_test(path: Path, display: str) -> tuple[DataTest, exp.Query]:
    """Read one ``tests/data/<name>.sql`` file.

    Args:
        path: The file.
        display: How to name the file in errors.

    Returns:
        The DataTest (depends_on = attached_to = the tables it reads) and its
        parsed query.

    Raises:
        SqlError: The file is not one valid SELECT, or holds Jinja.
        ProjectError: Bad severity comment, a byte that is not UTF-8.
    """
    from tierpool.core.strict_files import check_sql_jinja, read_text

    sql = read_text(path, display)
    check_sql_jinja(sql, display)
    query = parse_select(sql, display)
    deps = tuple(r.name for r in referenced_tables(query))
    test = DataTest(
        name=normalize_name(path.stem),
        path=path,
        depends_on=deps,
        sql=statement_text(sql),
        severity=read_severity(sql, display),
        attached_to=deps,
    )
    return test, query
