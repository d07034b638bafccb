"""Rewrites of casts and of everything DuckDB turns into text (``||``, ``concat_ws``, ``md5``)
(mixed into the translation of :mod:`tierpool.adapters.spark_dialect`).

What a cast means depends on the value's DuckDB type: DOUBLE -> BIGINT rounds half to even in
DuckDB and truncates in Spark, DOUBLE -> VARCHAR prints shortest digits with 'e+XX'; a type
unknown at compile time is decided at run time (``typeof``, folded to a constant by Spark).
"""

from __future__ import annotations

from collections.abc import Callable

from sqlglot import exp

from tierpool.adapters.spark_rewrites import (
    INT_TYPES,
    NUMERIC,
    TEXT_TYPES,
    ExpressionRewrites,
    cast,
    fn,
    int_literal,
    typeof_is,
)


class CastRewrites(ExpressionRewrites):
    """CAST / TRY_CAST / ``::``, ``||``, ``concat_ws``, ``md5``."""

    def _cast(self, node: exp.Cast) -> None:
        target, source = node.to.this, self.types.of(node.this)
        what = f"cast to {node.to.sql('duckdb')}"
        if (
            isinstance(node, exp.TryCast)
            and source in ("VARCHAR", None)
            and target not in TEXT_TYPES | {exp.DataType.Type.DOUBLE}
        ):
            self.refuse(
                node,
                f"try_{what}",
                "DuckDB and Spark accept different text (try_cast('1.5' "
                "as int) is 2 in DuckDB, NULL in Spark)",
                "use cast, or try_cast to DOUBLE",
            )
        elif target in TEXT_TYPES:
            plan = self.text(node.this, what)
            if plan is not None:
                self.plan(node, lambda n: plan(n.this))
        elif target in INT_TYPES:
            to = node.to.sql("spark")
            if source == "VARCHAR" and (hexits := _md5_hex(node.this)) is not None:
                # '0x' || substr(md5(..), 1, <=15): a hex number below 2^60 (Spark: NULL/error)
                self.plan(
                    node,
                    lambda n: cast(
                        fn("conv", hexits(n.this), exp.Literal.number(16), exp.Literal.number(10)),
                        to,
                    ),
                )
            elif any(
                lit.is_string and lit.name.lower().startswith(("0x", "0b"))
                for lit in node.this.find_all(exp.Literal)
            ):
                self.refuse(
                    node,
                    what,
                    "DuckDB reads '0x'/'0b' text as hex/binary, Spark does not",
                    "only ('0x' || substr(md5(x), 1, n)) with n <= 15 is translated",
                )
            elif source == "DOUBLE":  # DuckDB rounds half to even, Spark truncates
                self.plan(node, lambda n: cast(fn("rint", n.this), to))
            elif source == "DECIMAL":  # DuckDB rounds half away from zero, Spark truncates
                self.plan(
                    node, lambda n: cast(exp.Round(this=n.this, decimals=exp.Literal.number(0)), to)
                )
            elif source is None:  # decided at run time, one BIGINT-typed branch per kind
                self.plan(
                    node,
                    lambda n: exp.Case(
                        ifs=[
                            exp.If(
                                this=typeof_is(n.this, "'double'"),
                                true=cast(fn("rint", n.this.copy()), to),
                            ),
                            exp.If(
                                this=typeof_is(n.this, "'decimal%'"),
                                true=cast(
                                    exp.Round(this=n.this.copy(), decimals=exp.Literal.number(0)),
                                    to,
                                ),
                            ),
                        ],
                        default=cast(n.this, to),
                    ),
                )
            elif source not in ("INTEGER", "BOOLEAN", "NULL", "VARCHAR"):
                self.refuse(node, what, f"from {source}", "cast from a number")
        elif target == exp.DataType.Type.DOUBLE:
            if source not in NUMERIC | {"VARCHAR", "NULL", None}:
                self.refuse(node, what, f"from {source}", "cast from a number or text")
        elif target == exp.DataType.Type.DECIMAL:
            if source not in ("INTEGER", "DECIMAL", "NULL"):
                self.refuse(
                    node,
                    what,
                    f"from {source or 'a value of unknown type'} (rounding differs)",
                    "cast from an integer or DECIMAL",
                )
        elif target == exp.DataType.Type.BOOLEAN:
            if source not in ("BOOLEAN", "INTEGER", "NULL"):
                self.refuse(
                    node,
                    what,
                    "DuckDB and Spark accept different boolean spellings",
                    "compare instead: x = 'true'",
                )
        elif target in (
            exp.DataType.Type.DATE,
            exp.DataType.Type.TIMESTAMPNTZ,
            exp.DataType.Type.TIMESTAMP,
        ):
            if source not in ("DATE", "TIMESTAMP", "VARCHAR", "NULL", None):
                self.refuse(node, what, f"from {source}", "cast from a date, timestamp or text")
            if target == exp.DataType.Type.TIMESTAMP:  # DuckDB TIMESTAMP is timezone-naive
                self.plan(node, lambda n: cast(n.this, "TIMESTAMP_NTZ"))
        else:
            self.refuse(
                node,
                what,
                "this target type is not verified",
                "cast to VARCHAR, "
                "BIGINT/INTEGER, DOUBLE, DECIMAL(p, s), BOOLEAN, DATE or TIMESTAMP",
            )

    _trycast = _cast

    def _dpipe(self, node: exp.DPipe) -> None:  # DuckDB casts non-text operands to VARCHAR
        plans = [self.text(side, "operator '||'") for side in (node.left, node.right)]
        if None not in plans:

            def plan(n: exp.Expression) -> exp.Expression:
                n.set("this", plans[0](n.left))
                n.set("expression", plans[1](n.right))
                return n

            self.plan(node, plan)

    def _concatws(self, node: exp.ConcatWs) -> None:
        plans = [self.text(arg, "function 'concat_ws'") for arg in node.expressions]
        if None not in plans:  # in place: sqlglot's flags (safe, coalesce) say NULLs are skipped
            self.plan(
                node,
                lambda n: (
                    n.set(
                        "expressions",
                        [p(e) for p, e in zip(plans, list(n.expressions), strict=True)],
                    )
                    or n
                ),
            )

    def _md5(self, node: exp.MD5) -> None:
        plan = self.text(node.this, "function 'md5'")
        if plan is not None:
            self.plan(node, lambda n: n.set("this", plan(n.this)) or n)


def _md5_hex(node: exp.Expression) -> Callable[[exp.Expression], exp.Expression] | None:
    """For ``'0x' || substr(md5(x), s, n)`` with n <= 15: how to get the hex digits back."""
    while isinstance(node, exp.Paren):
        node = node.this
    if not (
        isinstance(node, exp.DPipe)
        and isinstance(node.left, exp.Literal)
        and node.left.name.lower() == "0x"
        and isinstance(node.right, exp.Substring)
    ):
        return None
    sub = node.right
    start, length = int_literal(sub.args.get("start")), int_literal(sub.args.get("length"))
    if not (
        isinstance(sub.this, exp.MD5)
        and start
        and length
        and start >= 1
        and 1 <= length <= 15
        and start + length - 1 <= 32
    ):
        return None

    def digits(n: exp.Expression) -> exp.Expression:
        while isinstance(n, exp.Paren):
            n = n.this
        return n.right

    return digits
