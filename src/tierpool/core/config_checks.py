"""Strict checks of profiles.yml and tierpool_project.yml, cheap when the files are sound.

Both files are read on every command, so the common case is a set check of their keys
against the keys of their pydantic models (kept equal by a unit test); only a file that
fails it imports pydantic, to word the problems: file, line, did-you-mean, and for dbt
keys tierpool does not implement, the reason. Environment variables are not expanded
here (an unused target may name an unset variable), so values are checked only for the
chosen target, by :func:`tierpool.core.config.target_from_output`.
"""

from __future__ import annotations

from typing import Any

from tierpool import constants as c
from tierpool.core.strict_files import Yml, schema_messages

DUCKDB_KEYS = frozenset({"type", "path", "threads", "memory_limit", "temp_directory", "settings"})
SPARK_KEYS = frozenset({"type", "threads", "method", "master", "url", "schema", "warehouse_dir",
                        "metastore_dir", "app_name", "conf", "python_max_rows"})
OUTPUT_KEYS = {"duckdb": DUCKDB_KEYS, "spark": SPARK_KEYS}
PROFILE_KEYS = frozenset({"target", "outputs"})
PROJECT_KEYS = frozenset({"name", "vars", "version", "profile", "config-version"})

_PATHS = "tierpool's folders are fixed: sql/, seeds/, python_models/, tests/data/ and target/"
_TREE = "configure each relation under config: in the properties yml next to it"
_HOOKS = "hooks are not run; put the SQL in a model"
_DUCKDB = ("DuckDB is configured by path, memory_limit, temp_directory, threads and settings "
           "(DuckDB settings) only")
_SPARK = "reach a remote Spark with method: connect and url: sc://host:15002"

PROJECT_UNSUPPORTED: dict[str, str] = {
    **{k: _PATHS for k in ("model-paths", "seed-paths", "test-paths", "analysis-paths",
                           "macro-paths", "snapshot-paths", "docs-paths", "asset-paths",
                           "target-path", "log-path", "packages-install-path", "clean-targets",
                           "source-paths", "data-paths")},
    **{k: _TREE for k in ("models", "seeds", "sources", "data_tests", "tests")},
    **{k: f"tierpool has no {k}" for k in ("snapshots", "unit_tests", "saved-queries",
                                           "semantic-models", "metrics", "exposures",
                                           "dispatch", "packages")},
    "on-run-start": _HOOKS,
    "on-run-end": _HOOKS,
    "require-dbt-version": "tierpool is not dbt; pin tierpool's version in your requirements",
    "quoting": "identifiers are compared case-insensitively and quoted only when needed",
    "query-comment": "queries carry no comment; remove it",
    "flags": "use command-line options",
}
PROFILE_UNSUPPORTED: dict[str, str] = {
    "config": "dbt's global config block is not read; use command-line options",
    **{k: _DUCKDB for k in ("extensions", "attach", "plugins", "filesystems",
                            "external_root", "module_paths", "secrets", "database",
                            "use_credential_provider", "disable_transactions")},
    **{k: _SPARK for k in ("host", "port", "token", "cluster", "http_path", "user", "auth",
                           "organization", "connect_retries", "connect_timeout",
                           "server_side_parameters", "session_properties", "driver")},
}


def profile_problems(yml: Yml) -> list[str]:
    """Unknown keys, unsupported dbt keys and unknown output types anywhere in profiles.yml.

    A file whose shape is wrong (no ``tierpool:`` mapping, no ``outputs:``) returns only the
    Jinja and duplicate-key problems: :func:`tierpool.core.config.load_target` words the rest.
    """
    data = yml.data
    body = data.get(c.PROFILE_NAME) if isinstance(data, dict) else None
    outputs = body.get("outputs") if isinstance(body, dict) else None
    if not isinstance(outputs, dict):
        return list(yml.problems)
    if (set(data) == {c.PROFILE_NAME} and set(body) <= PROFILE_KEYS
            and all(_output_sound(o) for o in outputs.values())):
        return list(yml.problems)
    from pydantic import ValidationError

    from tierpool.core.profile_schema import DuckDBOutput, ProfilesFile, SparkOutput

    problems = list(yml.problems)
    try:
        ProfilesFile.model_validate(data)
    except ValidationError as err:
        problems += schema_messages(err, yml, ProfilesFile, (), PROFILE_UNSUPPORTED.get)
    for name, output in outputs.items():
        if not isinstance(output, dict):
            continue
        loc = (c.PROFILE_NAME, "outputs", name)
        kind = str(output.get("type", "duckdb"))
        if kind not in OUTPUT_KEYS:
            problems.append(f"{yml.at((*loc, 'type'))}: output '{name}' has type '{kind}'; "
                            f"supported: {', '.join(OUTPUT_KEYS)}")
            continue
        extra = {k: v for k, v in output.items() if k not in OUTPUT_KEYS[kind]}
        schema = SparkOutput if kind == "spark" else DuckDBOutput
        try:
            schema.model_validate({**extra, "type": kind})
        except ValidationError as err:
            problems += schema_messages(err, yml, schema, loc, PROFILE_UNSUPPORTED.get)
    return problems


def _output_sound(output: Any) -> bool:
    if output is None:
        return True
    if not isinstance(output, dict):
        return False
    keys = OUTPUT_KEYS.get(str(output.get("type", "duckdb")))
    return keys is not None and set(output) <= keys


def project_problems(yml: Yml) -> list[str]:
    """Unknown keys, unsupported dbt keys and wrong types in tierpool_project.yml."""
    data = yml.data
    if not isinstance(data, dict):
        return list(yml.problems)
    if set(data) <= PROJECT_KEYS and isinstance(data.get("name", ""), str | None) and \
            "profile" not in data and "config-version" not in data:
        return list(yml.problems)
    from pydantic import ValidationError

    from tierpool.core.project_schema import TierpoolProject

    problems = list(yml.problems)
    try:
        TierpoolProject.model_validate(data)
    except ValidationError as err:
        problems += schema_messages(err, yml, TierpoolProject, (), PROJECT_UNSUPPORTED.get)
    return problems
