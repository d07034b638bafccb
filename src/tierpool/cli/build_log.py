"""The build log: what a run prints on the console, writes to target/logs/, or emits as JSON.

By default each node is one line (its materialization, rows, a count of its tests);
failing and warning tests are shown in full under it; ``--verbose`` shows every test.
On a terminal a live status line names the nodes building now (rich). Every run is also
appended, verbose and timestamped, to target/logs/tierpool.log; ``--log-format json``
prints one JSON object per event instead (for machines).
"""

from __future__ import annotations

import json
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any

import click

from tierpool.cli.console import group_lines, start_line, summary
from tierpool.core.results import Reporter, ResultGroup, RunResults

LOG_DIR = "logs"
LOG_FILE = "tierpool.log"


class ConsoleReporter(Reporter):
    """Human output: one line per node, problems in full, a live status line on a terminal.

    The lines are the same for any number of threads: results come in build order, and a
    Python model's log lines (printed as they come when nodes build one at a time) are held
    back until its result when nodes build in parallel. What started when is in the log file.
    """

    def __init__(self, debug: bool = False, verbose: bool = False, live: bool | None = None,
                 parallel: bool = False) -> None:
        self.debug, self.verbose, self.parallel = debug, verbose, parallel
        # Parallel builds: a Python model's log lines are printed with its result, so the
        # output is the same whatever order nodes finish in.
        self._held: dict[str, list[str]] = {}
        self.live = sys.stdout.isatty() if live is None else live
        self._running: dict[str, float] = {}
        self._python = 0
        self._lock = threading.Lock()
        self._status: Any = None  # rich.live.Live while the status line shows
        self._done = self._total = 0

    # -- live status line ---------------------------------------------------------------------

    def _render(self) -> Any:
        from rich.spinner import Spinner

        now = time.monotonic()
        names = ", ".join(f"{n} ({now - t:.0f}s)" for n, t in self._running.items())
        return Spinner("dots", text=f"{self._done}/{self._total or '?'} done; building: {names}")

    def _show(self) -> None:
        if not self.live or not self._running or self._python:
            self._hide()
            return
        if self._status is None:
            from rich.console import Console
            from rich.live import Live

            self._status = Live(self._render(), console=Console(), transient=True,
                                refresh_per_second=8, redirect_stdout=False, redirect_stderr=False,
                                get_renderable=self._render)
            self._status.start()

    def _hide(self) -> None:
        if self._status is not None:
            self._status.stop()
            self._status = None

    def _echo(self, line: str = "", err: bool = False) -> None:
        with self._lock:
            status = self._status
            if status is not None:
                status.stop()  # print above the line, then redraw it
            click.echo(line, err=err)
            if status is not None:
                status.start()

    # -- events ---------------------------------------------------------------------------------

    def start(self, kind: str, name: str) -> None:
        with self._lock:
            self._running[name] = time.monotonic()
            if kind == "python":
                # A Python model prints its own progress (sampling bars): no live line over it.
                self._python += 1
                self._hide()
        with self._lock:
            self._show()

    def finish(self, group: ResultGroup) -> None:
        self._total = group.total
        self._done = group.index
        if group.node is not None:
            for line in self._held.pop(group.node.name, []):
                self._echo(line)
        for line in group_lines(group, self.verbose):
            self._echo(line)
        if self.debug:
            for result in ([group.node] if group.node else []) + group.tests:
                if result.traceback:
                    self._echo(result.traceback, err=True)
        with self._lock:
            for result in ([group.node] if group.node else []) + group.tests:
                if self._running.pop(result.name, None) is not None and result.kind == "python":
                    self._python -= 1
            self._show()

    def log(self, message: str, node: str = "") -> None:
        line = f"      [{node}] {message}" if node else f"      {message}"
        if self.parallel and node:
            with self._lock:
                self._held.setdefault(node, []).append(line)
            return
        self._echo(line)

    def done(self, results: RunResults) -> None:
        """Print the elapsed time and the summary line."""
        with self._lock:
            self._hide()
        click.echo(f"\nFinished {results.command} in {results.elapsed:.2f}s.")
        colour = "green" if results.success else "red"
        click.echo(click.style(summary(results), fg=colour))


class JsonReporter(Reporter):
    """``--log-format json``: one JSON object per line on stdout, one per event."""

    def __init__(self, stream: IO[str] | None = None) -> None:
        self.stream = stream
        self._lock = threading.Lock()

    def _emit(self, event: str, **fields: Any) -> None:
        record = {"ts": _now(), "event": event, **fields}
        with self._lock:
            click.echo(json.dumps(record, default=str), file=self.stream)

    def start(self, kind: str, name: str) -> None:
        self._emit("start", name=name, kind=kind)

    def finish(self, group: ResultGroup) -> None:
        node = group.node.to_json() if group.node else None
        if node is not None:
            node["materialized"] = group.node.materialized if group.node else None
        self._emit("finish", index=group.index, total=group.total, node=node,
                   tests=[t.to_json() for t in group.tests])

    def log(self, message: str, node: str = "") -> None:
        self._emit("log", node=node, message=message)

    def done(self, results: RunResults) -> None:
        self._emit("done", command=results.command, elapsed=round(results.elapsed, 4),
                   success=results.success, counts=results.counts())


class FileLog(Reporter):
    """Appends the run, verbose and timestamped, without colours, to target/logs/tierpool.log."""

    def __init__(self, target_dir: Path, invocation: str) -> None:
        self.path = Path(target_dir) / LOG_DIR / LOG_FILE
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._write(f"==== {_now()} {invocation}")

    def _write(self, *lines: str) -> None:
        stamp = datetime.now().strftime("%H:%M:%S.%f")[:-3]
        with self._lock, self.path.open("a", encoding="utf-8") as out:
            for line in lines:
                out.write(f"{stamp} {click.unstyle(line)}\n")

    def start(self, kind: str, name: str) -> None:
        self._write(start_line(kind, name))

    def finish(self, group: ResultGroup) -> None:
        self._write(*group_lines(group, verbose=True))
        for result in ([group.node] if group.node else []) + group.tests:
            if result.traceback:
                self._write(*result.traceback.rstrip().splitlines())

    def log(self, message: str, node: str = "") -> None:
        self._write(f"      [{node}] {message}" if node else f"      {message}")

    def done(self, results: RunResults) -> None:
        self._write(f"Finished {results.command} in {results.elapsed:.2f}s. {summary(results)}")


class Tee(Reporter):
    """Hands every event to several reporters (the console or JSON, and the log file)."""

    def __init__(self, *reporters: Reporter) -> None:
        self.reporters = reporters

    def start(self, kind: str, name: str) -> None:
        for reporter in self.reporters:
            reporter.start(kind, name)

    def finish(self, group: ResultGroup) -> None:
        for reporter in self.reporters:
            reporter.finish(group)

    def log(self, message: str, node: str = "") -> None:
        for reporter in self.reporters:
            reporter.log(message, node=node)

    def done(self, results: RunResults) -> None:
        for reporter in self.reporters:
            done = getattr(reporter, "done", None)
            if done is not None:
                done(results)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")
