"""``tierpool init``: scaffold a new project that builds at once.

The template (``tierpool/templates/init/``, package data) is a small calibration-flavoured
warehouse: two seeds with typed, tested columns, a view and a table model with descriptions
and tests, a singular warn test, profiles.yml with a DuckDB ``dev`` target (default) and a
``spark`` target, tierpool_project.yml, a README and a .gitignore.

Usage:
    written = init_project(Path("my_warehouse"), name="my_warehouse")
"""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path

from tierpool.errors import ConfigError

NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Template files stored under another name (package data globs skip dot files).
_RENAMED = {"gitignore": ".gitignore"}
_PLACEHOLDERS = ("__PROJECT_NAME__", "__SCHEMA__")


def template_files() -> dict[str, str]:
    """The template's files: project-relative POSIX path -> text (placeholders not yet filled)."""
    root = resources.files("tierpool") / "templates" / "init"
    files: dict[str, str] = {}

    def walk(folder: resources.abc.Traversable, prefix: str) -> None:
        for entry in sorted(folder.iterdir(), key=lambda e: e.name):
            if entry.name == "__pycache__":
                continue
            rel = f"{prefix}{entry.name}"
            if entry.is_dir():
                walk(entry, rel + "/")
            else:
                head, _, base = rel.rpartition("/")
                target = _RENAMED.get(base, base)
                files[f"{head}/{target}" if head else target] = entry.read_text(encoding="utf-8")

    walk(root, "")
    if not files:
        raise ConfigError("the project template is missing from this installation (tierpool/templates/init); "
                          "reinstall tierpool")
    return files


def default_name(directory: Path) -> str:
    """A project name from a folder name: letters, digits and underscores.

    >>> default_name(Path("my-warehouse"))
    'my_warehouse'
    >>> default_name(Path("2026 calibration"))
    'project_2026_calibration'
    """
    name = re.sub(r"[^A-Za-z0-9_]+", "_", directory.name).strip("_") or "warehouse"
    return name if NAME_RE.match(name) else f"project_{name}"


def _check_target_dir(directory: Path, files: dict[str, str]) -> None:
    """DIR must not exist, or be empty but for hidden entries the scaffold does not write (.git).

    Raises:
        ConfigError: DIR is a file, or holds anything else; the message lists what.
    """
    if directory.exists() and not directory.is_dir():
        raise ConfigError(f"{directory} is a file; give `tierpool init` a new or empty directory")
    if not directory.is_dir():
        return
    tops = {path.split("/")[0] for path in files}
    present = sorted(p.name for p in directory.iterdir() if not p.name.startswith(".") or p.name in tops)
    if present:
        shown = ", ".join(present[:5]) + (f" and {len(present) - 5} more" if len(present) > 5 else "")
        raise ConfigError(
            f"{directory} is not empty ({shown}): `tierpool init` only writes into a new or empty "
            "directory, so that no file of yours is overwritten. Choose another directory, e.g. "
            f"`tierpool init {directory / 'warehouse'}`."
        )


def init_project(directory: Path | str, name: str | None = None) -> list[Path]:
    """Write a new project into ``directory`` (created; must not exist or be empty).

    Args:
        directory: Where to create the project.
        name: The project's name (``tierpool_project.yml``, the Spark schema); default
            the directory's name made into an identifier.

    Returns:
        The files written, sorted.

    Raises:
        ConfigError: The directory is not empty, or ``name`` is not an identifier.
    """
    directory = Path(directory).expanduser()
    if name is None:
        name = default_name(directory.resolve())
    if not NAME_RE.match(name):
        raise ConfigError(f"project name {name!r} must be letters, digits and underscores, not starting with a "
                          "digit (it names the Spark schema too); pass e.g. --name my_warehouse")
    files = template_files()
    _check_target_dir(directory, files)
    written = []
    for rel, text in files.items():
        for placeholder in _PLACEHOLDERS:
            text = text.replace(placeholder, name.lower() if placeholder == "__SCHEMA__" else name)
        path = directory / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return sorted(written)
