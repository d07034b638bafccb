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

Every file is checked against the pydantic schema in :mod:`tierpool.core.properties_schema`:
an unknown key is an error with file, line and the closest allowed key; a dbt key tierpool
does not implement is refused with the reason; documentation keys (``description``,
``meta``, ``docs``) are accepted and ignored; ``tags`` (also under ``config:``; on models,
seeds, sources, source groups, columns and tests) are kept for ``tag:`` selectors. Jinja,
duplicate keys and non-UTF-8 bytes are errors too (:mod:`tierpool.core.strict_files`). Problems are collected, not raised
one at a time, so a user sees them together.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any


from tierpool.core.data_tests import canonical_kind, check_test_args
from tierpool.core.nodes import Column, TestSpec
from tierpool.core.properties_schema import (
    TEST_ARGS,
    TEST_BODIES,
    PropertiesFile,
    entry_model,
    unsupported,
)
from tierpool.core.sql import normalize_name
from tierpool.core.strict_files import Loc, Yml, load_yml, schema_messages
from tierpool.errors import ProjectError, TierpoolError

SECTIONS = ("models", "seeds", "sources")
_TEST_OPTIONS = ("severity", "where", "config", "arguments", "name", "column_name",
                 "description", "meta", "tags")


class _Reported(ProjectError):
    """A test whose problems were already recorded (raised only to skip the test)."""


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
        at: ``file:line`` of the entry (of its ``config.materialized`` when set), for messages.
        tags: ``tags:`` and ``config: {tags: ...}`` of the entry (a source table also gets
            its source group's), for ``tag:`` selectors.
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
    at: str = ""
    tags: tuple[str, ...] = ()


def read_properties(
    files: list[Path], display: Any
) -> tuple[list[RelationProps], list[TierpoolError]]:
    """Parse properties yml files, each checked against :mod:`properties_schema`.

    Args:
        files: yml files, in a deterministic order.
        display: Callable turning a path into the form used in messages.

    Returns:
        Declared relations and the problems found (malformed or non-UTF-8 yml, unknown
        or unsupported keys with file, line and did-you-mean, Jinja, unknown test kinds,
        missing test arguments, duplicate declarations).
    """
    props: list[RelationProps] = []
    problems: list[TierpoolError] = []
    for path in files:
        try:
            yml = load_yml(path, display(path))
        except TierpoolError as err:
            problems.append(err)
            continue
        found: list[TierpoolError] = [ProjectError(m) for m in yml.problems]
        props += _read_file(_File(yml, path, found))
        problems += sorted(found, key=_line_of)  # stable: one key's problems keep their order
    problems += _duplicates(props, display)
    return props, problems


def _line_of(problem: TierpoolError) -> int:
    match = re.match(r"[^:]*:(\d+):", str(problem))
    return int(match.group(1)) if match else 0


@dataclass
class _File:
    """One properties file being read: where messages point, and where problems go."""

    yml: Yml
    path: Path
    problems: list[TierpoolError]

    def at(self, loc: Loc) -> str:
        return self.yml.at(loc)

    def valid(self, model: Any, data: Any, loc: Loc) -> bool:
        """Validate ``data`` (at ``loc``) against a pydantic model; problems are recorded."""
        from pydantic import ValidationError

        try:
            model.model_validate(data)
        except ValidationError as err:
            self.problems += [ProjectError(m) for m in
                              schema_messages(err, self.yml, model, loc, unsupported)]
            return False
        return True


def _read_file(f: _File) -> list[RelationProps]:
    data = f.yml.data if f.yml.data is not None else {}
    if not isinstance(data, dict):
        f.problems.append(
            ProjectError(f"{f.at(())}: expected a mapping with {', '.join(SECTIONS)}"))
        return []
    f.valid(PropertiesFile, data, ())
    props: list[RelationProps] = []
    for section in SECTIONS:
        entries = data.get(section)
        for i, entry in enumerate(entries if isinstance(entries, list) else []):
            loc = (section, i)
            sound = f.valid(entry_model(section, entry), entry, loc)
            try:
                props.extend(_read_entry(section, entry, f, loc))
            except TierpoolError as err:
                if sound:  # else the schema already said what is wrong with the entry
                    f.problems.append(err)
    return props


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


def _read_entry(section: str, entry: Any, f: _File, loc: Loc) -> list[RelationProps]:
    if not isinstance(entry, dict) or not entry.get("name"):
        raise ProjectError(f"{f.at(loc)}: every entry under '{section}:' needs a 'name'")
    if section == "sources" and "tables" in entry:
        tables = entry.get("tables") or []
        group = read_tags(entry)
        return [_read_relation(section, t, f, (*loc, "tables", j), group) for j, t in enumerate(tables)]
    return [_read_relation(section, entry, f, loc)]


def read_tags(entry: Any) -> tuple[str, ...]:
    """dbt's ``tags`` of an entry: its own ``tags:`` and ``config: {tags: ...}`` (a string or a list).

    >>> read_tags({"tags": "daily", "config": {"tags": ["pii", "daily"]}})
    ('daily', 'pii')
    """
    if not isinstance(entry, dict):
        return ()
    config = entry.get("config") if isinstance(entry.get("config"), dict) else {}
    found: list[str] = []
    for value in (entry.get("tags"), config.get("tags")):
        items = [value] if isinstance(value, str | int | float) else value if isinstance(value, list) else []
        found += [str(v).strip() for v in items if str(v).strip()]
    return tuple(dict.fromkeys(found))


def _read_relation(
    section: str, entry: Any, f: _File, loc: Loc, inherited: tuple[str, ...] = ()
) -> RelationProps:
    if not isinstance(entry, dict) or not entry.get("name"):
        raise ProjectError(f"{f.at(loc)}: every entry under '{section}:' needs a 'name'")
    name = normalize_name(str(entry["name"]))
    config = entry.get("config") or {}
    if not isinstance(config, dict):
        raise ProjectError(f"{f.at(loc)}: '{name}': config must be a mapping")
    columns, tests = _read_columns(entry.get("columns") or [], name, f, loc)
    column_types = config.get("column_types") or {}
    columns = _merge_column_types(columns, column_types, name, f.at((*loc, "config")))
    tests += _read_tests(entry, name, None, f, loc)
    at = (*loc, "config", "materialized") if "materialized" in config else \
        (*loc, "expression") if "expression" in entry else loc
    return RelationProps(
        name=name,
        section=section,
        file=f.path,
        description=str(entry.get("description") or ""),
        config=dict(config),
        columns=tuple(columns),
        tests=tuple(tests),
        expression=_opt_str(entry.get("expression")),
        identifier=_opt_str(entry.get("identifier")),
        at=f.at(at),
        tags=tuple(dict.fromkeys(inherited + read_tags(entry))),
    )


def _opt_str(value: Any) -> str | None:
    return None if value is None else str(value)


def _read_columns(
    entries: Any, relation: str, f: _File, loc: Loc
) -> tuple[list[Column], list[TestSpec]]:
    if not isinstance(entries, list):
        raise ProjectError(
            f"{f.at((*loc, 'columns'))}: '{relation}': columns must be a list of {{name: ...}}"
        )
    columns: list[Column] = []
    tests: list[TestSpec] = []
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict) or not entry.get("name"):
            raise ProjectError(
                f"{f.at((*loc, 'columns', i))}: '{relation}': every column needs a 'name'")
        col = normalize_name(str(entry["name"]))
        dtype = entry.get("data_type", entry.get("type"))
        columns.append(Column(col, None if dtype is None else str(dtype),
                              str(entry.get("description") or "")))
        tests += _read_tests(entry, relation, col, f, (*loc, "columns", i))
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
    entry: dict[str, Any], relation: str, column: str | None, f: _File, loc: Loc
) -> list[TestSpec]:
    key = "data_tests" if "data_tests" in entry else "tests"
    if "data_tests" in entry and "tests" in entry:
        f.problems.append(ProjectError(
            f"{f.at((*loc, 'tests'))}: '{relation}': both data_tests and tests; keep data_tests"))
    declared = entry.get(key) or []
    if not isinstance(declared, list):
        raise ProjectError(f"{f.at((*loc, key))}: '{relation}': data_tests must be a list")
    specs: list[TestSpec] = []
    column_tags = read_tags(entry) if column else ()  # dbt: a column's tags tag its tests
    for i, item in enumerate(declared):
        try:
            spec = _read_test(item, relation, column, f, (*loc, key, i))
            if column_tags:
                spec = replace(spec, tags=tuple(dict.fromkeys(column_tags + spec.tags)))
            specs.append(spec)
        except _Reported:
            continue
        except TierpoolError as err:
            f.problems.append(err)
    return specs


def _read_test(item: Any, relation: str, column: str | None, f: _File, loc: Loc) -> TestSpec:
    target = f"{relation}.{column}" if column else relation
    where = f.at(loc)
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
    if kind not in TEST_BODIES:
        check_test_args(kind, {}, f"{where}: '{target}'")  # raises: the valid kinds listed
    body_loc = loc if isinstance(item, str) else (*loc, next(iter(item)))
    if not (f.valid(TEST_BODIES[kind], body, body_loc)
            and f.valid(TEST_ARGS[kind], body.get("arguments") or {}, (*body_loc, "arguments"))):
        raise _Reported()
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
        source_file=f.path,
        tags=read_tags(body),
    )
