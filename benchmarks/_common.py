"""Helpers shared by the benchmark scripts: the results file and a description of the machine.

Each script runs standalone (``python benchmarks/<name>/run.py``) and puts this folder on
``sys.path`` to import it.
"""

from __future__ import annotations

import platform
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (or whatever ``platform`` knows)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def write_section(heading: str, text: str, results: Path = RESULTS) -> None:
    """Replace the section that starts with the exact line ``heading`` (or append it).

    Other sections of the file are left as they are: several benchmarks share RESULTS.md.
    """
    lines = results.read_text().splitlines() if results.exists() else ["# Benchmark results"]
    try:
        start = lines.index(heading)
    except ValueError:
        results.write_text("\n".join(lines).rstrip() + "\n\n" + text.rstrip() + "\n")
        return
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
    new = lines[:start] + text.rstrip().splitlines() + ([""] if end < len(lines) else []) + lines[end:]
    results.write_text("\n".join(new).rstrip() + "\n")
