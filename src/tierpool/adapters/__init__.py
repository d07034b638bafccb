"""Engines behind tierpool: one module per engine behind :class:`~tierpool.adapters.base.Adapter`.

Only modules in this package import duckdb or pyspark. ``adapter_for(target, root)``
returns the adapter of a profiles.yml target; the Spark adapter (and pyspark) is imported
only when a Spark target is used.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from tierpool.adapters.base import (
    EMPTY_DIGEST,
    UNKNOWN,
    Adapter,
    FrameOutput,
    QueryResult,
    Schema,
    strip_sql,
)

if TYPE_CHECKING:
    from tierpool.core.config import Target

__all__ = ["EMPTY_DIGEST", "UNKNOWN", "Adapter", "FrameOutput", "QueryResult", "Schema", "adapter_for", "strip_sql"]


def adapter_for(target: Target, root: Path, read_only: bool = False) -> Adapter:
    """The adapter of a target (not yet connected).

    Args:
        target: A resolved profiles.yml target.
        root: The project directory.
        read_only: Open the warehouse for reading only (queries, reports).
    """
    if target.type == "spark":
        from tierpool.adapters.spark_adapter import SparkAdapter

        return SparkAdapter(target, root, read_only=read_only)
    from tierpool.adapters.duckdb_adapter import DuckDBAdapter

    return DuckDBAdapter(target, root, read_only=read_only)
