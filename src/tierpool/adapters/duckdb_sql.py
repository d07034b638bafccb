"""DuckDB statements the adapter is made of: connect, transactions, replace, append, write a frame.

Each function takes an open connection; the write helpers expect to run inside
:func:`transaction` so a failure rolls back to the previous relation.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb

from tierpool.adapters.base import (
    UNKNOWN,
    FrameOutput,
    bad_cast_error,
    check_output_columns,
    frame_shape,
    strip_sql,
)
from tierpool.errors import DatabaseError

if TYPE_CHECKING:
    from tierpool.core.nodes import Column

Connection = duckdb.DuckDBPyConnection

# Connections to one file in one process share the database instance, which the first
# connect creates and the last close destroys: parallel build threads open and close
# theirs under this lock, or one may get an instance another is still setting up
# (DuckDB then reports "Table Function with name pandas_scan does not exist").
OPEN_CLOSE = threading.RLock()

_LOCK_RE = re.compile(r"Could not set lock on file \"(?P<path>[^\"]+)\"")
_PID_RE = re.compile(r"\(PID (?P<pid>\d+)\)")


def quote(name: str) -> str:
    """Quote an identifier for DuckDB."""
    return '"' + name.replace('"', '""') + '"'


def sql_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _lock_error(path: Path, exc: Exception) -> DatabaseError:
    text = str(exc)
    pid = _PID_RE.search(text)
    holder = f" by process {pid.group('pid')}" if pid else " by another process"
    return DatabaseError(
        f"database {path} is locked{holder} (e.g. a DuckDB CLI or another tierpool command). "
        "Close that connection or wait for it to finish, then retry."
    )


def connect(
    path: Path, read_only: bool = False, wait_s: float = 0.0, config: dict[str, Any] | None = None
) -> Connection:
    """Open the warehouse file, turning DuckDB's lock conflicts into a clear DatabaseError.

    Args:
        path: The DuckDB database file.
        read_only: Open read-only (queries); the file must then exist.
        wait_s: Keep retrying for this many seconds while another process holds the
            file: a build reopening the database after a fit waits for ad-hoc readers.
        config: DuckDB settings applied at open (read_only.duckdb_config for queries).

    Raises:
        DatabaseError: The file is missing (read-only) or locked by another process.
    """
    path = Path(path)
    if read_only and not path.exists():
        raise DatabaseError(f"no warehouse at {path}: run `tierpool build` first")
    if not read_only:
        path.parent.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + wait_s
    delay = 0.05
    while True:
        try:
            with OPEN_CLOSE:
                return duckdb.connect(str(path), read_only=read_only, config=config or {})
        except duckdb.IOException as exc:
            if not _LOCK_RE.search(str(exc)):
                raise DatabaseError(f"cannot open database {path}: {exc}") from exc
            if time.monotonic() >= deadline:
                raise _lock_error(path, exc) from exc
            time.sleep(delay)
            delay = min(delay * 2, 1.0)


@contextmanager
def transaction(con: Connection) -> Iterator[Connection]:
    """BEGIN ... COMMIT, rolling back on any exception so nothing half-written stays."""
    con.execute("BEGIN TRANSACTION")
    try:
        yield con
    except BaseException:
        con.execute("ROLLBACK")
        raise
    con.execute("COMMIT")


_KINDS_SQL = (
    "select lower(table_name), 'table' from duckdb_tables() where schema_name = 'main'"
    " and not temporary union all select lower(view_name), 'view' from duckdb_views()"
    " where schema_name = 'main' and not internal and not temporary"
)


def relation_kinds(con: Connection) -> dict[str, str]:
    """Every relation in the main schema (lower-case name -> "table" | "view"), in one query.

    The runner reads this once per build instead of asking per node: catalog
    queries cost milliseconds each, which adds up over many small models.
    """
    return dict(con.execute(_KINDS_SQL).fetchall())


def _drop_other_kind(con: Connection, name: str, kind: str, existing: str | None) -> None:
    if existing == UNKNOWN:
        existing = relation_kinds(con).get(name.lower())
    if existing and existing != kind:
        con.execute(f"DROP {existing.upper()} {quote(name)}")


def replace_relation(
    con: Connection, name: str, select_sql: str, kind: str, existing: str | None = UNKNOWN
) -> int | None:
    """CREATE OR REPLACE a view or table from a SELECT; call inside :func:`transaction`.

    Returns:
        The table's row count, or None for a view (counting would run the view).
    """
    _drop_other_kind(con, name, kind, existing)
    created = con.execute(
        f"CREATE OR REPLACE {kind.upper()} {quote(name)} AS\n{strip_sql(select_sql)}\n"
    ).fetchall()
    if kind != "table":
        return None
    # CREATE TABLE AS reports the rows it inserted; count only if it did not.
    return int(created[0][0]) if created and created[0] else count_rows(con, name)


def append_rows(
    con: Connection, name: str, select_sql: str, unique_key: Sequence[str] = (),
    existing: str | None = UNKNOWN,
) -> int:
    """Add the SELECT's rows to a kept table, first deleting rows with the same unique_key.

    Call inside :func:`transaction` so the delete and insert commit together.
    """
    if existing == UNKNOWN:
        existing = relation_kinds(con).get(name.lower())
    _drop_other_kind(con, name, "table", existing)
    if existing != "table":
        con.execute(f"CREATE TABLE {quote(name)} AS\n{strip_sql(select_sql)}\n")
        return count_rows(con, name)
    staged = "__tierpool_new_rows"
    con.execute(f"CREATE OR REPLACE TEMP TABLE {staged} AS\n{strip_sql(select_sql)}\n")
    _add_new_columns(con, name, staged)
    if unique_key:
        match = " AND ".join(
            f"{quote(name)}.{quote(k)} IS NOT DISTINCT FROM {staged}.{quote(k)}" for k in unique_key
        )
        con.execute(f"DELETE FROM {quote(name)} USING {staged} WHERE {match}")
    con.execute(f"INSERT INTO {quote(name)} BY NAME SELECT * FROM {staged}")
    inserted = count_rows(con, staged)
    con.execute(f"DROP TABLE {staged}")
    return inserted


def _add_new_columns(con: Connection, name: str, staged: str) -> None:
    """Columns the new rows have and the kept table lacks are added to it (NULL in the old rows),
    as dbt's ``on_schema_change: append_new_columns``: a new version of a model that appends one
    more column does not fail on the history its earlier versions wrote."""
    def columns(relation: str) -> dict[str, str]:
        rows = con.execute(f"DESCRIBE {quote(relation)}").fetchall()
        return {str(r[0]): str(r[1]) for r in rows}

    have = {c.lower() for c in columns(name)}
    for column, type_ in columns(staged).items():
        if column.lower() not in have:
            con.execute(f"ALTER TABLE {quote(name)} ADD COLUMN {quote(column)} {type_}")


# Alias of a relation's row in digest queries: hash(<alias>) hashes the whole row as a struct.
_ROW = "__tierpool_row"


def relation_digests(con: Connection, relations: Sequence[str]) -> dict[str, str]:
    """Row count and sum of row hashes of each relation, in one query (order-independent,
    duplicates counted; ``hash`` is DuckDB's, stable within a DuckDB version)."""
    if not relations:
        return {}
    union = "\nUNION ALL\n".join(
        f"SELECT {i} AS i, count(*)::VARCHAR || ':' || coalesce(sum(hash({_ROW}))::VARCHAR, '') "
        f"FROM {quote(rel)} AS {_ROW}"
        for i, rel in enumerate(relations)
    )
    got = dict(con.execute(union).fetchall())
    return {rel: str(got[i]) for i, rel in enumerate(relations)}


def high_water_mark(con: Connection, relation: str, column: str) -> str | None:
    """``max(column)`` as ``CAST('<text>' AS <type>)``: DuckDB prints every type it casts
    back exactly (timestamps to the microsecond, doubles in shortest round-trip form)."""
    ident = quote(column)
    text, type_name = con.execute(
        f"SELECT max({ident})::VARCHAR, typeof(max({ident})) FROM {quote(relation)}"
    ).fetchall()[0]
    if text is None:
        return None
    return f"CAST({sql_literal(str(text))} AS {type_name})"


def count_rows(con: Connection, relation: str) -> int:
    """Row count of a relation."""
    return int(con.execute(f"SELECT count(*) FROM {quote(relation)}").fetchall()[0][0])


def detach(data: Any) -> Any:
    """Detach returned data from its DuckDB connection (relations -> Arrow)."""
    if isinstance(data, duckdb.DuckDBPyRelation):
        return data.to_arrow_table()
    return data


def _cast_select(view: str, declared: Sequence[Column]) -> str:
    parts = []
    for col in declared:
        ident = quote(col.name)
        parts.append(f"CAST({ident} AS {col.type}) AS {ident}" if col.type else ident)
    return f"SELECT {', '.join(parts)} FROM {view}"


def _find_bad_cast(con: Connection, output: str, view: str, declared: Sequence[Column]) -> None:
    for col in declared:
        if not col.type:
            continue
        ident = quote(col.name)
        bad = con.execute(
            f"SELECT {ident}::VARCHAR FROM {view} WHERE {ident} IS NOT NULL"
            f" AND TRY_CAST({ident} AS {col.type}) IS NULL LIMIT 1"
        ).fetchall()
        if bad:
            raise bad_cast_error(output, col.name, bad[0][0], col.type)


def write_output(
    con: Connection, output: FrameOutput, existing: str | None = UNKNOWN
) -> int:
    """Write one Python-model output; call inside :func:`transaction`.

    The data is checked against the declared columns (none missing, none extra) and
    cast to the declared types. An empty result for an ``append`` output adds nothing
    (creating the table with the declared columns if it does not exist yet).
    """
    name, columns = output.name, output.columns
    data = detach(output.data)
    got, n_rows = frame_shape(data)
    if existing == UNKNOWN:
        existing = relation_kinds(con).get(name.lower())
    if output.materialized == "append" and n_rows == 0:
        if existing is None and columns and all(c.type for c in columns):
            cols = ", ".join(f"{quote(c.name)} {c.type}" for c in columns)
            con.execute(f"CREATE TABLE {quote(name)} ({cols})")
        return 0
    if columns:
        check_output_columns(name, got, columns)
    view = "__tierpool_output"
    con.register(view, data)
    try:
        if columns:
            # Check casts first: after a failed statement DuckDB's transaction is
            # aborted, so the offending column could no longer be looked up.
            _find_bad_cast(con, name, view, columns)
            select = _cast_select(view, columns)
        else:
            select = f"SELECT * FROM {view}"
        if output.materialized == "append":
            return append_rows(con, name, select, output.unique_key, existing)
        return replace_relation(con, name, select, "table", existing) or 0
    finally:
        con.unregister(view)
