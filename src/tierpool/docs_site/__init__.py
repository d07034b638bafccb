"""``tierpool docs``: a static HTML site of the warehouse.

Usage:
    reader = adapter_for(project.target, project.root, read_only=True)
    index = write_docs(project, reader, Path("target/docs"))

An index page lists every relation by kind with the whole lineage graph; one page per
relation shows its description, materialization, columns with their warehouse types, data
tests with their last status, parents, children and its lineage. The calibration report
(``target/report/index.html``, written by ``tierpool report``) is linked when it exists.
The warehouse is only read; relations not built yet show as "not built".
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from tierpool.docs_site.collect import SiteDocs, collect_docs
from tierpool.docs_site.render import write_site

if TYPE_CHECKING:
    from tierpool.adapters import Adapter
    from tierpool.core.project_model import Project

__all__ = ["SiteDocs", "collect_docs", "write_docs"]


def write_docs(project: Project, reader: Adapter, out: Path, report: Path | None = None,
               wait_s: float = 0.0) -> Path:
    """Read the project and the warehouse (read-only) and write the site.

    Args:
        project: The loaded project.
        reader: A read-only adapter of the project's target (closed after reading).
        out: Folder to write (created); ``index.html`` is its entry page.
        report: The calibration report to link; default ``target/report/index.html``,
            linked only when the file exists.
        wait_s: How long to wait while a build holds the warehouse (DuckDB).

    Returns:
        The path of ``index.html``.

    Raises:
        DatabaseError: The warehouse exists but cannot be opened.
    """
    site = collect_docs(project, reader, wait_s=wait_s)
    report = Path(report) if report is not None else project.target_dir / "report" / "index.html"
    return write_site(site, Path(out).resolve(), report.resolve() if report.is_file() else None)
