"""``tierpool report``: a self-contained static HTML page about one fit.

Usage:
    reader = adapter_for(project.target, project.root, read_only=True)
    write_report(reader, Path("target/report/index.html"), fits_dir=Path("target/fits"))

The page embeds its figures as base64 PNGs, so it can be mailed or archived as one file.
"""

from __future__ import annotations

import html
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from tierpool.report.data import ReportData, load_report_data
from tierpool.report.page import PAGE
from tierpool.report.sections import history_section, indicator_section

if TYPE_CHECKING:
    from tierpool.adapters import Adapter

__all__ = ["ReportData", "load_report_data", "render_report", "write_report"]


def render_report(data: ReportData, db_path: str | Path, fits_dir: Path | None = None) -> str:
    """The report's HTML for already loaded data.

    Args:
        data: Tables of the fit to report (see :func:`load_report_data`).
        db_path: The warehouse, shown in the header only.
        fits_dir: Folder holding ``<fit_id>/<indicator>.nc`` draws for rank plots.
    """
    nav = "".join(f'<a href="#{html.escape(i)}">{html.escape(i)}</a>' for i in data.indicators)
    nav += '<a href="#history">history</a>'
    banner = ""
    if data.fit_status != "published":
        banner = ('<p class="banner">This fit was <b>not published</b> (it failed the gate); its priors are '
                  "not in force. See the diagnostics and the history below.</p>")
    body = "".join(indicator_section(data, ind, fits_dir) for ind in data.indicators) + history_section(data)
    return PAGE.substitute(
        fit_id=html.escape(data.fit_id), fit_status=html.escape(data.fit_status),
        generated=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        db_path=html.escape(str(db_path)), banner=banner, nav=nav, body=body,
    )


def write_report(reader: Adapter, out: Path, fit_id: str | None = None, fits_dir: Path | None = None) -> Path:
    """Read the warehouse (read-only) and write the HTML report.

    Args:
        reader: A read-only adapter of the warehouse (closed after reading).
        out: The HTML file to write; parent folders are created.
        fit_id: Fit to report (default: the latest published fit).
        fits_dir: Folder of ArviZ draws, ``<fits_dir>/<fit_id>/<indicator>.nc``.

    Returns:
        The path written.

    Raises:
        TierpoolError: No warehouse, no fit yet, or an unknown ``fit_id``.
    """
    data = load_report_data(reader, fit_id)
    page = render_report(data, reader.description, fits_dir)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page, encoding="utf-8")
    return out
