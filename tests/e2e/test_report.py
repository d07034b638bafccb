"""`tierpool report` end to end: a real synth warehouse with a real (small) fit, the HTML
opened in headless Chromium, every embedded image checked to decode.

Chromium (Debian's ``chromium``) is installed by the README's test command (.ci/run). Where
it is missing the browser tests skip, except under CI or TIERPOOL_REQUIRE_CHROMIUM=1,
where they fail: a report nobody could open must not pass CI silently.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from browser import dump_dom
from cli_helpers import copy_fixture, invoke, query

SECTIONS = ("shrinkage", "forest", "regions", "new-models", "coverage", "diagnostics")
# Sets data-images="<count>:<broken>" on <body> once the page (and so every <img>) has loaded.
IMAGE_CHECK = """<script>
window.addEventListener('load', function () {
  var imgs = Array.prototype.slice.call(document.images);
  var broken = imgs.filter(function (i) { return !(i.complete && i.naturalWidth > 0); });
  document.body.setAttribute('data-images', imgs.length + ':' + broken.length);
});
</script>"""
BROKEN_IMG = '<img alt="broken" src="data:image/png;base64,AAAAAAAA">'
_ENV = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def _tierpool(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tierpool", *args], cwd=cwd, env=_ENV,
                          capture_output=True, text=True, timeout=600)


def _dump_dom(html_file: Path, profile: Path) -> str:
    """The DOM after load (virtual time lets onload run)."""
    return dump_dom(html_file, profile, "--virtual-time-budget=5000")


def _images_state(page: str, tmp: Path, name: str) -> tuple[int, int]:
    """(images, broken images) of a page, with the checking script injected into a copy."""
    probe = tmp / name
    probe.write_text(page.replace("</body>", IMAGE_CHECK + "</body>"), encoding="utf-8")
    dom = _dump_dom(probe, tmp / f"profile-{name}")
    marker = re.search(r'data-images="(\d+):(\d+)"', dom)
    assert marker, f"the load handler never ran; DOM starts {dom[:300]!r}"
    return int(marker.group(1)), int(marker.group(2))


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 5,000-row synth project built with a tiny sampler and a lenient gate (~1 min)."""
    project = tmp_path_factory.mktemp("report") / "synth"
    done = _tierpool("synth", "--rows", "5000", "--seed", "3", "--out", str(project))
    assert done.returncode == 0, done.stderr
    config = project / "tierpool_project.yml"
    spec = yaml.safe_load(config.read_text())
    # Tiny fit: the report is under test, not the sampler, so the gate only has to let it publish.
    spec["vars"]["fit"].update(tune=300, draws=200, chains=2,
                               gate={"max_r_hat": 1.2, "min_ess_bulk": 20, "max_divergences": 50})
    spec["vars"].pop("validation", None)  # no hold-out refits: not what this test is about
    config.write_text(yaml.safe_dump(spec))
    done = _tierpool("build", "--no-progress", "--project-dir", str(project))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return project


def test_report_opens_in_chromium_with_every_image_and_section(warehouse: Path, tmp_path: Path) -> None:
    db = warehouse / "target" / "warehouse.duckdb"
    before = hashlib.md5(db.read_bytes()).hexdigest()
    done = _tierpool("report", "--project-dir", str(warehouse))
    assert done.returncode == 0, done.stderr
    out = warehouse / "target" / "report" / "index.html"
    assert f"wrote {out}" in done.stdout
    assert hashlib.md5(db.read_bytes()).hexdigest() == before, "report must not write to the warehouse"

    page = out.read_text(encoding="utf-8")
    assert "src=\"http" not in page and "<link" not in page, "the page must be self-contained"
    (fit_id,) = {r[0] for r in query(warehouse, "select fit_id from latest_fit")}
    indicators = sorted({r[0] for r in query(warehouse, "select indicator from fit_runs")})
    assert f"Fit <b>{fit_id}</b>" in page and 'class="status-published"' in page
    n_img = page.count("<img ")
    # per indicator: shrinkage, forest, regions, new models, rank plots, >= 1 coverage figure
    assert n_img >= 6 * len(indicators)

    dom = _dump_dom(out, tmp_path / "profile")
    for ind in indicators:
        for key in SECTIONS:
            assert f'id="{ind}-{key}"' in dom, f"section {ind}-{key} missing"
        assert f"{ind}.nc" in dom, "rank plots must come from the draws file"
    assert 'id="history"' in dom and "Methodology releases" in dom
    assert "No coverage_report table" not in dom  # the synth project builds coverage_report
    assert _images_state(page, tmp_path, "probe.html") == (n_img, 0)


def test_image_check_catches_a_broken_image(warehouse: Path, tmp_path: Path) -> None:
    # The check above must be able to fail: one undecodable image is counted as broken.
    out = warehouse / "target" / "report" / "index.html"
    if not out.exists():
        assert _tierpool("report", "--project-dir", str(warehouse)).returncode == 0
    page = out.read_text(encoding="utf-8").replace("</body>", BROKEN_IMG + "</body>")
    images, broken = _images_state(page, tmp_path, "broken.html")
    assert broken == 1 and images == page.count("<img ")


def test_report_of_named_fit_and_unknown_fit(warehouse: Path, tmp_path: Path) -> None:
    (fit_id,) = {r[0] for r in query(warehouse, "select fit_id from fit_runs")}
    target = tmp_path / "named.html"
    done = _tierpool("report", "--fit-id", fit_id, "--out", str(target), "--project-dir", str(warehouse))
    assert done.returncode == 0, done.stderr
    assert f"Fit <b>{fit_id}</b>" in target.read_text(encoding="utf-8")
    done = _tierpool("report", "--fit-id", "1999Q1", "--project-dir", str(warehouse))
    assert done.returncode == 2
    assert "no fit '1999Q1' in fit_runs; known fits: " + fit_id in done.stderr


def test_report_without_a_fit_fails_clearly(tmp_path: Path) -> None:
    project = copy_fixture("run_basic", tmp_path)
    result = invoke(project, "report")
    assert result.exit_code == 2
    assert "no warehouse at" in result.output and "tierpool build" in result.output
    assert invoke(project, "build").exit_code == 0  # a warehouse, but no hierarchical fit in it
    result = invoke(project, "report")
    assert result.exit_code == 2
    assert "no fit in this warehouse yet" in result.output
    assert not (project / "target" / "report").exists()
