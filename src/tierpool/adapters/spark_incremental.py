"""Incremental writes on Spark: append with ``unique_key``, merge, and what state needs.

A mixin of :class:`tierpool.adapters.spark_adapter.SparkAdapter`: it builds on the
adapter's staging primitives (``_stage``, ``_swap``, ``_kind``, the audit block) and its
SQL helpers. Parquet files cannot delete rows, so replacing rows rewrites the table under
its staging name; rows with new keys only are inserted as new files.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from tierpool.adapters.base import UNKNOWN, Schema
from tierpool.adapters.spark_audit import VIEW_STAGE_PREFIX
from tierpool.adapters.spark_session import friendly_error, quote
from tierpool.errors import ModelError


class SparkIncrementalWrites:
    """append / merge / schema, digests and high-water marks of the Spark adapter."""

    def append(
        self, name: str, select_sql: str, unique_key: Sequence[str] = (),
        existing: str | None = UNKNOWN,
    ) -> int:
        kind = self._kind(name, existing)
        if kind != "table":
            return self.build_table(name, select_sql, kind)
        stage, inserted = self._merged_stage(name, self.translate(select_sql, name), unique_key)
        self._swap(stage, name, "table")
        return inserted

    def merge(
        self, name: str, select_sql: str, unique_key: Sequence[str], existing: str | None = UNKNOWN,
    ) -> int:
        """An incremental model's new rows. When none of their keys is in the table (the usual
        daily load), they are added as new files (``INSERT INTO``) instead of rewriting the
        table; audited, the tests read ``table UNION ALL new rows`` under a staged view, and the
        insert runs on publish. A new row replacing an old one falls back to :meth:`append`'s
        staged rewrite (Parquet files cannot delete rows)."""
        kind = self._kind(name, existing)
        if kind != "table":
            return self.build_table(name, select_sql, kind)
        new = self._stage(f"{name}__new", self.translate(select_sql, name))
        try:
            rows = int(self.session().table(quote(new)).count())
            columns = [f.name for f in self.session().table(quote(name)).schema.fields]
            same = [f.name.lower() for f in self.session().table(quote(new)).schema.fields] == \
                [c.lower() for c in columns]
            match = " AND ".join(f"o.{quote(k)} <=> n.{quote(k)}" for k in unique_key)
            replaces = bool(unique_key) and rows > 0 and bool(self._sql(
                f"SELECT 1 FROM {quote(new)} AS n LEFT SEMI JOIN {quote(name)} AS o ON {match} LIMIT 1"
            ).collect())
        except Exception:
            self.execute(f"DROP TABLE IF EXISTS {quote(new)}")
            raise
        if rows == 0 or replaces or not same:
            if not rows:
                self.execute(f"DROP TABLE IF EXISTS {quote(new)}")
                return 0
            stage, inserted = self._merged_stage(name, f"SELECT * FROM {quote(new)}", unique_key, new)
            self._swap(stage, name, "table")
            return inserted
        listed = ", ".join(quote(c) for c in columns)

        def insert() -> None:
            try:
                self.execute(f"INSERT INTO {quote(name)} SELECT {listed} FROM {quote(new)}")
            finally:
                self.execute(f"DROP TABLE IF EXISTS {quote(new)}")

        if self._audit is None:
            insert()
            return rows
        view = VIEW_STAGE_PREFIX + name
        self.execute(f"CREATE OR REPLACE VIEW {quote(view)} AS SELECT {listed} FROM {quote(name)} "
                     f"UNION ALL SELECT {listed} FROM {quote(new)}")

        def publish() -> None:
            self.execute(f"DROP VIEW IF EXISTS {quote(view)}")
            insert()

        self._audit.stage(name, view, "view", publish)
        self._audit.staged.append((new, "table"))  # dropped too if the audit fails
        return rows

    def _merged_stage(
        self, name: str, new_rows_sql: str, unique_key: Sequence[str], new: str | None = None
    ) -> tuple[str, int]:
        """Stage old rows without a key among the new rows, plus the new rows (by name).

        ``new``: the new rows already staged as that table (dropped here).

        Returns:
            (the staged table, rows inserted).
        """
        new = new or self._stage(f"{name}__new", new_rows_sql)
        try:
            old_fields = {f.name.lower(): f for f in self.session().table(quote(name)).schema.fields}
            new_fields = {f.name.lower(): f for f in self.session().table(quote(new)).schema.fields}

            # the union of both column lists (old first): a column only one side has is NULL on the
            # other, as dbt's on_schema_change: append_new_columns
            union = {**old_fields, **{c: f for c, f in new_fields.items() if c not in old_fields}}

            def side(fields: dict[str, Any], alias: str) -> str:
                return ", ".join(f"{alias}.{quote(f.name)}" if c in fields
                                 else f"CAST(NULL AS {f.dataType.simpleString()}) AS {quote(f.name)}"
                                 for c, f in union.items())

            kept = f"SELECT {side(old_fields, 'o')} FROM {quote(name)} AS o"
            if unique_key:
                match = " AND ".join(f"o.{quote(k)} <=> n.{quote(k)}" for k in unique_key)
                kept += f" LEFT ANTI JOIN {quote(new)} AS n ON {match}"
            stage = self._stage(name, f"{kept}\nUNION ALL\nSELECT {side(new_fields, 'n')} FROM {quote(new)} AS n")
            return stage, int(self.session().table(quote(new)).count())
        finally:
            self.execute(f"DROP TABLE IF EXISTS {quote(new)}")

    def query_schema(self, select_sql: str) -> Schema:
        try:  # analysed, not run
            fields = self._dataframe(select_sql).schema.fields
        except ModelError:
            raise
        except Exception as exc:
            raise ModelError(friendly_error(exc)) from exc
        return {f.name.lower(): f.dataType.simpleString() for f in fields}

    def relation_digests(self, relations: Sequence[str]) -> dict[str, str]:
        if not relations:
            return {}
        # Row count and the sum of the rows' 64-bit hashes (as a decimal: no overflow).
        union = "\nUNION ALL\n".join(
            f"SELECT {i} AS i, count(*) AS n, "
            f"CAST(sum(CAST(xxhash64(*) AS DECIMAL(38, 0))) AS STRING) AS h FROM {quote(rel)}"
            for i, rel in enumerate(relations)
        )
        try:
            got = {int(r[0]): f"{r[1]}:{r[2] or ''}" for r in self._sql(union).collect()}
        except ModelError:
            raise
        except Exception as exc:
            raise ModelError(friendly_error(exc)) from exc
        return {rel: got[i] for i, rel in enumerate(relations)}

    def high_water_mark(self, relation: str, column: str) -> str | None:
        ident = quote(column)
        try:
            text, type_name = self._sql(
                f"SELECT CAST(max({ident}) AS STRING), typeof(max({ident})) FROM {quote(relation)}"
            ).collect()[0]
        except ModelError:
            raise
        except Exception as exc:
            raise ModelError(friendly_error(exc)) from exc
        if text is None:
            return None
        project_type = _project_type(str(type_name))
        if project_type is None:
            raise ModelError(f"{relation}: event_time column {column} has type {type_name}; "
                             "use a timestamp, date, number or string column")
        if project_type.startswith(("DECIMAL", "BIGINT", "INTEGER", "SMALLINT", "TINYINT")):
            return f"CAST({text} AS {project_type})"  # a number: a cast from text would round
        return "CAST('" + str(text).replace("'", "''") + f"' AS {project_type})"


_PROJECT_TYPES = {  # Spark type name -> the project dialect's (DuckDB) name of the same type
    "timestamp": "TIMESTAMP", "timestamp_ntz": "TIMESTAMP", "date": "DATE", "bigint": "BIGINT",
    "int": "INTEGER", "smallint": "SMALLINT", "tinyint": "TINYINT", "double": "DOUBLE",
    "float": "FLOAT", "string": "VARCHAR",
}


def _project_type(spark_type: str) -> str | None:
    """A Spark type name as the project dialect writes it (None: not a comparable scalar).

    >>> _project_type("decimal(12,2)"), _project_type("timestamp"), _project_type("map<string,int>")
    ('DECIMAL(12,2)', 'TIMESTAMP', None)
    """
    name = spark_type.strip().lower()
    if re.fullmatch(r"decimal\(\d+,\s*\d+\)", name):
        return name.upper()
    return _PROJECT_TYPES.get(name)
