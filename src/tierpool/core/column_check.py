"""Check a query's column names against upstream schemas with sqlglot's qualify.

``qualify(..., validate_qualify_columns=True)`` stops at the first column it cannot
resolve. Its message is then confirmed independently (the column is absent from
every table it could come from, and is not a select alias) before it is reported,
so a construct qualify does not understand is skipped rather than reported as a
false error.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

from sqlglot import exp
from sqlglot.errors import OptimizeError, SqlglotError
from sqlglot.optimizer.qualify import qualify
from sqlglot.optimizer.scope import Scope, traverse_scope

from tierpool.core.sql import DIALECT, normalize_name
from tierpool.errors import SqlError

_UNRESOLVED = re.compile(r"Column '([^']+)' could not be resolved|Unknown column: (\S+)")
_MAX_LISTED = 10


@dataclass(frozen=True)
class ColumnCheck:
    """Result of checking one query.

    Attributes:
        columns: Output column names, or None when they cannot be known at
            compile time (``*`` over a table function, an unnamed expression).
        problems: Confirmed unknown-column errors (at most one per query).
    """

    columns: list[str] | None
    problems: tuple[SqlError, ...] = ()


def check_columns(query: exp.Query, schema: dict[str, dict[str, str]], where: str) -> ColumnCheck:
    """Qualify a query's columns against the schemas of the tables it reads.

    Args:
        query: The parsed query (not modified).
        schema: relation -> {column: type} for every table the query reads.
        where: The file, as shown in messages.

    Returns:
        The output columns and any confirmed unknown column.

    Examples:
        >>> import sqlglot
        >>> q = sqlglot.parse_one("select request_id, estimat from t2", read="duckdb")
        >>> check = check_columns(q, {"t2": {"request_id": "VARCHAR", "estimate": "DOUBLE"}}, "m.sql")
        >>> print(check.problems[0])
        m.sql:1: unknown column 'estimat' in table 't2' (columns: estimate, request_id); did you mean 'estimate'?
    """
    try:
        qualified = qualify(
            query.copy(), schema=schema, dialect=DIALECT, validate_qualify_columns=True
        )
    except OptimizeError as err:
        problem = _confirm(query, schema, str(err), where)
        return ColumnCheck(None, (problem,) if problem else ())
    except (SqlglotError, AttributeError, KeyError, TypeError, ValueError):
        # qualify does not support every DuckDB construct (e.g. PIVOT): skip.
        return ColumnCheck(None)
    return ColumnCheck(_output_columns(qualified))


def _output_columns(qualified: exp.Expression) -> list[str] | None:
    if not isinstance(qualified, exp.Query):
        return None
    names = [normalize_name(n) for n in qualified.named_selects]
    # "_col_N" is sqlglot's placeholder for an unaliased expression: DuckDB names
    # it differently, so downstream column checks would be unreliable.
    if not names or any(n == "*" or n.startswith("_col_") for n in names):
        return None
    return names


def _confirm(
    query: exp.Query, schema: dict[str, dict[str, str]], message: str, where: str
) -> SqlError | None:
    match = _UNRESOLVED.search(message)
    if not match:
        return None
    name = normalize_name(match.group(1) or match.group(2))
    try:
        scopes = traverse_scope(query.copy())
    except SqlglotError:
        return None
    for scope in scopes:
        for column in scope.columns:
            if normalize_name(column.name) != name:
                continue
            tables = _candidate_tables(scope, column, name, schema)
            if tables:
                line = column.this.meta.get("line", 0)
                return _unknown_column(where, line, name, tables, schema)
    return None


def _candidate_tables(
    scope: Scope, column: exp.Column, name: str, schema: dict[str, dict[str, str]]
) -> list[str] | None:
    """The known tables the column could come from, or None if it may be fine."""
    if column.table:
        chain: list[Scope] = [scope]
    else:
        if name in _aliases(scope):
            return None  # a reference to a select alias
        chain = []
        current: Scope | None = scope
        while current is not None:
            chain.append(current)
            current = current.parent
    tables: list[str] = []
    for current in chain:
        sources = current.sources
        if column.table:
            wanted = normalize_name(column.table)
            sources = {k: v for k, v in sources.items() if normalize_name(k) == wanted}
            if not sources:
                return None
        for source in sources.values():
            known = _source_columns(source, schema)
            if known is None or name in known:
                return None
            if isinstance(source, exp.Table):
                tables.append(normalize_name(source.name))
    return list(dict.fromkeys(tables)) or None


def _aliases(scope: Scope) -> set[str]:
    expression = scope.expression
    if not isinstance(expression, exp.Select):
        return set()
    return {
        normalize_name(sel.alias)
        for sel in expression.selects
        if isinstance(sel, exp.Alias)
        and not (isinstance(sel.this, exp.Column) and sel.this.name == sel.alias)
    }


def _selects(scope: Scope) -> list[str]:
    expression = scope.expression
    return list(expression.named_selects) if isinstance(expression, exp.Query) else []


def _source_columns(source: object, schema: dict[str, dict[str, str]]) -> set[str] | None:
    if isinstance(source, exp.Table):
        if not isinstance(source.this, exp.Identifier):
            return None  # table function: columns unknown
        table = schema.get(normalize_name(source.name))
        return None if table is None else {normalize_name(c) for c in table}
    if isinstance(source, Scope):
        names = _selects(source)
        if not names or "*" in names:
            return None
        return {normalize_name(n) for n in names}
    return None


def _unknown_column(
    where: str, line: int, name: str, tables: list[str], schema: dict[str, dict[str, str]]
) -> SqlError:
    columns = sorted({c for t in tables for c in schema.get(t, {})})
    close = difflib.get_close_matches(name, columns, n=3)
    listed = close + [c for c in columns if c not in close]
    more = ", ..." if len(listed) > _MAX_LISTED else ""
    label = "table" if len(tables) == 1 else "tables"
    names = ", ".join(f"'{t}'" for t in tables)
    hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    loc = f":{line}" if line else ""
    return SqlError(
        f"{where}{loc}: unknown column '{name}' in {label} {names} "
        f"(columns: {', '.join(listed[:_MAX_LISTED])}{more}){hint}"
    )
