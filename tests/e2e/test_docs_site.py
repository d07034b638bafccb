"""`tierpool docs` end to end: the run_basic project (seeds, a CSV source, view/table/append SQL
models, a Python model with two outputs, a failing warn test, a singular test) built on DuckDB,
plus one model added after the build; the site opened in headless Chromium and every link
followed. One Spark check: the `tierpool init` scaffold built on Spark, documented with Spark's
types.

Chromium (Debian's ``chromium``) is installed by .ci/run; where it is missing the browser
tests skip, except under CI or TIERPOOL_REQUIRE_CHROMIUM=1, where they fail.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
from browser import dump_dom
from cli_helpers import copy_fixture, invoke
from click.testing import CliRunner
from conftest import require_spark, spark_profile

from tierpool.cli import cli

BUILT = ("families", "models", "regions", "model_sizes", "family_sizes", "size_history", "region_count",
         "big_models", "small_models", "big_count")
UNBUILT = "big_share"  # added after the build


class _Dom(HTMLParser):
    """Links, headings and elements with data-* attributes of a dumped DOM."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.links: list[tuple[str, str]] = []  # (href, text)
        self.h1: list[str] = []
        self.rows: list[dict[str, str]] = []  # attributes of <tr> with data-*
        self._stack: list[tuple[str, dict[str, str], list[str]]] = []
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = {k: v or "" for k, v in attrs}
        if tag == "tr" and any(k.startswith("data-") for k in found):
            self.rows.append(found)
        if tag in ("a", "h1"):
            self._stack.append((tag, found, []))

    def handle_data(self, data: str) -> None:
        for _, _, text in self._stack:
            text.append(data)

    def handle_endtag(self, tag: str) -> None:
        if self._stack and self._stack[-1][0] == tag:
            name, found, text = self._stack.pop()
            if name == "a" and "href" in found:
                self.links.append((found["href"], "".join(text).strip()))
            elif name == "h1":
                self.h1.append("".join(text).strip())


def _dump_dom(page: Path, profile: Path) -> str:
    dom = dump_dom(page, profile)
    assert "<body" in dom, dom[:500]
    return dom


def _target(page: Path, href: str) -> Path:
    """The file a relative link of ``page`` points to (no network: every link must be a file)."""
    parts = urlsplit(href)
    assert not parts.scheme and not parts.netloc, f"{page.name}: external link {href}"
    return (page.parent / unquote(parts.path)).resolve()


def _docs(project: Path, *args: str) -> Path:
    result = invoke(project, "docs", *args)
    assert result.exit_code == 0, result.output
    (line,) = [ln for ln in result.output.splitlines() if ln.startswith("wrote ")]
    index = Path(line.removeprefix("wrote "))
    assert index.name == "index.html" and index.is_file()
    return index


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """run_basic built on DuckDB, then one more model (not built) with an HTML-ish description."""
    path = copy_fixture("run_basic", tmp_path_factory.mktemp("docs"))
    built = invoke(path, "build")
    assert built.exit_code == 0, built.output
    (path / "sql" / f"{UNBUILT}.sql").write_text("select n_big, n_big * 1.0 / 4 as share from big_count\n")
    (path / "sql" / f"{UNBUILT}.yml").write_text(
        f"models:\n  - name: {UNBUILT}\n    description: \"Share of big models <script>alert(1)</script> & co\"\n"
        "    columns:\n      - {name: n_big, data_type: BIGINT, description: Big models.}\n"
        "      - {name: share, data_type: DOUBLE, data_tests: [not_null]}\n")
    return path


@pytest.fixture(scope="module")
def site(project: Path) -> Path:
    db = project / "target" / "warehouse.duckdb"
    before = hashlib.md5(db.read_bytes()).hexdigest()
    index = _docs(project)
    assert index == (project / "target" / "docs" / "index.html").resolve()
    assert hashlib.md5(db.read_bytes()).hexdigest() == before, "docs must not write to the warehouse"
    return index


def test_index_shows_every_relation_and_every_link_opens(site: Path, tmp_path: Path) -> None:
    page = site.read_text(encoding="utf-8")
    assert "http://" not in page.replace("http://www.w3.org/2000/svg", "") and "https://" not in page
    assert "<script" not in page, "static site: no script (and descriptions are escaped)"
    text = _dump_dom(site, tmp_path / "profile")
    dom = _Dom(text)
    rows = {r["data-relation"] for r in dom.rows if "data-relation" in r}
    assert rows == {*BUILT, UNBUILT}
    texts = {label for _, label in dom.links}
    assert {*BUILT, UNBUILT} <= texts
    assert "report-missing" in text and "run <code>tierpool report</code>" in text  # no report yet: a note
    assert "report-link" not in text
    # Every link of the index (tables and the lineage graph) opens a page about that relation.
    targets: dict[Path, set[str]] = {}
    for href, text in dom.links:
        targets.setdefault(_target(site, href), set()).add(text)
    relation_pages = {p: t for p, t in targets.items() if p.parent.name == "relations"}
    assert len(relation_pages) == len(BUILT) + 1
    for target, names in relation_pages.items():
        (name,) = names  # table link and graph box name the same relation
        opened = _Dom(_dump_dom(target, tmp_path / "profile"))
        assert opened.h1 == [name], target
    assert len(list((site.parent / "relations").glob("*.html"))) == len(relation_pages)


def test_relation_page_shows_columns_types_tests_and_lineage(site: Path, tmp_path: Path) -> None:
    page = site.parent / "relations" / "models.html"
    text = _dump_dom(page, tmp_path / "profile")
    dom = _Dom(text)
    assert dom.h1 == ["models"]
    columns = dict(re.findall(r'data-column="(\w+)"><td><code>\w+</code></td><td class="type"><code>(\w+)</code>',
                              text))
    assert columns == {"model_id": "VARCHAR", "family_id": "VARCHAR", "total_params_b": "DOUBLE"}
    statuses = {r["data-test"]: r["data-status"] for r in dom.rows if "data-test" in r}
    assert statuses == {
        "not_null_models_model_id": "pass", "unique_models_model_id": "pass",
        "relationships_models_family_id__family_id__families": "pass",
        "accepted_range_models_total_params_b": "warn",  # mixtral-8x22b has 141 > 100
    }
    assert re.search(r'data-test="accepted_range_models_total_params_b" data-status="warn">.*?'
                     r'<td class="num">1</td>', text)  # its failing-row count
    # Parents / children / graph links of one page all open and name their relation.
    assert re.search(r'<ul class="children"><li><a class="relation-link" href="model_sizes.html">', text)
    # (Every relation page was opened in Chromium by the index test: read these as files.)
    for href, name in dom.links:
        target = _target(page, href)
        assert target.is_file(), href
        if target.parent.name == "relations":
            assert _Dom(target.read_text(encoding="utf-8")).h1 == [name]
    index = _dump_dom(site, tmp_path / "profile")
    assert _Dom(index).h1 == ["run_basic"]
    assert re.search(r'id="attention".*accepted_range_models_total_params_b', index, re.S)  # did not pass


def test_python_output_and_unbuilt_relation_pages(site: Path, tmp_path: Path) -> None:
    big = _dump_dom(site.parent / "relations" / "big_models.html", tmp_path / "profile")
    assert "Python model output" in big and "Python model <code>split</code>" in big
    assert 'href="small_models.html"' in big
    assert re.search(r'data-column="total_params_b">.*?<code>DOUBLE</code>', big)
    assert 'data-test="not_null_big_models_model_id" data-status="pass"' in big
    unbuilt = _dump_dom(site.parent / "relations" / f"{UNBUILT}.html", tmp_path / "profile")
    assert "not built" in unbuilt and 'class="not-built"' in unbuilt
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; co" in unbuilt
    assert re.search(r'data-column="share">.*?<td class="type"><span class="muted">—</span></td>'
                     r"<td><code>DOUBLE</code></td>", unbuilt)
    assert 'data-status="not run"' in unbuilt
    assert 'href="big_count.html"' in unbuilt  # its parent


def test_report_link_when_the_report_exists(project: Path, tmp_path: Path) -> None:
    report = project / "target" / "report" / "index.html"
    report.parent.mkdir(parents=True, exist_ok=True)
    # Stands in for `tierpool report`'s page (tested in test_report.py): the link is under test here.
    report.write_text("<!DOCTYPE html><html><body><h1>tierpool calibration report</h1></body></html>")
    try:
        out = tmp_path / "site"
        index = _docs(project, "--out", str(out))
        assert index == (out / "index.html").resolve()
        for page in (index, out / "relations" / "regions.html"):
            dom = _Dom(_dump_dom(page, tmp_path / "profile"))
            links = [href for href, text in dom.links if text.lower() == "calibration report"]
            assert links, page
            for href in links:
                assert _target(page, href) == report.resolve()
                assert "tierpool calibration report" in _dump_dom(_target(page, href), tmp_path / "profile")
    finally:
        report.unlink()


def test_docs_before_any_build_and_errors(tmp_path: Path) -> None:
    fresh = copy_fixture("run_basic", tmp_path)
    index = _docs(fresh)
    page = (index.parent / "relations" / "model_sizes.html").read_text(encoding="utf-8")
    assert "not built" in page and "No warehouse yet" in index.read_text(encoding="utf-8")
    missing = CliRunner().invoke(cli, ["docs", "--project-dir", str(tmp_path / "nope")])
    assert missing.exit_code == 2
    assert "does not exist" in missing.output and "Traceback" not in missing.output


def test_docs_on_spark_show_spark_types(tmp_path: Path, spark_root: Path, spark_schema: Callable[[], str]) -> None:
    require_spark()
    project = tmp_path / "wh"
    assert CliRunner().invoke(cli, ["init", str(project)]).exit_code == 0
    schema = spark_schema()
    spark = "\n".join("      " + line for line in spark_profile(spark_root, schema).splitlines())
    (project / "profiles.yml").write_text(
        "tierpool:\n  target: dev\n  outputs:\n"
        "    dev:\n      type: duckdb\n      path: target/warehouse.duckdb\n"
        f"    spark:\n{spark}\n")
    built = invoke(project, "build", "--target", "spark")
    assert built.exit_code == 0, built.output
    (project / "sql" / "late.sql").write_text("select model_id from model_bias\n")
    index = _docs(project, "--target", "spark")
    text = index.read_text(encoding="utf-8")
    assert "Target <b>spark</b>" in text and "4 built, 1 not built" in text
    page = _dump_dom(index.parent / "relations" / "model_bias.html", tmp_path / "profile")
    columns = dict(re.findall(r'data-column="(\w+)"><td><code>\w+</code></td><td class="type"><code>(\w+)</code>',
                              page))
    assert columns == {"model_id": "string", "family_id": "string", "n_requests": "bigint",
                       "mean_residual": "double", "bias_factor": "double"}
    assert 'data-test="unique_model_bias_model_id" data-status="pass"' in page
    assert "not built" in (index.parent / "relations" / "late.html").read_text(encoding="utf-8")
