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
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tierpool import constants as c
from tierpool.errors import ConfigError

if TYPE_CHECKING:
    from collections.abc import Callable

    from pydantic import BaseModel, ValidationError

    from tierpool.core.strict_files import Yml

    from tierpool.core.profile_schema import DuckDBOutput, SparkOutput  # noqa: F401 (re-exported)

_ENV_PATTERN = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
DEFAULT_TARGET = "dev"
SUPPORTED_TYPES = ("duckdb", "spark")


def __getattr__(name: str) -> Any:
    # The pydantic output models live in tierpool.core.profile_schema, imported on first use:
    # importing pydantic costs more than the rest of a small build's startup (see there).
    if name in ("DuckDBOutput", "SparkOutput"):
        from tierpool.core import profile_schema

        return getattr(profile_schema, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@dataclass(frozen=True)
class DuckDBSettings:
    """A validated ``type: duckdb`` output (the fields of ``DuckDBOutput``), paths absolute."""

    type: str = "duckdb"
    path: str = c.DEFAULT_DB_PATH
    memory_limit: str | None = None
    temp_directory: str | None = None
    threads: int | None = None
    settings: dict[str, Any] = field(default_factory=dict)  # more DuckDB settings (SET key = value)


_DUCKDB_STR_KEYS = ("memory_limit", "temp_directory")


def _plain_duckdb(output: dict[str, Any]) -> DuckDBSettings | None:
    """A DuckDB output that ``DuckDBOutput`` would accept unchanged, without pydantic; else None.

    Only exact types pass (str paths and limits, a plain int ``threads`` >= 1, nulls where
    the model allows them); anything else (unknown keys, ``threads: "4"``, ``threads: 0``)
    returns None and goes through ``DuckDBOutput`` for its coercions and error messages.
    """
    if any(key not in ("type", "path", "threads", *_DUCKDB_STR_KEYS) for key in output):
        return None
    if output.get("type", "duckdb") != "duckdb" or type(output.get("path", "")) is not str:
        return None
    if any(output.get(key) is not None and type(output[key]) is not str for key in _DUCKDB_STR_KEYS):
        return None
    threads = output.get("threads")
    if threads is not None and (type(threads) is not int or threads < 1):
        return None
    return DuckDBSettings(**output)


@dataclass(frozen=True)
class Target:
    """One resolved output of profiles.yml.

    Attributes:
        name: The target's name (e.g. ``dev``).
        type: The adapter type: ``duckdb`` or ``spark``.
        path: DuckDB: absolute path of the database file. Spark: the absolute warehouse
            directory (used to name the target in messages and build state).
        threads: Worker threads the runner may use.
        settings: The validated output (DuckDBSettings or SparkOutput), paths resolved.
    """

    name: str
    type: str
    path: Path
    threads: int = 1
    settings: Any = field(default=None, compare=False)


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


def _read_yml(path: Path, check: Callable[[Yml], list[str]]) -> Any:
    """The file's data, after ``check`` found no problem (else one ConfigError naming them all)."""
    from tierpool.core.strict_files import load_yml

    yml = load_yml(path, str(path), ConfigError)
    problems = check(yml)
    if len(problems) == 1:
        raise ConfigError(problems[0])
    if problems:
        raise ConfigError(f"{len(problems)} problems in {path}:\n" +
                          "\n".join(f"  - {p}" for p in problems))
    return yml.data


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
        return target_from_output(DEFAULT_TARGET, {}, root, path)
    from tierpool.core.config_checks import profile_problems

    profile = _read_yml(path, profile_problems)
    if not isinstance(profile, dict) or not isinstance(profile.get(c.PROFILE_NAME), dict):
        from tierpool.core.strict_files import did_you_mean

        first = str(next(iter(profile))) if isinstance(profile, dict) and profile else ""
        hint = did_you_mean(first, [c.PROFILE_NAME]) if first else ""
        hint = hint.replace("; did", f"; found '{first}', did")
        raise ConfigError(f"{path}: expected a top-level '{c.PROFILE_NAME}:' mapping{hint}")
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
    return target_from_output(str(name), expand_env(outputs[name] or {}, path), root, path)


def _resolve(root: Path, value: str) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else root / path


def _validation_message(err: ValidationError) -> str:
    parts = []
    for item in err.errors():
        where = ".".join(str(p) for p in item["loc"])
        if item["type"] == "extra_forbidden":
            from tierpool.core.config_checks import OUTPUT_KEYS
            from tierpool.core.strict_files import did_you_mean

            keys = OUTPUT_KEYS["duckdb"] | OUTPUT_KEYS["spark"]
            parts.append(f"unknown key '{where}'{did_you_mean(where, keys)}")
        elif item["type"] == "int_parsing":
            parts.append(f"{where} must be an integer")
        else:
            parts.append(f"{where}: {item['msg']}")
    return "; ".join(parts)


def target_from_output(name: str, output: Any, root: Path, path: Path) -> Target:
    """Validate one ``outputs:`` entry of profiles.yml into a Target (paths made absolute).

    Args:
        name: The target's name.
        output: The entry's mapping, environment variables already expanded.
        root: The project directory (relative paths resolve against it).
        path: The profiles.yml file, named in errors.

    Raises:
        ConfigError: Unknown type, unknown key (with the valid keys), bad value.
    """
    if not isinstance(output, dict):
        raise ConfigError(f"{path}: output '{name}' must be a mapping")
    kind = str(output.get("type", "duckdb"))
    if kind not in SUPPORTED_TYPES:
        raise ConfigError(
            f"{path}: output '{name}' has type '{kind}'; supported: {', '.join(SUPPORTED_TYPES)}"
        )
    settings: Any = _plain_duckdb(output) if kind == "duckdb" else None
    if settings is None:
        settings = _validate(name, kind, output, path)
    if kind == "spark":
        if settings.method == "connect" and not settings.url:
            raise ConfigError(f"{path}: output '{name}': method 'connect' needs url (e.g. sc://host:15002)")
        settings = settings.model_copy(update={
            "warehouse_dir": str(_resolve(root, settings.warehouse_dir)),
            "metastore_dir": str(_resolve(root, settings.metastore_dir)),
        })
        return Target(name, kind, Path(settings.warehouse_dir), settings.threads or 1, settings)
    if not isinstance(settings, DuckDBSettings):
        settings = DuckDBSettings(**settings.model_dump())
    temp = settings.temp_directory
    settings = replace(settings, path=str(_resolve(root, settings.path)),
                       temp_directory=str(_resolve(root, temp)) if temp else temp)
    return Target(name, kind, Path(settings.path), settings.threads or 1, settings)


def _validate(name: str, kind: str, output: dict[str, Any], path: Path) -> Any:
    """The output validated by its pydantic model (DuckDBOutput or SparkOutput)."""
    from pydantic import ValidationError

    from tierpool.core.profile_schema import DuckDBOutput, SparkOutput

    schema: type[BaseModel] = SparkOutput if kind == "spark" else DuckDBOutput
    try:
        return schema.model_validate(output)
    except ValidationError as err:
        raise ConfigError(
            f"{path}: output '{name}' ({kind}): {_validation_message(err)}. "
            f"Keys of a {kind} output: {', '.join(sorted(_keys(schema)))}"
        ) from err


def _keys(schema: type[BaseModel]) -> list[str]:
    return [f.alias or n for n, f in schema.model_fields.items()]


def load_project_config(project_dir: Path) -> dict[str, Any]:
    """Read tierpool_project.yml (``name``, free-form ``vars``), env vars expanded.

    Args:
        project_dir: The project folder.

    Returns:
        The file's mapping, or ``{}`` when the file does not exist.

    Raises:
        ConfigError: The file is not a mapping, ``vars`` is not a mapping, an unknown or
            unsupported (dbt) key, Jinja, a non-UTF-8 byte.
    """
    path = Path(project_dir).resolve() / c.PROJECT_FILE
    if not path.exists():
        return {}
    from tierpool.core.config_checks import project_problems

    data = _read_yml(path, _vars_first(path, project_problems)) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping with keys like 'name' and 'vars'")
    return expand_env(data, path)


def _vars_first(path: Path, check: Callable[[Yml], list[str]]) -> Callable[[Yml], list[str]]:
    def checked(yml: Yml) -> list[str]:
        data = yml.data
        if isinstance(data, dict) and not isinstance(data.get("vars", {}) or {}, dict):
            return [f"{yml.at(('vars',))}: 'vars' must be a mapping of names to values"]
        return check(yml)

    return checked
