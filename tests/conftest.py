"""Shared pytest fixtures: fixture projects copied or written into tmp_path."""

from __future__ import annotations

import shutil
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"
PROJECTS = FIXTURES / "projects"


@pytest.fixture
def copy_project(tmp_path: Path) -> Callable[[str], Path]:
    """Copy ``tests/fixtures/projects/<name>`` into tmp_path and return the copy."""

    def copy(name: str) -> Path:
        dest = tmp_path / name
        shutil.copytree(PROJECTS / name, dest, ignore=shutil.ignore_patterns("target"))
        return dest

    return copy


@pytest.fixture
def project_factory(tmp_path: Path) -> Callable[..., Path]:
    """Write a project from a dict of ``relative path -> file text`` (dedented).

    ``base`` copies a fixture project first, so a test can add or override files.
    """

    def make(files: dict[str, str], base: str | None = None, name: str = "project") -> Path:
        root = tmp_path / name
        if base is not None:
            shutil.copytree(PROJECTS / base, root, ignore=shutil.ignore_patterns("target"))
        root.mkdir(parents=True, exist_ok=True)
        for rel, text in files.items():
            path = root / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
        return root

    return make


# -- engines ------------------------------------------------------------------------------
# One Spark session per test worker (a JVM takes seconds to start): every Spark test in a
# process shares it, each with its own database (schema) so tests do not see each other.

_SPARK_ROOT: list[Path] = []


def require_spark() -> None:
    """Skip without pyspark, except under .ci/run (TIERPOOL_REQUIRE_SPARK=1), where it fails."""
    import os
    import shutil

    if os.environ.get("TIERPOOL_REQUIRE_SPARK") == "1":
        import pyspark  # noqa: F401 - an ImportError fails the test under CI

        assert shutil.which("java"), "java is not on PATH: the Spark tests need Java 17"
        return
    pytest.importorskip("pyspark")
    if shutil.which("java") is None:
        pytest.skip("java is not on PATH: the Spark tests need Java 17")


@pytest.fixture(scope="session")
def spark_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Folder of this worker's Spark warehouse and metastore (created once)."""
    if not _SPARK_ROOT:
        _SPARK_ROOT.append(tmp_path_factory.mktemp("spark"))
    return _SPARK_ROOT[0]


def spark_profile(root: Path, schema: str) -> str:
    """A profiles.yml output (yml text) for this worker's shared local Spark session."""
    return (
        f"type: spark\nmethod: session\nmaster: 'local[2]'\nschema: {schema}\n"
        f"warehouse_dir: {root / 'warehouse'}\nmetastore_dir: {root / 'metastore'}\n"
        "conf: {spark.sql.shuffle.partitions: 4, spark.default.parallelism: 2}\n"
    )


_SCHEMA_SLOTS: dict[str, int] = {}  # test node id -> databases it has been given


def fresh_spark_schema(root: Path, test_id: str) -> str:
    """An empty Spark database for one test of this worker: reused from earlier tests, emptied.

    A new database costs ~6 s on a warm session (tierpool creates its 25 SQL functions in
    it, one Derby write each); the Spark tests are ~50, so each worker keeps a few databases
    (one per database a test asks for) and drops their tables and views before handing one
    out. The functions stay: they do not depend on the test.
    """
    slot = _SCHEMA_SLOTS[test_id] = _SCHEMA_SLOTS.get(test_id, -1) + 1
    schema = f"t_reused_{slot}"
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        return schema
    from tierpool.adapters.spark_session import _own_session

    active = SparkSession.getActiveSession()
    # Dropped in tierpool's own session: a session caches the relations it resolved, and a
    # table dropped by another session (a test's caller session) would stay cached in it.
    spark = _own_session(active) if active is not None else None
    if spark is not None and spark.catalog.databaseExists(schema):
        for table in spark.catalog.listTables(schema):
            if not table.isTemporary:
                kind = "VIEW" if table.tableType == "VIEW" else "TABLE"
                spark.sql(f"DROP {kind} IF EXISTS `{schema}`.`{table.name}`")
    return schema


@pytest.fixture
def spark_schema(spark_root: Path, request: pytest.FixtureRequest) -> Callable[[], str]:
    """``spark_schema()``: the name of an empty database of this worker's Spark session."""
    return lambda: fresh_spark_schema(spark_root, request.node.nodeid)


@pytest.fixture
def make_target(spark_root: Path, tmp_path: Path, spark_schema: Callable[[], str]) -> Callable[[str], object]:
    """``make_target("duckdb" | "spark")``: a fresh, empty warehouse of that engine."""
    from tierpool.core.config import target_from_output

    def make(engine: str) -> object:
        if engine == "spark":
            require_spark()
            schema = spark_schema()
            import yaml

            output = yaml.safe_load(spark_profile(spark_root, schema))
        else:
            output = {"type": "duckdb", "path": str(tmp_path / "w.duckdb")}
        return target_from_output(engine, output, tmp_path, tmp_path / "profiles.yml")

    return make
