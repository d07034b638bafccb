"""Properties yml (dbt's format): docs, config, columns and data tests of relations.

Any ``*.yml``/``*.yaml`` under sql/, seeds/ or python_models/ may hold:

- ``models:`` SQL models and Python-model outputs: ``description``, ``config:
  {materialized, unique_key}``, ``columns: [{name, data_type (or type),
  description, data_tests (or tests)}]`` and model-level ``data_tests``.
- ``seeds:`` the same keys; column types via ``columns[].data_type`` or dbt's
  ``config: {column_types: {col: TYPE}}``.
- ``sources:`` either ``[{name, expression}]`` or dbt's nested
  ``[{name: raw, tables: [{name, expression | identifier}]}]``. A source is
  referenced in SQL by its (table) name.

Problems are collected, not raised one at a time, so a user sees them together.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tierpool.core.data_tests import canonical_kind, check_test_args
from tierpool.core.nodes import Column, TestSpec
from tierpool.core.sql import normalize_name
from tierpool.errors import ProjectError, TierpoolError

SECTIONS = ("models", "seeds", "sources")
_IGNORED_SECTIONS = ("version", "macros", "exposures", "metrics", "semantic_models")
_TEST_OPTIONS = ("severity", "where", "config", "arguments", "name", "column_name")


@dataclass(frozen=True)
class RelationProps:
    """What yml says about one relation.

    Attributes:
        name: Relation name (lower case).
        section: ``models``, ``seeds`` or ``sources``.
        file: The yml file that declares it.
        description: Free text.
        config: The entry's ``config:`` mapping.
        columns: Declared columns (``type`` None when no data_type was given).
        tests: Generic tests on the relation and its columns.
        expression: For sources: the relation expression as written.
        identifier: For sources: dbt's ``identifier`` (a table or file name).
    """

    name: str
    section: str
    file: Path
    description: str = ""
    config: dict[str, Any] = field(default_factory=dict)
    columns: tuple[Column, ...] = ()
    tests: tuple[TestSpec, ...] = ()
    expression: str | None = None
    identifier: str | None = None


def read_properties(
    files: list[Path], display: Any
) -> tuple[list[RelationProps], list[TierpoolError]]:
    """Parse properties yml files.

    Args:
        files: yml files, in a deterministic order.
        display: Callable turning a path into the form used in messages.

    Returns:
        Declared relations and the problems found (malformed yml, unknown test
        kinds, missing test arguments, duplicate declarations).
    """
    props: list[RelationProps] = []
    problems: list[TierpoolError] = []
    for path in files:
        where = display(path)
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as err:
            problems.append(ProjectError(f"{where}: invalid yml: {err}"))
            continue
        if not isinstance(data, dict):
            problems.append(ProjectError(f"{where}: expected a mapping with {', '.join(SECTIONS)}"))
            continue
        for key, entries in data.items():
            if key in _IGNORED_SECTIONS:
                continue
            if key not in SECTIONS:
                problems.append(
                    ProjectError(f"{where}: unknown key '{key}'; expected {', '.join(SECTIONS)}")
                )
                continue
            for entry in entries or []:
                try:
                    props.extend(_read_entry(key, entry, path, where))
                except TierpoolError as err:
                    problems.append(err)
    problems += _duplicates(props, display)
    return props, problems


def _duplicates(props: list[RelationProps], display: Any) -> list[TierpoolError]:
    first: dict[str, RelationProps] = {}
    problems: list[TierpoolError] = []
    for p in props:
        if p.name in first:
            other = first[p.name]
            problems.append(
                ProjectError(
                    f"'{p.name}' is described twice: {display(other.file)} ({other.section}) "
                    f"and {display(p.file)} ({p.section}); keep one entry"
                )
            )
        else:
            first[p.name] = p
    return problems


def _read_entry(section: str, entry: Any, path: Path, where: str) -> list[RelationProps]:
    if not isinstance(entry, dict) or not entry.get("name"):
        raise ProjectError(f"{where}: every entry under '{section}:' needs a 'name'")
    if section == "sources" and "tables" in entry:
        group = str(entry["name"])
        tables = entry.get("tables") or []
        return [_read_relation(section, t, path, f"{where} (source {group})") for t in tables]
    return [_read_relation(section, entry, path, where)]


def _read_relation(section: str, entry: Any, path: Path, where: str) -> RelationProps:
    if not isinstance(entry, dict) or not entry.get("name"):
        raise ProjectError(f"{where}: every entry under '{section}:' needs a 'name'")
    name = normalize_name(str(entry["name"]))
    config = entry.get("config") or {}
    if not isinstance(config, dict):
        raise ProjectError(f"{where}: '{name}': config must be a mapping")
    columns, tests = _read_columns(entry.get("columns") or [], name, path, where)
    column_types = config.get("column_types") or {}
    columns = _merge_column_types(columns, column_types, name, where)
    tests += _read_tests(entry, name, None, path, where)
    return RelationProps(
        name=name,
        section=section,
        file=path,
        description=str(entry.get("description") or ""),
        config=dict(config),
        columns=tuple(columns),
        tests=tuple(tests),
        expression=_opt_str(entry.get("expression")),
        identifier=_opt_str(entry.get("identifier")),
    )


def _opt_str(value: Any) -> str | None:
    return None if value is None else str(value)


def _read_columns(
    entries: Any, relation: str, path: Path, where: str
) -> tuple[list[Column], list[TestSpec]]:
    if not isinstance(entries, list):
        raise ProjectError(f"{where}: '{relation}': columns must be a list of {{name: ...}}")
    columns: list[Column] = []
    tests: list[TestSpec] = []
    for entry in entries:
        if not isinstance(entry, dict) or not entry.get("name"):
            raise ProjectError(f"{where}: '{relation}': every column needs a 'name'")
        col = normalize_name(str(entry["name"]))
        dtype = entry.get("data_type", entry.get("type"))
        columns.append(Column(col, None if dtype is None else str(dtype),
                              str(entry.get("description") or "")))
        tests += _read_tests(entry, relation, col, path, where)
    return columns, tests


def _merge_column_types(
    columns: list[Column], column_types: Any, relation: str, where: str
) -> list[Column]:
    if not isinstance(column_types, dict):
        raise ProjectError(f"{where}: '{relation}': config.column_types must map columns to types")
    types = {normalize_name(str(k)): str(v) for k, v in column_types.items()}
    merged = [Column(c.name, types.pop(c.name, c.type), c.description) for c in columns]
    return merged + [Column(name, dtype) for name, dtype in types.items()]


def _read_tests(
    entry: dict[str, Any], relation: str, column: str | None, path: Path, where: str
) -> list[TestSpec]:
    declared = entry.get("data_tests", entry.get("tests")) or []
    if not isinstance(declared, list):
        raise ProjectError(f"{where}: '{relation}': data_tests must be a list")
    return [_read_test(item, relation, column, path, where) for item in declared]


def _read_test(
    item: Any, relation: str, column: str | None, path: Path, where: str
) -> TestSpec:
    target = f"{relation}.{column}" if column else relation
    if isinstance(item, str):
        kind, body = item, {}
    elif isinstance(item, dict) and len(item) == 1:
        kind, body = next(iter(item.items()))
        body = body or {}
    else:
        raise ProjectError(
            f"{where}: '{target}': a data test is a name (not_null) or a one-key mapping "
            "(accepted_values: {values: [...]})"
        )
    if not isinstance(body, dict):
        raise ProjectError(f"{where}: '{target}': arguments of '{kind}' must be a mapping")
    kind = canonical_kind(str(kind))
    config = body.get("config") or {}
    args = {k: v for k, v in body.items() if k not in _TEST_OPTIONS}
    args.update(body.get("arguments") or {})
    check_test_args(kind, args, f"{where}: '{target}'")
    severity = str(config.get("severity", body.get("severity", "error"))).lower()
    if severity not in ("error", "warn"):
        raise ProjectError(f"{where}: '{target}': severity must be 'error' or 'warn'")
    if body.get("column_name"):
        column = normalize_name(str(body["column_name"]))
    filter_ = config.get("where", body.get("where"))
    return TestSpec(
        kind=kind,
        relation=relation,
        column=column,
        args=args,
        severity="warn" if severity == "warn" else "error",
        where=None if filter_ is None else str(filter_),
        source_file=path,
    )
