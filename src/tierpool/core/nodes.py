"""The project's nodes as plain, immutable data.

This module is the contract between project loading (which builds these objects
without touching DuckDB or importing Python models) and the runner / data tests
(which execute them). Extend it only by adding fields with defaults.

Names are normalised to lower case: DuckDB and sqlglot compare unquoted
identifiers case-insensitively, and so do we.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

NodeKind = Literal["seed", "source", "sql", "python", "test"]
Materialization = Literal["view", "table", "append", "incremental"]
Severity = Literal["error", "warn"]


@dataclass(frozen=True)
class Column:
    """A declared column of a relation (from properties yml)."""

    name: str
    type: str | None = None  # DuckDB type name, e.g. "DOUBLE", "VARCHAR"; None = not declared
    description: str = ""


@dataclass(frozen=True)
class TestSpec:
    """A generic data test declared in properties yml, before it is turned into SQL.

    kind is one of not_null, unique, accepted_values, relationships, accepted_range,
    expression. ``column`` is None for model-level tests (e.g. an ``expression`` over
    several columns). ``args`` holds the test's own keys (values, to, field, min_value,
    max_value, expression).
    """

    kind: str
    relation: str
    column: str | None = None
    args: dict[str, Any] = field(default_factory=dict)
    severity: Severity = "error"
    where: str | None = None
    source_file: Path | None = None
    tags: tuple[str, ...] = ()  # the test's own (config.)tags; it also inherits its node's


@dataclass(frozen=True)
class Node:
    """Anything with a name in the graph.

    ``depends_on`` holds relation names (lower case) this node reads; the graph maps
    each relation to the node that produces it (a Python model produces several).
    ``relations`` is what this node produces: its own name for seeds, sources and
    SQL models, the declared outputs for a Python model, nothing for a data test.
    """

    name: str
    kind: NodeKind
    path: Path | None = None
    depends_on: tuple[str, ...] = ()
    description: str = ""
    materialized: Materialization = "view"
    unique_key: tuple[str, ...] = ()
    columns: tuple[Column, ...] = ()
    tests: tuple[TestSpec, ...] = ()
    config: dict[str, Any] = field(default_factory=dict)
    tags: tuple[str, ...] = ()  # yml ``tags:`` and ``config: {tags: ...}`` (for tag: selectors)

    @property
    def relations(self) -> tuple[str, ...]:
        return () if self.kind == "test" else (self.name,)


@dataclass(frozen=True)
class Seed(Node):
    """A CSV file under seeds/, loaded with DuckDB's CSV reader."""

    kind: NodeKind = "seed"
    materialized: Materialization = "table"


@dataclass(frozen=True)
class Source(Node):
    """A name for a DuckDB relation expression, e.g. ``read_parquet('data/*.parquet')``."""

    kind: NodeKind = "source"
    expression: str = ""


@dataclass(frozen=True)
class SqlModel(Node):
    """One SELECT statement in sql/**/<name>.sql."""

    kind: NodeKind = "sql"
    sql: str = ""


@dataclass(frozen=True)
class OutputSpec:
    """One declared output table of a Python model."""

    name: str
    materialized: Materialization = "table"
    unique_key: tuple[str, ...] = ()
    columns: tuple[Column, ...] = ()
    description: str = ""
    tests: tuple[TestSpec, ...] = ()


@dataclass(frozen=True)
class PythonModel(Node):
    """python_models/<name>.py with a module-level ``def model(ctx)``.

    Inputs come from literal ``ctx.ref("...")`` calls, outputs from a module-level
    ``outputs = ("a", "b")`` (default: the file stem), both read from the syntax tree.
    """

    kind: NodeKind = "python"
    outputs: tuple[OutputSpec, ...] = ()
    materialized: Materialization = "table"

    @property
    def relations(self) -> tuple[str, ...]:
        return tuple(o.name for o in self.outputs)


@dataclass(frozen=True)
class DataTest(Node):
    """A data test as SQL that selects failing rows (generic, expanded; or singular)."""

    kind: NodeKind = "test"
    sql: str = ""
    severity: Severity = "error"
    attached_to: tuple[str, ...] = ()  # relations whose build triggers this test
    spec: TestSpec | None = None  # the generic test it came from; None for singular tests
