"""ModelContext: what a Python model's ``model(ctx)`` receives.

The warehouse connection is released while the model works, so other processes can
query the warehouse during a long fit. An input (or the previous contents of an output)
is read as a pandas DataFrame when the model first asks for it, with the connection
reopened for that read only: a model that returns early (e.g. a step that is turned
off) reads nothing, however many rows its inputs hold.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from tierpool.errors import ModelError


class LazyFrames(Mapping[str, Any]):
    """Relations read on first access (``read(name)``), each once; keys as given."""

    def __init__(self, names: list[str], read: Callable[[str], Any]) -> None:
        self._names = list(dict.fromkeys(names))
        self._read = read
        self._frames: dict[str, Any] = {}

    def __getitem__(self, name: str) -> Any:
        if name not in self._names:
            raise KeyError(name)
        if name not in self._frames:
            self._frames[name] = self._read(name)
        return self._frames[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)


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
        inputs: Mapping[str, Any],
        previous: Mapping[str, Any],
        vars: dict[str, Any],
        options: dict[str, Any],
        project_dir: Path,
        target_dir: Path,
        log: Callable[[str], None] | None = None,
        progress: bool = True,
    ) -> None:
        self.name = name
        self.path = path
        # lower-case name -> the key as given: values are only looked up (read) on use
        self._inputs, self._input_keys = inputs, {k.lower(): k for k in inputs}
        self._previous, self._previous_keys = previous, {k.lower(): k for k in previous}
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
        if key not in self._input_keys:
            known = ", ".join(sorted(self._input_keys)) or "none"
            raise ModelError(
                f"{self.path or self.name}: ctx.ref({name!r}) is not a dependency of this model "
                f"(literal refs found in the file: {known}). Write refs as string literals, "
                f'e.g. ctx.ref("{key}"), so tierpool can see them without running the file.'
            )
        return self._inputs[self._input_keys[key]]

    def previous(self, output: str) -> Any | None:
        """The output table's contents before this run, or None if it does not exist yet.

        Raises:
            ModelError: ``output`` is not one of this model's declared outputs.
        """
        key = str(output).lower()
        if key not in self._previous_keys:
            known = ", ".join(sorted(self._previous_keys)) or "none"
            raise ModelError(
                f"{self.path or self.name}: ctx.previous({output!r}): not an output of this "
                f"model (outputs: {known})"
            )
        return self._previous[self._previous_keys[key]]

    def log(self, message: str) -> None:
        """Print a line under the node's line in the build output."""
        self._log(str(message))
