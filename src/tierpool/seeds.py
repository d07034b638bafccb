"""Seeds: CSV files loaded with DuckDB's CSV reader, all rows or nothing.

Declared column types (properties yml) are passed to ``read_csv(types=...)``;
other columns are auto-detected. ``store_rejects`` collects every row DuckDB could
not read; if there is any, the seed fails with file, line, column and value and
the transaction rolls back, so the previous table stays exactly as it was. No
row is ever silently dropped.
"""

from __future__ import annotations

import re
from pathlib import Path

from tierpool import engine
from tierpool.errors import ModelError
from tierpool.nodes import Node

_REJECTS = "__tierpool_rejects"
_SCANS = "__tierpool_reject_scans"
_CAST_RE = re.compile(r"Could not convert string \"(?P<value>.*)\" to '(?P<type>[^']+)'", re.S)


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def seed_select(path: Path, types: dict[str, str]) -> str:
    """The SELECT that reads one CSV, recording unreadable rows instead of failing early."""
    options = [
        "header = true",
        "store_rejects = true",
        f"rejects_table = {_literal(_REJECTS)}",
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


def display_path(path: Path, root: Path) -> str:
    """``path`` relative to the project root when possible (for messages)."""
    try:
        return str(Path(path).resolve().relative_to(Path(root).resolve()))
    except ValueError:
        return str(path)


def load_seed(
    con: engine.Connection, seed: Node, root: Path, existing: str | None = engine.UNKNOWN
) -> int:
    """Replace the seed's table with the CSV's rows in one transaction.

    Args:
        con: Open read-write connection.
        seed: The Seed node (``path`` to the CSV, ``columns`` with optional types).
        root: Project root, for relative paths and messages.
        existing: Current kind of the seed's relation, if known (see engine).

    Returns:
        Rows loaded.

    Raises:
        ModelError: A row could not be read (message: ``file:line: column c: ...``) or
            the file is unreadable; nothing is changed in the warehouse.
    """
    path = seed.path if seed.path and Path(seed.path).is_absolute() else Path(root) / str(seed.path)
    shown = display_path(path, root)
    types = {c.name: c.type for c in seed.columns if c.type}
    try:
        with engine.transaction(con):
            rows = engine.replace_relation(
                con, seed.name, seed_select(path, types), "table", existing
            ) or 0
            rejects = con.execute(
                f"SELECT line, column_name, error_type, csv_line, error_message FROM {_REJECTS}"
                " ORDER BY line"
            ).fetchall()
            con.execute(f"DROP TABLE IF EXISTS {_REJECTS}; DROP TABLE IF EXISTS {_SCANS}")
            if rejects:
                more = f" (and {len(rejects) - 1} more bad row(s))" if len(rejects) > 1 else ""
                raise ModelError(_describe_reject(shown, rejects[0]) + more)
    except ModelError:
        raise
    except Exception as exc:  # duckdb errors: unreadable file, bad declared type, ...
        raise ModelError(f"{shown}: {str(exc).splitlines()[0]}") from exc
    return rows
