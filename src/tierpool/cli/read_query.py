"""`tierpool query` / `tierpool show`: one checked read, waiting a little for a busy warehouse."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from tierpool.errors import DatabaseError, SqlError, TierpoolError

WAIT_ENV = "TIERPOOL_QUERY_WAIT_S"
DEFAULT_WAIT_S = 5.0


def wait_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``--wait SECONDS`` (env TIERPOOL_QUERY_WAIT_S, default 5)."""
    return click.option(
        "--wait", "wait_s", type=click.FloatRange(min=0), default=DEFAULT_WAIT_S,
        envvar=WAIT_ENV, show_default=True, show_envvar=True, metavar="SECONDS",
        help="How long to retry while a build holds the database (DuckDB), then fail.",
    )(fn)


def fetch(reader: Any, sql: str, wait_s: float = 0.0) -> tuple[list[str], list[tuple]]:
    """Columns and rows of one read-only statement; every failure is a TierpoolError."""
    try:
        result = reader.query_read_only(sql, wait_s=wait_s)
    except DatabaseError as exc:
        if "is locked" not in str(exc):
            raise
        raise DatabaseError(f"{exc} Waited {wait_s:g} s; `--wait SECONDS` (or {WAIT_ENV}) "
                            "sets how long to wait.") from exc
    except TierpoolError:
        raise
    except Exception as exc:
        raise SqlError(str(exc).splitlines()[0] if str(exc) else type(exc).__name__) from exc
    return result.columns, result.rows
