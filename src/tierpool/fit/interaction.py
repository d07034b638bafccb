"""The model × region interaction γ_mr ~ Normal(0, σ_cell) (``FitSpec.cell_interaction``).

Every cell's mean then is ``μ_m + μ_r + γ_mr`` (DESIGN §5 plus one term). γ is integrated out
exactly everywhere the locations are: a cell mean ``ȳ ~ N(μ_m + μ_r + γ, s²/W)`` becomes
``ȳ ~ N(μ_m + μ_r, s²/W + σ_cell²)``, so each cell enters the Gaussian system with its own weight
``ω = 1/(s²/W + σ_cell²)`` instead of ``W/s²``. The model block stays diagonal (``d_m = q_m + Σ_r ω_mr``),
the within-cell terms ``−(n − 1)·ln s − S/(2s²)`` are unchanged and ``½ Σ ln ω`` replaces the cells'
share of ``−n·ln s`` (:func:`interaction_terms`, called by ``gaussian.assemble``; the numba kernel's per-cell forms in
fast_density_cells.py).

Here: the conditional draws of the other locations given θ (the batched Gaussian system with
per-cell weights), and γ itself. Given θ and the locations, a measured cell's γ is conjugate:
``γ | · ~ N(m, 1/P)``, ``P = 1/σ_cell² + W/s²``, ``m = (W/s²)(ȳ − μ_m − μ_r)/P``; a never-measured
pair's is its prior ``N(0, σ_cell²)``. γ is not stored with the posterior (one value per cell and
draw): the predictive (``predictive.py``) and the scores (``compare.py``) draw or integrate it from
these moments.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tierpool.fit.structure import Structure


def interaction_terms(theta: Any, c: dict[str, Any], s_own: Any, r: Any, xp: Any) -> tuple[Any, Any, Any]:
    """Cell weights ``ω = 1/(s²/W + σ_cell²)`` (0 where no cell) and the data terms with the cell
    interaction integrated out: ``−Σ (n − C)·ln s − ½ Σ S/s² + ½ Σ_cells ln ω − ½ Σ ω·mean²`` (the
    constant ``−½ Σ ln W`` is in ``Structure.const``; at σ_cell = 0 this is the additive model's)."""
    tau2 = theta[..., c["cell_sd_src"]] ** 2
    has = c["Wc"] > 0
    wr = c["Wc"] * r[..., :, None]
    W = wr / (1.0 + wr * tau2[..., None, None])  # 0 where the cell is empty
    safe = W + (1.0 - has)  # log 1 = 0 off the cells
    data_terms = (-((c["n_sum"] - c["n_cells"]) * xp.log(s_own)).sum(-1) - 0.5 * (c["S_sum"] * r).sum(-1)
                  + 0.5 * xp.log(safe).sum((-2, -1)) - 0.5 * (W * c["Mc"] ** 2).sum((-2, -1)))
    return data_terms, W, W * c["Mc"]


def draw_block(theta: np.ndarray, lay: Any, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``gaussian._draw_block`` for a cell interaction: the system built by ``assemble`` (numpy,
    batched; per-cell weights), one Cholesky per draw, the leaves from their conditional.

    The random stream is (ε of the kept block, ε of the leaves), as in the additive case."""
    from tierpool.fit.gaussian import _constrained, _numpy_ops, _solve_lower, _solve_lower_t, assemble

    st, nb = lay.st, theta.shape[0]
    a = assemble(theta, lay.c, st.spec.likelihood, _constrained(st), _numpy_ops())
    if st.n_z:
        L = np.linalg.cholesky(a.S_z)
        eps = rng.standard_normal((nb, st.n_z, 1))[..., 0]
        z = _solve_lower_t(L, _solve_lower(L, a.h_z) + eps)
        x_k = z @ lay.T_T
    else:
        x_k = np.zeros((nb, st.n_kept))
    cond = a.hM.copy()
    if st.n_kept:
        cond += a.q_leaf * np.where(lay.has_lp, x_k[:, lay.lp], 0.0)
        start = st.kept_offset[st.spec.additive.leaf.name]
        cond -= np.einsum("bmg,bg->bm", a.W, x_k[:, start:start + st.n_add_leaf])
    cond /= a.d
    x_m = cond + rng.standard_normal(cond.shape) / np.sqrt(a.d)
    return x_k, x_m, a.q_leaf / a.d


class CellData:
    """The fitted cells as (leaf × additive leaf) arrays: which pairs were measured, their summed
    row weights W and means (original coordinates), for γ's conditional moments."""

    def __init__(self, st: Structure) -> None:
        spec = st.spec
        M, G = st.n_leaf, max(st.n_add_leaf, 1)
        self.W = np.zeros((M, G))
        self.mean = np.zeros((M, G))
        cells = st.cells
        if len(cells):
            n = cells[spec.n_col].to_numpy(float)
            w = cells[spec.w_col].to_numpy(float) if spec.w_col in cells.columns else n
            self.W[st.cell_leaf, st.cell_add] = w
            self.mean[st.cell_leaf, st.cell_add] = cells[spec.mean_col].to_numpy(float)
        self.measured = self.W > 0
        self.resolution_var = spec.resolution_var


def gamma_moments(data: CellData, m: np.ndarray, g: np.ndarray, mu: np.ndarray, sd_m: np.ndarray,
                  tau: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and variance of γ for pairs ``(m[j], g[j])`` per draw, given the draws.

    Args:
        data: The fitted cells.
        m, g: ``(J,)`` leaf and additive-leaf indices of the pairs.
        mu: ``(B, J)`` draws of ``μ_m + μ_r`` of each pair.
        sd_m: ``(B, J)`` draws of the pair's model residual sd σ_m.
        tau: ``(B,)`` draws of σ_cell.

    Returns:
        ``(mean, var)``, each ``(B, J)``: the conjugate conditional for a measured pair, the prior
        ``(0, σ_cell²)`` for one never measured.
    """
    W = data.W[m, g][None, :]
    tau2 = (tau**2)[:, None]
    prec_data = W / (sd_m**2 + data.resolution_var)  # W/s², 0 for a pair never measured
    prec = 1.0 / tau2 + prec_data
    mean = prec_data * (data.mean[m, g][None, :] - mu) / prec
    return mean, 1.0 / prec


def draws_of_tau(idata: Any) -> np.ndarray | None:
    """``(B,)`` draws of σ_cell, or None without the interaction."""
    if "sigma_cell" not in idata.posterior:
        return None
    x = np.asarray(idata.posterior["sigma_cell"].values, dtype=float)
    return x.reshape(-1)
