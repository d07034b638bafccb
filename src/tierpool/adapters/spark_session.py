"""Starting (or joining) the process's Spark session for a ``type: spark`` target.

A process shares one SparkSession (one JVM), as Spark itself does: static settings
(master, warehouse, metastore) apply only when this module starts the session.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from tierpool.errors import ConfigError, DatabaseError

if TYPE_CHECKING:
    from tierpool.core.config import SparkOutput

_DERBY_LOCKED = ("Another instance of Derby", "XSDB6", "Failed to start database")


def quote(name: str) -> str:
    """Quote an identifier for Spark SQL."""
    return "`" + name.replace("`", "``") + "`"


def friendly_error(exc: Exception) -> str:
    """The first meaningful line of a Spark error (without the JVM stack)."""
    text = str(exc).strip()
    first = text.splitlines()[0] if text else type(exc).__name__
    return first[:500]


# tierpool's own session on the process's SparkContext. A session someone else made active
# (a notebook, a test) may hold temporary views: one named `models` would shadow the
# warehouse's table in every query tierpool runs, so tierpool never works in it.
_OWN: list[Any] = []


def _own_session(active: Any) -> Any:
    """tierpool's session on ``active``'s SparkContext: its catalog, none of its temp views."""
    if _OWN and _OWN[0].sparkContext is active.sparkContext and active.sparkContext._jsc is not None:
        return _OWN[0]
    _OWN[:] = [active.newSession()]
    return _OWN[0]


def get_session(settings: SparkOutput) -> Any:
    """The process's SparkSession for these settings (started on first use).

    Static settings (master, warehouse, metastore) only apply when this call starts the
    session: a process shares one session (a JVM), as Spark itself does.

    Raises:
        ConfigError: pyspark is not installed.
        DatabaseError: The session cannot start (no Java, metastore in use, ...).
    """
    try:
        from pyspark.sql import SparkSession
    except ImportError as exc:
        raise ConfigError(
            "the spark target needs pyspark: pip install -e '.[spark]' (and Java 17)"
        ) from exc
    try:
        if settings.method == "connect":
            builder = SparkSession.builder.remote(settings.url)
        else:
            active = SparkSession.getActiveSession()
            if active is not None:
                return _own_session(active)
            metastore = Path(settings.metastore_dir)
            metastore.mkdir(parents=True, exist_ok=True)
            builder = (
                SparkSession.builder.master(settings.master).appName(settings.app_name)
                .config("spark.sql.warehouse.dir", settings.warehouse_dir)
                .config("spark.sql.catalogImplementation", "hive")
                .config("spark.hadoop.javax.jdo.option.ConnectionURL",
                        f"jdbc:derby:;databaseName={metastore / 'metastore_db'};create=true")
                .config("spark.driver.extraJavaOptions", f"-Dderby.system.home={metastore}")
                .config("spark.ui.enabled", "false")
                .config("spark.ui.showConsoleProgress", "false")  # tierpool prints its own progress
                .enableHiveSupport()
            )
        # DuckDB's TIMESTAMP is zone-less: the same wall-clock values need a UTC session.
        builder = builder.config("spark.sql.session.timeZone", "UTC")
        for key, value in settings.conf.items():
            builder = builder.config(key, str(value).lower() if isinstance(value, bool) else str(value))
        spark = builder.getOrCreate()
        if settings.method == "session":
            _OWN[:] = [spark]
    except Exception as exc:
        text = str(exc)
        if any(marker in text for marker in _DERBY_LOCKED):
            raise DatabaseError(
                f"the Spark metastore in {settings.metastore_dir} is in use by another process "
                "(a running tierpool build or query). Wait for it to finish, then retry."
            ) from exc
        raise DatabaseError(f"cannot start Spark ({settings.method}): {friendly_error(exc)}") from exc
    _quiet(spark, settings)
    return spark


def _quiet(spark: Any, settings: SparkOutput) -> None:
    """tierpool reports Spark's errors itself, as one line: silence Spark's own logging of them."""
    from pyspark.logger import PySparkLogger

    for name in ("SQLQueryContextLogger", "DataFrameQueryContextLogger"):
        PySparkLogger.getLogger(name).disabled = True
    if settings.method == "session":
        spark.sparkContext.setLogLevel("ERROR")
