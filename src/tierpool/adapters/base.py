"""The adapter seam: what the runner, compile checks, seeds, data tests, Python models,
state, lock and CLI need from an engine, and nothing more.

Projects are written in one dialect (DuckDB SQL). Every method that takes SQL takes it
in that dialect; an adapter translates it to its engine's dialect (:meth:`Adapter.translate`).
Every write replaces a relation only once the new one is fully built, so a failure keeps
the old relation exactly as it was; several outputs of one Python model are swapped
together (:meth:`Adapter.write_frames`).

Adding an engine is one module under ``tierpool/adapters/`` implementing this class and
one line in :func:`tierpool.adapters.adapter_for`.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tierpool.errors import ModelError, SqlError

if TYPE_CHECKING:
    import pandas as pd

    from tierpool.core.config import Target
    from tierpool.core.nodes import Column, Node

Schema = dict[str, str]  # column (lower case) -> type name
UNKNOWN = "?"  # ``existing`` argument: look the relation's current kind up
# relation_digests of a relation without rows: "<row count>:<sum of row hashes>"
EMPTY_DIGEST = "0:"

_TRAILING_SEMICOLON = re.compile(r";\s*(--[^\n]*\s*)*$")


def strip_sql(sql: str) -> str:
    """Return ``sql`` without a trailing ``;`` (and comments after it) so it can be nested.

    >>> strip_sql("select 1 as x;  -- done\\n")
    'select 1 as x'
    """
    text = sql.strip()
    text = _TRAILING_SEMICOLON.sub("", text).rstrip()
    return text.rstrip(";").rstrip()


@dataclass(frozen=True)
class FrameOutput:
    """One output of a Python model, to be written with the others in one swap.

    Attributes:
        name: The output relation.
        data: A pandas DataFrame or pyarrow Table.
        columns: Declared columns (checked and cast); empty = write as returned.
        materialized: "table" or "append".
        unique_key: For append: rows with the same key are replaced.
    """

    name: str
    data: Any
    columns: Sequence[Column] = ()
    materialized: str = "table"
    unique_key: Sequence[str] = ()


@dataclass
class QueryResult:
    """Rows of a read query with their column names."""

    columns: list[str]
    rows: list[tuple] = field(default_factory=list)


def frame_shape(data: Any) -> tuple[list[str], int]:
    """Column names and row count of a DataFrame or Arrow table."""
    if hasattr(data, "column_names"):  # pyarrow.Table
        return [str(c) for c in data.column_names], int(data.num_rows)
    return [str(c) for c in data.columns], int(len(data))


def check_output_columns(output: str, got: list[str], declared: Sequence[Column]) -> None:
    """An output must return exactly its declared columns (any order, any case).

    Raises:
        ModelError: Missing or unexpected columns, naming both lists.
    """
    have = {c.lower() for c in got}
    want = [c.name.lower() for c in declared]
    missing = [c for c in want if c not in have]
    extra = sorted(have - set(want))
    problems = []
    if missing:
        problems.append(f"missing column(s) {', '.join(missing)}")
    if extra:
        problems.append(f"unexpected column(s) {', '.join(extra)}")
    if problems:
        raise ModelError(
            f"output '{output}': {'; '.join(problems)} "
            f"(declared: {', '.join(want)}; returned: {', '.join(got)}). "
            "Return exactly the declared columns or update the properties yml."
        )


def bad_cast_error(output: str, column: str, value: Any, type_name: str) -> ModelError:
    """The error for a Python-model value that does not fit its declared type."""
    return ModelError(
        f"output '{output}': column '{column}' value {value!r} cannot be cast to "
        f"declared type {type_name}"
    )


class Adapter(ABC):
    """One engine behind tierpool. Instances hold (at most) one open connection.

    Args:
        target: The resolved profiles.yml target.
        root: The project directory (relative file paths in SQL resolve against it).
    """

    type: str = ""
    dialect: str = "duckdb"  # sqlglot dialect of the engine

    def __init__(self, target: Target, root: Path) -> None:
        self.target = target
        self.root = Path(root)

    # -- identity ---------------------------------------------------------------------------

    @property
    def description(self) -> str:
        """The warehouse as named in messages (e.g. ``database target/w.duckdb``)."""
        return f"database {self.target.path}"

    @property
    def state_key(self) -> str:
        """Identifies this warehouse in target/state.json (one entry per warehouse)."""
        return str(Path(self.target.path).resolve())

    # -- connection -------------------------------------------------------------------------

    @abstractmethod
    def open(self, wait_s: float = 0.0) -> None:
        """Connect for reading and writing (no-op when open).

        Args:
            wait_s: Keep retrying this long while another process holds the warehouse.

        Raises:
            DatabaseError: The warehouse cannot be opened (locked, unreachable).
        """

    @abstractmethod
    def close(self) -> None:
        """Release the connection (no-op when closed)."""

    def release(self) -> None:
        """Let other processes use the warehouse while a Python model runs.

        An embedded single-writer engine closes its connection; a server engine keeps it.
        """
        self.close()

    # -- SQL in the project's dialect ---------------------------------------------------------

    def translate(self, sql: str, where: str = "<sql>") -> str:
        """``sql`` (project dialect, DuckDB) in this engine's dialect.

        Raises:
            SqlError: A construct this engine cannot run faithfully (file, line, function).
        """
        return strip_sql(sql)

    def translation_problems(self, sql: str, where: str) -> list[SqlError]:
        """Every construct of ``sql`` this engine cannot run faithfully (compile checks)."""
        try:
            self.translate(sql, where)
        except SqlError as err:
            return [err]
        return []

    def source_sql(self, expression: str) -> str:
        """A source's relation expression (project dialect) as a FROM item of the engine."""
        return expression

    @abstractmethod
    def execute(self, sql: str) -> None:
        """Run one statement written in the engine's own dialect (no translation)."""

    @abstractmethod
    def fetch(self, sql: str, limit: int | None = None) -> QueryResult:
        """Rows of a query in the project dialect (at most ``limit`` rows)."""

    @abstractmethod
    def frame(self, sql: str) -> pd.DataFrame:
        """A query's rows (project dialect) as a pandas DataFrame."""

    def count(self, sql: str) -> int:
        """Row count of a query in the project dialect."""
        return int(self.fetch(f"SELECT count(*) FROM (\n{strip_sql(sql)}\n) AS q").rows[0][0])

    # Whether data tests are counted together (count_each): pays off where each query has a
    # high fixed cost (a Spark job), not on an embedded engine.
    batches_tests = False
    # A view read by at least this many tests of one batch is read from a snapshot table
    # (test_snapshots); None: never.
    snapshot_min_tests: int | None = None

    def count_each(self, sqls: Sequence[str]) -> list[int]:
        """Row counts of several queries (project dialect), in one query where that is cheaper.

        Raises:
            Exception: Any of the queries fails (the caller then runs them one by one).
        """
        return [self.count(sql) for sql in sqls]

    @contextmanager
    def test_snapshots(self, views: Sequence[str], visible: dict[str, str]) -> Iterator[dict[str, str]]:
        """The relations one batch of tests reads: ``visible`` (relation -> name its current
        version has), where an engine may read some of ``views`` from a snapshot table.

        Engines that plan a view anew for every query it is in (Spark) snapshot a view that
        many tests read; the snapshot holds the rows the view returns at that moment, so the
        tests see exactly what they would have seen, and it is dropped afterwards.
        """
        yield visible

    @abstractmethod
    def query_read_only(self, sql: str, wait_s: float = 0.0) -> QueryResult:
        """Run ad-hoc SQL (project dialect) that must not change anything.

        One read statement only, checked by :func:`tierpool.adapters.read_only.check_read_only`
        (no COPY, ATTACH, EXPORT, INSTALL, SET, DDL/DML, file-reading table functions).
        ``wait_s``: how long to wait for a build holding the warehouse (DuckDB).

        Raises:
            SqlError: The statement writes, or reads outside the warehouse, or fails.
            DatabaseError: The warehouse does not exist or cannot be opened.
        """

    # -- catalog ----------------------------------------------------------------------------

    @abstractmethod
    def relation_kinds(self) -> dict[str, str]:
        """Every relation tierpool can write (lower-case name -> "table" | "view")."""

    def relation_kind(self, name: str) -> str | None:
        """"table", "view" or None."""
        return self.relation_kinds().get(name.lower())

    @abstractmethod
    def describe(self, relation_sql: str) -> Schema | None:
        """Columns and types of a FROM item (project dialect), None when it cannot be read.

        Used by compile checks for sources: it must not need the warehouse to exist.
        """

    @abstractmethod
    def describe_seed(self, path: Path, declared: Schema) -> Schema | None:
        """Columns and types a seed CSV will load with (declared types win)."""

    # -- writes -----------------------------------------------------------------------------

    @abstractmethod
    def audited(self) -> AbstractContextManager[dict[str, str]]:
        """Write, audit, publish: writes inside the block are published together on exit.

        Writes made inside the block are not yet visible under their own names to other
        readers; the block may read them (to run data tests) under the names of the
        yielded mapping (relation -> name to read it by; a relation not in it is read by
        its own name). If the block raises, every write inside it is discarded and each
        relation stays exactly as it was.
        """

    @abstractmethod
    def create_view(self, name: str, select_sql: str, existing: str | None = UNKNOWN) -> None:
        """Create or replace a view (a failure keeps the previous relation)."""

    @abstractmethod
    def build_table(self, name: str, select_sql: str, existing: str | None = UNKNOWN) -> int:
        """Build a table from a SELECT; it replaces the old relation only once fully built.

        Returns:
            The new table's row count.
        """

    @abstractmethod
    def append(
        self, name: str, select_sql: str, unique_key: Sequence[str] = (),
        existing: str | None = UNKNOWN,
    ) -> int:
        """Add the SELECT's rows, first removing rows with the same ``unique_key``.

        All or nothing: a rerun with the same keys is idempotent.

        Returns:
            Rows inserted.
        """

    def merge(
        self, name: str, select_sql: str, unique_key: Sequence[str], existing: str | None = UNKNOWN,
    ) -> int:
        """An incremental model's new rows: :meth:`append` with the same columns as the table.

        The default is :meth:`append`; an engine may add the rows without rewriting the
        table when none of their keys is in it yet.

        Returns:
            Rows inserted.
        """
        return self.append(name, select_sql, unique_key, existing)

    @abstractmethod
    def load_seed(self, seed: Node, existing: str | None = UNKNOWN) -> int:
        """Replace the seed's table with the CSV's rows, all or nothing.

        Raises:
            ModelError: A row cannot be read (``file:line: column c: ...``); nothing changed.
        """

    @abstractmethod
    def write_frames(
        self, outputs: Sequence[FrameOutput], existing: dict[str, str | None] | None = None
    ) -> dict[str, int]:
        """Write all outputs of a Python model, swapped in together or not at all.

        Returns:
            Rows written per output (inserted, for append).

        Raises:
            ModelError: Column mismatch or a value that cannot be cast; nothing changed.
        """

    # -- incremental models -----------------------------------------------------------------

    @abstractmethod
    def query_schema(self, select_sql: str) -> Schema:
        """Columns (lower case, in order) and the engine's type names of a query in the
        project dialect, from its plan: the query is not run."""

    @abstractmethod
    def relation_digests(self, relations: Sequence[str]) -> dict[str, str]:
        """A digest of each relation's rows, in one query: the same rows (in any order) give
        the same digest on this engine, other rows almost surely another one; a relation
        with no row gives :data:`EMPTY_DIGEST` on every engine.

        Incremental models compare their lookup parents' digests between builds.
        """

    @abstractmethod
    def high_water_mark(self, relation: str, column: str) -> str | None:
        """``max(column)`` of a relation as a typed literal of the project dialect, such as
        ``CAST('2026-09-30 23:49:59.5' AS TIMESTAMP)`` (None when the column has no value).

        Read back on the same engine it compares equal to the value it came from.

        Raises:
            ModelError: The column's type has no literal form here.
        """

    # -- reads ------------------------------------------------------------------------------

    @abstractmethod
    def read_frame(self, relation: str) -> pd.DataFrame:
        """A whole relation as a pandas DataFrame (inputs of a Python model).

        Raises:
            ModelError: The relation is too large to move into Python on this engine.
        """

    def read_arrow(self, relation: str) -> Any:
        """A whole relation as a pyarrow Table."""
        import pyarrow as pa

        return pa.Table.from_pandas(self.read_frame(relation), preserve_index=False)

    def __enter__(self) -> Adapter:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
