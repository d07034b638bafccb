"""DuckDB's static type of an expression, as far as the Spark translation needs it.

Some DuckDB constructs mean different things on Spark depending on the operand's type
(``round`` of a DOUBLE vs a DECIMAL, ``CAST(x AS BIGINT)`` rounding vs truncating,
``CAST(x AS VARCHAR)`` of a DOUBLE), so the translator asks for the type of the operand in
DuckDB's rules. Columns resolve through the query's own CTEs and subqueries (sqlglot scopes)
down to tables, whose column types come from an optional schema. The answer is a coarse
class (``DOUBLE``, ``DECIMAL``, ``INTEGER``, ``VARCHAR``, ``BOOLEAN``, ``DATE``, ``TIMESTAMP``,
``NULL``, ``INTERVAL``, ``OTHER``) or ``None`` when it cannot be known at compile time.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping

from sqlglot import exp
from sqlglot.optimizer.scope import Scope, traverse_scope

_CLASSES = (  # (pattern on the type name, class); DuckDB and Spark spellings
    (r"(DOUBLE|FLOAT8|DOUBLE PRECISION)", "DOUBLE"),
    (r"(DECIMAL|NUMERIC)(\(.*\))?", "DECIMAL"),
    (
        r"(U?(TINYINT|SMALLINT|INTEGER|INT|BIGINT|HUGEINT)|INT[1248]|INT128|LONG|SHORT|BYTE)",
        "INTEGER",
    ),
    (r"(VARCHAR|TEXT|STRING|CHAR|BPCHAR)(\(.*\))?", "VARCHAR"),
    (r"(BOOLEAN|BOOL)", "BOOLEAN"),
    (r"DATE", "DATE"),
    (r"(TIMESTAMP|TIMESTAMP_NTZ|TIMESTAMPNTZ|DATETIME|TIMESTAMP_US)", "TIMESTAMP"),
    (r"INTERVAL.*", "INTERVAL"),
    (r".*\[\]", "LIST"),
)
NUMERIC = frozenset({"DOUBLE", "DECIMAL", "INTEGER"})
# relation -> {column: type}, or a function giving a relation's columns (None: unknown)
SchemaSource = Mapping[str, Mapping[str, str]] | Callable[[str], Mapping[str, str] | None] | None
_DOUBLE_FUNCS = (
    exp.Avg,
    exp.VariancePop,
    exp.Variance,
    exp.Stddev,
    exp.StddevPop,
    exp.StddevSamp,
    exp.Exp,
    exp.Ln,
    exp.Log,
    exp.Sqrt,
    exp.Pow,
    exp.Pi,
    exp.Div,
)
_TEXT_FUNCS = (
    exp.DPipe,
    exp.ConcatWs,
    exp.Concat,
    exp.MD5,
    exp.Substring,
    exp.Upper,
    exp.Lower,
    exp.GroupConcat,
)
_INT_FUNCS = (
    exp.Count,
    exp.Year,
    exp.Quarter,
    exp.Month,
    exp.Day,
    exp.RowNumber,
    exp.Length,
    exp.Rank,
    exp.DenseRank,
)
_ANONYMOUS = {"isfinite": "BOOLEAN", "lgamma": "DOUBLE", "printf": "VARCHAR"}


def type_class(name: str | None) -> str | None:
    """Coarse class of a DuckDB (or Spark) type name; None for unknown.

    >>> type_class("DECIMAL(10,2)"), type_class("bigint"), type_class("UNKNOWN")
    ('DECIMAL', 'INTEGER', None)
    """
    text = (name or "").strip().upper()
    if not text or text in ("UNKNOWN", "?"):
        return None
    if array := re.fullmatch(r"ARRAY<(.*)>", text):  # Spark's spelling of DuckDB's T[]
        return f"LIST<{type_class(array.group(1))}>"
    for pattern, cls in _CLASSES:
        if re.fullmatch(pattern, text):
            return f"LIST<{type_class(text[:-2])}>" if cls == "LIST" else cls
    return "OTHER"


def _common(types: list[str | None]) -> str | None:
    """The type DuckDB gives CASE/COALESCE/UNION branches of these types (NULLs ignored)."""
    known = [t for t in types if t != "NULL"]
    if not known:
        return "NULL"
    if None in known:
        return None
    if len(set(known)) == 1:
        return known[0]
    if set(known) <= NUMERIC:
        return "DOUBLE" if "DOUBLE" in known else "DECIMAL"
    if set(known) <= {"DATE", "TIMESTAMP"}:
        return "TIMESTAMP"
    return None


class TypeOracle:
    """Answers :meth:`of` for nodes of one parsed query (DuckDB dialect)."""

    def __init__(self, query: exp.Expression, schema: SchemaSource):
        self.source = schema
        self.tables: dict[str, dict[str, str] | None] = {}
        self.scopes: dict[int, Scope] = {id(s.expression): s for s in traverse_scope(query)}
        self.memo: dict[int, str | None] = {}

    def scope_of(self, node: exp.Expression) -> Scope | None:
        """The scope of the innermost SELECT (or set operation) holding ``node``."""
        current: exp.Expression | None = node
        while current is not None:
            if id(current) in self.scopes and isinstance(current, exp.Query):
                return self.scopes[id(current)]
            current = current.parent
        return None

    def of(self, node: exp.Expression) -> str | None:
        """DuckDB's type class of ``node``'s value, None when unknown."""
        key = id(node)
        if key not in self.memo:
            self.memo[key] = None  # a cycle (never expected) reads as unknown
            self.memo[key] = self._infer(node)
        return self.memo[key]

    def _infer(self, node: exp.Expression) -> str | None:
        if isinstance(node, exp.Literal):
            text = node.this
            if node.is_string:
                return "VARCHAR"
            if "e" in text.lower() or sum(ch.isdigit() for ch in text) > 38:
                return "DOUBLE"  # DuckDB: scientific notation and over-wide literals are DOUBLE
            return "DECIMAL" if "." in text else "INTEGER"
        if isinstance(node, exp.Null):
            return "NULL"
        if isinstance(node, (exp.Boolean, exp.Predicate, exp.Connector, exp.Not)):
            return "BOOLEAN"
        if isinstance(
            node,
            (
                exp.Paren,
                exp.Alias,
                exp.Neg,
                exp.Window,
                exp.Filter,
                exp.Abs,
                exp.Round,
                exp.Min,
                exp.Max,
            ),
        ):
            return self.of(node.this)
        if isinstance(node, exp.Cast):
            return type_class(node.to.sql("duckdb"))
        if isinstance(node, _DOUBLE_FUNCS):
            return "DOUBLE"
        if isinstance(node, _TEXT_FUNCS):
            return "VARCHAR"
        if isinstance(node, _INT_FUNCS):
            return "INTEGER"
        if isinstance(node, (exp.TimestampTrunc, exp.DateTrunc)):
            return "TIMESTAMP"
        if isinstance(node, (exp.Ceil, exp.Floor)):
            return "DECIMAL" if self.of(node.this) == "DECIMAL" else "DOUBLE"
        if isinstance(node, exp.Sum):
            return "INTEGER" if self.of(node.this) == "INTEGER" else self.of(node.this)
        if isinstance(node, exp.Interval):
            return "INTERVAL"
        if isinstance(node, (exp.Add, exp.Sub, exp.Mul)):
            return self._arithmetic(node)
        if isinstance(node, exp.Case):
            return _common(
                [self.of(i.args["true"]) for i in node.args.get("ifs", [])]
                + [self.of(node.args["default"]) if node.args.get("default") else "NULL"]
            )
        if isinstance(node, exp.If):
            return _common(
                [
                    self.of(node.args["true"]),
                    self.of(node.args["false"]) if node.args.get("false") else "NULL",
                ]
            )
        if isinstance(node, (exp.Coalesce, exp.Greatest, exp.Least)):
            return _common([self.of(node.this), *(self.of(e) for e in node.expressions)])
        if isinstance(node, exp.Nullif):
            return self.of(node.this)
        if isinstance(node, exp.Anonymous):
            return _ANONYMOUS.get(node.name.lower())
        if isinstance(node, exp.ArrayAgg):
            inner = node.this.this if isinstance(node.this, exp.Order) else node.this
            return f"LIST<{self.of(inner)}>"
        if isinstance(node, exp.Bracket):
            base = self.of(node.this) or ""
            return (base[5:-1] or None) if base.startswith("LIST<") else None
        if isinstance(node, exp.Subquery):
            return self._output(node.this, 0)
        if isinstance(node, exp.Column):
            return self._column(node)
        return None

    def _arithmetic(self, node: exp.Binary) -> str | None:
        left, right = self.of(node.left), self.of(node.right)
        pair = {left, right}
        if "INTERVAL" in pair:  # DuckDB: DATE or TIMESTAMP +- INTERVAL is a TIMESTAMP
            return "TIMESTAMP" if pair & {"DATE", "TIMESTAMP"} else None
        if "NULL" in pair:
            return right if left == "NULL" else left
        if "DOUBLE" in pair and pair <= NUMERIC | {None}:
            return "DOUBLE"  # with any other numeric type; anything else would not run in DuckDB
        if None in pair or not pair <= NUMERIC:
            return None
        return "DOUBLE" if "DOUBLE" in pair else ("DECIMAL" if "DECIMAL" in pair else "INTEGER")

    def _column(self, column: exp.Column) -> str | None:
        scope = self.scope_of(column)
        if scope is None:
            return None
        name = column.name.lower()
        if column.table:
            source = scope.sources.get(column.table)
            return self._from_source(source, name) if source is not None else None
        found = [
            t for s in scope.sources.values() if (t := self._from_source(s, name, True)) != "-"
        ]
        return found[0] if len(found) == 1 else None

    def _from_source(self, source: object, name: str, probe: bool = False) -> str | None:
        """Type of column ``name`` of a FROM source; "-" when probing and it has no such column."""
        if isinstance(source, Scope):
            query = source.expression
            names = [s.alias_or_name.lower() for s in _branches(query)[0].selects]
            if name in names:
                return self._output(query, names.index(name))
            if any(isinstance(s, exp.Star) for s in _branches(query)[0].selects):
                inner = self.scopes.get(id(_branches(query)[0]))
                found = [
                    t
                    for s in (inner.sources.values() if inner else [])
                    if (t := self._from_source(s, name, True)) != "-"
                ]
                return found[0] if len(found) == 1 else None
            return "-" if probe else None
        if isinstance(source, exp.Table) and isinstance(source.this, exp.Identifier):
            columns = self._table(source.name.lower())
            if columns is None:
                return None
            if name not in columns:
                return "-" if probe else None
            return type_class(columns[name])
        return None

    def _table(self, name: str) -> dict[str, str] | None:
        """Column types of a table (schema looked up once, in lower case)."""
        if name not in self.tables:
            source = self.source
            if callable(source):
                columns = source(name)
            else:
                columns = next(
                    (c for t, c in (source or {}).items() if str(t).lower() == name), None
                )
            self.tables[name] = (
                None if columns is None else {str(c).lower(): str(v) for c, v in columns.items()}
            )
        return self.tables[name]

    def _output(self, query: exp.Expression, index: int) -> str | None:
        """Type of the ``index``-th output column of a query (every branch of a set operation)."""
        types = []
        for branch in _branches(query):
            selects = branch.selects
            types.append(self.of(selects[index]) if index < len(selects) else None)
        return _common(types) if len(types) > 1 else types[0]


def _branches(query: exp.Expression) -> list[exp.Expression]:
    if isinstance(query, exp.SetOperation):
        return _branches(query.this) + _branches(query.expression)
    if isinstance(query, exp.Subquery):
        return _branches(query.this)
    return [query]
