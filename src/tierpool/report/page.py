"""HTML pieces of the report: one string.Template page, escaped tables, figures as data URIs.

No template engine: the page is a handful of sections, and ``html.escape`` on every value
taken from the warehouse is all the safety it needs.
"""

from __future__ import annotations

import html
from string import Template
from typing import Any

import pandas as pd

PAGE = Template("""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>tierpool report: fit $fit_id</title>
<style>
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
h1 { margin-bottom: 0.2em; } h2 { border-bottom: 2px solid #264653; padding-top: 0.6em; }
h3 { margin-top: 1.6em; color: #264653; }
nav a { margin-right: 1em; }
table { border-collapse: collapse; font-size: 0.82em; margin: 0.6em 0; }
th, td { border: 1px solid #ccc; padding: 2px 6px; text-align: left; }
th { background: #eef3f4; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
img { max-width: 100%; display: block; margin: 0.6em 0; }
.note { color: #555; font-size: 0.9em; }
.banner { background: #fde2dc; border: 1px solid #e76f51; padding: 0.6em; }
.status-published, .status-pass { color: #2a7d70; font-weight: bold; }
.status-rejected, .status-fail { color: #c4472b; font-weight: bold; }
.status-review { color: #a07a00; font-weight: bold; }
</style>
</head>
<body>
<h1>tierpool calibration report</h1>
<p>Fit <b>$fit_id</b> (<span class="status-$fit_status">$fit_status</span>), generated $generated
from <code>$db_path</code>.</p>
$banner
<nav>$nav</nav>
$body
</body>
</html>
""")


def esc(value: Any) -> str:
    """HTML-escape any value; floats get 4 significant digits, missing values a dash."""
    if value is None or (pd.api.types.is_scalar(value) and pd.isna(value)):
        return "&ndash;"
    if isinstance(value, float):
        return f"{value:.4g}"
    return html.escape(str(value))


def table(frame: pd.DataFrame, css_class: str = "", status_col: str | None = None) -> str:
    """An HTML table of a frame; numeric columns right-aligned, a status column coloured."""
    if frame.empty:
        return '<p class="note">(no rows)</p>'
    head = "".join(f"<th>{esc(c)}</th>" for c in frame.columns)
    numeric = {c for c in frame.columns if pd.api.types.is_numeric_dtype(frame[c])}
    rows = []
    for record in frame.itertuples(index=False):
        cells = []
        for col, value in zip(frame.columns, record):
            cls = "num" if col in numeric else (f"status-{esc(value)}" if col == status_col else "")
            cells.append(f'<td class="{cls}">{esc(value)}</td>' if cls else f"<td>{esc(value)}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return f'<table class="{css_class}"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'


def figure(png_b64: str, alt: str) -> str:
    """An <img> with the PNG embedded as a data URI (the report is one self-contained file)."""
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{png_b64}">'


def section(anchor: str, title: str, content: str, level: int = 2) -> str:
    """A titled section with an id, so the page's nav and tests can find it."""
    return f'<section id="{html.escape(anchor)}"><h{level}>{html.escape(title)}</h{level}>{content}</section>'


def note(text: str) -> str:
    """A muted explanatory paragraph (text is escaped)."""
    return f'<p class="note">{html.escape(text)}</p>'
