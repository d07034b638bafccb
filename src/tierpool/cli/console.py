"""Rendering for humans: node lines, summaries, tables. No logic beyond formatting."""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Sequence
from typing import Any

import click

from tierpool.core.results import NodeResult, Reporter, RunResults

LINE_WIDTH = 64
_STATUS = {
    "success": ("OK", "green"),
    "pass": ("PASS", "green"),
    "warn": ("WARN", "yellow"),
    "fail": ("FAIL", "red"),
    "error": ("ERROR", "red"),
    "skipped": ("SKIP", "yellow"),
}
_KIND = {"sql": "model", "python": "python", "seed": "seed", "source": "source", "test": "test"}


def _label(index: int, total: int, kind: str, name: str) -> str:
    width = len(str(total))
    text = f"{index:>{width}}/{total} {_KIND.get(kind, kind)} {name} "
    return text + "." * max(3, LINE_WIDTH - len(text))


def node_line(index: int, total: int, result: NodeResult) -> str:
    """``3/12 model residuals ........ OK 1200 rows in 0.12s`` (colour-coded status)."""
    word, colour = _STATUS.get(result.status, (result.status.upper(), "white"))
    parts = [click.style(word, fg=colour, bold=True)]
    if result.unchanged:
        return f"{_label(index, total, result.kind, result.name)} {parts[0]} (unchanged)"
    if result.rows is not None and result.status == "success":
        parts.append(f"{result.rows} rows")
    if result.kind == "test" and result.failures:
        parts.append(f"{result.failures} failing rows")
    if result.status == "success" and result.message:
        parts.append(f"({result.message})")
    if result.status != "skipped":
        parts.append(f"in {result.execution_time:.2f}s")
    return f"{_label(index, total, result.kind, result.name)} {' '.join(parts)}"


def _format_value(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, float):
        return "NaN" if math.isnan(value) else f"{value:.6g}"
    return str(value)


def render_table(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain fixed-width text table with a header rule."""
    cells = [[_format_value(v) for v in row] for row in rows]
    widths = [max([len(str(c))] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
    fmt = "  ".join("{:<%d}" % w for w in widths)
    lines = [fmt.format(*columns), "  ".join("-" * w for w in widths)]
    lines += [fmt.format(*r) for r in cells]
    return "\n".join(line.rstrip() for line in lines)


def render_csv(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """RFC 4180 CSV with a header row; NULL is an empty field."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows([["" if v is None else v for v in row] for row in rows])
    return out.getvalue().rstrip("\n")


def render_json(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A JSON array of row objects (dates and decimals as strings, NaN as null)."""
    def clean(v: Any) -> Any:
        return None if isinstance(v, float) and math.isnan(v) else v

    records = [{c: clean(v) for c, v in zip(columns, row)} for row in rows]
    return json.dumps(records, indent=2, default=str)


def render(fmt: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Render rows as table, csv or json."""
    return {"table": render_table, "csv": render_csv, "json": render_json}[fmt](columns, rows)


def summary(results: RunResults) -> str:
    """``Done. PASS=.. WARN=.. ERROR=.. SKIP=.. TOTAL=..``"""
    counts = results.counts()
    return "Done. " + " ".join(f"{k}={v}" for k, v in counts.items())


class ConsoleReporter(Reporter):
    """Prints one line per node as it finishes, details of problems underneath."""

    def __init__(self, debug: bool = False) -> None:
        self.debug = debug

    def start(self, index: int, total: int, kind: str, name: str) -> None:
        # Only Python models can take long and log; announce them so logs sit under a header.
        if kind == "python":
            click.echo(f"{_label(index, total, kind, name)} START")

    def finish(self, index: int, total: int, result: NodeResult) -> None:
        click.echo(node_line(index, total, result))
        if result.status in ("error", "fail", "warn", "skipped") and result.message:
            for line in result.message.splitlines():
                click.echo(f"      {line}")
        if result.examples:
            columns = list(result.examples[0])
            rows = [[ex.get(c) for c in columns] for ex in result.examples]
            table = render_table(columns, rows)
            click.echo("\n".join(f"      {line}" for line in table.splitlines()))
        if self.debug and result.traceback:
            click.echo(result.traceback, err=True)

    def log(self, message: str) -> None:
        click.echo(f"      {message}")

    def done(self, results: RunResults) -> None:
        """Print the elapsed time and the summary line."""
        click.echo(f"\nFinished {results.command} in {results.elapsed:.2f}s.")
        colour = "green" if results.success else "red"
        click.echo(click.style(summary(results), fg=colour))
