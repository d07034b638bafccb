"""pydantic models of profiles.yml outputs (imported only when :mod:`tierpool.core.config` needs them).

Kept out of :mod:`tierpool.core.config` because importing pydantic and building these models costs
~0.1-0.2 s per process (more than the rest of a small ``tierpool build``'s startup); a plain
DuckDB output is validated without them (``config._plain_duckdb``) and reaches this module only
to report an error or to coerce an unusual value (e.g. ``threads: "4"``).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import (BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, StrictStr,
                      StringConstraints)

from tierpool import constants as c


class _Output(BaseModel):
    """Keys shared by every output; unknown keys are errors (a typo must not be ignored)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    # Nodes built at once, as in dbt (default 1; --threads overrides). Each node's queries
    # still use all of DuckDB's threads (all cores) or the Spark cluster's executors.
    threads: int | None = Field(None, ge=1)


class DuckDBOutput(_Output):
    """``type: duckdb``: a local database file (the embedded default).

    ``memory_limit`` (e.g. ``4GB``) and ``temp_directory`` (where DuckDB spills when a query
    exceeds it) become DuckDB settings of the build's connections; ``settings`` passes any
    other DuckDB setting (as dbt-duckdb's ``settings``), e.g. ``preserve_insertion_order:
    false`` for builds that must spill.
    """

    type: Literal["duckdb"] = "duckdb"
    path: str = c.DEFAULT_DB_PATH
    memory_limit: str | None = None
    temp_directory: str | None = None
    settings: dict[Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")],
                   StrictBool | StrictInt | StrictFloat | StrictStr] = Field(default_factory=dict)


class SparkOutput(_Output):
    """``type: spark``: a Spark session in this process, or a Spark Connect server.

    ``method: session`` starts (or joins) a SparkSession with ``master`` (``local[*]``,
    ``spark://…``, ``yarn``, ``k8s://…``); tables live in ``warehouse_dir`` and the
    catalog in a Derby metastore under ``metastore_dir`` (both relative to the project),
    so every tierpool command sees what the build wrote. ``method: connect`` reaches a
    Spark Connect server at ``url`` (``sc://host:15002``; ``local[N]`` starts one here).
    ``schema`` is the database tierpool writes to; ``conf`` goes to the session builder.
    A Python model may read at most ``python_max_rows`` rows per input.
    """

    type: Literal["spark"]
    method: Literal["session", "connect"] = "session"
    master: str = "local[*]"
    url: str | None = None
    schema_: str = Field("tierpool", alias="schema", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    warehouse_dir: str = "target/spark-warehouse"
    metastore_dir: str = "target/spark-metastore"
    app_name: str = "tierpool"
    conf: dict[str, str | int | float | bool] = Field(default_factory=dict)
    python_max_rows: int = Field(5_000_000, ge=1)


class ProfileBody(BaseModel):
    """``tierpool:`` in profiles.yml: the default target and its outputs (each checked by the
    model of its type, see :mod:`tierpool.core.config_checks`)."""

    model_config = ConfigDict(extra="forbid", coerce_numbers_to_str=True)

    target: str | None = None
    outputs: dict[str, dict[str, object] | None]


class ProfilesFile(BaseModel):
    """profiles.yml: one profile, ``tierpool``."""

    model_config = ConfigDict(extra="forbid")

    tierpool: ProfileBody
