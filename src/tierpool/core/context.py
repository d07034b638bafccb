"""ModelContext: what a Python model's ``model(ctx)`` receives.

Everything is read before the model runs (inputs and the previous contents of its
outputs, as pandas DataFrames), so the DuckDB connection can be closed while the
model works: other processes can query the warehouse during a long fit.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from tierpool.errors import ModelError


class ModelContext:
    """The ``ctx`` argument of a Python model.

    Attributes:
        name: The Python model's node name.
        vars: Project vars merged with run options and CLI ``--vars`` (later wins).
        options: Run options from the CLI (fit_tune, fit_draws, fit_chains, fit_id,
            refit, progress), only those given.
        project_dir: Absolute project directory.
        target_dir: project_dir / "target" (fits, artifacts).
        progress: Whether to show progress bars (False with ``--no-progress``).
        message: Set it to a short text shown on the node's result line,
            e.g. "reused fit 2026Q3".
    """

    def __init__(
        self,
        name: str,
        path: Path | None,
        inputs: dict[str, Any],
        previous: dict[str, Any],
        vars: dict[str, Any],
        options: dict[str, Any],
        project_dir: Path,
        target_dir: Path,
        log: Callable[[str], None] | None = None,
        progress: bool = True,
    ) -> None:
        self.name = name
        self.path = path
        self._inputs = {k.lower(): v for k, v in inputs.items()}
        self._previous = {k.lower(): v for k, v in previous.items()}
        self.vars = dict(vars)
        self.options = dict(options)
        self.project_dir = Path(project_dir)
        self.target_dir = Path(target_dir)
        self.progress = progress
        self.message: str = ""
        self._log = log or (lambda msg: None)

    def ref(self, name: str) -> Any:
        """The input relation ``name`` as a pandas DataFrame.

        Raises:
            ModelError: ``name`` is not one of the literal ``ctx.ref("...")`` strings
                found in the file (refs must be literals so dependencies are known
                before anything runs).
        """
        key = str(name).lower()
        if key not in self._inputs:
            known = ", ".join(sorted(self._inputs)) or "none"
            raise ModelError(
                f"{self.path or self.name}: ctx.ref({name!r}) is not a dependency of this model "
                f"(literal refs found in the file: {known}). Write refs as string literals, "
                f'e.g. ctx.ref("{key}"), so tierpool can see them without running the file.'
            )
        return self._inputs[key]

    def previous(self, output: str) -> Any | None:
        """The output table's contents before this run, or None if it does not exist yet.

        Raises:
            ModelError: ``output`` is not one of this model's declared outputs.
        """
        key = str(output).lower()
        if key not in self._previous:
            known = ", ".join(sorted(self._previous)) or "none"
            raise ModelError(
                f"{self.path or self.name}: ctx.previous({output!r}): not an output of this "
                f"model (outputs: {known})"
            )
        return self._previous[key]

    def log(self, message: str) -> None:
        """Print a line under the node's line in the build output."""
        self._log(str(message))
