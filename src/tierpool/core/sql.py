"""sqlglot helpers: parse a model's SELECT once, find the tables it reads.

Dependencies come from sqlglot scopes, not regexes: every scope's table sources
are collected, CTE names (which are scopes, not tables) drop out naturally, and
table functions such as ``read_csv(...)`` are not tables. Names are compared in
lower case, as DuckDB compares identifiers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from tierpool.errors import SqlError

if TYPE_CHECKING:
    from sqlglot import exp
    from sqlglot.errors import ParseError

# sqlglot is imported inside the functions that need it: importing it costs ~60 ms,
# and a build whose project comes from target/project_cache.pkl never parses SQL.

DIALECT = "duckdb"
# Catalog schemas DuckDB provides: reading them is not a dependency on a node.
SYSTEM_SCHEMAS = frozenset({"information_schema", "pg_catalog"})
_TOKEN_REPR = re.compile(r"<Token token_type: [^,]*, text: (.*?), line: .*?>")


@dataclass(frozen=True)
class TableRef:
    """A table named in a query, with where it appears (1-based line, 0 if unknown)."""

    name: str
    line: int = 0
    col: int = 0


def normalize_name(name: str) -> str:
    """Normalise an identifier the way DuckDB compares it (case-insensitively).

    >>> normalize_name("Tier2_Estimates")
    'tier2_estimates'
    """
    return name.strip().lower()


def parse_select(sql: str, path: Path | str) -> exp.Query:
    """Parse a model file that must hold exactly one SELECT (WITH allowed).

    Args:
        sql: The file's text.
        path: The file, named in errors.

    Returns:
        The parsed query (SELECT, or a set operation such as UNION of SELECTs).

    Raises:
        SqlError: Syntax error (with file, line, column), several statements, or a
            statement that is not a query.

    Examples:
        >>> parse_select("with a as (select 1 as x) select x from a;", "m.sql").sql()
        'WITH a AS (SELECT 1 AS x) SELECT x FROM a'
    """
    import sqlglot
    from sqlglot import exp
    from sqlglot.errors import ParseError, TokenError

    try:
        statements = [s for s in sqlglot.parse(sql, read=DIALECT) if s is not None]
    except ParseError as err:
        raise SqlError(_describe_parse_error(err, path)) from err
    except TokenError as err:
        raise SqlError(f"{path}: SQL syntax error: {err}") from err
    if not statements:
        raise SqlError(f"{path}: the file is empty; a model is one SELECT statement")
    if len(statements) > 1:
        raise SqlError(
            f"{path}: found {len(statements)} statements; a model file holds exactly one "
            "SELECT (split the others into their own files)"
        )
    statement = statements[0]
    if not isinstance(statement, exp.Query):
        kind = statement.key.upper()
        raise SqlError(
            f"{path}: a model must be a SELECT statement, found {kind}; "
            "tierpool creates the table or view itself"
        )
    return statement


def _describe_parse_error(err: ParseError, path: Path | str) -> str:
    if not err.errors:
        return f"{path}: SQL syntax error: {err}"
    first = err.errors[0]
    line, col = first.get("line"), first.get("col")
    description = str(first.get("description", err)).split(". Line")[0]
    # sqlglot prints whole Token reprs; the token's text is what a user recognises.
    description = _TOKEN_REPR.sub(lambda m: f"'{m.group(1)}'", description)
    highlight = first.get("highlight")
    near = f" near '{highlight}'" if highlight else ""
    return f"{path}:{line}:{col}: SQL syntax error{near}: {description}"


def statement_text(sql: str) -> str:
    """A statement's text without trailing semicolons and trailing comments.

    Callers wrap model and test SQL (``create view x as ...``, ``select count(*)
    from (...)``); a trailing ``-- comment`` or ``;`` would break the wrapper.

    >>> statement_text("select 1 -- one\\n; -- done\\n")
    'select 1'
    """
    import sqlglot
    from sqlglot.errors import ParseError, TokenError

    try:
        tokens = sqlglot.Dialect.get_or_raise(DIALECT).tokenize(sql)
    except (TokenError, ParseError):
        return sql.strip().rstrip(";").strip()
    while tokens and tokens[-1].token_type == sqlglot.tokens.TokenType.SEMICOLON:
        tokens.pop()
    return sql[: tokens[-1].end + 1].strip() if tokens else ""


def referenced_tables(query: exp.Expression) -> list[TableRef]:
    """List the tables a query reads, CTE names and table functions excluded.

    Args:
        query: A parsed query.

    Returns:
        One TableRef per distinct (lower-case) name, in order of first appearance in
        the text; system catalog tables (information_schema, pg_catalog) excluded.

    Examples:
        >>> import sqlglot
        >>> q = sqlglot.parse_one(
        ...     "with seeds as (select * from Seeds) select * from seeds, read_csv('x.csv')",
        ...     read="duckdb")
        >>> [t.name for t in referenced_tables(q)]
        ['seeds']
    """
    from sqlglot.optimizer.scope import traverse_scope

    found: dict[str, TableRef] = {}
    for scope in traverse_scope(query):
        for source in scope.sources.values():
            if not _is_named_table(source):
                continue
            name = normalize_name(source.name)
            meta = source.this.meta
            ref = TableRef(name, int(meta.get("line", 0)), int(meta.get("col", 0)))
            if name not in found or _before(ref, found[name]):
                found[name] = ref
    return sorted(found.values(), key=lambda r: (r.line, r.col, r.name))


def _is_named_table(source: object) -> bool:
    from sqlglot import exp

    if not isinstance(source, exp.Table) or not isinstance(source.this, exp.Identifier):
        return False
    return normalize_name(source.db) not in SYSTEM_SCHEMAS


def _before(a: TableRef, b: TableRef) -> bool:
    return (a.line, a.col) < (b.line, b.col)


def column_lines(query: exp.Expression, column: str) -> list[int]:
    """Lines (1-based) where a column name appears in a query, for error messages.

    Args:
        query: A parsed query.
        column: The column name (compared case-insensitively).

    Returns:
        Sorted line numbers; empty when the parser kept no positions.
    """
    from sqlglot import exp

    wanted = normalize_name(column)
    lines = {
        int(col.this.meta["line"])
        for col in query.find_all(exp.Column)
        if normalize_name(col.name) == wanted and "line" in col.this.meta
    }
    return sorted(lines)


def read_from(sql: str, names: dict[str, str]) -> str:
    """``sql`` reading relation ``names[t]`` wherever it reads table ``t``.

    Used to run a data test against a relation staged under another name: the renamed
    table keeps its old name as alias, so ``t.column`` references still resolve. Scope
    analysis leaves CTEs of the same name alone.

    >>> read_from("select t.a from t join u using (k)", {"t": "stage_t"})
    'SELECT t.a FROM stage_t AS t JOIN u USING (k)'
    """
    if not names:
        return sql
    import sqlglot
    from sqlglot import exp
    from sqlglot.optimizer.scope import traverse_scope

    wanted = {normalize_name(k): v for k, v in names.items()}
    tree = sqlglot.parse_one(statement_text(sql), read=DIALECT)
    for scope in traverse_scope(tree):
        for source in scope.sources.values():
            if not _is_named_table(source) or source.db:
                continue
            staged = wanted.get(normalize_name(source.name))
            if staged is None:
                continue
            if not source.alias:
                source.set("alias", exp.TableAlias(this=exp.to_identifier(source.name)))
            source.set("this", exp.to_identifier(staged))
    return tree.sql(dialect=DIALECT)
