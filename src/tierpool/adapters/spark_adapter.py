"""Apache Spark: the distributed engine (``type: spark``), in session or Spark Connect mode.

Models stay in DuckDB SQL; :mod:`tierpool.adapters.spark_dialect` translates them
with sqlglot and provides what Spark lacks as SQL functions created at connect.

Spark's session catalog has no transactions, so every write is staged: a table is
built under ``__tierpool_stage_<name>`` and only then swapped in (drop the old
relation, rename the stage), so a failing query keeps the old relation exactly as it
was. All outputs of a Python model are staged first and swapped together. Between a
drop and its rename a concurrent reader can miss the relation for a moment; table
formats with atomic replace (Delta, Iceberg) would close that gap.

Session mode keeps the catalog in an embedded Derby metastore under the project's
target/ so every tierpool command sees what the build wrote; Derby admits one process
at a time, so ``tierpool query`` waits for (or reports) a running build.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tierpool.adapters import csv_seed, spark_dialect
from tierpool.adapters.base import (
    UNKNOWN,
    Adapter,
    FrameOutput,
    QueryResult,
    Schema,
    check_output_columns,
    frame_shape,
    strip_sql,
)
from tierpool.adapters.spark_audit import (
    SNAPSHOT_PREFIX,
    STAGE_PREFIX,
    VIEW_STAGE_PREFIX,
    StagedPublish,
)
from tierpool.adapters.spark_frames import cast_select, spark_type, to_arrow
from tierpool.adapters.spark_incremental import SparkIncrementalWrites
from tierpool.adapters.spark_session import friendly_error, get_session, quote
from tierpool.errors import ConfigError, DatabaseError, ModelError, SqlError

if TYPE_CHECKING:
    import pandas as pd

    from tierpool.core.config import SparkOutput, Target
    from tierpool.core.nodes import Node

_FUNCTIONS_PROPERTY = "tierpool.functions"
_FUNCTION_CALL = re.compile(r"\b(tierpool_\w+)\s*\(")
_TEMP_FUNCTION = re.compile(r"CREATE\s+(OR\s+REPLACE\s+)?TEMPORARY\s+FUNCTION", re.I)


class SparkAdapter(SparkIncrementalWrites, Adapter):
    """A Spark warehouse (``type: spark``): one database (``schema``) of the catalog."""

    type = "spark"
    dialect = "spark"

    def __init__(self, target: Target, root: Path, read_only: bool = False) -> None:
        super().__init__(target, root)
        self.settings: SparkOutput = target.settings
        self.schema = self.settings.schema_
        self.read_only = read_only
        self.spark: Any = None
        self._audit: StagedPublish | None = None  # inside audited(): writes stay staged

    @property
    def description(self) -> str:
        where = self.settings.url if self.settings.method == "connect" else self.settings.master
        return f"Spark warehouse {self.schema} ({self.settings.method} {where})"

    @property
    def state_key(self) -> str:
        where = self.settings.url if self.settings.method == "connect" else self.settings.warehouse_dir
        return f"spark:{self.settings.method}:{where}:{self.schema}"

    # -- connection -------------------------------------------------------------------------

    def open(self, wait_s: float = 0.0) -> None:
        if self.spark is not None:
            return
        deadline = time.monotonic() + wait_s
        while True:
            try:
                spark = get_session(self.settings)
                break
            except DatabaseError:
                if time.monotonic() >= deadline:
                    raise
                time.sleep(1.0)
        if self.read_only:
            if not any(row[0] == self.schema for row in spark.sql("SHOW DATABASES").collect()):
                raise DatabaseError(f"no Spark database '{self.schema}': run `tierpool build` first")
        else:
            spark.sql(f"CREATE DATABASE IF NOT EXISTS {quote(self.schema)}")
        spark.sql(f"USE {quote(self.schema)}")
        functions = [s for s in spark_dialect.SESSION_SQL if _TEMP_FUNCTION.match(s.strip())]
        for statement in spark_dialect.SESSION_SQL:
            if statement not in functions:  # session settings: every connection needs them
                spark.sql(statement)
        if not self.read_only:
            self._create_functions(spark, functions)
        self.spark = spark

    def _create_functions(self, spark: Any, statements: list[str]) -> None:
        """Create the SQL functions the translation relies on, once per database and version.

        They are persistent (not temporary) functions of the database: Spark refuses
        permanent views that reference temporary functions. Creating them costs a metastore
        write each, so a hash of their text is kept as a database property and they are
        only recreated when it changes.
        """
        # Calls between the functions name this database: a temporary function of the same
        # name in the session (it shadows persistent ones) must not be captured.
        statements = [_FUNCTION_CALL.sub(lambda m: f"{quote(self.schema)}.{m.group(1)}(", s)
                      for s in statements]
        digest = hashlib.sha256("\n".join(statements).encode()).hexdigest()[:16]
        rows = spark.sql(f"DESCRIBE DATABASE EXTENDED {quote(self.schema)}").collect()
        properties = next((str(r[1]) for r in rows if str(r[0]).lower() == "properties"), "")
        if f"({_FUNCTIONS_PROPERTY},{digest})" in properties:
            return
        for statement in statements:
            spark.sql(_TEMP_FUNCTION.sub("CREATE OR REPLACE FUNCTION", statement, count=1))
        spark.sql(f"ALTER DATABASE {quote(self.schema)} SET DBPROPERTIES "
                  f"('{_FUNCTIONS_PROPERTY}' = '{digest}')")

    def close(self) -> None:
        # The session is the process's JVM: it stays for the next command in this process.
        self.spark = None

    def release(self) -> None:
        """A server engine keeps its session while a Python model runs."""

    def session(self) -> Any:
        """The open SparkSession."""
        self.open()
        return self.spark

    # -- SQL --------------------------------------------------------------------------------

    def translate(self, sql: str, where: str = "<sql>") -> str:
        return spark_dialect.translate(strip_sql(sql), where, root=self.root)

    def translation_problems(self, sql: str, where: str) -> list[SqlError]:
        return spark_dialect.translation_problems(strip_sql(sql), where)

    def source_sql(self, expression: str) -> str:
        select = self.translate(f"SELECT * FROM {expression}", "source expression")
        return f"({select})"

    def _sql(self, sql: str) -> Any:
        try:
            return self.session().sql(sql)
        except Exception as exc:
            raise ModelError(friendly_error(exc)) from exc

    def execute(self, sql: str) -> None:
        self._sql(sql)

    def _dataframe(self, sql: str) -> Any:
        return self._sql(self.translate(sql))

    def fetch(self, sql: str, limit: int | None = None) -> QueryResult:
        df = self._dataframe(sql)
        if limit is not None:
            df = df.limit(int(limit))
        try:
            rows = [tuple(row) for row in df.collect()]
        except Exception as exc:
            raise ModelError(friendly_error(exc)) from exc
        return QueryResult(list(df.columns), rows)

    def count(self, sql: str) -> int:
        try:
            return int(self._dataframe(sql).count())
        except ModelError:
            raise
        except Exception as exc:
            raise ModelError(friendly_error(exc)) from exc

    batches_tests = True  # each query is a Spark job (~0.3 s fixed cost on local[2])
    _BATCH = 40  # queries per combined count: bounds the size of one plan

    def count_each(self, sqls: Sequence[str]) -> list[int]:
        counts: list[int] = []
        for start in range(0, len(sqls), self._BATCH):
            chunk = sqls[start:start + self._BATCH]
            union = "\nUNION ALL\n".join(
                f"SELECT {i} AS i, count(*) AS n FROM (\n{strip_sql(sql)}\n) AS q{i}"
                for i, sql in enumerate(chunk)
            )
            got = dict(self.fetch(union).rows)
            counts.extend(int(got[i]) for i in range(len(chunk)))
        return counts

    # A view read by at least this many tests of one batch is snapshotted for them: Spark plans
    # the view again inside every test query (priors_history's 27 tests: 30 s on 1M rows, against
    # 5 s for a snapshot and 3.5 s for the tests on it); a few tests on a big, cheap view
    # (stg_tier2's 5 over 1M rows) cost less than writing its rows.
    snapshot_min_tests = 10

    @contextmanager
    def test_snapshots(self, views: Sequence[str], visible: dict[str, str]) -> Iterator[dict[str, str]]:
        made: list[str] = []
        try:
            for view in views:
                snapshot = SNAPSHOT_PREFIX + view
                made.append(snapshot)
                try:
                    self.execute(f"DROP TABLE IF EXISTS {quote(snapshot)}")
                    self.execute(f"CREATE TABLE {quote(snapshot)} USING parquet AS "
                                 f"SELECT * FROM {quote(visible.get(view, view))}")
                except ModelError:  # the tests read the view itself and report what fails
                    continue
                visible = {**visible, view: snapshot}
            yield visible
        finally:
            for snapshot in made:
                self.execute(f"DROP TABLE IF EXISTS {quote(snapshot)}")

    def frame(self, sql: str) -> pd.DataFrame:
        """A query's rows as pandas, through Arrow."""
        return self._dataframe(sql).toArrow().to_pandas()

    def query_read_only(self, sql: str, wait_s: float = 0.0) -> QueryResult:
        # wait_s: the metastore, not a file lock, arbitrates Spark readers and writers.
        from tierpool.adapters.read_only import check_read_only

        check_read_only(sql)
        try:
            return self.fetch(sql)
        except ModelError as exc:
            raise SqlError(str(exc)) from exc

    # -- catalog ----------------------------------------------------------------------------

    def relation_kinds(self) -> dict[str, str]:
        kinds = {}
        for table in self.session().catalog.listTables(self.schema):
            if table.isTemporary or table.name.startswith((STAGE_PREFIX, VIEW_STAGE_PREFIX, SNAPSHOT_PREFIX)):
                continue
            kinds[table.name.lower()] = "view" if table.tableType == "VIEW" else "table"
        return kinds

    def describe(self, relation_sql: str) -> Schema | None:
        try:
            df = self.session().sql(f"SELECT * FROM {self.source_sql(relation_sql)} LIMIT 0")
            return {f.name.lower(): f.dataType.simpleString() for f in df.schema.fields}
        except (SqlError, DatabaseError, ConfigError):
            raise
        except Exception:
            return None

    def describe_seed(self, path: Path, declared: Schema) -> Schema | None:
        import duckdb  # noqa: PLC0415 - seeds are read by DuckDB on every engine

        con = duckdb.connect()
        try:
            return csv_seed.describe(con, path, declared)
        finally:
            con.close()

    # -- writes -----------------------------------------------------------------------------

    def _kind(self, name: str, existing: str | None) -> str | None:
        return self.relation_kind(name) if existing == UNKNOWN else existing

    def _drop(self, name: str, kind: str | None) -> None:
        if kind:
            self.execute(f"DROP {kind.upper()} IF EXISTS {quote(name)}")

    def _stage(self, name: str, select_spark_sql: str) -> str:
        stage = STAGE_PREFIX + name
        self.execute(f"DROP TABLE IF EXISTS {quote(stage)}")
        try:
            self.execute(f"CREATE TABLE {quote(stage)} USING parquet AS\n{select_spark_sql}")
        except Exception:
            self.execute(f"DROP TABLE IF EXISTS {quote(stage)}")
            raise
        return stage

    def _swap(self, stage: str, name: str, existing: str | None) -> None:
        if self._audit is not None:
            self._audit.stage(name, stage, "table", lambda: self._swap_now(stage, name, existing))
        else:
            self._swap_now(stage, name, existing)

    def _swap_now(self, stage: str, name: str, existing: str | None) -> None:
        self._drop(name, existing)
        self.execute(f"ALTER TABLE {quote(stage)} RENAME TO {quote(name)}")

    @contextmanager
    def audited(self) -> Iterator[dict[str, str]]:
        audit = self._audit = StagedPublish()
        try:
            yield audit.visible
        except BaseException:
            self._audit = None
            for staged, kind in audit.staged:
                self.execute(f"DROP {kind.upper()} IF EXISTS {quote(staged)}")
            raise
        self._audit = None
        for step in audit.steps:
            step()

    def create_view(self, name: str, select_sql: str, existing: str | None = UNKNOWN) -> None:
        spark_sql = self.translate(select_sql, name)
        self._sql(spark_sql).schema  # analyse first: a bad query keeps the old relation
        kind = self._kind(name, existing)
        if self._audit is not None:
            stage = VIEW_STAGE_PREFIX + name  # apart from staged tables: DROP TABLE refuses views
            self.execute(f"CREATE OR REPLACE VIEW {quote(stage)} AS\n{spark_sql}")

            def publish() -> None:
                self._replace_view(name, spark_sql, kind)
                self.execute(f"DROP VIEW IF EXISTS {quote(stage)}")

            self._audit.stage(name, stage, "view", publish)
            return
        self._replace_view(name, spark_sql, kind)

    def _replace_view(self, name: str, spark_sql: str, kind: str | None) -> None:
        if kind == "table":
            self._drop(name, kind)
        self.execute(f"CREATE OR REPLACE VIEW {quote(name)} AS\n{spark_sql}")

    def build_table(self, name: str, select_sql: str, existing: str | None = UNKNOWN) -> int:
        stage = self._stage(name, self.translate(select_sql, name))
        rows = int(self.session().table(quote(stage)).count())
        self._swap(stage, name, self._kind(name, existing))
        return rows

    def load_seed(self, seed: Node, existing: str | None = UNKNOWN) -> int:
        path, shown, declared = csv_seed.locate(seed, self.root)
        table = csv_seed.read_arrow(path, shown, declared)
        return self._write_arrow(seed.name, table, self._kind(seed.name, existing))

    def _write_arrow(self, name: str, table: Any, existing: str | None) -> int:
        stage = STAGE_PREFIX + name
        self.execute(f"DROP TABLE IF EXISTS {quote(stage)}")
        df = self._from_arrow(table)
        try:
            df.write.format("parquet").saveAsTable(stage)
        except Exception as exc:
            self.execute(f"DROP TABLE IF EXISTS {quote(stage)}")
            raise ModelError(f"{name}: {friendly_error(exc)}") from exc
        self._swap(stage, name, existing)
        return int(table.num_rows)

    def _from_arrow(self, table: Any) -> Any:
        return self.session().createDataFrame(table)

    def _staged_output(self, output: FrameOutput, kind: str | None) -> tuple[str | None, int]:
        """Stage one Python-model output, merged with its old rows for an append.

        Returns:
            (the staged table, or None when an append output has no row; rows written).
        """
        name, columns = output.name, output.columns
        table = to_arrow(output.data)
        got, n_rows = frame_shape(table)
        if output.materialized == "append" and n_rows == 0:
            return None, 0
        if columns:
            check_output_columns(name, got, columns)
        view = f"__tierpool_output_{name}"
        self._from_arrow(table).createOrReplaceTempView(view)
        try:
            select = cast_select(self.session(), name, view, got, columns)
            if output.materialized == "append" and kind == "table":
                return self._merged_stage(name, select, output.unique_key)
            return self._stage(name, select), n_rows
        finally:
            self.session().catalog.dropTempView(view)

    def _create_empty(self, output: FrameOutput) -> None:
        if output.columns and all(c.type for c in output.columns):
            cols = ", ".join(f"{quote(c.name)} {spark_type(c.type or '')}" for c in output.columns)
            self.execute(f"CREATE TABLE {quote(output.name)} ({cols}) USING parquet")

    def write_frames(
        self, outputs: Sequence[FrameOutput], existing: dict[str, str | None] | None = None
    ) -> dict[str, int]:
        known = existing or {}
        kinds = {o.name: self._kind(o.name, known.get(o.name, UNKNOWN)) for o in outputs}
        staged: list[tuple[FrameOutput, str | None, int]] = []
        try:
            for output in outputs:  # stage everything first: a failure changes nothing
                stage, rows = self._staged_output(output, kinds[output.name])
                staged.append((output, stage, rows))
        except Exception:
            for _, stage, _ in staged:
                if stage:
                    self.execute(f"DROP TABLE IF EXISTS {quote(stage)}")
            raise
        written: dict[str, int] = {}
        for output, stage, rows in staged:
            if stage is not None:
                self._swap(stage, output.name, kinds[output.name])
            elif kinds[output.name] is None and self._audit is not None:
                self._audit.later(lambda output=output: self._create_empty(output))
            elif kinds[output.name] is None:
                self._create_empty(output)
            written[output.name] = rows
        return written

    # -- reads ------------------------------------------------------------------------------

    def read_arrow(self, relation: str) -> Any:
        df = self.session().table(quote(relation))
        rows = int(df.count())
        if rows > self.settings.python_max_rows:
            raise ModelError(
                f"input '{relation}' has {rows:,} rows, more than python_max_rows "
                f"({self.settings.python_max_rows:,}) of the Spark target: aggregate it in SQL "
                "first (cells, not rows, travel to Python), or raise python_max_rows in profiles.yml"
            )
        return df.toArrow()

    def read_frame(self, relation: str) -> pd.DataFrame:
        return self.read_arrow(relation).to_pandas()
