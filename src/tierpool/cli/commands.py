"""The ``tierpool`` command line: thin click commands over the library.

Shared options and the one error boundary are in :mod:`tierpool.cli.common`. Heavy
libraries (duckdb, sqlglot, pandas, pymc) are imported inside commands, never at start-up.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from tierpool.cli.common import (
    _errors,
    _execute,
    _load,
    _log_options,
    _project_options,
    _run_options,
    _selection_options,
)
from tierpool.cli.read_query import fetch, wait_option
from tierpool.cli.site_commands import docs_cmd, init_cmd
from tierpool.errors import ConfigError


@click.group()
@click.version_option(package_name="tierpool")
def cli() -> None:
    """tierpool: a dbt-style DuckDB warehouse with hierarchical Bayesian calibration.

    Example:

        tierpool build && tierpool query "select * from priors limit 5"
    """


@cli.command()
@_project_options
@_selection_options
@_run_options
@_log_options
@_errors
def build(project_dir: Path, target: str | None, debug: bool, select: tuple[str, ...],
          exclude: tuple[str, ...], **run: Any) -> None:
    """Build seeds, sources and models in order, testing each node right after it.

    Example:

        tierpool build --select residuals+ --fit-draws 1000
    """
    _execute("build", project_dir, target, debug, select, exclude, **run)


@cli.command("run")
@_project_options
@_selection_options
@_run_options
@_log_options
@_errors
def run_cmd(project_dir: Path, target: str | None, debug: bool, select: tuple[str, ...],
            exclude: tuple[str, ...], **run: Any) -> None:
    """Build SQL and Python models (and sources) only: no seeds, no tests.

    Example:

        tierpool run --select +priors
    """
    _execute("run", project_dir, target, debug, select, exclude, **run)


@cli.command()
@_project_options
@_selection_options
@_log_options
@_errors
def seed(project_dir: Path, target: str | None, debug: bool, select: tuple[str, ...],
         exclude: tuple[str, ...], **log: Any) -> None:
    """Load CSV seeds into tables (all rows or nothing).

    Example:

        tierpool seed --select models
    """
    _execute("seed", project_dir, target, debug, select, exclude, **log)


@cli.command()
@_project_options
@_selection_options
@_log_options
@_errors
def test(project_dir: Path, target: str | None, debug: bool, select: tuple[str, ...],
         exclude: tuple[str, ...], **log: Any) -> None:
    """Run data tests (of the selected nodes) against the built warehouse.

    Example:

        tierpool test --select priors
    """
    _execute("test", project_dir, target, debug, select, exclude, **log)


@cli.command()
@_project_options
@_log_options
@_errors
def retry(project_dir: Path, target: str | None, debug: bool, **log: Any) -> None:
    """Rerun what failed or was skipped in the last run (target/run_results.json).

    The last command runs again with its flags, selecting its failed and skipped nodes and
    the nodes of its failed tests.

    Example:

        tierpool build --fail-fast; tierpool retry
    """
    from tierpool.core.retry import retry_plan

    plan = retry_plan(_load(project_dir, target))
    if not plan.select:
        click.echo(f"Nothing to retry: nothing failed or was skipped in the last tierpool {plan.command}.")
        return
    click.echo(f"Retrying tierpool {plan.command} of {len(plan.select)} node(s): {' '.join(plan.select)}")
    options = {**plan.flags, **{k: v for k, v in log.items() if v}}
    _execute(plan.command, project_dir, target or plan.target, debug, tuple(plan.select), (), **options)


@cli.command("compile")
@_project_options
@_errors
def compile_cmd(project_dir: Path, target: str | None, debug: bool) -> None:
    """Check the project (SQL, dependencies, columns, yml) without running anything.

    Example:

        tierpool compile --project-dir my_warehouse
    """
    from tierpool.core import artifacts
    project = _load(project_dir, target, force=True)
    artifacts.write_manifest(project, project.graph())
    click.echo(f"ok: {len(project.nodes)} nodes, {len(project.tests)} tests")


@cli.command("ls")
@_project_options
@_selection_options
@click.option("--output", "-o", type=click.Choice(["table", "name", "path", "json"]), default="table",
              show_default=True, help="table: kind, name and parents; name; path (relative to the "
                                      "project); json: one object per line, as dbt ls --output json.")
@_errors
def ls_cmd(project_dir: Path, target: str | None, debug: bool, select: tuple[str, ...],
           exclude: tuple[str, ...], resource_type: tuple[str, ...], output: str) -> None:
    """List selected nodes in build order with their kind and parents.

    Data tests are listed with --resource-type test, or when a selector names them (their
    name, tag, file, resource_type:test).

    Example:

        tierpool ls --select "tag:nightly,config.materialized:table" --output json
    """
    from tierpool.cli.ls_output import ls_lines
    from tierpool.core.selection import resolve_selection

    project = _load(project_dir, target, check=False)
    graph = project.graph()
    chosen = resolve_selection(project, graph, select, exclude, resource_type)
    tests = chosen.tests if resource_type else chosen.named_tests
    if not chosen.nodes and not tests:
        click.echo("Nothing selected.", err=True)
    for line in ls_lines(project, graph, chosen.nodes, tests, output):
        click.echo(line)


def _reader(project_dir: Path, target: str | None) -> Any:
    """A read-only adapter of the project's target (no project loading needed)."""
    from tierpool.adapters import adapter_for
    from tierpool.core.config import load_target

    root = Path(project_dir).resolve()
    return adapter_for(load_target(root, target), root, read_only=True)


@cli.command()
@click.argument("sql")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table",
              show_default=True, help="Output format.")
@wait_option
@_project_options
@_errors
def query(sql: str, fmt: str, wait_s: float, project_dir: Path, target: str | None,
          debug: bool) -> None:
    """Run one read-only statement against the warehouse and print the result.

    Works while a build is fitting; waits --wait seconds while a build holds the database.
    Refuses COPY, ATTACH, EXPORT, INSTALL, SET, DDL/DML and reading files directly.

    Example:

        tierpool query "select model_id, bias_mean from priors limit 5" --format csv
    """
    from tierpool.cli.console import render

    columns, rows = fetch(_reader(project_dir, target), sql, wait_s)
    if columns:
        click.echo(render(fmt, columns, rows))


@cli.command()
@click.argument("node")
@click.option("--limit", "-n", type=int, default=10, show_default=True, help="Rows to show.")
@wait_option
@_project_options
@_errors
def show(node: str, limit: int, wait_s: float, project_dir: Path, target: str | None,
         debug: bool) -> None:
    """Show the first rows of a node's relation (each output of a Python model).

    Example:

        tierpool show priors --limit 20
    """
    from tierpool.cli.console import render_table

    project = _load(project_dir, target, check=False)
    name = node.lower()
    if name in project.nodes:
        relations = list(project.nodes[name].relations)
    elif name in project.relation_owner:
        relations = [name]
    else:
        import difflib

        close = difflib.get_close_matches(name, sorted(set(project.nodes) | set(project.relation_owner)))
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ConfigError(f"no node or relation named '{node}'{hint}")
    reader = _reader(project_dir, target)
    for relation in relations:
        quoted = '"' + relation.replace('"', '""') + '"'
        columns, rows = fetch(reader, f"SELECT * FROM {quoted} LIMIT {int(limit)}", wait_s)
        if len(relations) > 1:
            click.echo(f"-- {relation}")
        click.echo(render_table(columns, rows))


@cli.command()
@click.option("--fit-id", default=None, help="Fit to report (default: the latest published fit).")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="HTML file to write (default: target/report/index.html).")
@_project_options
@_errors
def report(fit_id: str | None, out: Path | None, project_dir: Path, target: str | None, debug: bool) -> None:
    """Write a static HTML report of a fit (figures embedded; opens the warehouse read-only).

    Example:

        tierpool report --fit-id 2026Q3 --out /tmp/report.html
    """
    from tierpool.report import write_report

    project = _load(project_dir, target, check=False)
    path = write_report(_reader(project_dir, target), out or project.target_dir / "report" / "index.html",
                        fit_id=fit_id, fits_dir=project.target_dir / "fits")
    click.echo(f"wrote {path}")


@cli.command("compare-hierarchies")
@click.option("--indicator", "indicators", multiple=True, help="Indicator to compare (default: all).")
@click.option("--run-id", default=None, help="Id of this run; its earlier rows are replaced (default: UTC time).")
@click.option("--fit-tune", type=int, default=None, help="Tuning steps per chain.")
@click.option("--fit-draws", type=int, default=None, help="Draws per chain.")
@click.option("--fit-chains", type=int, default=None, help="Chains per fit.")
@click.option("--no-progress", is_flag=True, help="No progress bars while sampling.")
@click.option("--hierarchy", "names", multiple=True, type=click.Choice(["two_level", "three_level", "global_level", "interaction"]),
              help="Hierarchy to compare (repeat; default: two_level and three_level).")
@click.option("--holdout", "modes", multiple=True, type=click.Choice(["models", "regions", "families", "cells"]),
              help="Also leave whole models, regions or families out of the fit and score their rows "
                   "against the new-member prior (repeat; --folds fits each).")
@click.option("--folds", type=click.IntRange(2, 20), default=5, show_default=True, help="Folds per --holdout mode.")
@_project_options
@_errors
def compare_hierarchies_cmd(indicators: tuple[str, ...], run_id: str | None, fit_tune: int | None,
                            fit_draws: int | None, fit_chains: int | None, no_progress: bool,
                            names: tuple[str, ...], modes: tuple[str, ...], folds: int,
                            project_dir: Path, target: str | None, debug: bool) -> None:
    """Fit candidate hierarchies on the fit fold; score them on the test fold and, with --holdout, on
    whole held-out groups.

    Prints the tables and writes them to hierarchy_comparison (and hierarchy_holdout). Example:

        tierpool compare-hierarchies --hierarchy two_level --hierarchy global_level --holdout models
    """
    from tierpool.calibration.compare import compare_warehouse, holdout_lines, summary_lines
    from tierpool.calibration.settings import read_settings
    from tierpool.fit import FitSettings

    project = _load(project_dir, target, check=False)
    options = {"fit_tune": fit_tune, "fit_draws": fit_draws, "fit_chains": fit_chains}
    sampler = read_settings(project.vars, options).sampler
    settings = FitSettings(progress=not no_progress, **sampler)
    from tierpool.adapters import adapter_for

    writer = adapter_for(project.target, project.root)
    rows, held = compare_warehouse(_reader(project_dir, target), writer, settings, list(indicators) or None, run_id,
                                   names or ("two_level", "three_level"), modes, folds)
    for line in summary_lines(rows) + (holdout_lines(held) if held is not None else []):
        click.echo(line)


@cli.command()
@click.option("--rows", type=int, default=None, help="Number of tier-2 requests to generate.")
@click.option("--seed", "seed_", type=int, default=0, show_default=True, help="Random seed.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Output directory (a project to build).")
@click.option("--heavy-tail", multiple=True, help="Family whose residuals get heavy tails.")
@click.option("--debug", is_flag=True, help="Show tracebacks.")
@_errors
def synth(rows: int | None, seed_: int, out: Path | None, heavy_tail: tuple[str, ...], debug: bool) -> None:
    """Write a synthetic warehouse with a known ground truth.

    Example:

        tierpool synth --rows 100000 --seed 1 --out synth_project
    """
    try:
        from tierpool.calibration.synth import synth_cli
    except ImportError as exc:
        raise ConfigError(f"tierpool synth is not available in this installation ({exc})") from exc
    synth_cli(out=out, rows=rows, seed=seed_, heavy_tail=tuple(heavy_tail))


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="tierpool")


cli.add_command(docs_cmd)
cli.add_command(init_cmd)
