"""One error hierarchy: every message says what went wrong, where, and what to do next.

The CLI maps ``TierpoolError`` subclasses to exit codes: configuration, project and
SQL/compile errors exit 2; node and test failures are results (exit 1), not exceptions.
"""

from __future__ import annotations


class TierpoolError(Exception):
    """Root of all errors tierpool raises on purpose (never shown with a traceback)."""

    exit_code = 2


class ConfigError(TierpoolError):
    """profiles.yml, tierpool_project.yml, CLI options or environment are wrong."""


class ProjectError(TierpoolError):
    """The project folder is malformed: duplicate names, bad yml, bad Python model file."""


class SqlError(TierpoolError):
    """SQL that cannot be parsed or references unknown tables/columns (compile time)."""


class CycleError(ProjectError):
    """The dependency graph has a cycle; the message prints the cycle's path."""


class DatabaseError(TierpoolError):
    """The warehouse database cannot be opened or written (e.g. held by another process)."""


class ModelError(TierpoolError):
    """A node failed while running (bad CSV row, SQL runtime error, Python model output mismatch)."""

    exit_code = 1


class FitError(TierpoolError):
    """The hierarchical fit cannot run: spec does not match the data, bad settings."""

    exit_code = 1


class CompileErrors(TierpoolError):
    """Several compile-time problems, reported together before anything runs."""

    def __init__(self, errors: list[TierpoolError]) -> None:
        self.errors = list(errors)
        lines = [f"{len(self.errors)} problem(s) found before anything ran:"]
        lines += [f"  - {e}" for e in self.errors]
        super().__init__("\n".join(lines))
