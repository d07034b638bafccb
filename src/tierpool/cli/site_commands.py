"""``tierpool docs`` and ``tierpool init``: registered on the ``cli`` group by commands.py."""

from __future__ import annotations

from pathlib import Path

import click

from tierpool.cli.common import _errors, _load, _project_options
from tierpool.cli.read_query import wait_option


@click.command("docs")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder to write the site to (default: target/docs).")
@wait_option
@_project_options
@_errors
def docs_cmd(out: Path | None, wait_s: float, project_dir: Path, target: str | None, debug: bool) -> None:
    """Write a static HTML site of the warehouse and print the path of its index.html.

    Every relation with its description, materialization, columns and warehouse types, data
    tests with their last status (target/run_results.json), parents, children and lineage
    graph; linked to the calibration report (`tierpool report`) when there is one. The
    warehouse is opened read-only; relations not built yet show as "not built".

    Example:

        tierpool docs --out site && chromium site/index.html
    """
    from tierpool.adapters import adapter_for
    from tierpool.docs_site import write_docs

    project = _load(project_dir, target, check=False)
    reader = adapter_for(project.target, project.root, read_only=True)
    index = write_docs(project, reader, out or project.target_dir / "docs", wait_s=wait_s)
    click.echo(f"wrote {index}")


@click.command("init")
@click.argument("directory", type=click.Path(file_okay=True, path_type=Path))
@click.option("--name", default=None, help="Project name (default: the directory's name as an identifier).")
@click.option("--debug", is_flag=True, help="Show tracebacks.")
@_errors
def init_cmd(directory: Path, name: str | None, debug: bool) -> None:
    """Create a new project in DIRECTORY (new or empty) that builds at once.

    Two seeds with typed and tested columns, a view and a table model with descriptions and
    tests, a singular test, profiles.yml (DuckDB `dev`, plus a `spark` target) and a README.

    Example:

        tierpool init my_warehouse && tierpool build --project-dir my_warehouse
    """
    from tierpool.scaffold import default_name, init_project

    written = init_project(directory, name)
    shown = name or default_name(directory.expanduser().resolve())
    click.echo(f"created project '{shown}' in {directory} ({len(written)} files)")
    click.echo(f"next: tierpool build --project-dir {directory}")
