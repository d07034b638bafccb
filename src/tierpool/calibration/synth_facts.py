"""Row-level synthetic facts: tier-2 estimates for every request, tier 3 for a subset.

Generated in chunks of requests with numpy and returned as Arrow tables, so
10M rows never sit in memory at once. Each chunk has its own seeded stream
(``[seed, 2, chunk_index]``), so the output depends only on (rows, seed,
heavy-tail families), never on how it is consumed.

Per request: a model (Zipf popularity, the designated calibration-fleet models
first), a region, a ``requested_at`` uniform over 2026-01-01 .. 2026-09-30, and one
tier-2 row per indicator. The tier-2 estimate is a plausible parametric figure
(energy grows with active parameters and tokens, gCO2e = energy × grid intensity ×
PUE); its ``ci90_low``/``ci90_high`` are the 5%/95% points of tier-2's own
log-normal Monte Carlo spread (log-sd 0.25-0.55 per row, with a little Monte
Carlo noise on each bound). Measured requests (see ``TIER3_PLAN``) get one tier-3
row per indicator: ``measurement = estimate · exp(−residual)`` with the residual
drawn from the truth, Student-t(3) rescaled to unit variance (and cut at ±10) for
heavy-tailed families. ``measured_at`` is 1-600 s after ``requested_at``.

The last chunk holds the deliberately bad rows (DESIGN §4), listed with the reason
the staging SQL must give them in :func:`bad_rows` 's ``expected`` frame.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from tierpool.calibration import synth_catalogue as cat
from tierpool.calibration.synth_truth import IndicatorTruth

CHUNK_REQUESTS = 500_000
START = np.datetime64("2026-01-01T00:00:00", "us")
# requests end 10 minutes before the quarter does, so every measurement stays in 2026Q3
SPAN_US = int((np.datetime64("2026-09-30T23:50:00", "us") - START).astype(np.int64))
Z90 = 1.6448536269514722
DEFAULT_TIER3_RATE = 0.05
# Heavy-tailed (Student-t(3), unit variance) draws are cut at +-10 standard deviations: a
# few in 10,000 draws, so the tails stay heavy (excess kurtosis ~10), but a residual of 40
# (a measurement e^40 times its estimate) can no longer appear in a 100M-row warehouse,
# and every valid row stays inside the indicator catalogue's plausible range
# (synth_catalogue.INDICATOR_CATALOGUE), which staging enforces.
HEAVY_TAIL_CLIP = 10.0
TIER2_SCHEMA = pa.schema([
    ("request_id", pa.int64()), ("indicator", pa.string()), ("model_id", pa.string()),
    ("region_id", pa.string()), ("requested_at", pa.timestamp("us")), ("estimate", pa.float64()),
    ("ci90_low", pa.float64()), ("ci90_high", pa.float64()),
])
TIER3_SCHEMA = pa.schema([
    ("request_id", pa.int64()), ("indicator", pa.string()),
    ("measured_at", pa.timestamp("us")), ("measurement", pa.float64()),
])


@dataclass(frozen=True)
class Catalogue:
    """Catalogue arrays the chunk generator indexes into."""

    model_ids: pa.Array
    region_ids: pa.Array
    model_weights: np.ndarray
    region_weights: np.ndarray
    active_params: np.ndarray
    pue: np.ndarray
    intensity: np.ndarray  # per region, gCO2e/kWh of its class
    tier3_rate: np.ndarray  # per model
    few: dict[int, int]  # model index -> exact number of measured requests
    region_measured: np.ndarray  # bool per region
    heavy: np.ndarray  # bool per model


def build_catalogue(seed: int, heavy_tail_families: tuple[str, ...] = ()) -> Catalogue:
    """Popularity weights and tier-3 plans for the catalogue.

    Args:
        seed: generator seed (it permutes popularity among the ordinary models).
        heavy_tail_families: families whose residuals are Student-t(3) instead of normal.

    Returns:
        The arrays used by :func:`fact_chunks`.
    """
    rng = np.random.default_rng([seed, 3])
    names = [m[0] for m in cat.MODELS]
    fleet = [n for n in names if cat.TIER3_PLAN.get(n, ("", 0))[0] == "rate"]
    others = [names[i] for i in rng.permutation(len(names)) if names[i] not in fleet]
    rank = {name: r for r, name in enumerate(fleet + others, start=1)}
    model_weights = np.array([1.0 / rank[n] ** 1.1 for n in names])
    class_intensity = {c[0]: c[2] for c in cat.REGION_CLASSES}
    rates, few = [], {}
    for i, name in enumerate(names):
        plan, value = cat.TIER3_PLAN.get(name, ("rate", DEFAULT_TIER3_RATE))
        rates.append(value if plan == "rate" else 0.0)
        if plan == "few":
            few[i] = int(value)
    return Catalogue(
        model_ids=pa.array(names),
        region_ids=pa.array([r[0] for r in cat.REGIONS]),
        model_weights=model_weights / model_weights.sum(),
        region_weights=rng.dirichlet(np.full(len(cat.REGIONS), 3.0)),
        active_params=np.array([m[4] for m in cat.MODELS]),
        pue=np.array([r[3] for r in cat.REGIONS]),
        intensity=np.array([class_intensity[r[2]] for r in cat.REGIONS]),
        tier3_rate=np.array(rates),
        few=few,
        region_measured=np.array([r[0] not in cat.UNMEASURED_REGIONS for r in cat.REGIONS]),
        heavy=np.array([m[1] in heavy_tail_families for m in cat.MODELS]),
    )


def _tier2_values(rng: np.random.Generator, k: int, m: np.ndarray, g: np.ndarray,
                  c: Catalogue) -> np.ndarray:
    tokens = rng.lognormal(np.log(400.0), 0.8, m.size)
    energy = 0.004 * c.active_params[m] ** 0.9 * tokens / 100.0 * c.pue[g]
    if cat.INDICATORS[k] == "energy_wh":
        return energy * rng.lognormal(0.0, 0.05, m.size)
    # gco2e: the grid's hourly intensity varies around its class average
    return energy / 1000.0 * c.intensity[g] * rng.lognormal(0.0, 0.15, m.size)


def _residuals(rng: np.random.Generator, truth: IndicatorTruth, m: np.ndarray, g: np.ndarray,
               c: Catalogue) -> np.ndarray:
    eps = rng.standard_normal(m.size)
    heavy = c.heavy[m]
    if heavy.any():
        eps[heavy] = np.clip(rng.standard_t(3.0, int(heavy.sum())) / np.sqrt(3.0),
                             -HEAVY_TAIL_CLIP, HEAVY_TAIL_CLIP)
    return truth.model_level[m] + truth.region_deviation[g] + truth.model_sigma[m] * eps


def _measured_mask(rng: np.random.Generator, m: np.ndarray, g: np.ndarray, c: Catalogue,
                   first_chunk: bool) -> np.ndarray:
    measured = (rng.random(m.size) < c.tier3_rate[m]) & c.region_measured[g]
    if first_chunk:  # "few" models: exactly k measured requests over the whole data set
        for model_index, count in c.few.items():
            hits = np.flatnonzero((m == model_index) & c.region_measured[g])[:count]
            measured[hits] = True
    return measured


def request_chunk(chunk: int, first_id: int, n: int, seed: int, truths: list[IndicatorTruth],
                  c: Catalogue) -> tuple[pa.Table, pa.Table]:
    """Tier-2 and tier-3 rows for requests ``first_id .. first_id + n - 1``.

    Returns:
        (tier2, tier3) Arrow tables with :data:`TIER2_SCHEMA` / :data:`TIER3_SCHEMA`.
    """
    rng = np.random.default_rng([seed, 2, chunk])
    m = rng.choice(len(c.model_weights), size=n, p=c.model_weights)
    g = rng.choice(len(c.region_weights), size=n, p=c.region_weights)
    ids = np.arange(first_id, first_id + n, dtype=np.int64)
    requested = START + rng.integers(0, SPAN_US, n).astype("timedelta64[us]")
    measured = _measured_mask(rng, m, g, c, first_chunk=chunk == 0)
    lag = rng.integers(1_000_000, 600_000_000, n).astype("timedelta64[us]")
    t2_parts, t3_parts = [], []
    for k, truth in enumerate(truths):
        estimate = _tier2_values(rng, k, m, g, c)
        spread = rng.uniform(0.25, 0.55, n)
        low = estimate * np.exp(-Z90 * spread + rng.normal(0, 0.02, n))
        high = estimate * np.exp(Z90 * spread + rng.normal(0, 0.02, n))
        t2_parts.append(pa.table({
            "request_id": ids, "indicator": pa.array([truth.indicator] * n),
            "model_id": c.model_ids.take(m), "region_id": c.region_ids.take(g),
            "requested_at": requested, "estimate": estimate, "ci90_low": low, "ci90_high": high,
        }, schema=TIER2_SCHEMA))
        residual = _residuals(rng, truth, m, g, c)
        sel = np.flatnonzero(measured)
        t3_parts.append(pa.table({
            "request_id": ids[sel], "indicator": pa.array([truth.indicator] * sel.size),
            "measured_at": (requested + lag)[sel],
            "measurement": estimate[sel] * np.exp(-residual[sel]),
        }, schema=TIER3_SCHEMA))
    return pa.concat_tables(t2_parts), pa.concat_tables(t3_parts)


def fact_chunks(rows: int, seed: int, truths: list[IndicatorTruth],
                c: Catalogue) -> Iterator[tuple[pa.Table, pa.Table]]:
    """All valid facts, chunk by chunk (about ``rows`` tier-2 rows in total).

    Args:
        rows: number of tier-2 rows wanted (one per request and indicator).
        seed: generator seed.
        truths: one truth per indicator.
        c: the catalogue arrays.

    Yields:
        (tier2, tier3) Arrow tables.
    """
    n_requests = max(rows // len(truths), 1)
    for chunk, start in enumerate(range(0, n_requests, CHUNK_REQUESTS)):
        n = min(CHUNK_REQUESTS, n_requests - start)
        yield request_chunk(chunk, start + 1, n, seed, truths, c)
