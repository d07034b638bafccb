"""What the commands share: the error boundary, common options, loading the project, running.

One error boundary (:func:`_errors`) turns a TierpoolError into a red message and its exit
code (2 usage/config/compile, 1 node failures); anything unexpected is one line plus "rerun
with --debug". Heavy libraries are imported inside functions, never at start-up.
"""

from __future__ import annotations

import functools
import json
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from tierpool.errors import ConfigError, TierpoolError


def _errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Map exceptions to messages and exit codes (the CLI's only error boundary)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        debug = bool(kwargs.get("debug"))
        try:
            return fn(*args, **kwargs)
        except TierpoolError as exc:
            if debug:
                traceback.print_exc()
            click.echo(click.style(f"Error: {exc}", fg="red"), err=True)
            sys.exit(exc.exit_code)
        except (click.exceptions.Exit, click.ClickException, SystemExit):
            raise
        except KeyboardInterrupt:
            click.echo("Interrupted.", err=True)
            sys.exit(130)
        except Exception as exc:
            if debug:
                traceback.print_exc()
            first = str(exc).splitlines()[0] if str(exc) else ""
            click.echo(
                click.style(f"Unexpected error: {type(exc).__name__}: {first}", fg="red")
                + " (rerun with --debug for the traceback)",
                err=True,
            )
            sys.exit(2)

    return wrapper


def _project_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    fn = click.option("--debug", is_flag=True, help="Show tracebacks.")(fn)
    fn = click.option("--target", "-t", default=None, help="Target in profiles.yml.")(fn)
    fn = click.option(
        "--project-dir", default=".", type=click.Path(file_okay=False, path_type=Path),
        show_default=True, help="Project directory.",
    )(fn)
    return fn


def _selection_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """--select, --exclude (dbt's selector syntax: core/selection.py) and --resource-type."""
    fn = click.option(
        "--resource-type", "resource_type", multiple=True,
        type=click.Choice(["model", "seed", "source", "test", "sql", "python"], case_sensitive=False),
        help="Keep only these resource types (repeat for several; applied last).",
    )(fn)
    fn = click.option(
        "--exclude", multiple=True,
        help="Remove what these selectors match, after --select (same syntax: space = union, "
             "comma = intersection).",
    )(fn)
    fn = click.option(
        "--select", "-s", multiple=True,
        help="What to run, in dbt's syntax: space = union, comma = intersection (repeating "
             "--select is a union too). A selector is a name (wildcards * ?), a path, or "
             "tag:X, path:DIR, config.materialized:view|table|append|incremental, "
             "resource_type:X, source:X, state:modified (vs target/state.json), test_name:X, "
             "test_type:X; with graph operators name+, +name, 2+name, name+1, @name. Tests of "
             "selected nodes come along.",
    )(fn)
    return fn


def _run_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    fn = click.option("--vars", "vars_text", default=None,
                      help="YAML/JSON dict of vars, e.g. '{fit_id: 2026Q3}'.")(fn)
    fn = click.option("--no-progress", is_flag=True, help="No progress bars while sampling.")(fn)
    fn = click.option("--full-refresh", is_flag=True,
                      help="Rebuild every node and rerun every test, even those unchanged (target/state.json).")(fn)
    fn = click.option("--refit", is_flag=True, help="Refit even if the fit cache is valid.")(fn)
    fn = click.option("--fit-id", default=None, help="Id of the fit (default: chosen by the model).")(fn)
    fn = click.option("--fit-chains", type=int, default=None, help="Chains per fit.")(fn)
    fn = click.option("--fit-draws", type=int, default=None, help="Draws per chain.")(fn)
    fn = click.option("--fit-tune", type=int, default=None, help="Tuning steps per chain.")(fn)
    return fn


def _log_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    fn = click.option("--log-format", type=click.Choice(["text", "json"]), default="text",
                      show_default=True, help="json: one JSON object per event on stdout.")(fn)
    fn = click.option("--verbose", "-v", is_flag=True,
                      help="Show every test under its node (by default: only failing and warning ones).")(fn)
    fn = click.option("--fail-fast", "-x", is_flag=True,
                      help="After the first failure start nothing new; the rest is skipped.")(fn)
    fn = click.option("--threads", type=click.IntRange(min=1), default=None,
                      help="Nodes built at once (default: the target's threads in profiles.yml, else 1).")(fn)
    return fn


def _load(project_dir: Path, target: str | None, check: bool = True, force: bool = False) -> Any:
    """Load the project and run compile checks (skipped if unchanged since they passed).

    The project comes from target/project_cache.pkl when no project file changed
    (``force`` always loads); commands that check also refresh that cache.
    """
    from tierpool.core import project_cache

    key = project_cache.cache_key(project_dir, target)
    project = None if force else project_cache.load(project_dir, key)
    if project is None:
        from tierpool.core.project import load_project

        project = load_project(project_dir, target)
        if check:
            project_cache.save(project, key)
    if check:
        from tierpool.core import compile_cache

        key = compile_cache.fingerprint(project)
        if force or not compile_cache.is_fresh(project, key):
            from tierpool.core.compile import check_project

            check_project(project)
            compile_cache.remember(project, key)
    return project


def _parse_vars(text: str | None) -> dict[str, Any]:
    if not text:
        return {}
    import yaml

    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"--vars is not valid YAML/JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise ConfigError(f"--vars must be a mapping like '{{fit_id: 2026Q3}}', got {text!r}")
    return value


def _execute(command: str, project_dir: Path, target: str | None, debug: bool,
             select: tuple[str, ...], exclude: tuple[str, ...], **run: Any) -> None:
    from tierpool.cli.build_log import ConsoleReporter, FileLog, JsonReporter, Tee
    from tierpool.core import runner

    project = _load(project_dir, target)
    fit_options = {k: run.get(k) for k in ("fit_tune", "fit_draws", "fit_chains", "fit_id")}
    fit_options["refit"] = bool(run.get("refit"))
    args = {"command": command, "select": list(select), "exclude": list(exclude),
            "target": project.target.name,
            **{k: v for k, v in run.items() if v and k not in ("verbose", "log_format")}}
    options = runner.RunOptions(
        select=list(select) or None, exclude=list(exclude) or None,
        vars=_parse_vars(run.get("vars_text")), options=fit_options,
        progress=not run.get("no_progress"), args=args, full_refresh=bool(run.get("full_refresh")),
        threads=run.get("threads"), fail_fast=bool(run.get("fail_fast")),
        resource_types=list(run.get("resource_type") or ()) or None,
    )
    shown: Any = (JsonReporter() if run.get("log_format") == "json"
                  else ConsoleReporter(debug=debug, verbose=bool(run.get("verbose")),
                                       parallel=(options.threads or project.target.threads or 1) > 1))
    reporter = Tee(shown, FileLog(project.target_dir, f"tierpool {command} {json.dumps(args, default=str)}"))
    results = runner.execute(project, command, options, reporter)
    reporter.done(results)
    sys.exit(results.exit_code)
