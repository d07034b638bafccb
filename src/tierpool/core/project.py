"""Walk a project folder and return an immutable Project; never touches DuckDB.

Layout (names from ``constants``): ``seeds/**/*.csv``, ``sql/**/*.sql`` (one SELECT
per file, node name = file stem in lower case), ``python_models/*.py`` (files whose
name starts with ``_`` are helpers, not models), ``tests/data/*.sql`` (singular
tests), properties yml anywhere under sql/, seeds/ and python_models/, plus the
optional ``profiles.yml`` and ``tierpool_project.yml``.

Source expressions: a relative path in a string literal that is a positional
argument of a table function (``read_parquet('data/t2/*.parquet')``, also inside
a list) or a quoted file name (``'data/x.csv'``) is resolved against the project
dir, so the warehouse builds the same from any working directory. The expression
as written is kept in ``Source.config["raw_expression"]``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from tierpool import constants as c
from tierpool.core.config import load_project_config, load_target
from tierpool.core.data_tests import (
    build_generic_tests,
    generic_test_sql,
    load_singular_test,
)
from tierpool.core.nodes import DataTest, Seed, Source, SqlModel, TestSpec
from tierpool.core.project_model import Project, display_path, key_of_test
from tierpool.core.project_nodes import apply_properties, check_duplicates
from tierpool.core.properties import RelationProps, read_properties
from tierpool.core.python_models import PythonModelInfo, read_python_model
from tierpool.core.references import structural_problems
from tierpool.core.strict_files import check_sql_jinja, read_text
from tierpool.core.sql import (
    TableRef,
    normalize_name,
    parse_select,
    referenced_tables,
    statement_text,
)
from tierpool.errors import CompileErrors, ConfigError, ProjectError, TierpoolError

if TYPE_CHECKING:
    from sqlglot import exp


# The expression of a source whose own is missing or invalid (its problem is reported; its
# schema is unknown, so compile checks downstream of it are skipped).
NO_RELATION = "(select 1 where false)"

# Project is defined in project_model (so loading-time checks can name it); loading is here.
__all__ = ["Project", "display_path", "key_of_test", "load_project"]


@dataclass
class _Loaded:
    """Mutable scratch state while loading; frozen into a Project at the end."""

    root: Path
    problems: list[TierpoolError] = field(default_factory=list)
    parsed: dict[str, exp.Query] = field(default_factory=dict)
    table_refs: dict[str, tuple[TableRef, ...]] = field(default_factory=dict)
    ref_lines: dict[str, dict[str, int]] = field(default_factory=dict)

    def display(self, path: Path | None) -> str:
        return display_path(self.root, path)


def load_project(project_dir: Path | str = ".", target: str | None = None) -> Project:
    """Load a project folder.

    Args:
        project_dir: The project folder.
        target: Target name (``--target``); see :func:`tierpool.core.config.load_target`.

    Returns:
        The immutable Project.

    Raises:
        ConfigError: No such folder, bad profiles.yml / tierpool_project.yml.
        CompileErrors: Every problem together: SQL syntax, Jinja, non-UTF-8 files,
            duplicate names, bad yml (unknown or unsupported keys), undeclared Python
            outputs, bad source expressions, unknown tables, cycles, and then the column
            and translation checks of :func:`tierpool.core.compile.check_project` on
            the nodes that did load.
    """
    root = Path(project_dir).expanduser().resolve()
    if not root.is_dir():
        raise ConfigError(f"project dir {root} does not exist; point to it with --project-dir")
    resolved_target = load_target(root, target)
    settings = load_project_config(root)
    state = _Loaded(root)
    state.problems += _dbt_leftovers(state)
    seeds = [Seed(name=normalize_name(p.stem), path=p) for p in _files(root, c.SEEDS_DIR, "**/*.csv")]
    sql_models = _load_sql_models(state)
    python_infos = _load_python_models(state)
    props, problems = read_properties(_yml_files(root), state.display)
    state.problems += problems
    sources = [_source_node(p, root, state) for p in props if p.section == "sources"]
    state.problems += check_duplicates(seeds, sql_models, python_infos, sources, state.display)
    nodes, owners, specs = apply_properties(
        seeds, sql_models, python_infos, sources, props, state.display, state.problems
    )
    tests = _build_tests(specs, state)
    project = Project(
        root=root,
        target=resolved_target,
        nodes=nodes,
        tests=tests,
        relation_owner=owners,
        vars=dict(settings.get("vars") or {}),
        settings=settings,
        parsed=state.parsed,
        table_refs=state.table_refs,
        ref_lines=state.ref_lines,
    )
    state.problems += structural_problems(project)
    if state.problems:
        raise CompileErrors(state.problems + _later_stage_problems(project))
    return project


def _later_stage_problems(project: Project) -> list[TierpoolError]:
    """Column and translation problems of a project that already failed to load.

    ``check_project`` runs them on a sound project; a failed load runs them too, on the
    nodes that did load, so that one syntax error does not hide an unknown column.
    """
    from tierpool.core.compile import later_stage_problems

    try:
        return later_stage_problems(project)
    except TierpoolError:  # e.g. the target's engine is not installed: report what we have
        return []


_DBT_FILES = {
    "packages.yml": "packages are not supported; copy what you need into sql/",
    "dependencies.yml": "packages are not supported; copy what you need into sql/",
    "macros": "tierpool has no macros (and no Jinja); write the SQL into each model",
    "snapshots": "snapshots are not supported; use a model with materialized: append",
    "analyses": "analyses are not supported; run them with tierpool query",
}


def _dbt_leftovers(state: _Loaded) -> list[TierpoolError]:
    """dbt files and folders tierpool would otherwise ignore in silence."""
    problems: list[TierpoolError] = []
    for name, why in _DBT_FILES.items():
        path = state.root / name
        if path.is_file() or (path.is_dir() and any(path.rglob("*.sql"))):
            what = "file" if path.is_file() else "folder"
            problems.append(ProjectError(
                f"{state.display(path)}: a dbt {what} tierpool does not support: {why}"))
    return problems


def _files(root: Path, folder: str, pattern: str) -> list[Path]:
    base = root / folder
    return sorted(base.glob(pattern)) if base.is_dir() else []


def _yml_files(root: Path) -> list[Path]:
    found: list[Path] = []
    for folder in (c.SQL_DIR, c.SEEDS_DIR, c.PYTHON_MODELS_DIR):
        found += _files(root, folder, "**/*.yml") + _files(root, folder, "**/*.yaml")
    return sorted(found)


def _load_sql_models(state: _Loaded) -> list[SqlModel]:
    models: list[SqlModel] = []
    for path in _files(state.root, c.SQL_DIR, "**/*.sql"):
        name = normalize_name(path.stem)
        text = ""
        try:
            text = read_text(path, state.display(path))
            check_sql_jinja(text, state.display(path))
            query = parse_select(text, state.display(path))
        except TierpoolError as err:
            state.problems.append(err)
            # Keep the node (without dependencies) so yml naming it is not reported too.
            models.append(SqlModel(name=name, path=path, sql=text))
            continue
        refs = tuple(referenced_tables(query))
        if name not in state.parsed:
            state.parsed[name] = query
            state.table_refs[name] = refs
        models.append(
            SqlModel(name=name, path=path, depends_on=tuple(r.name for r in refs),
                     sql=statement_text(text))
        )
    return models


def _load_python_models(state: _Loaded) -> list[tuple[PythonModelInfo, Path]]:
    infos: list[tuple[PythonModelInfo, Path]] = []
    for path in _files(state.root, c.PYTHON_MODELS_DIR, "*.py"):
        if path.name.startswith("_"):
            continue
        try:
            info = read_python_model(path, state.display(path))
        except TierpoolError as err:
            state.problems.append(err)
            continue
        state.ref_lines.setdefault(info.name, dict(info.ref_lines))
        infos.append((info, path))
    return infos


def _source_node(props: RelationProps, root: Path, state: _Loaded) -> Source:
    where = f"{state.display(props.file)}: source '{props.name}'"
    raw = props.expression
    if raw is None and props.identifier is not None:
        ident = props.identifier
        # An identifier that looks like a file is read by DuckDB's replacement scan.
        raw = f"'{ident}'" if "." in Path(ident).name or "/" in ident else ident
    if not raw:
        state.problems.append(
            ProjectError(f"{where} needs an 'expression' such as read_parquet('data/*.parquet')")
        )
        raw = NO_RELATION
    problem = relation_expression_problem(raw)
    if problem:
        state.problems.append(
            ProjectError(f"{props.at or where}: source '{props.name}': {problem}"))
        raw = NO_RELATION
    return Source(
        name=props.name,
        path=props.file,
        expression=resolve_source_paths(raw, root),
        config={**props.config, "raw_expression": raw},
    )


def resolve_source_paths(expression: str, root: Path) -> str:
    """Make relative file paths in a source expression absolute (against ``root``).

    Args:
        expression: A DuckDB relation expression, e.g. ``read_csv('data/x.csv')``.
        root: The project dir.

    Returns:
        The expression with each relative path literal replaced; unchanged when
        it cannot be parsed (DuckDB will report the problem when it runs).

    Examples:
        >>> resolve_source_paths("read_csv('d/x.csv', delim=',')", Path("/p"))
        "read_csv('/p/d/x.csv', delim=',')"
    """
    import sqlglot  # lazily: a project loaded from target/project_cache.pkl never parses

    try:
        query = sqlglot.parse_one(f"select * from {expression}", read="duckdb")
    except (sqlglot.errors.ParseError, sqlglot.errors.TokenError):
        return expression
    result = expression
    for path in sorted(_path_literals(query), key=len, reverse=True):
        if path.startswith(("/", "~")) or "://" in path or Path(path).is_absolute():
            continue
        quoted = "'" + path.replace("'", "''") + "'"
        absolute = (root / path).as_posix().replace("'", "''")
        result = result.replace(quoted, f"'{absolute}'")
    return result


def relation_expression_problem(expression: str) -> str | None:
    """Why ``expression`` is not one relation (a table, a file or a table function), or None.

    >>> relation_expression_problem("read_csv('x.csv'); drop table fit_runs")[:35]
    'holds 2 statements; a source is one'
    """
    import sqlglot
    from sqlglot import exp

    advice = "a source is one relation expression such as read_parquet('data/*.parquet')"
    try:
        tokens = sqlglot.Dialect.get_or_raise("duckdb").tokenize(expression)
        statements = [s for s in sqlglot.parse(f"select * from {expression}", read="duckdb") if s]
    except (sqlglot.errors.ParseError, sqlglot.errors.TokenError) as err:
        return f"expression is not valid SQL ({str(err).splitlines()[0]}); {advice}"
    if len(statements) > 1:
        return f"holds {len(statements)} statements; {advice}, without ';'"
    if any(t.token_type == sqlglot.TokenType.SEMICOLON for t in tokens):
        return f"holds a ';'; {advice}, without ';'"
    query = statements[0] if statements else None
    extra = [k for k, v in query.args.items() if v and k not in ("expressions", "from", "from_")] \
        if isinstance(query, exp.Select) else ["?"]
    source = (query.args.get("from") or query.args.get("from_")) if not extra else None
    if extra or source is None or not isinstance(source.this, exp.Table | exp.Subquery):
        found = ", ".join(e.upper() for e in extra if e != "?") or "something else"
        return f"expression is not a single relation (found {found}); {advice}"
    return None


def _path_literals(query: exp.Expression) -> set[str]:
    from sqlglot import exp

    found: set[str] = set()
    for table in query.find_all(exp.Table):
        func = table.this
        if isinstance(func, exp.Identifier):
            if func.quoted and ("/" in func.name or "." in func.name):
                found.add(func.name)
            continue
        if not isinstance(func, exp.Func):
            continue
        positional = [func.this] if isinstance(func.args.get("this"), exp.Expression) else []
        positional += list(func.expressions)
        for arg in positional[:1]:
            items = arg.expressions if isinstance(arg, exp.Array) else [arg]
            found.update(i.name for i in items if isinstance(i, exp.Literal) and i.is_string)
    return found


def _build_tests(specs: list[TestSpec], state: _Loaded) -> dict[str, DataTest]:
    valid: list[TestSpec] = []
    for spec in specs:
        try:
            parse_select(generic_test_sql(spec), f"{state.display(spec.source_file)}")
            valid.append(spec)
        except TierpoolError as err:
            state.problems.append(
                type(err)(f"{err} (in data test '{spec.kind}' on '{spec.relation}')")
            )
    tests = {t.name: t for t in build_generic_tests(valid, state.display)}
    for path in _files(state.root, c.DATA_TESTS_DIR, "*.sql"):
        try:
            test, query = load_singular_test(path, state.display(path))
        except TierpoolError as err:
            state.problems.append(err)
            continue
        if test.name in tests:
            state.problems.append(
                ProjectError(
                    f"{state.display(path)}: test name '{test.name}' is already used by a "
                    "generic test; rename the file"
                )
            )
            continue
        tests[test.name] = test
        state.parsed[key_of_test(test.name)] = query
        state.table_refs[key_of_test(test.name)] = tuple(referenced_tables(query))
    return tests
