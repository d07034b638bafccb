"""DuckDB SQL -> Spark SQL, faithfully or not at all (pure sqlglot: no JVM, usable at compile time).

Projects are written in DuckDB SQL. :func:`translate` parses a query with sqlglot and walks
every node: a function or operator is either known to mean the same on Spark (``_NATIVE``),
rewritten to something that does (a Spark builtin or a session function of
:data:`SESSION_SQL`, see ``spark_functions.py``), or refused with a :class:`SqlError` naming
the file, line and construct. sqlglot passes unknown functions through silently, so nothing
outside these lists is ever emitted. Where the meaning depends on the operand's type (round,
casts, ``||``), DuckDB's type is inferred statically (``spark_types.py``); ``schema`` gives the
column types of the tables the query reads.
"""

from __future__ import annotations

import re
from pathlib import Path

import sqlglot
from sqlglot import exp
from sqlglot.dialects.duckdb import DuckDB
from sqlglot.errors import SqlglotError

from tierpool.adapters.spark_casts import CastRewrites
from tierpool.adapters.spark_functions import SESSION_SQL
from tierpool.adapters.spark_lists import ListRewrites
from tierpool.adapters.spark_rewrites import Plan, line_of, name_of
from tierpool.adapters.spark_types import SchemaSource, TypeOracle
from tierpool.core.sql import parse_select
from tierpool.errors import SqlError

__all__ = ["SESSION_SQL", "translate", "translate_source", "translation_problems"]

Schema = SchemaSource  # relation -> {column: DuckDB or Spark type}, or a lookup function

# Same name, same result on Spark 4 (ANSI mode) for every input, NULL/NaN included (checked
# against DuckDB in tests/unit/test_spark_dialect.py).
_NATIVE = (
    exp.Count,
    exp.Sum,
    exp.Min,
    exp.Max,
    exp.Abs,
    exp.Coalesce,
    exp.Case,
    exp.If,
    exp.Nullif,
    exp.Greatest,
    exp.Least,
    exp.Exp,
    exp.Sqrt,
    exp.Pow,
    exp.Pi,
    exp.LogicalOr,
    exp.LogicalAnd,
    exp.VariancePop,
    exp.Variance,
    exp.Stddev,
    exp.StddevPop,
    exp.StddevSamp,
    exp.Exists,
    exp.RowNumber,
    exp.Rank,
    exp.DenseRank,
    exp.And,
    exp.Or,
)
# Operators that differ and are not rewritten: integer division and modulo by zero (NULL vs
# error), lambdas, lateral joins, ILIKE's case folding, bit operations.
_REFUSED = {
    exp.IntDiv: "'//' (DuckDB gives NULL on a zero divisor, Spark an error)",
    exp.Mod: "'%' (DuckDB gives NULL on a zero divisor, Spark an error)",
    exp.Lambda: "lambda functions",
    exp.Unnest: "UNNEST in FROM",
    exp.Lateral: "LATERAL",
    exp.Pivot: "PIVOT",
    exp.Collate: "COLLATE",
    exp.ILike: "ILIKE (Unicode case folding)",
    exp.Qualify: "QUALIFY",
    exp.BitwiseAnd: "'&'",
    exp.BitwiseOr: "'|'",
    exp.BitwiseXor: "xor",
    exp.BitwiseNot: "'~'",
    exp.BitwiseLeftShift: "'<<'",
    exp.BitwiseRightShift: "'>>'",
    exp.Xor: "xor",
}


class _Translation(CastRewrites, ListRewrites):
    """One query: collect problems and rewrite plans on the parsed tree, then apply them."""

    def __init__(
        self, query: exp.Query, sql: str, where: str, root: Path | None, schema: Schema | None
    ):
        self.query, self.sql, self.where, self.root = query, sql, where, root
        self.types = TypeOracle(query, schema)
        self.problems: list[SqlError] = []
        self.plans: dict[int, Plan] = {}

    # -- bookkeeping -------------------------------------------------------------------------

    def refuse(self, node: exp.Expression, what: str, why: str, fix: str) -> None:
        self.problems.append(
            SqlError(
                f"{self.where}:{line_of(node)}: {what} cannot be translated to Spark faithfully "
                f"(engine 'spark'): {why}; {fix}"
            )
        )

    def plan(self, node: exp.Expression, plan: Plan) -> None:
        self.plans[id(node)] = plan

    def written(self, node: exp.Expression) -> str:
        """A function's name as the file spells it (sqlglot normalises quantile_cont & co)."""
        start, end = node.meta.get("start"), node.meta.get("end")
        text = self.sql[start : end + 1] if start is not None and end is not None else ""
        if not text:  # some nodes carry no token: the word before the first argument's '('
            starts = [n.meta["start"] for n in node.walk() if "start" in n.meta]
            found = re.search(r"(\w+)\s*\(\s*$", self.sql[: min(starts)]) if starts else None
            text = found.group(1) if found else ""
        return text.lower() if re.fullmatch(r"\w+", text) else name_of(node)

    def run(self) -> str | None:
        nodes = list(self.query.walk())
        for node in nodes:
            self.check(node)
        if self.problems:
            return None
        for node in reversed(nodes):  # children first: a plan sees its rewritten children
            plan = self.plans.get(id(node))
            if plan is not None:
                hole = exp.Null()
                node.replace(hole)
                hole.replace(plan(node))
        return self.query.sql(dialect="spark", identify=True, comments=False)

    # -- dispatch ----------------------------------------------------------------------------

    def check(self, node: exp.Expression) -> None:
        handler = getattr(self, f"_{type(node).__name__.lower()}", None)
        if type(node) in _REFUSED:
            self.refuse(
                node,
                f"operator {_REFUSED[type(node)]}",
                "it has no Spark equivalent",
                "rewrite it with the functions tierpool translates (see spark_dialect.py)",
            )
        elif handler is not None:
            handler(node)
        elif isinstance(node, exp.Func) and not isinstance(node, _NATIVE):
            self.refuse(
                node,
                f"function '{self.written(node)}'",
                "it is not among the functions verified to give DuckDB's results on Spark",
                "rewrite it with verified functions or add a verified translation",
            )

    def _union(self, node: exp.Union) -> None:
        if node.args.get("by_name"):
            self.refuse(node, "UNION BY NAME", "Spark unions by position", "list the columns")

    def _star(self, node: exp.Star) -> None:
        if any(node.args.get(k) for k in ("except", "except_", "replace", "rename")):
            self.refuse(node, "SELECT * EXCLUDE/REPLACE", "not verified", "list the columns")

    def _array(self, node: exp.Array) -> None:  # only the path list of read_parquet
        if not isinstance(node.parent, exp.ReadParquet):
            self.refuse(node, "list literal", "lists are not verified", "use scalar values")

    def _readparquet(self, node: exp.ReadParquet) -> None:
        if not isinstance(node.parent, exp.Table):
            self.refuse(node, "function 'read_parquet'", "outside FROM", "read it in FROM")

    def _table(self, node: exp.Table) -> None:
        source = node.this
        paths = None
        if isinstance(source, exp.ReadParquet):
            items = source.expressions
            arg = items[0] if len(items) == 1 else None
            literals = arg.expressions if isinstance(arg, exp.Array) else [arg]
            if arg is not None and all(
                isinstance(x, exp.Literal) and x.is_string for x in literals
            ):
                paths = [x.name for x in literals]
        elif isinstance(source, exp.Identifier) and re.search(
            r"[/\\]|\.(parquet|csv|json)$", source.name
        ):
            paths = [source.name]
        elif isinstance(source, exp.Func):
            if not isinstance(source, exp.ReadParquet):
                self.refuse(
                    node,
                    f"table function '{name_of(source)}'",
                    "Spark cannot read it with DuckDB's options and type detection",
                    "read Parquet files with read_parquet",
                )
            return
        elif isinstance(source, exp.Identifier):  # tierpool relations are lower case
            self.plan(node, lambda n: n.set("this", exp.to_identifier(n.name.lower())) or n)
            return
        if paths is None or any("**" in p or not p.endswith(".parquet") for p in paths):
            self.refuse(
                node,
                "read_parquet",
                "only literal '*.parquet' paths (no '**', no options) are verified",
                "pass the path(s) as string literals",
            )
            return
        resolved = [
            str(Path(p) if Path(p).is_absolute() or self.root is None else Path(self.root) / p)
            for p in paths
        ]
        self.plan(node, lambda n: _parquet_source(resolved, n.args.get("alias")))


def _parquet_source(paths: list[str], alias: exp.Expression | None) -> exp.Expression:
    """Spark's ``parquet.`path``` for one path, a UNION ALL of them for a list."""
    tables = [
        exp.Table(this=exp.to_identifier(p, quoted=True), db=exp.to_identifier("parquet"))
        for p in paths
    ]
    if len(tables) == 1:
        return tables[0].set("alias", alias) or tables[0]
    union: exp.Expression = exp.select("*").from_(tables[0])
    for table in tables[1:]:
        union = exp.union(union, exp.select("*").from_(table), distinct=False)
    return exp.Subquery(this=union, alias=alias or exp.TableAlias(this=exp.to_identifier("_files")))


class _DuckDB(DuckDB):
    """DuckDB as written: sqlglot shifts a 1-based list index to 0-based only when it can type
    the index (l[2] -> l[1], but l[k] stays), so the index could not be read back reliably."""

    INDEX_OFFSET = 0


def _parse(sql: str, where: str) -> exp.Query:
    """The query, cut after its last token: a ';' followed by a comment is not a second statement.

    Leading text is kept so that sqlglot's line numbers are the file's. Errors are reported by
    tierpool's own parser (same messages as ``tierpool compile``).
    """
    try:
        tokens = _DuckDB().tokenize(sql)
    except SqlglotError:
        tokens = []
    while tokens and tokens[-1].token_type == sqlglot.tokens.TokenType.SEMICOLON:
        tokens.pop()
    text = sql[: tokens[-1].end + 1] if tokens else sql
    try:
        statements = [s for s in sqlglot.parse(text, read=_DuckDB) if s is not None]
    except SqlglotError:
        statements = []
    if len(statements) == 1 and isinstance(statements[0], exp.Query):
        return statements[0]
    return parse_select(text, where)  # raises SqlError with file, line and column


def translation_problems(
    sql: str, where: str = "<sql>", root: Path | None = None, schema: Schema | None = None
) -> list[SqlError]:
    """Every construct of ``sql`` that cannot run on Spark with DuckDB's results (empty: fine)."""
    try:
        query = _parse(sql, where)
    except SqlError as err:
        return [err]
    translation = _Translation(query, sql, where, root, schema)
    for node in query.walk():
        translation.check(node)
    return translation.problems


def translate(
    sql: str, where: str = "<sql>", root: Path | None = None, schema: Schema | None = None
) -> str:
    """A DuckDB SELECT (CTEs, comments, trailing ';' allowed) as Spark SQL with the same result.

    Args:
        sql: One query in DuckDB's dialect.
        where: The file as shown in messages.
        root: Relative ``read_parquet`` paths resolve against it (None: left relative).
        schema: Column types of the tables the query reads: relation -> {column: type} (DuckDB
            or Spark type names), or a function relation -> {column: type} | None. Where
            DuckDB's semantics depend on a type and it is unknown, ``round``/``ceil``/``floor``
            are refused, and casts to VARCHAR or integers and ``string_agg`` decide at run time.

    Raises:
        SqlError: ``file:line: <construct> cannot be translated to Spark faithfully ...``, the
            first problem (``translation_problems`` lists them all).
    """
    query = _parse(sql, where)
    translation = _Translation(query, sql, where, root, schema)
    result = translation.run()
    if result is None:
        first, more = translation.problems[0], len(translation.problems) - 1
        raise SqlError(f"{first}" + (f" (and {more} more problem(s))" if more else ""))
    return result


def translate_source(expression: str, where: str = "<source>", root: Path | None = None) -> str:
    """A source's relation expression (e.g. ``read_parquet('data/*.parquet')``) as a FROM item."""
    return f"({translate(f'SELECT * FROM {expression}', where, root)})"
