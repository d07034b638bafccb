"""Row-level residuals for the per-row baselines, consistent with the synthetic cells' truth."""

from __future__ import annotations

import numpy as np
import pandas as pd


def expand_rows(syn, seed: int) -> pd.DataFrame:
    """One row per residual: r ~ Normal(μ_model + μ_region, σ_model) for each cell's n rows."""
    rng = np.random.default_rng([seed, 31])
    mod, reg = syn.truth["model"], syn.truth["region"]
    m_of = {v: i for i, v in enumerate(mod["id"])}
    g_of = {v: i for i, v in enumerate(reg["id"])}
    m = np.repeat(syn.cells["model_id"].map(m_of).to_numpy(), syn.cells["n"].to_numpy())
    g = np.repeat(syn.cells["region_id"].map(g_of).to_numpy(), syn.cells["n"].to_numpy())
    mu = mod["mu"].to_numpy()[m] + reg["mu"].to_numpy()[g]
    return pd.DataFrame({"m": m, "g": g, "r": rng.normal(mu, mod["sigma"].to_numpy()[m])})
