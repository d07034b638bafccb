"""DuckDB: the embedded default engine, one local database file.

Every write replaces a relation inside one transaction (DuckDB's DDL is
transactional), so a failing statement rolls back and leaves the previous relation
exactly as it was; all outputs of a Python model are written in one transaction.
DuckDB allows one writing process per file: the build's connection is released
while a Python model runs (:meth:`Adapter.release`) so others can read meanwhile.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb

from tierpool.adapters import csv_seed
from tierpool.adapters.base import UNKNOWN, Adapter, FrameOutput, QueryResult, Schema, strip_sql
from tierpool.adapters.duckdb_sql import (
    OPEN_CLOSE,
    Connection,
    sql_literal,
    append_rows,
    connect,
    high_water_mark,
    quote,
    relation_digests,
    relation_kinds,
    replace_relation,
    transaction,
    write_output,
)
from tierpool.errors import ConfigError, ModelError

if TYPE_CHECKING:
    import pandas as pd

    from tierpool.core.config import Target
    from tierpool.core.nodes import Node


class DuckDBAdapter(Adapter):
    """A DuckDB database file (``type: duckdb``)."""

    type = "duckdb"
    dialect = "duckdb"

    def __init__(self, target: Target, root: Path, read_only: bool = False) -> None:
        super().__init__(target, root)
        self.path = Path(target.path)
        self.read_only = read_only
        self.con: Connection | None = None
        self._scratch: Connection | None = None
        self._auditing = False  # inside audited(): writes join its transaction

    # -- connection -------------------------------------------------------------------------

    def open(self, wait_s: float = 0.0) -> None:
        if self.con is not None:
            return
        con = connect(self.path, read_only=self.read_only, wait_s=wait_s)
        settings = self.target.settings
        statements = [f"SET file_search_path = {sql_literal(str(self.root))}"]
        if settings is not None and not self.read_only:
            if settings.memory_limit:
                statements.append(f"SET memory_limit = {sql_literal(settings.memory_limit)}")
            if settings.temp_directory:
                Path(settings.temp_directory).mkdir(parents=True, exist_ok=True)
                statements.append(f"SET temp_directory = {sql_literal(settings.temp_directory)}")
        for statement in statements:
            con.execute(statement)
        if settings is not None and not self.read_only:
            self._apply_settings(con, settings.settings)
        self.con = con

    def _apply_settings(self, con: Connection, settings: dict[str, Any]) -> None:
        """profiles.yml ``settings``: each becomes ``SET key = value`` on the build's connections."""
        for key, value in settings.items():
            literal = (str(value).lower() if isinstance(value, bool)
                       else repr(value) if isinstance(value, (int, float)) else sql_literal(str(value)))
            try:
                con.execute(f"SET {key} = {literal}")
            except Exception as exc:
                with OPEN_CLOSE:
                    con.close()
                raise ConfigError(
                    f"profiles.yml, output '{self.target.name}': DuckDB setting {key} = {value!r} "
                    f"was refused: {str(exc).splitlines()[0]}. Fix or remove it under 'settings:'"
                ) from exc

    def close(self) -> None:
        with OPEN_CLOSE:
            for con in (self.con, self._scratch):
                if con is not None:
                    con.close()
        self.con = self._scratch = None

    def connection(self) -> Connection:
        """The open DuckDB connection (opened on first use)."""
        self.open()
        assert self.con is not None
        return self.con

    # -- SQL --------------------------------------------------------------------------------

    def execute(self, sql: str) -> None:
        self.connection().execute(sql).fetchall()

    def fetch(self, sql: str, limit: int | None = None) -> QueryResult:
        con = self.connection()
        text = strip_sql(sql)
        if limit is not None:
            text = f"SELECT * FROM (\n{text}\n) LIMIT {int(limit)}"
        rel = con.sql(text)
        if rel is None:
            return QueryResult([], [])
        return QueryResult(list(rel.columns), rel.fetchall())

    def count(self, sql: str) -> int:
        con = self.connection()
        return int(con.execute(f"SELECT count(*) FROM (\n{strip_sql(sql)}\n)").fetchall()[0][0])

    def frame(self, sql: str) -> pd.DataFrame:
        return self.connection().execute(strip_sql(sql)).df()

    def query_read_only(self, sql: str, wait_s: float = 0.0) -> QueryResult:
        from tierpool.adapters.read_only import duckdb_query

        return QueryResult(*duckdb_query(self.path, self.root, sql, wait_s))

    # -- catalog ----------------------------------------------------------------------------

    def relation_kinds(self) -> dict[str, str]:
        return relation_kinds(self.connection())

    def _scratch_con(self) -> Connection:
        # Compile checks describe sources in a throwaway in-memory database: they must
        # work before the warehouse exists and while a build holds it.
        if self._scratch is None:
            self._scratch = duckdb.connect()
            self._scratch.execute(f"SET file_search_path = {sql_literal(str(self.root))}")
        return self._scratch

    def describe(self, relation_sql: str) -> Schema | None:
        try:
            rows = self._scratch_con().execute(f"describe select * from {relation_sql}").fetchall()
        except duckdb.Error:
            return None
        return {str(row[0]).lower(): str(row[1]) for row in rows}

    def describe_seed(self, path: Path, declared: Schema) -> Schema | None:
        return csv_seed.describe(self._scratch_con(), path, declared)

    # -- writes -----------------------------------------------------------------------------

    @contextmanager
    def audited(self) -> Iterator[dict[str, str]]:
        # One transaction: the block's tests read the new relations under their own
        # names, no other connection sees them before COMMIT, and ROLLBACK restores all.
        con = self.connection()
        con.execute("BEGIN TRANSACTION")
        self._auditing = True
        try:
            yield {}
        except BaseException:
            self._auditing = False
            con.execute("ROLLBACK")
            raise
        self._auditing = False
        con.execute("COMMIT")

    @contextmanager
    def _transaction(self) -> Iterator[Connection]:
        con = self.connection()
        if self._auditing:
            yield con
            return
        with transaction(con):
            yield con

    def create_view(self, name: str, select_sql: str, existing: str | None = UNKNOWN) -> None:
        with self._transaction() as con:
            replace_relation(con, name, select_sql, "view", existing)

    def build_table(self, name: str, select_sql: str, existing: str | None = UNKNOWN) -> int:
        with self._transaction() as con:
            return replace_relation(con, name, select_sql, "table", existing) or 0

    def append(
        self, name: str, select_sql: str, unique_key: Sequence[str] = (),
        existing: str | None = UNKNOWN,
    ) -> int:
        with self._transaction() as con:
            return append_rows(con, name, select_sql, unique_key, existing)

    def load_seed(self, seed: Node, existing: str | None = UNKNOWN) -> int:
        con = self.connection()
        path, shown, declared = csv_seed.locate(seed, self.root)
        try:
            with self._transaction():
                rows = replace_relation(
                    con, seed.name, csv_seed.seed_select(path, declared, shown), "table", existing
                ) or 0
                csv_seed.raise_rejects(con, shown)
        except ModelError:
            raise
        except Exception as exc:  # duckdb errors: unreadable file, bad declared type, ...
            raise ModelError(f"{shown}: {str(exc).splitlines()[0]}") from exc
        return rows

    def write_frames(
        self, outputs: Sequence[FrameOutput], existing: dict[str, str | None] | None = None
    ) -> dict[str, int]:
        known = existing or {}
        written: dict[str, int] = {}
        with self._transaction() as con:
            for output in outputs:
                written[output.name] = write_output(con, output, known.get(output.name, UNKNOWN))
        return written

    # -- incremental models -----------------------------------------------------------------

    def query_schema(self, select_sql: str) -> Schema:
        rows = self.connection().execute(f"DESCRIBE {strip_sql(select_sql)}").fetchall()
        return {str(r[0]).lower(): str(r[1]) for r in rows}

    def relation_digests(self, relations: Sequence[str]) -> dict[str, str]:
        return relation_digests(self.connection(), relations)

    def high_water_mark(self, relation: str, column: str) -> str | None:
        return high_water_mark(self.connection(), relation, column)

    # -- reads ------------------------------------------------------------------------------

    def read_frame(self, relation: str) -> pd.DataFrame:
        return self.connection().sql(f"SELECT * FROM {quote(relation)}").df()

    def read_arrow(self, relation: str) -> Any:
        return self.connection().sql(f"SELECT * FROM {quote(relation)}").to_arrow_table()
