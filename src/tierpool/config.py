"""Connection targets (profiles.yml) and project settings (tierpool_project.yml).

profiles.yml has dbt's shape::

    tierpool:
      target: dev
      outputs:
        dev:
          type: duckdb
          path: target/warehouse.duckdb   # relative to the project dir
          threads: 1
        prod:
          type: duckdb
          path: ${WAREHOUSE_PATH:-/data/warehouse.duckdb}

Strings may use ``${VAR}`` and ``${VAR:-default}``; an unset variable without a
default is an error. The target is chosen by the ``target`` argument (``--target``),
else the ``TIERPOOL_TARGET`` environment variable, else the profile's ``target:``.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tierpool import constants as c
from tierpool.errors import ConfigError

_ENV_PATTERN = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
DEFAULT_TARGET = "dev"
SUPPORTED_TYPES = ("duckdb",)


@dataclass(frozen=True)
class Target:
    """One resolved output of profiles.yml.

    Attributes:
        name: The target's name (e.g. ``dev``).
        type: The adapter type; only ``duckdb`` is supported.
        path: Absolute path of the DuckDB database file.
        threads: Worker threads the runner may use.
    """

    name: str
    type: str
    path: Path
    threads: int = 1


def expand_env(value: Any, source: Path) -> Any:
    """Expand ``${VAR}`` / ``${VAR:-default}`` in every string of a yml value.

    Args:
        value: A parsed yml value (dicts and lists are walked recursively).
        source: The file the value came from, named in errors.

    Returns:
        The value with every variable replaced.

    Raises:
        ConfigError: A variable is unset and has no default.

    Examples:
        >>> os.environ["TP_DOC_X"] = "a"
        >>> expand_env({"p": "${TP_DOC_X}/${TP_DOC_UNSET:-b}"}, Path("profiles.yml"))
        {'p': 'a/b'}
    """
    if isinstance(value, dict):
        return {k: expand_env(v, source) for k, v in value.items()}
    if isinstance(value, list):
        return [expand_env(v, source) for v in value]
    if not isinstance(value, str):
        return value

    def replace(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name in os.environ:
            return os.environ[name]
        if default is not None:
            return default
        raise ConfigError(
            f"{source}: environment variable {name} is not set and has no default; "
            f"set it or write ${{{name}:-default}}"
        )

    return _ENV_PATTERN.sub(replace, value)


def _read_yml(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: invalid yml: {err}") from err


def load_target(project_dir: Path, target: str | None = None) -> Target:
    """Resolve the connection target of a project.

    Without a profiles.yml, the target is ``dev``: a DuckDB file at
    ``target/warehouse.duckdb`` under the project dir, one thread.

    Args:
        project_dir: The project folder (profiles.yml lives there).
        target: Target name from ``--target``; falls back to ``$TIERPOOL_TARGET``,
            then to the profile's ``target:`` key.

    Returns:
        The resolved Target, with an absolute database path.

    Raises:
        ConfigError: Malformed profiles.yml, unknown target, unset variable.
    """
    root = Path(project_dir).resolve()
    chosen = target or os.environ.get(c.TARGET_ENV) or None
    path = root / c.PROFILES_FILE
    if not path.exists():
        if chosen not in (None, DEFAULT_TARGET):
            raise ConfigError(
                f"target '{chosen}' requested but {path} does not exist; "
                f"without profiles.yml the only target is '{DEFAULT_TARGET}'"
            )
        return Target(DEFAULT_TARGET, "duckdb", root / c.DEFAULT_DB_PATH, 1)
    profile = _read_yml(path)
    if not isinstance(profile, dict) or not isinstance(profile.get(c.PROFILE_NAME), dict):
        raise ConfigError(f"{path}: expected a top-level '{c.PROFILE_NAME}:' mapping")
    body = profile[c.PROFILE_NAME]
    outputs = body.get("outputs")
    if not isinstance(outputs, dict) or not outputs:
        raise ConfigError(f"{path}: '{c.PROFILE_NAME}.outputs' must map target names to settings")
    name = chosen or expand_env(body.get("target"), path) or DEFAULT_TARGET
    if name not in outputs:
        valid = ", ".join(sorted(str(k) for k in outputs))
        raise ConfigError(
            f"{path}: target '{name}' is not defined; valid targets: {valid}"
        )
    return _build_target(str(name), expand_env(outputs[name] or {}, path), root, path)


def _build_target(name: str, output: Any, root: Path, path: Path) -> Target:
    if not isinstance(output, dict):
        raise ConfigError(f"{path}: output '{name}' must be a mapping")
    kind = str(output.get("type", "duckdb"))
    if kind not in SUPPORTED_TYPES:
        raise ConfigError(
            f"{path}: output '{name}' has type '{kind}'; supported: {', '.join(SUPPORTED_TYPES)}"
        )
    db_path = Path(str(output.get("path") or c.DEFAULT_DB_PATH)).expanduser()
    if not db_path.is_absolute():
        db_path = root / db_path
    try:
        threads = int(output.get("threads", 1))
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{path}: output '{name}': threads must be an integer") from err
    if threads < 1:
        raise ConfigError(f"{path}: output '{name}': threads must be at least 1")
    return Target(name, kind, db_path, threads)


def load_project_config(project_dir: Path) -> dict[str, Any]:
    """Read tierpool_project.yml (``name``, free-form ``vars``), env vars expanded.

    Args:
        project_dir: The project folder.

    Returns:
        The file's mapping, or ``{}`` when the file does not exist.

    Raises:
        ConfigError: The file is not a mapping or ``vars`` is not a mapping.
    """
    path = Path(project_dir).resolve() / c.PROJECT_FILE
    if not path.exists():
        return {}
    data = _read_yml(path) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping with keys like 'name' and 'vars'")
    data = expand_env(data, path)
    if not isinstance(data.get("vars", {}) or {}, dict):
        raise ConfigError(f"{path}: 'vars' must be a mapping of names to values")
    return data
