"""Python-model frames on Spark: Arrow in, declared column types out.

A model's output arrives as pandas or Arrow; it is registered as a temporary view and
selected with each column cast to its declared (DuckDB-spelled) type, after a check
that names the first value that does not fit.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from sqlglot import exp

from tierpool.adapters.base import bad_cast_error
from tierpool.adapters.spark_session import quote

if TYPE_CHECKING:
    from tierpool.core.nodes import Column


def spark_type(duckdb_type: str) -> str:
    """A declared (DuckDB) column type in Spark SQL, e.g. VARCHAR -> STRING."""
    built = exp.DataType.build(duckdb_type, dialect="duckdb")
    if built.this == exp.DataType.Type.TIMESTAMP:
        return "TIMESTAMP_NTZ"  # DuckDB's TIMESTAMP has no time zone
    return built.sql(dialect="spark")


def cast_select(spark: Any, output: str, view: str, got: list[str], columns: Sequence[Column]) -> str:
    """SELECT over ``view`` giving the declared columns in their declared types.

    Raises:
        ModelError: A value cannot be cast to its column's declared type.
    """
    if not columns:
        return f"SELECT * FROM {view}"
    actual = {c.lower(): c for c in got}
    parts = []
    for col in columns:
        ident = quote(actual[col.name.lower()])
        if not col.type:
            parts.append(f"{ident} AS {quote(col.name)}")
            continue
        target = spark_type(col.type)
        bad = spark.sql(
            f"SELECT CAST({ident} AS STRING) FROM {view} WHERE {ident} IS NOT NULL"
            f" AND try_cast({ident} AS {target}) IS NULL LIMIT 1"
        ).collect()
        if bad:
            raise bad_cast_error(output, col.name, bad[0][0], col.type)
        parts.append(f"CAST({ident} AS {target}) AS {quote(col.name)}")
    return f"SELECT {', '.join(parts)} FROM {view}"


def to_arrow(data: Any) -> Any:
    """A model's output (pandas or Arrow) as a pyarrow Table."""
    import pyarrow as pa

    if isinstance(data, pa.Table):
        return data
    return pa.Table.from_pandas(data, preserve_index=False)
