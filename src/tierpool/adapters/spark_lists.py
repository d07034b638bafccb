"""Rewrites of aggregates that build lists or strings, list indexing and row generators
(mixed into the translation of :mod:`tierpool.adapters.spark_dialect` with
:class:`~tierpool.adapters.spark_rewrites.ExpressionRewrites`).

sqlglot gets these silently wrong for Spark: it drops ``list(x ORDER BY x)``'s order, keeps
DuckDB's 1-based ``l[k]`` as Spark's 0-based one, and Spark's ``sequence`` counts down where
``generate_series`` is empty.
"""

from __future__ import annotations

from sqlglot import exp

from tierpool.adapters.spark_rewrites import (
    ExpressionRewrites,
    cast,
    fn,
    name_of,
    typeof_is,
)


def _text_only(node: exp.Expression) -> exp.Expression:
    """``node`` when Spark types it as text at run time, else an error (not another answer)."""
    error = fn("raise_error", exp.Literal.string("tierpool: string_agg of a non-VARCHAR value"))
    is_text = typeof_is(node, "'string'", "'varchar%'", "'void'")
    return exp.Case(ifs=[exp.If(this=is_text, true=node.copy())], default=error)


class ListRewrites(ExpressionRewrites):
    """string_agg, list, l[k], row_number & co, unnest(generate_series(..))."""

    def _groupconcat(self, node: exp.GroupConcat) -> None:
        # Spark 4's listagg crashes next to DISTINCT aggregates (ClassCastException in
        # RewriteDistinctAggregates): string_agg(x, sep ORDER BY x) becomes the join of the sorted
        # collect_list/collect_set (both skip NULLs, as string_agg does); no rows -> NULL.
        order = node.this if isinstance(node.this, exp.Order) else None
        value = order.this if order else node.this
        distinct = isinstance(value, exp.Distinct)
        value = value.expressions[0] if distinct else value
        keys = order.expressions if order else []
        if len(keys) != 1 or keys[0].this != value:
            self.refuse(
                node,
                "function 'string_agg'",
                "only ORDER BY the aggregated value is verified "
                "(without ORDER BY the order is arbitrary)",
                "write string_agg(x, ', ' order by x)",
            )
        elif self.types.of(value) not in ("VARCHAR", "NULL", None):
            self.refuse(
                node, "function 'string_agg'", "of a non-VARCHAR value", "cast it to VARCHAR"
            )
        elif isinstance(node.parent, exp.Filter):
            self.refuse(node, "function 'string_agg'", "with FILTER", "use CASE WHEN inside it")
        else:
            desc, separator = bool(keys[0].args.get("desc")), node.args.get("separator")
            unknown = self.types.of(value) is None

            def plan(n: exp.Expression) -> exp.Expression:
                value = n.this.this.expressions[0] if distinct else n.this.this
                if unknown:  # a text value sorts as DuckDB sorts it; anything else stops the query
                    value = _text_only(value)
                items = fn("collect_set" if distinct else "collect_list", value.copy())
                ordered = fn("array_sort", items.copy())
                joined = fn(
                    "array_join",
                    fn("reverse", ordered) if desc else ordered,
                    separator.copy() if separator else exp.Literal.string(","),
                )
                empty = exp.EQ(this=fn("size", items), expression=exp.Literal.number(0))
                return exp.Case(ifs=[exp.If(this=empty, true=exp.Null())], default=joined)

            self.plan(node, plan)

    def _arrayagg(self, node: exp.ArrayAgg) -> None:
        # sqlglot drops list()'s ORDER BY for Spark (COLLECT_LIST, arbitrary order, NULLs lost):
        # list(x ORDER BY x) keeps DuckDB's order: sorted values (NaN greatest), then NULLs
        # (NULLS LAST, the default) or before them (NULLS FIRST); no rows -> NULL.
        order = node.this if isinstance(node.this, exp.Order) else None
        keys = order.expressions if order else []
        if len(keys) != 1 or keys[0].this != order.this or isinstance(order.this, exp.Distinct):
            self.refuse(
                node,
                "function 'list'",
                "only list(x ORDER BY x) is verified (without ORDER BY the order is arbitrary)",
                "write list(x order by x)",
            )
            return
        if isinstance(node.parent, exp.Filter):
            self.refuse(node, "function 'list'", "with FILTER", "use CASE WHEN inside it")
            return
        desc, nulls_first = bool(keys[0].args.get("desc")), bool(keys[0].args.get("nulls_first"))

        def plan(n: exp.Expression) -> exp.Expression:
            value = n.this.this
            ordered = fn("array_sort", fn("collect_list", value.copy()))
            ordered = fn("reverse", ordered) if desc else ordered
            missing = exp.Sub(
                this=exp.Count(this=exp.Star()), expression=exp.Count(this=value.copy())
            )
            nulls = fn("array_repeat", exp.Null(), cast(missing, "INT"))
            both = fn("concat", *((nulls, ordered) if nulls_first else (ordered, nulls)))
            empty = exp.EQ(this=exp.Count(this=exp.Star()), expression=exp.Literal.number(0))
            return exp.Case(ifs=[exp.If(this=empty, true=exp.Null())], default=both)

        self.plan(node, plan)

    def _bracket(self, node: exp.Bracket) -> None:
        # DuckDB l[k]: 1-based, negative from the end, NULL out of range (also for k = 0);
        # Spark's l[k] is 0-based and try_element_at(l, 0) raises an error
        index = node.expressions[0] if len(node.expressions) == 1 else None
        base = self.types.of(node.this)
        if (
            index is None
            or isinstance(index, exp.Slice)
            or self.types.of(index) not in ("INTEGER", None)
            or base is not None
            and not base.startswith("LIST")
        ):
            self.refuse(
                node,
                "indexing '[...]'",
                "only list[integer] is verified (slices, strings and maps differ)",
                "index a list with an integer",
            )
            return

        def plan(n: exp.Expression) -> exp.Expression:
            k = n.expressions[0]
            out_of_range = exp.or_(
                exp.EQ(this=k.copy(), expression=exp.Literal.number(0)),
                exp.GT(this=exp.Abs(this=k.copy()), expression=exp.Literal.number(2**31 - 1)),
            )
            return exp.Case(
                ifs=[exp.If(this=out_of_range, true=exp.Null())],
                default=fn("try_element_at", n.this, cast(k, "INT")),
            )

        self.plan(node, plan)

    def _window(self, node: exp.Window) -> None:
        if isinstance(node.this, (exp.RowNumber, exp.Rank, exp.DenseRank)):
            if not node.args.get("order"):
                self.refuse(
                    node,
                    f"function '{name_of(node.this)}'",
                    "without ORDER BY (arbitrary order)",
                    "add ORDER BY to the window",
                )
            self.plan(node, lambda n: cast(n, "BIGINT"))  # DuckDB: BIGINT, Spark: INT

    def _generateseries(self, node: exp.GenerateSeries) -> None:
        if node.args.get("step") or isinstance(node.parent, exp.Table):
            self.refuse(
                node,
                "function 'generate_series'",
                "only unnest(generate_series(a, b)) in a select list is verified",
                "write unnest(generate_series(a, b))",
            )
        exclusive = bool(node.args.get("is_end_exclusive"))

        def plan(n: exp.Expression) -> exp.Expression:
            # DuckDB: empty when start > end (Spark's sequence counts down), BIGINT elements,
            # NULL in -> NULL. Inline: Spark refuses SQL functions inside explode.
            start, end = cast(n.args["start"], "BIGINT"), cast(n.args["end"], "BIGINT")
            if exclusive:
                end = exp.Sub(this=end, expression=exp.Literal.number(1))
            var = exp.to_identifier("tierpool_v")
            keep = exp.Lambda(
                this=exp.LTE(this=exp.column(var), expression=end.copy()), expressions=[var]
            )
            return fn(
                "filter",
                fn("sequence", start, exp.Greatest(this=start.copy(), expressions=[end])),
                keep,
            )

        self.plan(node, plan)

    def _explode(self, node: exp.Explode) -> None:
        select = node.parent.parent if isinstance(node.parent, exp.Alias) else node.parent
        if (
            not isinstance(select, exp.Select)
            or sum(isinstance(s.unalias(), exp.Explode) for s in select.expressions) > 1
        ):
            self.refuse(
                node,
                "function 'unnest'",
                "only one unnest per select list is verified",
                "move further unnests into a subquery",
            )
