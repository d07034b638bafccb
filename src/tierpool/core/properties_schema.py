"""pydantic schema of properties yml (``models:``, ``seeds:``, ``sources:``); unknown keys are errors.

Documentation-only dbt keys (``description``, ``meta``, ``docs``) are accepted and ignored;
``tags`` (top level or under ``config:``) are read for ``tag:`` selectors. dbt keys that would
change what is built or tested and that tierpool does not implement are refused with the
reason (:data:`DBT_UNSUPPORTED`); any other unknown key is an error with the closest allowed
key. Data test bodies are validated per kind
(:data:`TEST_BODIES`); whether required arguments are present is checked by
:func:`tierpool.core.data_tests.check_test_args`.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, create_model

_HOOKS = "hooks are not run; put the SQL in a model (one SELECT per file)"
_STORAGE = "tierpool decides how a relation is stored; remove it"
_NAMING = "a relation is named after its file (models) or entry (sources); remove it"
_CONTRACT = "declare columns with data_type and check them with data_tests (not_null, unique, ...)"
_TEST_CONFIG = "a test fails when its query returns a row; use severity: warn|error and where:"
_NO_SECTION = "tierpool has no {key}; remove the section"

DBT_UNSUPPORTED: dict[str, str] = {
    **{k: _HOOKS for k in ("pre-hook", "post-hook", "pre_hook", "post_hook",
                           "on-run-start", "on-run-end")},
    **{k: _STORAGE for k in ("partition_by", "cluster_by", "file_format", "location_root",
                             "tblproperties", "indexes", "sort", "dist", "grants",
                             "persist_docs", "transient", "quote_columns", "delimiter")},
    **{k: _NAMING for k in ("alias", "schema", "database", "catalog", "identifier_quoting",
                            "quoting", "quote")},
    **{k: _CONTRACT for k in ("contract", "constraints")},
    **{k: _TEST_CONFIG for k in ("store_failures", "store_failures_as", "limit", "fail_calc",
                                 "warn_if", "error_if")},
    **{k: _NO_SECTION.format(key=k) for k in (
        "macros", "snapshots", "analyses", "exposures", "metrics", "semantic_models",
        "saved_queries", "unit_tests", "groups", "packages", "dispatch")},
    "incremental_strategy": "materialized: incremental always merges by unique_key (dbt's "
                            "delete+insert; new rows are those at or after max(event_time)); "
                            "remove the key",
    "on_schema_change": "an append model adds new columns (dbt's append_new_columns); an "
                        "incremental model whose columns change is rebuilt in full; remove the key",
    "full_refresh": "pass --full-refresh to tierpool build",
    "enabled": "every file is built; move a disabled model out of sql/",
    "freshness": "source freshness is not checked; add a data test on the timestamp column",
    "loaded_at_field": "source freshness is not checked; add a data test on the timestamp column",
    "versions": "model versions are not supported; give each version its own file",
    "latest_version": "model versions are not supported; give each version its own file",
    "access": "model access and groups are not supported",
    "group": "model access and groups are not supported",
    "deprecation_date": "model deprecation is not supported",
    "external": "read external files with a source expression, e.g. read_parquet('data/*.parquet')",
    "loader": "remove it; a source is read with its expression",
    "overrides": "packages are not supported",
    "time_spine": "semantic models are not supported",
    "materialization": "the key is materialized (view, table, append or incremental)",
}


def unsupported(key: str) -> str | None:
    """Why tierpool refuses a dbt key, or None when it is simply unknown."""
    return DBT_UNSUPPORTED.get(key)


class Strict(BaseModel):
    """Unknown keys are errors; numbers written where text is expected are accepted as text."""

    model_config = ConfigDict(extra="forbid", coerce_numbers_to_str=True)


Tags = list[str] | str | None
TestList = list[str | dict[str, Any]] | None


class _Docs(Strict):
    """Documentation keys tierpool accepts (``tags`` select nodes: ``--select tag:x``)."""

    description: str | None = None
    meta: dict[str, Any] | None = None
    tags: Tags = None
    docs: dict[str, Any] | None = None


class RelationConfig(Strict):
    """``config:`` of a model or seed."""

    materialized: str | None = None
    unique_key: str | list[str] | None = None
    event_time: str | None = None
    column_types: dict[str, str] | None = None
    meta: dict[str, Any] | None = None
    tags: Tags = None
    docs: dict[str, Any] | None = None


class SourceConfig(Strict):
    """``config:`` of a source (meta; tags for ``tag:`` selectors)."""

    meta: dict[str, Any] | None = None
    tags: Tags = None


class ColumnConfig(Strict):
    """``config:`` of a column (dbt ≥ 1.10 puts a column's tags here; they tag its tests)."""

    meta: dict[str, Any] | None = None
    tags: Tags = None


class ColumnEntry(_Docs):
    name: str
    config: ColumnConfig | None = None
    data_type: str | None = None
    type: str | None = None
    data_tests: TestList = None
    tests: TestList = None


class RelationEntry(_Docs):
    """An entry under ``models:`` or ``seeds:``."""

    name: str
    config: RelationConfig | None = None
    columns: list[ColumnEntry] | None = None
    data_tests: TestList = None
    tests: TestList = None


class SourceTable(_Docs):
    """A source: ``{name, expression}`` (or dbt's ``identifier``), columns and tests."""

    name: str
    expression: str | None = None
    identifier: str | None = None
    config: SourceConfig | None = None
    columns: list[ColumnEntry] | None = None
    data_tests: TestList = None
    tests: TestList = None


class SourceGroup(_Docs):
    """dbt's nested form: ``{name: raw, tables: [...]}``."""

    name: str
    tables: list[SourceTable]
    config: SourceConfig | None = None


class PropertiesFile(Strict):
    """A whole properties yml file; each entry is validated by :func:`entry_model`'s model."""

    version: Literal[2] | None = None
    models: list[dict[str, Any]] | None = None
    seeds: list[dict[str, Any]] | None = None
    sources: list[dict[str, Any]] | None = None


def entry_model(section: str, entry: Any) -> type[Strict]:
    """The model of one entry: sources are a group when they have ``tables``."""
    if section != "sources":
        return RelationEntry
    return SourceGroup if isinstance(entry, dict) and "tables" in entry else SourceTable


# --- data tests -------------------------------------------------------------------------


class TestConfig(Strict):
    severity: str | None = None
    where: str | None = None
    tags: Tags = None
    meta: dict[str, Any] | None = None
    description: str | None = None


class _TestOptions(Strict):
    severity: str | None = None
    where: str | None = None
    config: TestConfig | None = None
    arguments: dict[str, Any] | None = None
    name: str | None = None
    column_name: str | None = None
    description: str | None = None
    meta: dict[str, Any] | None = None
    tags: Tags = None


Number = float | int | str
_ARGS: dict[str, dict[str, Any]] = {
    "not_null": {},
    "unique": {},
    "accepted_values": {"values": (list[Any] | None, None), "quote": (bool | None, None)},
    "relationships": {"to": (str | None, None), "field": (str | None, None)},
    "accepted_range": {"min_value": (Number | None, None), "max_value": (Number | None, None),
                       "inclusive": (bool | None, None)},
    "expression": {"expression": (str | None, None)},
}

TEST_ARGS: dict[str, type[Strict]] = {  # what may sit under a test's ``arguments:``
    kind: create_model(f"{kind}_arguments", __base__=Strict, **fields)  # type: ignore
    for kind, fields in _ARGS.items()
}
TEST_BODIES: dict[str, type[Strict]] = {  # a test's own keys: options and arguments
    kind: create_model(f"{kind}_test", __base__=_TestOptions, **fields)  # type: ignore
    for kind, fields in _ARGS.items()
}
