"""What `tierpool query` / `tierpool show` may run: reads of the warehouse, nothing else.

Shared by both engines (the SQL is the project's dialect, DuckDB):

* :func:`check_read_only` refuses, before anything runs, every statement that is not a read
  (COPY, ATTACH, EXPORT, INSTALL, SET, CREATE, INSERT, ...), and reads that reach outside the
  warehouse: file-reading table functions (``read_csv``, ``read_parquet``, ``glob``, ...),
  a file name used as a table (``'x.csv'``, Spark's ``parquet.`/path```) and ``query()``,
  which runs SQL text that cannot be checked.
* :func:`view_file_paths` lists the files the warehouse's own views read (a source view over
  ``read_parquet('data/*.parquet')``): DuckDB opens the warehouse with external access off
  except for exactly those files and folders, as a second line of defence.

A read-only connection alone is not enough: DuckDB's read-only mode protects the database
file, not the file system (COPY ... TO, EXPORT DATABASE) nor other databases (ATTACH).
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlglot
from sqlglot import exp

from tierpool.errors import SqlError

_HINT = "Use `tierpool build` for writes, or open the warehouse with the DuckDB CLI."
_FILE_HINT = ("Declare the files as a source of the project and query its view, or open them "
              "with the DuckDB CLI.")

#: Leading keywords of statements that only read; anything else is refused.
_READ_KEYWORDS = {"SELECT", "WITH", "VALUES", "FROM", "TABLE", "DESCRIBE", "DESC", "SHOW",
                  "SUMMARIZE", "EXPLAIN", "PIVOT", "UNPIVOT", "PRAGMA", "CALL", "("}

#: Why a leading keyword is refused (others: "X is not a read").
_REFUSED = {
    "COPY": "COPY reads and writes files",
    "EXPORT": "EXPORT DATABASE writes files",
    "IMPORT": "IMPORT DATABASE reads files and writes the warehouse",
    "ATTACH": "ATTACH opens another database (and can write to it)",
    "DETACH": "DETACH changes the attached databases",
    "USE": "USE changes the session's database",
    "INSTALL": "INSTALL downloads and installs extensions",
    "FORCE": "FORCE INSTALL downloads and installs extensions",
    "LOAD": "LOAD loads extensions (or, on Spark, data)",
    "SET": "SET changes the session's configuration",
    "RESET": "RESET changes the session's configuration",
    "CHECKPOINT": "CHECKPOINT writes the database file",
    "VACUUM": "VACUUM writes the database file",
    "ANALYZE": "ANALYZE writes statistics",
    "BEGIN": "transactions are not needed for a read",
    "START": "transactions are not needed for a read",
    "COMMIT": "transactions are not needed for a read",
    "ROLLBACK": "transactions are not needed for a read",
    "PREPARE": "prepared statements hide the statement that runs",
    "EXECUTE": "prepared statements hide the statement that runs",
    "ADD": "ADD JAR/FILE changes the session",
}
for _word in ("CREATE", "INSERT", "UPDATE", "DELETE", "DROP", "ALTER", "TRUNCATE", "MERGE",
              "REPLACE", "UPSERT", "COMMENT", "GRANT", "REVOKE", "REFRESH", "MSCK", "CACHE",
              "UNCACHE", "OPTIMIZE"):
    _REFUSED[_word] = f"{_word} changes the warehouse"

#: PRAGMAs that only read (``PRAGMA x`` or ``PRAGMA x(...)``).
_READ_PRAGMAS = {"version", "platform", "user_agent", "database_size", "database_list",
                 "show_tables", "show_tables_expanded", "show_databases", "table_info", "show",
                 "storage_info", "functions", "collations", "metadata_info"}

#: Table functions that read (or list) files: refused in queries, allowed inside the views.
_FILE_READER = re.compile(
    r"^(read_\w+|\w+_scan|parquet_\w+|sniff_csv|glob|st_read\w*|iceberg_\w+|delta_\w+)$", re.I
)
#: Other functions refused: they run SQL text, read the environment or secrets, or call Java.
_OTHER_REFUSED = {"query": "runs SQL text that cannot be checked",
                  "query_table": "runs SQL text that cannot be checked",
                  "getenv": "reads the environment", "duckdb_secrets": "reads secrets",
                  "which_secret": "reads secrets", "load_aws_credentials": "reads credentials",
                  "reflect": "calls Java methods", "java_method": "calls Java methods",
                  "try_reflect": "calls Java methods"}
#: SHOW forms that list the catalog (anything else after SHOW is a relation to describe).
_SHOW_LISTS = re.compile(r"^(ALL\s+)?(TABLES|DATABASES|SCHEMAS|FUNCTIONS|COLUMNS|CREATE|VIEWS"
                         r"|PARTITIONS|TBLPROPERTIES|CATALOGS|NAMESPACES|USER\s+FUNCTIONS)\b",
                         re.I)
#: Spark's file tables: parquet.`/path`, csv.`...`, ...
_SPARK_FILE_TABLE = re.compile(
    r"\b(parquet|csv|json|orc|text|avro|delta|binaryfile|iceberg)\s*\.\s*`", re.I
)
_FILE_FORMATS = {"parquet", "csv", "json", "orc", "text", "avro", "delta", "binaryfile",
                 "iceberg"}
_WILDCARD = re.compile(r"[*?\[{]")


def refuse(reason: str, hint: str = _HINT) -> SqlError:
    """The read-only error: what was refused, why, and what to use instead."""
    return SqlError(f"tierpool query is read-only: {reason}. {hint}")


@contextmanager
def _quiet_sqlglot() -> Iterator[None]:
    # sqlglot logs "contains unsupported syntax" for EXPLAIN/SHOW ...; the CLI must stay clean.
    logger = logging.getLogger("sqlglot")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _statements(sql: str) -> list[str]:
    """The SQL split into statements (empty ones dropped), by sqlglot's tokenizer."""
    try:
        tokens = sqlglot.tokenize(sql, read="duckdb")
    except sqlglot.errors.TokenError as exc:
        raise SqlError(f"cannot parse query: {str(exc).splitlines()[0]}") from exc
    statements, start = [], 0
    for token in tokens:
        if token.token_type == sqlglot.tokens.TokenType.SEMICOLON:
            statements.append(sql[start:token.start])
            start = token.end + 1
    statements.append(sql[start:])
    return [s for s in (_strip(s) for s in statements) if s]


def _strip(statement: str) -> str:
    """Drop leading/trailing blanks and comments."""
    text = statement.strip()
    while True:
        if text.startswith("--"):
            text = text.split("\n", 1)[1].strip() if "\n" in text else ""
        elif text.startswith("/*") and "*/" in text:
            text = text.split("*/", 1)[1].strip()
        else:
            return text


def _keyword(statement: str) -> str:
    if statement.startswith("("):
        return "("
    match = re.match(r"[A-Za-z_]+", statement)
    return match.group(0).upper() if match else statement[:1]


def function_name(node: exp.Expression) -> str | None:
    """Lower-case name of a function node (typed or anonymous), else None."""
    if isinstance(node, exp.Anonymous):
        return str(node.name).lower()
    if isinstance(node, exp.Func):
        return node.sql_name().lower()
    return None


def _file_like(name: str) -> bool:
    return "/" in name or "\\" in name or "." in name or "://" in name


def _check_tree(tree: exp.Expression) -> None:
    for node in tree.walk():
        if isinstance(node, (exp.DML, exp.DDL, exp.Copy, exp.Command, exp.Attach, exp.Detach,
                             exp.Set, exp.Transaction, exp.Use)):
            keyword = type(node).__name__.upper()
            raise refuse(_REFUSED.get(keyword, f"{keyword} is not a read"))
        name = function_name(node)
        if name is not None and name in _OTHER_REFUSED:
            raise refuse(f"{name}() {_OTHER_REFUSED[name]}")
        if name is not None and _FILE_READER.match(name):
            raise refuse(f"{name}() reads files outside the warehouse", _FILE_HINT)
        if isinstance(node, exp.Table) and isinstance(node.this, exp.Identifier):
            if _file_like(node.name) or node.db.lower() in _FILE_FORMATS:
                raise refuse(f"'{node.name}' is a file, not a warehouse relation", _FILE_HINT)


def _check_statement(statement: str) -> None:
    keyword = _keyword(statement)
    if keyword not in _READ_KEYWORDS:
        raise refuse(_REFUSED.get(keyword, f"{keyword} is not a read"))
    if _SPARK_FILE_TABLE.search(statement):
        raise refuse("a file used as a table reads files outside the warehouse", _FILE_HINT)
    rest = statement[len(keyword):].strip()
    if keyword == "EXPLAIN":  # EXPLAIN ANALYZE runs the statement: check what it explains
        rest = re.sub(r"^ANALYZE\b", "", rest, flags=re.I).strip()
        return _check_statement(rest) if rest else None
    if keyword in ("DESCRIBE", "DESC", "SUMMARIZE"):
        rest = re.sub(r"^((TABLE|EXTENDED|FORMATTED|QUERY)\s+)+", "", rest, flags=re.I)
        if _keyword(rest) in _READ_KEYWORDS:
            return _check_statement(rest)
    if keyword == "PRAGMA":
        name = re.match(r"\w*", rest).group(0).lower()  # type: ignore[union-attr]
        if name not in _READ_PRAGMAS:
            raise refuse(f"PRAGMA {name} is not a read (readable: {', '.join(sorted(_READ_PRAGMAS))})")
        statement = f"SELECT * FROM pragma_{name}{rest[len(name):] or '()'}"
    elif keyword == "CALL":
        statement = f"SELECT * FROM {rest}"
    elif keyword in ("SHOW", "DESCRIBE", "DESC", "SUMMARIZE"):
        if not rest or keyword == "SHOW" and _SHOW_LISTS.match(rest):
            return None
        statement = f"SELECT * FROM {rest}"  # the relation it describes: not a file
    with _quiet_sqlglot():
        try:
            trees = sqlglot.parse(statement, read="duckdb")
        except sqlglot.errors.ParseError as exc:
            raise SqlError(f"cannot parse query: {str(exc).splitlines()[0]}") from exc
    for tree in trees:
        if tree is not None:
            _check_tree(tree)


def check_read_only(sql: str) -> None:
    """Refuse SQL that is not one read of the warehouse's relations.

    Raises:
        SqlError: "tierpool query is read-only: <why>. Use `tierpool build` ...", or the
            query cannot be parsed.
    """
    statements = _statements(sql)
    if not statements:
        raise SqlError("tierpool query needs a SQL statement, e.g. \"select * from priors limit 5\"")
    if len(statements) > 1:
        raise refuse(f"run one statement at a time (got {len(statements)})")
    _check_statement(statements[0])


# -- the files the warehouse's own views read ------------------------------------------------


def _literal_paths(node: exp.Expression | None) -> Iterable[str]:
    if node is None:
        return []
    return [lit.this for lit in [node, *node.find_all(exp.Literal)]
            if isinstance(lit, exp.Literal) and lit.is_string]


def view_file_paths(view_sqls: Iterable[str], root: Path) -> tuple[list[str], list[str]]:
    """Files and folders the given view definitions read (for DuckDB's allowed paths).

    Args:
        view_sqls: ``CREATE VIEW ...`` texts (``duckdb_views().sql``).
        root: The project dir (relative paths resolve against it, like ``file_search_path``).

    Returns:
        (files, folders): exact files, and for each glob the folder above its first wildcard;
        a relative path both as written and under ``root``. Remote URLs are left out
        (external access stays off for them).
    """
    found: set[str] = set()
    with _quiet_sqlglot():
        for sql in view_sqls:
            try:
                trees = sqlglot.parse(sql, read="duckdb")
            except (sqlglot.errors.ParseError, sqlglot.errors.TokenError):
                continue
            for tree in (t for t in trees if t is not None):
                for node in tree.walk():
                    name = function_name(node)
                    if name is not None and _FILE_READER.match(name):
                        first = node.this if isinstance(node.this, exp.Expression) else (
                            node.expressions[0] if node.expressions else None)
                        found.update(_literal_paths(first))
                    elif isinstance(node, exp.Table) and isinstance(node.this, exp.Identifier) \
                            and _file_like(node.name):
                        found.add(node.name)
    files: set[str] = set()
    folders: set[str] = set()
    for path in found:
        if "://" in path:
            continue
        given = Path(os.path.expanduser(path))
        # DuckDB checks a relative path both as written and resolved: allow both forms.
        forms = [given] if given.is_absolute() else [given, root / given]
        for form in forms:
            if _WILDCARD.search(str(form)):
                parts = form.parts
                index = next(i for i, p in enumerate(parts) if _WILDCARD.search(p))
                folders.add(str(Path(*parts[:index])))
            else:
                files.add(str(form))
    return sorted(files), sorted(folders)


# -- DuckDB: a guarded connection --------------------------------------------------------------

_VIEWS_SQL = "select sql from duckdb_views() where not internal and sql is not null"


def _list_literal(items: Iterable[str]) -> str:
    return "[" + ", ".join("'" + item.replace("'", "''") + "'" for item in items) + "]"


def duckdb_lock_down(view_sqls: Iterable[str], root: Path) -> list[str]:
    """SET statements: only the files the warehouse's views read stay readable, then lock.

    DuckDB takes ``allowed_paths``/``allowed_directories`` only on a started database and
    only while external access is on, hence statements rather than connect-time config.
    """
    files, folders = view_file_paths(view_sqls, root)
    return [f"SET allowed_paths = {_list_literal(files)}",
            f"SET allowed_directories = {_list_literal(folders)}",
            "SET enable_external_access = false",
            "SET lock_configuration = true"]


def _open(path: Path, root: Path, wait_s: float) -> Any:
    from tierpool.adapters.duckdb_sql import connect

    # A config of its own: DuckDB shares one database instance per file and config in a
    # process, so these settings never leak into another connection of this process.
    config = {"custom_user_agent": "tierpool-query", "autoinstall_known_extensions": False,
              "autoload_known_extensions": False, "file_search_path": str(root)}
    con = connect(path, read_only=True, wait_s=wait_s, config=config)
    try:
        if not con.execute("select current_setting('lock_configuration')").fetchone()[0]:
            views = [row[0] for row in con.execute(_VIEWS_SQL).fetchall()]
            for statement in duckdb_lock_down(views, root):
                con.execute(statement)
    except BaseException:
        con.close()
        raise
    return con


def duckdb_query(path: Path, root: Path, sql: str, wait_s: float = 0.0) -> tuple[list[str], list]:
    """Run one checked read on the DuckDB warehouse at ``path``: (columns, rows).

    Opened read-only, waiting up to ``wait_s`` for a build holding the file, with external
    access limited to the files the warehouse's own views read (a source over parquet).

    Raises:
        SqlError: The statement is not a read, reads outside the warehouse, or fails.
        DatabaseError: No warehouse, or it stayed locked for ``wait_s`` seconds.
    """
    import duckdb

    check_read_only(sql)
    con = _open(Path(path), Path(root), wait_s)
    try:
        rel = con.sql(sql)
        if rel is None:
            return [], []
        return list(rel.columns), rel.fetchall()
    except duckdb.PermissionException as exc:
        raise refuse(str(exc).splitlines()[0], _FILE_HINT) from exc
    except duckdb.Error as exc:
        raise SqlError(str(exc)) from exc
    finally:
        con.close()
