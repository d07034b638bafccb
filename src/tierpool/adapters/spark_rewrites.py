"""How each DuckDB expression becomes Spark SQL with the same result (the handlers of
:mod:`tierpool.adapters.spark_dialect`).

A handler ``_<node class>`` runs on the parsed DuckDB tree before anything changes: it either
refuses the node (``self.refuse``: file, line, construct, why, what to write instead) or
registers a plan (``self.plan``) that builds the Spark node from the node's rewritten
children. Decisions that depend on types are taken here, on the untouched tree.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from sqlglot import exp

from tierpool.adapters.spark_types import NUMERIC, TypeOracle

Plan = Callable[[exp.Expression], exp.Expression]

TEXT_TYPES = {
    exp.DataType.Type.VARCHAR,
    exp.DataType.Type.TEXT,
    exp.DataType.Type.CHAR,
    exp.DataType.Type.NVARCHAR,
    exp.DataType.Type.NCHAR,
}
INT_TYPES = {
    exp.DataType.Type.TINYINT,
    exp.DataType.Type.SMALLINT,
    exp.DataType.Type.INT,
    exp.DataType.Type.BIGINT,
}
_TRUNC_UNITS = {"YEAR", "QUARTER", "MONTH", "WEEK", "DAY", "HOUR", "MINUTE", "SECOND"}
_INTERVAL_UNITS = {"YEAR", "MONTH", "DAY", "HOUR", "MINUTE", "SECOND"}
_PRINTF_E = re.compile(r"%\.(\d{1,2})e")
# kind of text conversion per DuckDB type class: CAST(x AS VARCHAR) prints the same on both
# engines except for DOUBLE (shortest digits, 'e+XX', see tierpool_double_text)
_AS_TEXT = {
    "VARCHAR": "same",
    "NULL": "same",
    "INTEGER": "cast",
    "DECIMAL": "cast",
    "BOOLEAN": "cast",
    "DATE": "cast",
    "TIMESTAMP": "cast",
    "DOUBLE": "double",
    None: "runtime",
}


def fn(name: str, *args: exp.Expression) -> exp.Expression:
    return exp.Anonymous(this=name, expressions=list(args))


def cast(node: exp.Expression, to: str) -> exp.Expression:
    return exp.Cast(this=node, to=exp.DataType.build(to, dialect="spark"))


def int_literal(node: exp.Expression | None) -> int | None:
    """The value of an integer literal (possibly negated), else None."""
    if isinstance(node, exp.Neg):
        inner = int_literal(node.this)
        return None if inner is None else -inner
    if isinstance(node, exp.Literal) and not node.is_string and re.fullmatch(r"\d+", node.this):
        return int(node.this)
    return None


def typeof_is(node: exp.Expression, *patterns: str) -> exp.Expression:
    """``typeof(node) LIKE p1 OR ...``: Spark folds it to a constant, so only one branch runs."""
    tests = [
        exp.Like(this=fn("typeof", node.copy()), expression=exp.Literal.string(p.strip("'")))
        for p in patterns
    ]
    return exp.or_(*tests) if len(tests) > 1 else tests[0]


def line_of(node: exp.Expression) -> int:
    """Best line of a node: its own token, else the first inner token, else an outer one."""
    for inner in node.walk():
        if inner.meta.get("line"):
            return int(inner.meta["line"])
    parent = node.parent
    return line_of(parent) if parent is not None else 1


def name_of(node: exp.Expression) -> str:
    if isinstance(node, exp.Anonymous):
        return node.name.lower()
    names = getattr(type(node), "sql_names", lambda: [node.key])()
    return (names[0] if names else node.key).lower()


class ExpressionRewrites:
    """Handlers for expressions; the translation provides ``types``, ``refuse`` and ``plan``."""

    types: TypeOracle

    def refuse(self, node: exp.Expression, what: str, why: str, fix: str) -> None:
        raise NotImplementedError

    def plan(self, node: exp.Expression, plan: Plan) -> None:
        raise NotImplementedError

    def text(self, node: exp.Expression, what: str) -> Plan | None:
        """How to turn ``node`` into DuckDB's text of its value on Spark (None: refused)."""
        kind = _AS_TEXT.get(self.types.of(node), "refuse")
        if kind == "refuse":
            self.refuse(
                node,
                what,
                f"DuckDB and Spark print {self.types.of(node)} values differently",
                "format the value explicitly",
            )
            return None
        if kind == "same":
            return lambda n: n
        if kind == "cast":
            return lambda n: cast(n, "STRING")
        if kind == "double":
            return lambda n: fn("tierpool_double_text", n)
        return lambda n: fn("tierpool_text", fn("typeof", n.copy()), cast(n, "STRING"))

    def unknown(self, node: exp.Expression, what: str, why: str, fix: str) -> None:
        self.refuse(
            node,
            what,
            f"the type of '{node.sql('duckdb')}' is unknown at compile time and {why}",
            f"declare the column's data_type or {fix}",
        )

    # -- arithmetic --------------------------------------------------------------------------

    def _div(self, node: exp.Div) -> None:
        # DuckDB 2: '/' is IEEE double division (x/0 = +-inf, 0/0 = NaN); Spark: NULL or error
        for side in (node.left, node.right):
            if self.types.of(side) not in NUMERIC | {"NULL", None}:
                self.refuse(
                    node, "operator '/'", f"{self.types.of(side)} operand", "divide numbers"
                )
        self.plan(node, lambda n: fn("tierpool_div", n.left, n.right))

    def _add(self, node: exp.Binary) -> None:
        if isinstance(node.left, exp.Interval) or isinstance(node.right, exp.Interval):
            other = node.right if isinstance(node.left, exp.Interval) else node.left
            if self.types.of(other) not in {"DATE", "TIMESTAMP", None}:
                self.refuse(
                    node,
                    "interval arithmetic",
                    f"on a {self.types.of(other)}",
                    "add to a timestamp",
                )
            # DuckDB: DATE +- INTERVAL is a TIMESTAMP; Spark keeps a DATE
            self.plan(node, lambda n: cast(n, "TIMESTAMP_NTZ"))
        elif isinstance(node, exp.Sub) and {
            self.types.of(node.left),
            self.types.of(node.right),
        } <= {"DATE", "TIMESTAMP"}:
            self.refuse(
                node,
                "subtraction of timestamps",
                "DuckDB and Spark intervals differ",
                "use date_diff / epoch arithmetic",
            )

    _sub = _add

    def _interval(self, node: exp.Interval) -> None:
        unit = node.text("unit").upper().rstrip("S")
        value = int(node.this.name) if node.this.name.isdigit() else None  # '3' of interval 3 month
        if (
            unit not in _INTERVAL_UNITS
            or value is None
            or not isinstance(node.parent, (exp.Add, exp.Sub))
        ):
            self.refuse(
                node,
                "interval",
                "only 'timestamp +- interval <n> <unit>' is verified",
                f"use an integer count of {', '.join(sorted(_INTERVAL_UNITS)).lower()}",
            )
            return
        self.plan(
            node, lambda n: exp.Interval(this=exp.Literal.string(str(value)), unit=exp.var(unit))
        )

    def _avg(self, node: exp.Avg) -> None:
        # DuckDB's avg is a DOUBLE for every numeric input; Spark's avg(DECIMAL) is a DECIMAL
        # rounded to scale + 4 (avg of 1.0/0.0 flags: 0.66667 instead of 0.666...)
        if self.types.of(node.this) not in NUMERIC | {"NULL", None}:
            self.refuse(node, "function 'avg'", f"of {self.types.of(node.this)}", "average numbers")

        def plan(n: exp.Expression) -> exp.Expression:
            arg = n.this
            if isinstance(arg, exp.Distinct):
                arg.set("expressions", [cast(e, "DOUBLE") for e in arg.expressions])
            else:
                n.set("this", cast(arg, "DOUBLE"))
            return n

        self.plan(node, plan)

    def _ln(self, node: exp.Ln) -> None:
        self.plan(node, lambda n: fn("tierpool_ln", n.this))  # ln(0) = -inf, ln(<0) = NaN

    def _round(self, node: exp.Round) -> None:
        digits = int_literal(node.args.get("decimals")) if node.args.get("decimals") else 0
        kind = self.types.of(node.this)
        if digits is None:
            self.refuse(
                node,
                "function 'round'",
                "the number of digits is not an integer literal",
                "write the digits as a literal",
            )
        elif kind == "DOUBLE":
            if not 0 <= digits <= 22:
                self.refuse(
                    node,
                    "function 'round'",
                    "DOUBLE rounding is verified for 0..22 digits",
                    "round a DECIMAL instead: round(cast(x as decimal(p, s)), n)",
                )
            self.plan(node, lambda n: fn("tierpool_round", n.this, exp.Literal.number(digits)))
        elif kind not in ("INTEGER", "DECIMAL", "NULL"):
            self.unknown(
                node.this,
                "function 'round'",
                "DuckDB rounds DOUBLE exactly, Spark its decimal text",
                "cast it: round(cast(x as double), n)",
            )

    def _ceil(self, node: exp.Func) -> None:
        kind, name = self.types.of(node.this), name_of(node)
        if node.args.get("decimals") or kind in ("DOUBLE", "INTEGER"):
            if node.args.get("decimals"):
                self.refuse(node, f"function '{name}'", "with digits", f"use {name}(x)")
            self.plan(node, lambda n: fn(f"tierpool_{name}", n.this))  # DOUBLE in, DOUBLE out
        elif kind not in ("DECIMAL", "NULL"):
            self.unknown(
                node.this,
                f"function '{name}'",
                "Spark returns a BIGINT for a DOUBLE",
                f"cast it: {name}(cast(x as double))",
            )

    _floor = _ceil

    # -- functions written differently -------------------------------------------------------

    def _anonymous(self, node: exp.Anonymous) -> None:
        name, args = node.name.lower(), node.expressions
        if name in ("isfinite", "lgamma") and len(args) == 1:
            self.plan(node, lambda n: fn(f"tierpool_{name}", n.expressions[0]))
            return
        match = (
            _PRINTF_E.fullmatch(args[0].name)
            if name == "printf"
            and len(args) == 2
            and isinstance(args[0], exp.Literal)
            and args[0].is_string
            else None
        )
        if match and int(match.group(1)) <= 14 and self.types.of(args[1]) != "INTEGER":
            digits = int(match.group(1))
            pattern = "0" + ("." + "0" * digits if digits else "") + "E00"  # DecimalFormat
            self.plan(
                node,
                lambda n: fn("tierpool_printf_e", n.expressions[1], exp.Literal.string(pattern)),
            )
            return
        hint = (
            "only printf('%.<n>e', <double>) with n <= 14 is translated"
            if name == "printf"
            else "Spark has no verified equivalent"
        )
        self.refuse(
            node,
            f"function '{name}'",
            hint,
            "write it with the verified functions of "
            "tierpool's Spark translation (ln, exp, sqrt, pow, lgamma, round, ...)",
        )

    def _substring(self, node: exp.Substring) -> None:
        start, length = node.args.get("start"), node.args.get("length")
        if (
            int_literal(start) is None
            or int_literal(start) < 1
            or (length is not None and (int_literal(length) or -1) < 0)
        ):
            self.refuse(
                node,
                "function 'substr'",
                "DuckDB and Spark differ for a start <= 0 or a negative length",
                "use literal start >= 1 and length >= 0",
            )

    def _timestamptrunc(self, node: exp.Func) -> None:
        unit = node.text("unit").upper()
        if unit not in _TRUNC_UNITS:
            self.refuse(
                node,
                "function 'date_trunc'",
                f"unit '{unit.lower()}'",
                f"use one of {', '.join(sorted(_TRUNC_UNITS)).lower()}",
            )
        # Spark returns a session-zone TIMESTAMP (UTC in the session): back to naive
        self.plan(node, lambda n: cast(n, "TIMESTAMP_NTZ"))

    _datetrunc = _timestamptrunc

    def _year(self, node: exp.Func) -> None:  # DuckDB: BIGINT, Spark: INT
        self.plan(node, lambda n: cast(n, "BIGINT"))

    _quarter = _month = _day = _year

    def _like(self, node: exp.Like) -> None:
        pattern = node.expression
        if not (
            isinstance(pattern, exp.Literal) and pattern.is_string and "\\" not in pattern.name
        ):
            self.refuse(
                node,
                "operator LIKE",
                "Spark treats '\\' as an escape character, DuckDB does not",
                "use a literal pattern without backslashes",
            )
