"""The DuckDB -> Spark SQL translation (tierpool.adapters.spark_dialect).

Pure tests (no JVM) check what is translated, what is refused and how refusals read. The Spark
tests (skipped without pyspark) run the same SQL on both engines and compare results: a
battery of expressions over edge values, then the whole demo project (seeds, every SQL model in
build order, deterministic stand-ins for the Python fit's outputs, every data test).
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import duckdb
import pytest

from tierpool.adapters.spark_dialect import SESSION_SQL, translate, translation_problems
from tierpool.adapters.spark_types import type_class
from tierpool.errors import SqlError

REPO = Path(__file__).resolve().parents[2]


# -- pure: no JVM ------------------------------------------------------------------------------


def test_translates_ctes_comments_and_a_trailing_semicolon():
    sql = "-- c\nwith a as (select X, y from T) select x, y / 2 as h from a order by x;  -- end\n"
    out = translate(sql, "m.sql")
    assert out.startswith("WITH `a` AS (SELECT `X`, `y` FROM `t`)")
    assert "TIERPOOL_DIV(`y`, 2)" in out  # DuckDB '/' is IEEE double division
    assert "ORDER BY `x` NULLS LAST" in out  # DuckDB sorts NULLs last, Spark first
    assert "--" not in out and ";" not in out


def test_refusal_names_file_line_function_and_engine():
    sql = "select\n    a,\n    list_sum(b) as s\nfrom t"
    problems = translation_problems(sql, "sql/x.sql")
    assert len(problems) == 1
    message = str(problems[0])
    assert message.startswith("sql/x.sql:3: function 'list_sum' cannot be translated to Spark")
    assert "engine 'spark'" in message
    with pytest.raises(SqlError, match=r"sql/x\.sql:3: function 'list_sum'"):
        translate(sql, "sql/x.sql")


def test_every_problem_is_reported_at_once():
    sql = "select\n  regexp_matches(a, 'x'),\n  a // 2,\n  x[1:2]\nfrom t"
    lines = sorted(str(p).split(":")[1] for p in translation_problems(sql, "m.sql"))
    assert lines == ["2", "3", "4"]
    assert translation_problems("select 1 as x", "m.sql") == []
    assert "syntax error" in str(translation_problems("select from where", "m.sql")[0])


def test_type_dependent_constructs_need_the_type():
    sql = "select round(v, 2) as r, ceil(v) as c, cast(v as bigint) as b from t"
    problems = translation_problems(sql, "m.sql")  # unknown type: refused, not guessed...
    assert [str(p).split("'")[1] for p in problems] == ["round", "ceil"]
    assert "is unknown at compile time" in str(problems[0])
    # ... except where Spark can decide at run time with the same result type
    assert "CASE WHEN TYPEOF(`v`) LIKE 'double' THEN CAST(RINT(`v`) AS BIGINT)" in translate(
        "select cast(v as bigint) from t", "m.sql"
    )
    double = translate(
        sql, "m.sql", schema=lambda relation: {"v": "double"} if relation == "t" else None
    )
    assert "TIERPOOL_ROUND(`v`, 2)" in double and "TIERPOOL_CEIL(`v`)" in double
    assert "CAST(RINT(`v`) AS BIGINT)" in double  # DuckDB rounds half to even, Spark truncates
    decimal = translate(sql, "m.sql", schema={"t": {"v": "DECIMAL(10,3)"}})
    assert "ROUND(`v`, 2)" in decimal and "CEIL(`v`)" in decimal and "TIERPOOL" not in decimal
    # types flow through CTEs and expressions: '/' and avg are DOUBLE in DuckDB
    inferred = "with a as (select avg(n) / 3 as m from t) select round(a.m, 1) from a"
    assert "TIERPOOL_ROUND" in translate(inferred, "m.sql")


def test_hex_text_cast_only_for_the_md5_pattern():
    folds = "select cast(('0x' || substr(md5(cast(id as varchar)), 1, 15)) as bigint) as h from t"
    out = translate(folds, "m.sql", schema={"t": {"id": "BIGINT"}})
    assert "CAST(CONV(SUBSTRING(MD5(CAST(`id` AS STRING)), 1, 15), 16, 10) AS BIGINT)" in out
    for sql in (
        "select cast('0x' || h as bigint) from t",
        "select cast('0x' || substr(md5(h), 1, 16) as bigint) from t",
    ):
        assert "'0x'/'0b' text" in str(
            translation_problems(sql, "m.sql", schema={"t": {"h": "VARCHAR"}})[0]
        )


def test_text_of_doubles_uses_duckdb_spelling():
    out = translate(
        "select cast(x as varchar) || 'Q' || n as a, x || '' as b from t",
        "m.sql",
        schema={"t": {"x": "DOUBLE", "n": "BIGINT"}},
    )
    assert out.count("TIERPOOL_DOUBLE_TEXT(`x`)") == 2 and "CAST(`n` AS STRING)" in out
    runtime = translate(
        "select cast(x as varchar) from t", "m.sql"
    )  # type unknown: decided at run time
    assert "TIERPOOL_TEXT(TYPEOF(`x`), CAST(`x` AS STRING))" in runtime


def test_read_parquet_resolves_against_the_root_and_read_csv_is_refused():
    out = translate("select * from read_parquet('data/t2/*.parquet') as t", "src", root=Path("/p"))
    assert out == "SELECT * FROM `parquet`.`/p/data/t2/*.parquet` AS `t`"
    both = translate("select * from read_parquet(['/a/x.parquet', 'b.parquet'])", "src")
    assert "UNION ALL" in both and "`b.parquet`" in both
    assert "read_csv" in str(translation_problems("select * from read_csv('x.csv')", "src")[0])


def test_refused_constructs():
    refused = {
        "select string_agg(s, ',') from t": "without ORDER BY",
        "select string_agg(s, ',' order by n) from t": "only ORDER BY the aggregated value",
        "select printf('%d', n) from t": "printf",
        "select try_cast(s as integer) from t": "try_cast",
        "select cast(x as decimal(10, 2)) from t": "rounding differs",
        "select date_trunc('decade', ts) from t": "unit 'decade'",
        "select row_number() over () from t": "without ORDER BY",
        "select substr(s, 0, 2) from t": "start <= 0",
        "select * exclude (a) from t": "EXCLUDE",
        "select quantile_cont(x, 0.5) from t": "quantile",
        "select median(x) from t": "median",
        "select l[1:2] from t": "slices",
        "select extract(year from ts) from t": "extract",
    }
    schema = {"t": {"s": "VARCHAR", "n": "BIGINT", "x": "DOUBLE", "ts": "TIMESTAMP"}}
    for sql, fragment in refused.items():
        problems = translation_problems(sql, "m.sql", schema=schema)
        assert problems and fragment in str(problems[0]), (sql, problems)


def test_module_is_pure_sqlglot():
    code = (
        "import sys, tierpool.adapters.spark_dialect as d; "
        "assert 'pyspark' not in sys.modules and 'duckdb' not in sys.modules; "
        "print(len(d.SESSION_SQL))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr


@pytest.fixture(scope="module")
def project():
    from tierpool.core.project import load_project

    return load_project(REPO)


def declared_schema(project) -> dict[str, dict[str, str]]:
    """relation -> {column: declared DuckDB type} from the properties yml (what compile knows)."""
    schema = {}
    for name, node in project.nodes.items():
        outputs = getattr(node, "outputs", ()) or ()
        for relation, columns in [(name, getattr(node, "columns", ()))] + [
            (o.name, o.columns) for o in outputs
        ]:
            if columns:
                schema[relation] = {c.name.lower(): c.type or "UNKNOWN" for c in columns}
    return schema


def test_every_demo_sql_translates_with_or_without_the_declared_types(project):
    sqls = {n: m.sql for n, m in project.nodes.items() if type(m).__name__ == "SqlModel"}
    sqls |= {n: t.sql for n, t in project.tests.items()}
    assert len(sqls) > 200
    for schema in (declared_schema(project), None):
        problems = [
            p for name, sql in sqls.items() for p in translation_problems(sql, name, schema=schema)
        ]
        assert problems == []


# -- Spark: the same SQL on both engines ------------------------------------------------------


@pytest.fixture(scope="module")
def spark(tmp_path_factory):
    if os.environ.get("TIERPOOL_REQUIRE_SPARK") != "1":  # .ci/run: fail rather than skip
        pytest.importorskip("pyspark")
    from pyspark.logger import PySparkLogger
    from pyspark.sql import SparkSession

    active = (
        SparkSession.getActiveSession()
    )  # another test's session (warehouse, metastore): join it
    base = active or (
        SparkSession.builder.master("local[2]")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.shuffle.partitions", "4")
        .config("spark.sql.warehouse.dir", str(tmp_path_factory.mktemp("warehouse")))
        .getOrCreate()
    )
    for name in ("SQLQueryContextLogger", "DataFrameQueryContextLogger"):  # expected errors
        PySparkLogger.getLogger(name).disabled = True
    session = base.newSession()  # own conf, temp views and functions: nothing leaks to other tests
    for statement in SESSION_SQL:
        session.sql(statement)
    yield session
    for table in session.catalog.listTables():  # it may be the active session now
        if table.isTemporary:
            session.catalog.dropTempView(table.name)
    for row in session.sql("SHOW USER FUNCTIONS").collect():  # may become the active session
        if row[0].startswith("tierpool_"):
            session.sql(f"DROP TEMPORARY FUNCTION IF EXISTS {row[0]}")
    if active is None:
        base.stop()  # a later test starts the session it needs


def same(a, b, rel: float = 1e-9) -> bool:
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y, rel) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) and isinstance(b, float):
        if math.isnan(a) or math.isnan(b):
            return math.isnan(a) and math.isnan(b)
        return a == b or abs(a - b) <= rel * max(abs(a), abs(b)) or abs(a - b) < 1e-12
    if isinstance(a, Decimal) or isinstance(b, Decimal):
        return a is not None and b is not None and Decimal(a) == Decimal(b)
    return a == b


def _key(row: tuple) -> tuple:
    """Sort key tolerant to last-bit differences of doubles (rounded to 9 digits)."""
    return tuple(
        (0, "") if v is None else (1, f"{v:.9g}") if isinstance(v, float) else (1, str(v))
        for v in row
    )


def assert_same_rows(name: str, duck: list[tuple], spark_rows: list[tuple]) -> None:
    assert len(duck) == len(spark_rows), (
        f"{name}: {len(duck)} rows in DuckDB, {len(spark_rows)} in Spark"
    )
    for a_row, b_row in zip(sorted(duck, key=_key), sorted(spark_rows, key=_key), strict=True):
        assert all(same(a, b) for a, b in zip(a_row, b_row, strict=True)), (
            f"{name}: {a_row} != {b_row}"
        )


def to_spark(spark, con: duckdb.DuckDBPyConnection, name: str) -> None:
    """A DuckDB table as a Spark temp view (via Arrow: NaN, NTZ timestamps and decimals kept)."""
    spark.createDataFrame(
        con.sql(f"select * from {name}").to_arrow_table()
    ).createOrReplaceTempView(name)


def run_spark(spark, sql: str):
    return spark.sql(sql).localCheckpoint()  # materialised once: downstream models reuse it


def compare_relation(spark, con, name: str, duck_sql: str, spark_df) -> None:
    duck = con.sql(duck_sql)
    names = [c.lower() for c in duck.columns]
    assert [c.lower() for c in spark_df.columns] == names, name
    duck_types = [type_class(str(t)) for t in duck.types]
    spark_types = [type_class(f.dataType.simpleString()) for f in spark_df.schema.fields]
    for col, a, b in zip(names, duck_types, spark_types, strict=True):  # void: a NULL-only column
        assert a == b or "void" in str(spark_df.schema[col].dataType).lower(), (
            f"{name}.{col}: {a} vs {b}"
        )
    arrow = spark_df.toArrow()  # faster than collect() for the 20k-row relations
    assert_same_rows(
        name, duck.fetchall(), list(zip(*(c.to_pylist() for c in arrow.columns), strict=True))
    )


BATTERY_ROWS = """
    select * from (values
      (1, 2.675::double, 1.005::decimal(10,3), 7::bigint, 'abc',
          timestamp '2026-01-31 10:00:00.12', date '2026-03-31', 2.5::double),
      (2, 0.285, -2.500, -3, 'b', timestamp '2026-05-04 00:00:00', date '2026-12-31', -2.5),
      (3, 'nan'::double, 0.000, 0, null, timestamp '2026-08-15 23:59:59.999999',
          date '2024-02-29', 0.125),
      (4, 'inf'::double, 12.345, 123456789, 'zz', null, null, 1e20),
      (5, -0.0::double, 0.001, -1, 'β', timestamp '2026-11-30 12:00:00', date '2026-01-01',
          -0.0004),
      (6, 1e-5, -0.005, 1000000, '', timestamp '2026-02-28 01:02:03', date '2026-06-15',
          123456.789),
      (7, -1.5e300, 99.999, 2, 'x', timestamp '2026-07-01 00:00:00', date '2026-07-01', 25.0),
      (8, 5.9604644775390625e-08, 1.000, 3, 'y', timestamp '2026-09-30 23:00:00',
          date '2026-09-30', 1e-300)
    ) as t(i, x, d, n, s, ts, dt, f)
"""
SCALARS = [
    "x / n",
    "n / 0",
    "x / 0",
    "n / d",
    "ln(x)",
    "ln(f)",
    "isfinite(x)",
    "lgamma(x)",
    "lgamma(n)",
    "round(x, 2)",
    "round(f, 3)",
    "round(d, 1)",
    "round(f)",
    "round(n, -1)",
    "ceil(x)",
    "floor(f)",
    "ceil(d)",
    "ceil(n)",
    "cast(f as varchar)",
    "cast(d as varchar)",
    "cast(n as varchar)",
    "cast(ts as varchar)",
    "cast(dt as varchar)",
    "cast(round(f, 2) as varchar)",
    "'v=' || f || s",
    "concat_ws('/', s, null, f, n)",
    "printf('%.1e', f)",
    "printf('%.3e', f)",
    "cast(case when abs(f) < 1e15 then f end as bigint)",
    "cast(d as integer)",
    "cast(d * 2 as bigint)",
    "date_trunc('quarter', ts)",
    "date_trunc('week', dt)",
    "cast(date_trunc('month', ts) as date)",
    "year(ts)",
    "quarter(dt)",
    "ts + interval 3 month",
    "dt + interval 1 day",
    "ts - interval 2 hour",
    "greatest(x, n)",
    "least(f, d)",
    "md5(s)",
    "cast(('0x' || substr(md5(cast(n as varchar)), 1, 15)) as bigint)",
    "substr(s, 2, 3)",
    "exp(f)",
    "sqrt(x)",
    "pow(f, 1.5)",
    "abs(d)",
    "coalesce(s, 'none')",
    "nullif(n, 0)",
    "x is not distinct from f",
    "case when x > 1 then 1.0 else 0.0 end",
    "row_number() over (partition by n > 0 order by s desc, i)",
    "avg(d) over (partition by n > 0)",
    "cast(x as double)",
    "cast(s as varchar)",
    "cast(ts as date)",
    "cast(dt as timestamp)",
    "cast(x > 0 as varchar)",
    "s like 'a%'",
    "s in ('abc', 'zz')",
    "x between 0 and 3",
    "not isfinite(x)",
]
GENERATORS = ["unnest(generate_series(n, 3))", "unnest(range(0, 2))"]
# without a schema the type of a cast to VARCHAR is decided at run time (tierpool_text)
UNTYPED = [
    "cast(f as varchar)",
    "cast(n as varchar)",
    "cast(ts as varchar)",
    "'a' || d || (x > 0)",
    "cast(s as varchar)",
    "concat_ws(',', dt, n)",
    "cast(d as integer)",
    "cast(n as bigint)",
    "cast(case when abs(f) < 1e15 then f end as bigint)",
]
UNTYPED_AGGREGATES = [
    "string_agg(s, ',' order by s)",
    "string_agg(distinct s, ',' order by s)",
    "list(f order by f)",
]
AGGREGATES = [
    "avg(d)",
    "avg(n)",
    "sum(d)",
    "sum(n)",
    "count(distinct s)",
    "var_pop(f)",
    "stddev(f)",
    "var_samp(f)",
    "bool_or(x > 0)",
    "bool_and(n > 0)",
    "max(x) filter (where n > 0)",
    "string_agg(s, ',' order by s)",
    "string_agg(distinct s, ', ' order by s desc)",
    "min(ts)",
    "count(distinct n)",
    "max(case when n > 0 then s end)",
    "count(*) filter (where isfinite(x))",
    "list(x order by x)",
    "list(s order by s desc nulls first)",
    "list(n order by n)[2]",
    "list(n order by n)[-1]",
    "list(n order by n)[0]",
    "list(f order by f)[100]",
]


@pytest.mark.slow
def test_expressions_give_duckdbs_results_on_spark(spark):
    con = duckdb.connect()
    con.execute(f"create table v as {BATTERY_ROWS}")
    to_spark(spark, con, "v")
    relation = con.sql("select * from v")
    schema = {"v": {c: str(t) for c, t in zip(relation.columns, relation.types, strict=True)}}
    # few queries (one Spark job each): every expression is a column of its query
    queries = [
        (
            "select i, " + ", ".join(f"{e} as r{k}" for k, e in enumerate(SCALARS)) + " from v",
            SCALARS,
        ),
        (
            "select " + ", ".join(f"{e} as r{k}" for k, e in enumerate(AGGREGATES)) + " from v",
            AGGREGATES,
        ),
        (
            "select "
            + ", ".join(f"{e} as r{k}" for k, e in enumerate(AGGREGATES))
            + " from v where false",
            AGGREGATES,
        ),
    ]
    queries += [(f"select i, {e} as r0 from v", [e]) for e in GENERATORS]
    untyped = [
        (
            "select i, " + ", ".join(f"{e} as r{k}" for k, e in enumerate(UNTYPED)) + " from v",
            UNTYPED,
        ),
        (
            "select "
            + ", ".join(f"{e} as r{k}" for k, e in enumerate(UNTYPED_AGGREGATES))
            + " from v",
            UNTYPED_AGGREGATES,
        ),
    ]
    for sql, expressions in [*queries, *untyped]:
        typed = expressions not in (UNTYPED, UNTYPED_AGGREGATES)
        spark_df = spark.sql(translate(sql, "battery", schema=schema if typed else None))
        duck = con.sql(sql)
        duck_rows, spark_rows = duck.fetchall(), [tuple(r) for r in spark_df.collect()]
        offset = len(duck.columns) - len(expressions)
        for k, expression in enumerate(expressions):  # column by column: the message names it
            column = offset + k
            assert type_class(str(duck.types[column])) == type_class(
                spark_df.schema.fields[column].dataType.simpleString()
            ), expression
            assert_same_rows(
                expression,
                [r[:offset] + (r[column],) for r in duck_rows],
                [r[:offset] + (r[column],) for r in spark_rows],
            )


def test_parquet_sources_read_the_same_rows(spark, tmp_path):
    con = duckdb.connect()
    (tmp_path / "data").mkdir()
    con.execute(f"copy ({BATTERY_ROWS}) to '{tmp_path / 'data' / 'v.parquet'}' (format parquet)")
    sql = "select * from read_parquet('data/*.parquet') as v"
    compare_relation(
        spark,
        con,
        "read_parquet",
        sql.replace("data/", f"{tmp_path}/data/"),
        spark.sql(translate(sql, "source", root=tmp_path)),
    )


def test_text_of_nan_stops_the_spark_query(spark):
    # DuckDB prints NaN as 'nan' or '-nan' by its sign bit, which Spark cannot see: refusing
    # at run time is the only faithful answer
    from pyspark.errors import PySparkException

    with pytest.raises(PySparkException, match="tierpool"):
        spark.sql(
            translate("select cast(x as varchar) from (select 'nan'::double as x)", "t")
        ).collect()


# -- the demo project on both engines ------------------------------------------------------------

WINDOW_END = "2026-07-01"  # the stand-in fit's window: Jan-Jun fitted, Jul-Sep out of time


FIT_OUTPUTS = {  # deterministic stand-ins for hierarchical_fit's outputs, covering every branch
    # of priors_history: fitted and unfitted models, families, regions, classes, a predictive
    # for some cells only, a published and a newer rejected fit
    "fit_runs": f"""
        select f.fit_id, i.indicator, 1::bigint as attempt, f.status, f.reason, f.max_r_hat, 900.0 as min_ess_bulk,
            0::bigint as divergences, '{{}}' as settings,
            f.finished_at - interval 1 hour as started_at,
            f.finished_at, 1.5 as compile_seconds, 20.0 as sampling_seconds, '{{}}' as versions,
            timestamp '{WINDOW_END}' as window_end, 10::bigint as n_cells, 100::bigint as n_obs,
            'fp' as fingerprint
        from (select distinct indicator from residual_cells_by_quarter) as i
        cross join (values ('2026Q2', 'published', null, 1.001, timestamp '2026-07-02 10:00:00'),
                           ('2026Q2-r2', 'rejected', 'max r_hat 1.2', 1.2,
                            timestamp '2026-07-03 10:00:00'))
            as f(fit_id, status, reason, max_r_hat, finished_at)""",
    "methodology_releases": "select '1.4.3' as version, '2026Q2' as fit_id, "
    "timestamp '2026-07-02 11:00:00' as released_at",
    # this build fitted the rejected refit for one indicator and reused the published fit for
    # the other: both branches of fit_gate_status
    "fit_decision": """
        select indicator, case when indicator = min(indicator) over () then '2026Q2-r2'
                               else '2026Q2' end as fit_id,
            case when indicator = min(indicator) over () then 'fitted' else 'reused' end as action,
            case when indicator = min(indicator) over () then 'rejected' else 'published' end
                as status,
            case when indicator = min(indicator) over () then 'max r_hat 1.2' end as reason,
            timestamp '2026-07-03 10:00:00' as decided_at
        from (select distinct indicator from residual_cells_by_quarter)""",
    "fit_draws": """
        select '2026Q2' as fit_id, indicator, 'fits/2026Q2/' || indicator || '.nc' as path,
            true as present
        from (select distinct indicator from residual_cells_by_quarter)""",
    "posterior_models": """
        select '2026Q2' as fit_id, c.indicator, c.model_id, any_value(c.family_id) as family_id,
            p.parameter,
            case p.parameter when 'level' then avg(c.mean)
                else 0.2 + stddev_pop(c.mean) end as mean,
            0.05 + 0.01 * count(*) as sd, sum(c.n)::bigint as n_obs, 0.5 as pooling
        from residual_cells_by_quarter as c cross join (values ('level'), ('sigma')) as p(parameter)
        where hash(c.model_id) % 4 <> 0 group by c.indicator, c.model_id, p.parameter""",
    "posterior_families": """
        select '2026Q2' as fit_id, c.indicator, c.family_id, p.parameter,
            case p.parameter when 'mu' then avg(c.mean) else 0.3 end as mean, 0.07 as sd,
            sum(c.n)::bigint as n_obs
        from residual_cells_by_quarter as c cross join (values ('mu'), ('sigma')) as p(parameter)
        where c.family_id <> 'olmo' group by c.indicator, c.family_id, p.parameter""",
    "posterior_regions": """
        select '2026Q2' as fit_id, c.indicator, c.region_id,
            any_value(c.region_class_id) as region_class_id,
            'mu' as parameter, avg(c.mean) / 10 as mean, 0.02 as sd, sum(c.n)::bigint as n_obs
        from residual_cells_by_quarter as c where hash(c.region_id) % 3 <> 0
        group by c.indicator, c.region_id""",
    "posterior_region_classes": """
        select '2026Q2' as fit_id, c.indicator, c.region_class_id, p.parameter,
            case p.parameter when 'mu' then avg(c.mean) / 5 else 0.1 end as mean, 0.03 as sd,
            sum(c.n)::bigint as n_obs
        from residual_cells_by_quarter as c cross join (values ('mu'), ('sigma')) as p(parameter)
        group by c.indicator, c.region_class_id, p.parameter""",
    "posterior_predictive": """
        select '2026Q2' as fit_id, c.indicator, 'model_region' as kind,
            any_value(c.family_id) as family_id,
            c.model_id, any_value(c.region_class_id) as region_class_id, c.region_id,
            avg(c.mean) as mean, 0.4 as sd, avg(c.mean) - 0.658 as q05, avg(c.mean) + 0.658 as q95
        from residual_cells_by_quarter as c where hash(c.model_id || c.region_id) % 2 = 0
        group by c.indicator, c.model_id, c.region_id
        union all  -- the joint bias draws of some of those cells (priors: bias_* from them, else summed sides)
        select '2026Q2', c.indicator, 'bias_model_region', any_value(c.family_id), c.model_id,
            any_value(c.region_class_id), c.region_id, avg(c.mean), 0.03, avg(c.mean) - 0.05,
            avg(c.mean) + 0.05
        from residual_cells_by_quarter as c where hash(c.model_id || c.region_id) % 4 = 0
        group by c.indicator, c.model_id, c.region_id""",
    # interim updates of some models measured after the window (priors: source_level 'model_interim')
    "interim_priors": f"""
        select c.indicator, c.model_id, any_value(c.family_id) as family_id, c.region_id,
            any_value(c.region_class_id) as region_class_id, avg(c.mean) as bias_mean,
            0.02 as bias_sd, avg(c.mean) - 0.033 as bias_q05, avg(c.mean) + 0.033 as bias_q95,
            0.3 as dispersion, avg(c.mean) as pred_mean, 0.35 as pred_sd,
            avg(c.mean) - 0.576 as pred_q05, avg(c.mean) + 0.576 as pred_q95,
            sum(c.n)::bigint as n_new, 0::bigint as n_new_unused, 500.0 as weights_ess,
            '2026Q2' as fit_id
        from residual_cells_by_quarter as c
        where c.quarter_start >= date '{WINDOW_END}' and hash(c.model_id) % 5 = 0
        group by c.indicator, c.model_id, c.region_id""",
    # the hold-out modes of coverage_report (fractional n_effective: its rounding on both engines)
    "holdout_scores": """
        select l.indicator, l.fit_id, m.mode, m.source_level, 1000::bigint as n_rows,
            m.n_effective, m.n_covered::bigint as n_covered, m.n_covered / 1000.0 as coverage_90,
            2.5 as mean_width_log, -1234.5 as elpd, 45.6 as elpd_se, 40::bigint as n_cells,
            12::bigint as n_groups, 5::bigint as folds, 1.004 as max_r_hat, 0::bigint as divergences,
            'settings' as settings, timestamp '2026-10-02 00:00:00' as computed_at
        from latest_fit as l
        cross join (values ('leave_models_out', 'family', 6.4, 830), ('leave_regions_out', 'class', 11.5, 951),
                           ('leave_families_out', 'global', 2.5, 700)) as m(mode, source_level, n_effective, n_covered)""",
}


def build_order(project) -> list[str]:
    owner = project.relation_owner
    deps = {
        n: {owner.get(d, d) for d in getattr(node, "depends_on", ())} & set(project.nodes)
        for n, node in project.nodes.items()
    }
    order: list[str] = []
    while len(order) < len(deps):
        ready = sorted(n for n in deps if n not in order and deps[n] <= set(order))
        assert ready, "cycle"
        order += ready
    return order


def duck_schema(con: duckdb.DuckDBPyConnection) -> dict[str, dict[str, str]]:
    """What an adapter reads from its catalog: every table's column types."""
    schema: dict[str, dict[str, str]] = {}
    for table, column, kind in con.sql(
        "select table_name, column_name, data_type from information_schema.columns"
    ).fetchall():
        schema.setdefault(table, {})[column.lower()] = kind
    return schema


@pytest.mark.slow
def test_demo_project_gives_the_same_results_on_spark(spark, project):
    con = duckdb.connect()
    for name in build_order(project):
        node = project.nodes[name]
        kind = type(node).__name__
        if kind == "Seed":
            types = ", ".join(f"'{c.name}': '{c.type}'" for c in node.columns if c.type)
            con.execute(
                f"create table {name} as select * from read_csv('{node.path}', header = true, "
                f"types = {{{types}}})"
            )
            if name == "calibration_config":  # low bars: the heavy-tail text (printf) is exercised
                con.execute(
                    "update calibration_config set value = case key "
                    "when 'normality_min_n' then 10 when 'normality_max_excess_kurtosis' then -1 "
                    "when 'normality_kurtosis_z' then 0 when 'normality_tail_ratio' then 0.5 "
                    "when 'normality_tail_p' then 1 else value end"
                )
            to_spark(spark, con, name)
        elif kind == "PythonModel":
            for output in node.outputs:
                columns = ", ".join(f'"{c.name}" {c.type}' for c in output.columns)
                con.execute(f"create table {output.name} ({columns})")
                con.execute(f"insert into {output.name} by name {FIT_OUTPUTS[output.name]}")
                to_spark(spark, con, output.name)
        else:
            con.execute(f"create table {name} as {node.sql}")
            # no schema, as the Spark adapter calls it: type-dependent casts decide at run time
            spark_df = run_spark(spark, translate(node.sql, name))
            spark_df.createOrReplaceTempView(name)
            compare_relation(spark, con, name, f"select * from {name}", spark_df)

    # the folds and the rejected rows are identical, not just close
    for relation in ("request_folds", "rejected_rows"):
        duck = sorted(con.sql(f"select * from {relation}").fetchall(), key=_key)
        assert duck == sorted((tuple(r) for r in spark.table(relation).collect()), key=_key)
    assert con.execute(
        "select count(*) from residual_normality where heavy_tail_reason like '%(p %'"
    ).fetchall()[0][0]

    # every data test fails on the same rows: one Spark job lists (test, 1) per failing row
    # (a count(*) per test would add an aggregation stage per test), then rows where any failed
    schema = duck_schema(con)
    tests = {n: t.sql for n, t in sorted(project.tests.items())}
    duck_counts = {
        n: con.execute(f"select count(*) from ({sql}) as q").fetchall()[0][0]
        for n, sql in tests.items()
    }
    union = " UNION ALL ".join(
        f"SELECT '{n}' AS test FROM ({translate(sql, n, schema=schema)}) AS q"
        for n, sql in tests.items()
    )
    spark_counts = dict.fromkeys(tests, 0)
    for row in spark.sql(union).collect():
        spark_counts[row["test"]] += 1
    assert spark_counts == duck_counts
    singular = {n for n, t in project.tests.items() if t.spec is None}
    for name, sql in tests.items():
        if duck_counts[name] or name in singular:
            compare_relation(spark, con, name, sql, spark.sql(translate(sql, name, schema=schema)))
