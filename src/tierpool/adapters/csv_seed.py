"""Seed CSVs, read by DuckDB's CSV reader on every engine: all rows or nothing.

Declared column types (properties yml) are passed to ``read_csv(types=...)``; other
columns are auto-detected. ``store_rejects`` collects every row DuckDB could not read;
if there is any, the seed fails with file, line, column and value and nothing is
changed. No row is ever silently dropped.

Seeds are small files in the project, read where tierpool runs; other engines get the
rows as Arrow (as dbt loads seeds from the client), so a seed has the same types and
the same error messages on every engine.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb

from tierpool.errors import ModelError

if TYPE_CHECKING:
    from tierpool.core.nodes import Node

REJECTS = "__tierpool_rejects"
_SCANS = "__tierpool_reject_scans"
_CAST_RE = re.compile(r"Could not convert string \"(?P<value>.*)\" to '(?P<type>[^']+)'", re.S)


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def display_path(path: Path, root: Path) -> str:
    """``path`` relative to the project root when possible (for messages)."""
    try:
        return str(Path(path).resolve().relative_to(Path(root).resolve()))
    except ValueError:
        return str(path)


def locate(seed: Node, root: Path) -> tuple[Path, str, dict[str, str]]:
    """The seed's absolute CSV path, its path as shown in messages, and its declared types."""
    path = seed.path if seed.path and Path(seed.path).is_absolute() else Path(root) / str(seed.path)
    types = {c.name: c.type for c in seed.columns if c.type}
    return Path(path), display_path(path, root), types


def seed_select(path: Path, types: dict[str, str]) -> str:
    """The SELECT that reads one CSV, recording unreadable rows instead of failing early."""
    options = [
        "header = true",
        "store_rejects = true",
        f"rejects_table = {_literal(REJECTS)}",
        f"rejects_scan = {_literal(_SCANS)}",
    ]
    if types:
        pairs = ", ".join(f"{_literal(k)}: {_literal(v)}" for k, v in types.items())
        options.append(f"types = {{{pairs}}}")
    return f"SELECT * FROM read_csv({_literal(str(path))}, {', '.join(options)})"


def _describe_reject(shown: str, row: tuple) -> str:
    line, column, error_type, csv_line, message = row
    cast = _CAST_RE.search(message or "")
    if cast:
        detail = f"could not convert '{cast['value']}' to {cast['type']}"
    else:
        detail = f"{(error_type or 'error').lower()}: {(message or '').strip()} (line: {csv_line!r})"
    where = f"column {column}: " if column else ""
    return f"{shown}:{line}: {where}{detail}"


def raise_rejects(con: duckdb.DuckDBPyConnection, shown: str) -> None:
    """After a seed_select: raise ModelError for the first unreadable row, if any."""
    rejects = con.execute(
        f"SELECT line, column_name, error_type, csv_line, error_message FROM {REJECTS}"
        " ORDER BY line"
    ).fetchall()
    con.execute(f"DROP TABLE IF EXISTS {REJECTS}; DROP TABLE IF EXISTS {_SCANS}")
    if rejects:
        more = f" (and {len(rejects) - 1} more bad row(s))" if len(rejects) > 1 else ""
        raise ModelError(_describe_reject(shown, rejects[0]) + more)


def read_arrow(path: Path, shown: str, types: dict[str, str]) -> Any:
    """The whole CSV as a pyarrow Table, or ModelError naming the first bad row."""
    con = duckdb.connect()
    try:
        table = con.sql(seed_select(path, types)).to_arrow_table()
        raise_rejects(con, shown)
        return table
    except ModelError:
        raise
    except Exception as exc:  # unreadable file, bad declared type, ...
        raise ModelError(f"{shown}: {str(exc).splitlines()[0]}") from exc
    finally:
        con.close()


def describe(con: duckdb.DuckDBPyConnection, path: Path, declared: dict[str, str]) -> dict[str, str] | None:
    """Columns and types the CSV will load with (sniffed, declared types win)."""
    try:
        rows = con.execute(f"describe select * from read_csv({_literal(str(path))})").fetchall()
    except duckdb.Error:
        return None
    sniffed = {str(row[0]).lower(): str(row[1]) for row in rows}
    return {col: declared.get(col, dtype) for col, dtype in sniffed.items()}
