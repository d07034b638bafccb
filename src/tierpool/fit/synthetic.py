"""Synthetic cells drawn from a spec's own priors, with very uneven group sizes.

Cells are drawn from their exact sufficient-statistic distribution (``mean ~ N(μ, σ/√n)``,
``S ~ σ²·χ²(n−1)``), so a 10M-row data set costs as little as a 10k one. Used by the unit tests
and the ``fit_scaling`` benchmark; the row-level demo generator lives elsewhere.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from tierpool.fit.spec import PER_LEAF, FitSpec, Side, default_spec
from tierpool.fit.structure import ancestor_index


@dataclass
class SyntheticData:
    """Cells plus the ground truth (raw draws and the identified, re-centred version)."""

    cells: pd.DataFrame
    catalogue: pd.DataFrame  # every group, including models with no rows
    truth: dict[str, pd.DataFrame]  # level name -> columns id, mu, sigma (raw draw)
    identified: dict[str, pd.DataFrame]  # level name -> id, mu (re-centred as the fit reports it)
    rows: int


def default_sizes(spec: FitSpec) -> dict[str, int]:
    """Demo-sized groups: 12 families, 120 models, 4 region classes, 16 regions."""
    sizes = {"family": 12, "architecture": 36, "model": 120, "region_class": 4, "region": 16}
    return {lv.name: sizes.get(lv.name, 10) for lv in spec.all_levels()}


def draw_synthetic(
    seed: int,
    rows: int = 100_000,
    spec: FitSpec | None = None,
    sizes: dict[str, int] | None = None,
    max_share: float = 0.1285,
    zero_share: float = 0.1,
    constrained: bool = True,
) -> SyntheticData:
    """Draw group parameters from the fitted prior and cells of (n, mean, S) from them.

    By default the truth comes from exactly the model the fit assumes: with a ``sum_to_zero``
    additive side (the default spec) its effects are drawn from the prior conditioned on summing
    to zero, so a fit of these cells is calibrated against the raw truth. ``constrained=False``
    draws the verbatim unconstrained prior instead (the additive leaves then carry an overall level
    the fit moves to the main side: compare with ``identified``).

    Args:
        seed: Seed of the generator.
        rows: Total number of residual rows the cells summarise.
        spec: A ``cells_nms`` spec (default: DESIGN §5).
        sizes: Number of groups per level name (default: :func:`default_sizes`).
        max_share: Largest share of rows one leaf may get (0.1285 → 12,850 of 100k).
        zero_share: Share of leaves that get no rows at all.
        constrained: True (default): draw a ``sum_to_zero`` additive side from its
            sum-to-zero-conditioned prior (exactly the fitted model); False: from the verbatim
            unconstrained prior. No effect on a side without ``sum_to_zero``.

    Returns:
        The synthetic data.
    """
    spec = spec or default_spec()
    sizes = sizes or default_sizes(spec)
    rng = np.random.default_rng(seed)
    truth: dict[str, pd.DataFrame] = {}
    mu_global = _draw_global(spec, rng)
    if mu_global is not None:  # the global level's truth: mu (location) and tau (scale)
        truth["global"] = pd.DataFrame({"mu": [mu_global[0]], "tau": [mu_global[1]]})
    for side in (spec.main, spec.additive):
        if side is not None:
            _draw_side(spec, side, sizes, rng, truth, mu_global)
    if constrained and spec.additive is not None and spec.additive.sum_to_zero:
        _condition_sum_zero(spec.additive, truth)
    if spec.likelihood == "cells_nms" and spec.residual_sd.pooling != PER_LEAF:
        _draw_residual_sd(spec, truth, rng)
    cells = _draw_cells(spec, truth, rows, rng, max_share, zero_share)
    if spec.cell_interaction is not None:  # γ per drawn cell, on its own stream (the rest is unchanged)
        cells = _add_interaction(spec, cells, truth, np.random.default_rng([seed, 7]))
    catalogue = _catalogue(spec, truth)
    return SyntheticData(cells, catalogue, truth, identified_truth(spec, truth), rows)


def _draw_global(spec: FitSpec, rng: np.random.Generator) -> tuple[float, float] | None:
    g = spec.global_level
    if g is None:
        return None
    return float(g.location.draw(rng)), float(g.scale.draw(rng))


def _draw_top_locations(spec: FitSpec, side: Side, sigma: np.ndarray, rng, mu_global) -> np.ndarray:
    prior = spec.top_location(side)
    if prior is None:  # pooled by the global level
        return rng.normal(mu_global[0], mu_global[1], len(sigma))
    if prior.own_scale:
        return rng.normal(prior.mean, sigma)
    return prior.draw(rng, len(sigma))


def _draw_side(spec, side: Side, sizes, rng, truth, mu_global) -> None:
    parent_mu = parent_sd = None
    parent_idx = None
    for k, lv in enumerate(side.levels):
        n = sizes[lv.name]
        ids = np.array([f"{lv.name}_{i:03d}" for i in range(n)], dtype=object)
        if k == 0:
            sigma = lv.scale.draw(rng, n)
            mu = _draw_top_locations(spec, side, sigma, rng, mu_global)
            frame = pd.DataFrame({"id": ids, "mu": mu, "sigma": sigma})
        else:
            n_up = len(parent_mu)
            # every parent gets at least one child; the rest are spread at random
            parent_idx = np.concatenate([np.arange(n_up), rng.integers(0, n_up, n - n_up)])
            parent_idx = np.sort(parent_idx)
            sigma = np.abs(rng.normal(0, parent_sd[parent_idx]))
            mu = rng.normal(parent_mu[parent_idx], parent_sd[parent_idx])
            frame = pd.DataFrame({"id": ids, "mu": mu, "sigma": sigma, "parent": parent_idx})
        truth[lv.name] = frame
        parent_mu, parent_sd = mu, sigma


def _draw_residual_sd(spec: FitSpec, truth, rng) -> None:
    """``truth['residual']``: the pooled residual sd (one, or one per group of a level) and, per leaf, its own."""
    level = spec.residual_level()
    n = len(truth[level.name]) if level else 1
    sigma = spec.residual_sd.prior.draw(rng, n)
    truth["residual"] = pd.DataFrame({"id": truth[level.name]["id"] if level else ["all"], "sigma": sigma})


def _leaf_residual_sd(spec: FitSpec, truth) -> np.ndarray:
    """Each main leaf's residual sd in the truth."""
    leaf = spec.main.leaf.name
    if "residual" not in truth:
        return truth[leaf]["sigma"].to_numpy()
    n_leaf = len(truth[leaf])
    level = spec.residual_level()
    if level is None:
        return np.full(n_leaf, float(truth["residual"]["sigma"].iloc[0]))
    parents = {lv.name: truth[lv.name]["parent"].to_numpy() for lv in spec.main.levels[1:]}
    return truth["residual"]["sigma"].to_numpy()[ancestor_index(spec.main, level.name, parents, np.arange(n_leaf))]


def _ancestry(side: Side, truth) -> list[np.ndarray]:
    """For each level: index of the level's ancestor of every additive leaf."""
    n_leaf = len(truth[side.leaf.name])
    out = [np.arange(n_leaf)]
    for k in range(len(side.levels) - 1, 0, -1):
        out.insert(0, truth[side.levels[k].name]["parent"].to_numpy()[out[0]])
    return out


def _condition_sum_zero(side: Side, truth) -> None:
    """Matheron's rule: x ← x − Cov(x, s)/Var(s)·s with s = Σ leaf effects (exact conditioning)."""
    anc = _ancestry(side, truth)
    contrib = []  # (level k, count under each node, conditional sd of each node)
    for k, lv in enumerate(side.levels):
        counts = np.bincount(anc[k], minlength=len(truth[lv.name])).astype(float)
        if k == 0:
            sd = truth[lv.name]["sigma"].to_numpy()
        else:
            up = truth[side.levels[k - 1].name]["sigma"].to_numpy()
            sd = up[truth[lv.name]["parent"].to_numpy()]
        contrib.append((counts, sd))
    var_s = sum(float((cnt**2 * sd**2).sum()) for cnt, sd in contrib)
    s = float(truth[side.leaf.name]["mu"].sum())
    cov_prev = None
    for k, lv in enumerate(side.levels):
        cnt, sd = contrib[k]
        own = cnt * sd**2
        cov = own if cov_prev is None else own + cov_prev[truth[lv.name]["parent"].to_numpy()]
        truth[lv.name]["mu"] = truth[lv.name]["mu"].to_numpy() - cov / var_s * s
        cov_prev = cov


def identified_truth(spec: FitSpec, truth: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """Re-centre the truth as the fit reports it: regions sum to zero, the main side absorbs ḡ."""
    shift = 0.0
    if spec.additive is not None and spec.additive.sum_to_zero:
        shift = float(truth[spec.additive.leaf.name]["mu"].mean())
    out = {}
    for side, sign in ((spec.main, 1.0), (spec.additive, -1.0)):
        if side is None:
            continue
        for lv in side.levels:
            t = truth[lv.name]
            out[lv.name] = pd.DataFrame({lv.column: t["id"], "mu": t["mu"] + sign * shift})
    return out


def _leaf_rows(n_leaf: int, rows: int, rng, max_share: float, zero_share: float) -> np.ndarray:
    w = rng.lognormal(0.0, 1.5, n_leaf)
    zero = rng.permutation(n_leaf)[: int(round(zero_share * n_leaf))]
    w[zero] = 0.0
    w /= w.sum()
    for _ in range(50):  # cap the biggest groups, spreading the excess over the others
        w = np.minimum(w, max_share)
        w /= w.sum()
    counts = rng.multinomial(rows, w)
    # a tenth of the groups get almost nothing (1-5 rows): the funnel cases
    tiny = rng.permutation(np.nonzero(w)[0])[: int(round(zero_share * n_leaf))]
    counts[tiny] = rng.integers(1, 6, len(tiny))
    return np.minimum(counts, int(max_share * rows))


def _draw_cells(spec, truth, rows, rng, max_share, zero_share) -> pd.DataFrame:
    main, add = spec.main, spec.additive
    leaf = truth[main.leaf.name]
    n_rows = _leaf_rows(len(leaf), rows, rng, max_share, zero_share)
    n_g = len(truth[add.leaf.name]) if add else 1
    records = []
    for m in np.nonzero(n_rows)[0]:
        share = rng.dirichlet(np.full(n_g, 0.7))
        per_g = rng.multinomial(n_rows[m], share)
        for g in np.nonzero(per_g)[0]:
            records.append((m, g, per_g[g]))
    m_idx, g_idx, n = (np.array(x) for x in zip(*records))
    mu = leaf["mu"].to_numpy()[m_idx]
    if add:
        mu = mu + truth[add.leaf.name]["mu"].to_numpy()[g_idx]
    sd = _leaf_residual_sd(spec, truth)[m_idx]
    mean = rng.normal(mu, sd / np.sqrt(n))
    S = sd**2 * rng.chisquare(np.maximum(n - 1, 1)) * (n > 1)
    frame = _id_columns(spec, truth, m_idx, g_idx if add else None)
    frame["n"] = n.astype(np.int64)
    frame["mean"] = mean
    frame["S"] = S
    return frame


def _add_interaction(spec: FitSpec, cells: pd.DataFrame, truth, rng: np.random.Generator) -> pd.DataFrame:
    """σ_cell from its prior and γ ~ N(0, σ_cell) added to each cell's mean (truth: ``cell`` with
    ``tau``, ``cell_gamma`` with the ids and γ of every drawn cell)."""
    tau = float(spec.cell_interaction.draw(rng, 1)[0])
    gamma = rng.normal(0.0, tau, len(cells))
    truth["cell"] = pd.DataFrame({"tau": [tau]})
    keys = [spec.main.leaf.column, spec.additive.leaf.column]
    truth["cell_gamma"] = cells[keys].assign(gamma=gamma)
    return cells.assign(mean=cells["mean"] + gamma)


def _id_columns(spec, truth, m_idx, g_idx) -> pd.DataFrame:
    cols: dict[str, np.ndarray] = {}
    for side, idx in ((spec.main, m_idx), (spec.additive, g_idx)):
        if side is None:
            continue
        cur = idx
        for k in range(len(side.levels) - 1, -1, -1):
            lv = side.levels[k]
            cols[lv.column] = truth[lv.name]["id"].to_numpy()[cur]
            if k:
                cur = truth[lv.name]["parent"].to_numpy()[cur]
    ordered = [lv.column for lv in spec.all_levels()]
    return pd.DataFrame({c: cols[c] for c in ordered})


def _catalogue(spec: FitSpec, truth) -> pd.DataFrame:
    """One row per main leaf and per additive leaf with all its ancestors' ids."""
    main = _id_columns(spec.__class__(main=spec.main), truth, np.arange(len(truth[spec.main.leaf.name])), None)
    if spec.additive is None:
        return main
    sub = spec.__class__(main=spec.additive)
    add = _id_columns(sub, truth, np.arange(len(truth[spec.additive.leaf.name])), None)
    return pd.concat([main, add], ignore_index=True)
