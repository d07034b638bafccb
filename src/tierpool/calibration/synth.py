"""``tierpool synth``: a synthetic calibration warehouse with a known ground truth.

The truth (:mod:`tierpool.calibration.synth_truth`) is drawn from the model of DESIGN §5 over a
real-world catalogue (:mod:`tierpool.calibration.synth_catalogue`); the facts
(:mod:`tierpool.calibration.synth_facts`) are tier-2 estimates for every request and tier-3
measurements ``tier3 = tier2 · exp(−residual)`` for a very unevenly measured
subset; a handful of bad rows of every kind (:mod:`tierpool.calibration.synth_bad`) is added
at the end. Everything is deterministic given ``(rows, seed, heavy_tail_families)``.

Three ways to use it:

* :func:`generate` returns everything as pandas frames (tests, notebooks);
* :func:`write_demo_seeds` rewrites the CSV seeds of a project (the committed demo at
  the repository root: small, ~20k tier-2 rows);
* :func:`write_project` writes a complete buildable project at any size: reference
  data as CSV seeds, facts as Parquet files declared as ``sources:`` with the SAME
  names as the demo's fact seeds (``tier2_estimates``, ``tier3_measurements``), so
  the SQL is identical, the truth under ``truth/`` (not read by the build), and a
  copy of the template project's SQL, Python models, singular tests, non-fact seeds
  (other reference/config seeds) and config.

The template is the demo project at the repository root (found relative to this
package in a source checkout), or ``template_dir``. A non-editable install has no
repository root: pass ``template_dir`` explicitly (or ship a copy under
``tierpool/templates/demo``, which is looked up second).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from tierpool.calibration import synth_catalogue as cat
from tierpool.calibration.synth_bad import bad_rows
from tierpool.calibration.synth_facts import build_catalogue, fact_chunks
from tierpool.calibration.synth_truth import draw_truth, truth_frames
from tierpool.errors import ConfigError

DEFAULT_DEMO_ROWS = 20_000
DEFAULT_SEED = 7
SOURCES_YML = "sql/_sources.yml"
TEMPLATE_PATHS = ("sql", "python_models", "tests/data", "seeds", "profiles.yml",
                  "tierpool_project.yml")
# the demo's facts are CSV seeds; a written project has them as Parquet sources instead
FACT_SEED_FILES = ("tier2_estimates.csv", "tier3_measurements.csv", "facts.yml")
PARQUET_ROW_GROUP = 1_000_000


@dataclass
class SynthData:
    """A generated warehouse in memory.

    Attributes:
        families, models, region_classes, regions: the reference tables (DESIGN §4).
        indicators: the indicator catalogue (unit and plausible range per indicator).
        tier2_estimates, tier3_measurements: the facts, bad rows included (at the end);
            value columns are Arrow-backed floats so NULL and NaN stay distinct.
        truth: ``truth_families``, ``truth_models``, ``truth_region_classes``,
            ``truth_regions`` (see :func:`tierpool.calibration.synth_truth.truth_frames`).
        expected_rejections: one row per bad input row: source, indicator,
            request_id, reason (what ``rejected_rows`` must contain).
    """

    families: pd.DataFrame
    models: pd.DataFrame
    region_classes: pd.DataFrame
    regions: pd.DataFrame
    tier2_estimates: pd.DataFrame
    tier3_measurements: pd.DataFrame
    truth: dict[str, pd.DataFrame] = field(default_factory=dict)
    expected_rejections: pd.DataFrame = field(default_factory=pd.DataFrame)
    indicators: pd.DataFrame = field(default_factory=cat.indicators_frame)

    def frames(self) -> dict[str, pd.DataFrame]:
        """Reference and fact tables by their warehouse name."""
        return {
            "families": self.families, "models": self.models,
            "region_classes": self.region_classes, "regions": self.regions,
            "indicators": self.indicators,
            "tier2_estimates": self.tier2_estimates,
            "tier3_measurements": self.tier3_measurements,
        }


@dataclass(frozen=True)
class SynthSummary:
    """What a writer produced (printed by the CLI)."""

    path: Path
    tier2_rows: int
    tier3_rows: int
    bad_rows: int

    def __str__(self) -> str:
        return (f"wrote {self.path}: {self.tier2_rows:,} tier-2 rows, {self.tier3_rows:,} tier-3 rows "
                f"({self.bad_rows} deliberately bad rows among them)")


def _truths(seed: int) -> list:
    return [draw_truth(k, name, seed) for k, name in enumerate(cat.INDICATORS)]


def _stream(rows: int, seed: int, heavy_tail_families: tuple[str, ...]):
    """Yield (tier2, tier3) chunks, bad rows last; the expected rejections are yielded
    as a third element of the final item (None before)."""
    unknown = set(heavy_tail_families) - {f[0] for f in cat.FAMILIES}
    if unknown:
        raise ConfigError(f"unknown heavy-tail families {sorted(unknown)}; "
                          f"known: {', '.join(f[0] for f in cat.FAMILIES)}")
    truths = _truths(seed)
    catalogue = build_catalogue(seed, heavy_tail_families)
    first = None
    n_requests = 0
    for t2, t3 in fact_chunks(rows, seed, truths, catalogue):
        first = first or (t2, t3)
        n_requests += t2.num_rows // len(truths)
        yield t2, t3, None
    t2_bad, t3_bad, expected = bad_rows(first[0], first[1], n_requests + 1)
    yield t2_bad, t3_bad, expected


def _to_pandas(table: pa.Table) -> pd.DataFrame:
    # Arrow-backed floats keep NULL (missing value) and NaN (non-finite value) apart;
    # numpy floats would merge them, and staging treats them differently.
    return table.to_pandas(types_mapper={pa.float64(): pd.ArrowDtype(pa.float64())}.get)


def generate(rows: int, seed: int = DEFAULT_SEED,
             heavy_tail_families: tuple[str, ...] = ()) -> SynthData:
    """Generate a whole synthetic warehouse in memory.

    Args:
        rows: about this many tier-2 rows (one per request and indicator; ~20 bad rows
            are added).
        seed: generator seed; the output is a pure function of the arguments.
        heavy_tail_families: families whose residuals are Student-t(3) (unit variance)
            instead of normal, to exercise the normality monitoring.

    Returns:
        The reference tables, facts, truth and expected rejections.

    Raises:
        ConfigError: an unknown heavy-tail family.
    """
    t2_parts, t3_parts, expected = [], [], None
    for t2, t3, exp in _stream(rows, seed, heavy_tail_families):
        t2_parts.append(t2)
        t3_parts.append(t3)
        expected = exp if exp is not None else expected
    return SynthData(
        families=cat.families_frame(), models=cat.models_frame(),
        region_classes=cat.region_classes_frame(), regions=cat.regions_frame(),
        tier2_estimates=_to_pandas(pa.concat_tables(t2_parts)),
        tier3_measurements=_to_pandas(pa.concat_tables(t3_parts)),
        truth=truth_frames(_truths(seed)), expected_rejections=expected,
    )


def _write_csv(frame: pd.DataFrame | pa.Table, path: Path) -> None:
    table = frame if isinstance(frame, pa.Table) else pa.Table.from_pandas(frame, preserve_index=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    pacsv.write_csv(table, path)


def _write_reference(project: Path, seed: int) -> None:
    for name, frame in [("families", cat.families_frame()), ("models", cat.models_frame()),
                        ("region_classes", cat.region_classes_frame()),
                        ("regions", cat.regions_frame()), ("indicators", cat.indicators_frame())]:
        _write_csv(frame, project / "seeds" / f"{name}.csv")
    for name, frame in truth_frames(_truths(seed)).items():
        _write_csv(frame, project / "truth" / f"{name}.csv")


def write_demo_seeds(project_dir: Path | str, rows: int = DEFAULT_DEMO_ROWS, seed: int = DEFAULT_SEED,
                     heavy_tail_families: tuple[str, ...] = ()) -> SynthSummary:
    """Rewrite a project's CSV seeds (reference data and facts) and its ``truth/``.

    Args:
        project_dir: the project (its ``seeds/`` and ``truth/`` are overwritten).
        rows: about this many tier-2 rows; keep the committed demo small.
        seed: generator seed.
        heavy_tail_families: see :func:`generate`.

    Returns:
        Counts of what was written.
    """
    project = Path(project_dir)
    data = generate(rows, seed, heavy_tail_families)
    _write_reference(project, seed)
    _write_csv(data.tier2_estimates, project / "seeds" / "tier2_estimates.csv")
    _write_csv(data.tier3_measurements, project / "seeds" / "tier3_measurements.csv")
    _write_csv(data.expected_rejections, project / "truth" / "expected_rejections.csv")
    return SynthSummary(project / "seeds", len(data.tier2_estimates), len(data.tier3_measurements),
                        len(data.expected_rejections))


def default_template_dir() -> Path:
    """The demo project to copy: the repository root in a checkout, else packaged data.

    Raises:
        ConfigError: neither exists (a non-editable install without templates).
    """
    package = Path(__file__).resolve().parents[1]  # src/tierpool
    for candidate in (package.parents[1], package / "templates" / "demo"):
        if (candidate / "sql").is_dir() and (candidate / "profiles.yml").is_file():
            return candidate
    raise ConfigError("cannot find the demo project to copy (no source checkout next to the "
                      "package); pass template_dir= pointing at a tierpool project")


def _copy_template(template: Path, out: Path) -> None:
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "target", *FACT_SEED_FILES)
    for rel in TEMPLATE_PATHS:
        src, dst = template / rel, out / rel
        if src.is_dir():
            shutil.copytree(src, dst, dirs_exist_ok=True, ignore=ignore)
        elif src.is_file():
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst)
    (out / SOURCES_YML).write_text(
        "version: 2\n\n"
        "# Written by `tierpool synth --out`: the facts are Parquet files under data/, under\n"
        "# the same names as the demo's fact seeds, so the SQL models are unchanged.\n"
        "sources:\n"
        "  - name: tier2_estimates\n"
        "    description: Tier-2 parametric estimates, one row per request and indicator.\n"
        "    expression: \"read_parquet('data/tier2/*.parquet')\"\n"
        "  - name: tier3_measurements\n"
        "    description: Tier-3 telemetry measurements for the measured subset of requests.\n"
        "    expression: \"read_parquet('data/tier3/*.parquet')\"\n"
    )


def write_project(out_dir: Path | str, rows: int, seed: int = DEFAULT_SEED,
                  heavy_tail_families: tuple[str, ...] = (),
                  template_dir: Path | str | None = None) -> SynthSummary:
    """Write a complete buildable project of any size (facts as Parquet sources).

    Args:
        out_dir: destination (created; existing files with the same names are replaced,
            and stale Parquet parts under data/ are removed first).
        rows: about this many tier-2 rows.
        seed: generator seed.
        heavy_tail_families: see :func:`generate`.
        template_dir: the project whose SQL, Python models, singular tests, seeds (all but
            the fact seeds), profiles.yml and tierpool_project.yml are copied; default
            :func:`default_template_dir`.

    Returns:
        Counts of what was written.
    """
    out = Path(out_dir)
    template = Path(template_dir) if template_dir else default_template_dir()
    _copy_template(template, out)
    _write_reference(out, seed)
    counts = {"t2": 0, "t3": 0}
    for sub in ("tier2", "tier3"):
        shutil.rmtree(out / "data" / sub, ignore_errors=True)
        (out / "data" / sub).mkdir(parents=True)
    writers = {"t2": None, "t3": None}
    expected = None
    try:
        for t2, t3, exp in _stream(rows, seed, heavy_tail_families):
            for key, table, sub in (("t2", t2, "tier2"), ("t3", t3, "tier3")):
                if writers[key] is None:
                    writers[key] = pq.ParquetWriter(out / "data" / sub / "part-0.parquet", table.schema)
                writers[key].write_table(table, row_group_size=PARQUET_ROW_GROUP)
                counts[key] += table.num_rows
            expected = exp if exp is not None else expected
    finally:
        for writer in writers.values():
            if writer is not None:
                writer.close()
    _write_csv(expected, out / "truth" / "expected_rejections.csv")
    return SynthSummary(out, counts["t2"], counts["t3"], len(expected))


def synth_cli(out: Path | None, rows: int | None, seed: int = DEFAULT_SEED,
              heavy_tail: tuple[str, ...] = ()) -> SynthSummary:
    """What ``tierpool synth`` does: write a project to ``out``, or rewrite the demo seeds.

    Args:
        out: destination project directory; None rewrites the seeds of the project in the
            current directory.
        rows: about this many tier-2 rows (default 20,000 for the demo, 1,000,000 with ``out``).
        seed: generator seed.
        heavy_tail: families with Student-t residuals.

    Returns:
        The summary (also printed).
    """
    if out is None:
        summary = write_demo_seeds(Path.cwd(), rows or DEFAULT_DEMO_ROWS, seed, tuple(heavy_tail))
    else:
        summary = write_project(out, rows or 1_000_000, seed, tuple(heavy_tail))
    print(summary)
    return summary
