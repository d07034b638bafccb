"""Rendering for humans: node lines, summaries, tables. No logic beyond formatting."""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Sequence
from typing import Any

import click

from tierpool.core.results import NodeResult, ResultGroup, RunResults

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


def start_line(kind: str, name: str) -> str:
    """``python hierarchical_fit ...... START`` (a header for a Python model's log lines)."""
    text = f"{_KIND.get(kind, kind)} {name} "
    return text + "." * max(3, LINE_WIDTH - len(text)) + " START"


def _test_counts(tests: Sequence[NodeResult]) -> str:
    """``12 tests passed``, ``12 tests: 11 passed, 1 warned``."""
    words = {"pass": "passed", "warn": "warned", "fail": "failed", "error": "errored",
             "skipped": "skipped"}
    counts = {word: sum(t.status == status for t in tests) for status, word in words.items()}
    parts = [f"{n} {word}" for word, n in counts.items() if n]
    if not parts:
        return ""
    noun = "test" if len(tests) == 1 else "tests"
    if len(parts) == 1:
        return f"{len(tests)} {noun} {parts[0].split(' ', 1)[1]}"
    return f"{len(tests)} {noun}: " + ", ".join(parts)


def node_line(index: int, total: int, result: NodeResult, tests: Sequence[NodeResult] = ()) -> str:
    """``3/12 table residuals ..... OK 1200 rows, 5 tests passed in 0.12s`` (colour-coded status)."""
    word, colour = _STATUS.get(result.status, (result.status.upper(), "white"))
    kind = result.materialized or result.kind
    label = _label(index, total, kind, result.name)
    counted = _test_counts(tests)
    parts = [click.style(word, fg=colour, bold=True)]
    if result.unchanged:
        return f"{label} {parts[0]} (unchanged)" + (f", {counted}" if counted else "")
    details = []
    if result.rows is not None and result.status == "success":
        details.append(f"{result.rows} rows")
    if result.kind == "test" and result.failures:
        details.append(f"{result.failures} failing rows")
    if counted:
        details.append(counted)
    if details:
        parts.append(", ".join(details))
    if result.status == "success" and result.message:
        parts.append(f"({result.message})")
    if result.status != "skipped":
        parts.append(f"in {result.execution_time:.2f}s")
    return f"{label} {' '.join(parts)}"


def _problem_lines(result: NodeResult, indent: str) -> list[str]:
    """The message and failing rows of a result that did not simply pass."""
    lines = []
    if result.status in ("error", "fail", "warn", "skipped") and result.message:
        lines += [f"{indent}{line}" for line in result.message.splitlines()]
    if result.examples:
        columns = list(result.examples[0])
        rows = [[ex.get(c) for c in columns] for ex in result.examples]
        lines += [f"{indent}{line}" for line in render_table(columns, rows).splitlines()]
    return lines


def test_line(result: NodeResult, indent: str = "    ") -> str:
    """``    PASS not_null_models_model_id in 0.01s`` (a test under its node)."""
    word, colour = _STATUS.get(result.status, (result.status.upper(), "white"))
    text = f"{indent}{click.style(word, fg=colour, bold=True)} {result.name}"
    if result.unchanged:
        return text + " (unchanged)"
    if result.failures:
        text += f" {result.failures} failing rows"
    return text + ("" if result.status == "skipped" else f" in {result.execution_time:.2f}s")


def group_lines(group: ResultGroup, verbose: bool = False) -> list[str]:
    """A node's line, then its tests: every test with ``verbose``, else failing and warning ones."""
    if group.node is None:  # a test on its own (tierpool test)
        test = group.tests[0]
        return [node_line(group.index, group.total, test)] + _problem_lines(test, "      ")
    lines = [node_line(group.index, group.total, group.node, group.tests)]
    lines += _problem_lines(group.node, "      ")
    for test in group.tests:
        if verbose or test.status in ("fail", "error", "warn"):
            lines.append(test_line(test))
            lines += _problem_lines(test, "        ")
    return lines


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
