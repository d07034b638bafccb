"""Seed CSVs, read by DuckDB's CSV reader on every engine: all rows or nothing.

Seeds are RFC 4180 CSV with a pinned dialect, never sniffed: delimiter ``,``, quote
``"``, a literal quote doubled (``""``), a header line, records ended by LF or CRLF (both
may occur in one file, as when rows are appended by Python's csv module), UTF-8 (a BOM
is allowed). Before DuckDB reads a file, tierpool checks it in full: UTF-8, quotes,
field count of every record, and the header against the columns declared in the
properties yml (each declared column must be in the header, in any order, matched
case-insensitively; a header column the yml does not declare loads with an inferred
type). Any problem raises ModelError with file, line and what to do, before anything
is written.

DuckDB then reads the file with the same dialect, every declared type passed to it
(undeclared ones are inferred from the values); ``store_rejects`` collects rows whose
value does not cast to its type, and any such row fails the seed with file, line,
column and value. No row is ever silently dropped. A file with CRLF record ends is
read from a temporary copy whose record ends are LF (values are copied byte for byte),
because DuckDB's strict parser takes one kind of line ending per file.

Seeds are small files in the project, read where tierpool runs; other engines get the
rows as Arrow (as dbt loads seeds from the client), so a seed has the same types and
the same error messages on every engine.
"""

from __future__ import annotations

import atexit
import difflib
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb

from tierpool.errors import ModelError

if TYPE_CHECKING:
    from tierpool.core.nodes import Node

REJECTS = "__tierpool_rejects"
_SCANS = "__tierpool_reject_scans"
_CAST_RE = re.compile(r"Could not convert string \"(?P<value>.*)\" to '(?P<type>[^']+)'", re.S)
_QUOTED = re.compile(r'"([^"]*(?:""[^"]*)*)"')
_PLAIN = re.compile(r'[^,"\r\n]*')
_FIELD = r'(?:"[^"]*(?:""[^"]*)*"|[^,"\r\n]*)'
# A well-formed record and its line ending; anything else goes through _parse_record,
# which says what is wrong (this is only the fast path).
_RECORD = re.compile(rf"({_FIELD}(?:,{_FIELD})*)(\r\n|\n|\Z)")
_QUOTED_ANY = re.compile(r'"[^"]*(?:""[^"]*)*"')
_DIALECT = (
    "header = true, delim = ',', quote = '\"', escape = '\"', new_line = '\\n',"
    " strict_mode = true, null_padding = false, skip = 0, comment = ''"
)
_FIX_QUOTES = 'close the quote, or write a literal " inside a quoted field as ""'
_temp_dir: Path | None = None
_temp_files: list[Path] = []


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def display_path(path: Path, root: Path) -> str:
    """``path`` relative to the project root when possible (for messages)."""
    try:
        return str(Path(path).resolve().relative_to(Path(root).resolve()))
    except ValueError:
        return str(path)


def locate(seed: Node, root: Path) -> tuple[Path, str, dict[str, str | None]]:
    """The seed's absolute CSV path, its path as shown in messages, and its declared columns.

    The dict maps every column declared in the properties yml to its type (None where no
    ``data_type`` is given); an empty dict means the seed declares no columns.
    """
    path = seed.path if seed.path and Path(seed.path).is_absolute() else Path(root) / str(seed.path)
    declared = {c.name: (c.type or None) for c in seed.columns}
    return Path(path), display_path(path, root), declared


# -- checking the file --------------------------------------------------------------------


@dataclass(frozen=True)
class CheckedCsv:
    """A seed file that passed the dialect checks: its header and where DuckDB reads it."""

    header: tuple[str, ...]
    rows: int
    read_path: Path  # the file itself, or a copy with LF record ends


def _decode(data: bytes, shown: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise ModelError(
            f"{shown}:{line}: byte 0x{data[exc.start]:02x} at column {column} is not UTF-8;"
            " seeds are read as UTF-8: save the file as UTF-8 (e.g. 'CSV UTF-8' in a"
            " spreadsheet, or iconv -f latin1 -t utf-8)"
        ) from None


def _parse_record(text: str, pos: int, line: int, shown: str) -> tuple[list[str], str, int, int]:
    """One record from ``pos`` (on ``line``): fields, line ending ("\\n", "\\r\\n" or ""
    at end of file), position after it and the next record's line; ModelError if malformed.
    """
    fields: list[str] = []
    while True:
        if text.startswith('"', pos):
            match = _QUOTED.match(text, pos)
            if match is None:
                raise ModelError(
                    f"{shown}:{line}: unterminated quote: the quoted field that starts on"
                    f" line {line} is never closed (end of file reached); {_FIX_QUOTES}"
                )
            raw = match.group(1)
            fields.append(raw.replace('""', '"'))
            opened, line = line, line + raw.count("\n")
            pos = match.end()
            after = text[pos:pos + 1]
            if after not in (",", "\n", "\r", ""):
                spans = f"closes on line {line}" if line != opened else "closes"
                raise ModelError(
                    f"{shown}:{opened}: malformed quote: the quoted field that starts on line"
                    f" {opened} {spans} and is followed by {after!r} instead of ',' or the"
                    f" end of the line (an unterminated or undoubled quote); {_FIX_QUOTES}"
                )
        else:
            match = _PLAIN.match(text, pos)
            fields.append(match.group())
            pos = match.end()
            if text.startswith('"', pos):
                raise ModelError(
                    f"{shown}:{line}: malformed quote: a '\"' inside an unquoted value"
                    f" (after {fields[-1]!r}); quote the whole value and write the quote"
                    ' as "" (RFC 4180)'
                )
        if text.startswith(",", pos):
            pos += 1
            continue
        if text.startswith("\r\n", pos):
            end = "\r\n"
        elif text.startswith("\n", pos) or pos >= len(text):
            end = text[pos:pos + 1]
        else:  # a lone carriage return
            raise ModelError(
                f"{shown}:{line}: a carriage return (\\r) that does not end the line;"
                " records end with LF or CRLF: remove the stray \\r or quote the value"
            )
        return fields, end, pos + len(end), line + 1


def _did_you_mean(name: str, candidates: list[str]) -> str:
    lowered = {c.lower(): c for c in candidates}
    close = difflib.get_close_matches(name.lower(), sorted(lowered), n=1, cutoff=0.6)
    return f"; did you mean {lowered[close[0]]!r}?" if close else ""


def _check_header(header: list[str], declared: dict[str, Any], shown: str) -> None:
    where = f"{shown}:1: header"
    seen: dict[str, str] = {}
    for i, name in enumerate(header, 1):
        if not name.strip():
            raise ModelError(f"{where}: column {i} has no name; every column needs a name")
        if name.lower() in seen:
            raise ModelError(f"{where}: column {name!r} appears twice; rename or remove one")
        seen[name.lower()] = name
    missing = [name for name in declared if name.lower() not in seen]
    if not missing:
        return
    undeclared = [name for name in header if name.lower() not in {d.lower() for d in declared}]
    name = missing[0]
    hint = _did_you_mean(name, undeclared)
    more = f" (also missing: {', '.join(missing[1:])})" if len(missing) > 1 else ""
    raise ModelError(
        f"{where}: declared column {name!r} is not in the header{hint}{more}; header:"
        f" {', '.join(header)}. Fix the header, or the column's name in the seed's"
        " properties yml"
    )


def check_file(path: Path, shown: str, declared: dict[str, Any] | None = None) -> CheckedCsv:
    """Check a seed CSV against the pinned dialect and its declared columns.

    Returns the header, the number of data rows and the path DuckDB should read.
    Raises ModelError naming file and line at the first problem.
    """
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ModelError(f"{shown}: cannot read the seed file: {exc.strerror or exc}") from None
    text = _decode(data, shown)
    pos = 1 if text.startswith("\ufeff") else 0
    if pos >= len(text):
        raise ModelError(f"{shown}:1: the file is empty; a seed needs a header line")
    header, end, pos, line = _parse_record(text, pos, 1, shown)
    _check_header(header, declared or {}, shown)
    crlf = [pos - 2] if end == "\r\n" else []
    rows = 0
    while pos < len(text):
        first, match = line, _RECORD.match(text, pos)
        if match is not None:
            record, end = match.group(1), match.group(2)
            count = _QUOTED_ANY.sub("", record).count(",") + 1 if record else 0
            pos, line = match.end(), line + record.count("\n") + 1
        else:
            fields, end, pos, line = _parse_record(text, pos, line, shown)
            count = 0 if fields == [""] else len(fields)
        if end == "\r\n":
            crlf.append(pos - 2)
        if count == 0 and len(header) > 1:
            continue  # a blank line (DuckDB skips it too)
        if max(count, 1) != len(header):
            many = count > len(header)
            fix = (
                "quote any value that contains ','" if many
                else "add the missing value(s); an empty field loads as NULL"
            )
            raise ModelError(
                f"{shown}:{first}: too {'many' if many else 'few'} columns: {count} field(s)"
                f" where the header has {len(header)} ({', '.join(header)}); {fix}"
            )
        rows += 1
    read_path = Path(path) if not crlf else _lf_copy(text, crlf, Path(path).name)
    return CheckedCsv(tuple(header), rows, read_path)


def _lf_copy(text: str, crlf_offsets: list[int], name: str) -> Path:
    """A temporary copy of ``text`` with the CRLF record ends at ``crlf_offsets`` made LF."""
    global _temp_dir  # noqa: PLW0603 - one folder per process, removed at exit
    if _temp_dir is None:
        _temp_dir = Path(tempfile.mkdtemp(prefix="tierpool-seeds-"))
        atexit.register(shutil.rmtree, _temp_dir, True)
    parts, start = [], 0
    for offset in crlf_offsets:
        parts.append(text[start:offset])
        start = offset + 1  # drop the CR, keep the LF
    parts.append(text[start:])
    handle, name_ = tempfile.mkstemp(prefix=Path(name).stem + "-", suffix=".csv", dir=_temp_dir)
    with open(handle, "w", encoding="utf-8", newline="") as out:
        out.write("".join(parts))
    _temp_files.append(Path(name_))
    return Path(name_)


def _remove_copies() -> None:
    while _temp_files:
        _temp_files.pop().unlink(missing_ok=True)


# -- reading ------------------------------------------------------------------------------


def _read_options(header: tuple[str, ...], declared: dict[str, Any]) -> list[str]:
    types = {name.lower(): dtype for name, dtype in declared.items() if dtype}
    if all(name.lower() in types for name in header):
        pairs = ", ".join(f"{_literal(n)}: {_literal(types[n.lower()])}" for n in header)
        return [_DIALECT, "auto_detect = false", f"columns = {{{pairs}}}"]
    options = [_DIALECT, f"names = [{', '.join(_literal(n) for n in header)}]"]
    typed = [n for n in header if n.lower() in types]
    if typed:
        pairs = ", ".join(f"{_literal(n)}: {_literal(types[n.lower()])}" for n in typed)
        options.append(f"types = {{{pairs}}}")
    return options


def seed_select(path: Path, declared: dict[str, Any], shown: str | None = None) -> str:
    """The SELECT that reads one checked CSV, recording rows whose values do not cast.

    Raises ModelError (file and line) when the file breaks the dialect or its header
    does not match the declared columns; call raise_rejects after running the SELECT.
    """
    checked = check_file(path, shown or str(path), declared)
    options = [
        *_read_options(checked.header, declared or {}),
        "store_rejects = true",
        f"rejects_table = {_literal(REJECTS)}",
        f"rejects_scan = {_literal(_SCANS)}",
    ]
    return f"SELECT * FROM read_csv({_literal(str(checked.read_path))}, {', '.join(options)})"


def _describe_reject(shown: str, row: tuple) -> str:
    line, column, error_type, csv_line, message = row
    cast = _CAST_RE.search(message or "")
    if cast:
        detail = f"could not convert '{cast['value']}' to {cast['type']}"
    else:
        error = (error_type or "error").lower()
        detail = f"{error}: {(message or '').strip()} (line: {csv_line!r})"
    where = f"column {column}: " if column else ""
    return f"{shown}:{line}: {where}{detail}"


def raise_rejects(con: duckdb.DuckDBPyConnection, shown: str) -> None:
    """After a seed_select: raise ModelError for the first unreadable row, if any."""
    _remove_copies()
    rejects = con.execute(
        f"SELECT line, column_name, error_type, csv_line, error_message FROM {REJECTS}"
        " ORDER BY line"
    ).fetchall()
    con.execute(f"DROP TABLE IF EXISTS {REJECTS}; DROP TABLE IF EXISTS {_SCANS}")
    if rejects:
        more = f" (and {len(rejects) - 1} more bad row(s))" if len(rejects) > 1 else ""
        raise ModelError(_describe_reject(shown, rejects[0]) + more)


def read_arrow(path: Path, shown: str, declared: dict[str, Any]) -> Any:
    """The whole CSV as a pyarrow Table, or ModelError naming the first bad row."""
    con = duckdb.connect()
    try:
        table = con.sql(seed_select(path, declared, shown)).to_arrow_table()
        raise_rejects(con, shown)
        return table
    except ModelError:
        raise
    except Exception as exc:  # unreadable file, bad declared type, ...
        raise ModelError(f"{shown}: {str(exc).splitlines()[0]}") from exc
    finally:
        _remove_copies()
        con.close()


def describe(
    con: duckdb.DuckDBPyConnection, path: Path, declared: dict[str, Any]
) -> dict[str, str] | None:
    """Columns and types the CSV will load with (declared types win); None if unreadable.

    Compile-time and cheap: the header only, unless a type must be inferred from values.
    """
    try:
        data = Path(path).read_bytes()
        text = _decode(data, str(path))
        start = 1 if text.startswith("\ufeff") else 0
        header = tuple(_parse_record(text, start, 1, str(path))[0])
        types = {name.lower(): dtype for name, dtype in declared.items() if dtype}
        if all(name.lower() in types for name in header):
            return {name.lower(): str(types[name.lower()]) for name in header}
        read_path = check_file(path, str(path), {}).read_path if b"\r" in data else Path(path)
        rows = con.execute(
            f"describe select * from read_csv({_literal(str(read_path))},"
            f" {', '.join(_read_options(header, declared))})"
        ).fetchall()
    except (OSError, ModelError, duckdb.Error):
        return None
    finally:
        _remove_copies()
    return {str(row[0]).lower(): str(row[1]) for row in rows}
