"""Exact marginalisation of every Gaussian location, given the scales θ.

Given θ, all locations ``x`` are jointly Gaussian a priori (precision ``P``) and the cell
likelihood is Gaussian in ``x`` (``L = Σ w a aᵀ``, ``h = Σ w·mean·a``, ``a`` = indicator of the
cell's model and region, ``w = n/σ_m²`` or ``1/se²``). Hence

    log p(cells | θ) = ½log|P| − ½log|P+L| + ½ hᵀ(P+L)⁻¹h − ½Σ w·mean² [− Σ n lnσ − Σ S/(2σ²)] + c

The model (leaf) block of ``P+L`` is diagonal (``d_m = 1/σ_parent² + Σ_g w_mg``), so it is
eliminated by a Schur complement, leaving a dense system over the kept nodes (families, classes,
regions, ...) for one Cholesky. A sum-to-zero constraint on the additive leaf is imposed exactly by
restricting the kept block to the subspace ``x = T z`` (``T`` orthonormal on the region part); its
prior normaliser is ``½log|TᵀPT| = ½log|P| + ½log(cᵀP⁻¹c / cᵀc)`` where ``cᵀP⁻¹c`` is the prior
variance of the sum of the region effects, ``Σ_nodes count² · sd²`` for a tree.

The same :func:`assemble` code runs on PyTensor tensors (the sampled log density) and on batched
numpy arrays (the conditional draws of the locations), so the two cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import numpy as np

from tierpool.fit.structure import Structure


def constant_arrays(st: Structure) -> dict[str, np.ndarray]:
    """Every array the log density reads, float64 unless an index (fed as pm.Data)."""
    K, M, G = st.n_kept, st.n_leaf, max(st.n_add_leaf, 1)
    E = np.eye(K)
    has_par = st.kept_parent >= 0
    E[np.nonzero(has_par)[0], st.kept_parent[has_par]] = -1.0
    A = np.zeros((M, K))
    has_lp = st.leaf_parent >= 0
    A[np.nonzero(has_lp)[0], st.leaf_parent[has_lp]] = 1.0
    R = np.zeros((G, K))
    if st.n_add_leaf:
        start = st.kept_offset[st.spec.additive.leaf.name]
        R[np.arange(G), start + np.arange(G)] = 1.0
    out = {
        "E": E, "A": A, "R": R, "T": st.T,
        "kept_src": np.maximum(st.kept_sd_src, 0), "kept_mask": (st.kept_sd_src >= 0).astype(float),
        "leaf_src": np.maximum(st.leaf_sd_src, 0), "leaf_mask": (st.leaf_sd_src >= 0).astype(float),
        "leaf_scale_src": np.maximum(st.leaf_scale_src, 0),
        "add_counts": st.add_counts,
    }
    out.update({k: np.asarray(v, dtype=float) for k, v in st.data.items()})
    return out


@dataclass
class Assembled:
    """The reduced Gaussian system and the scalar terms of the marginal log-likelihood."""

    q_leaf: Any  # (…, M) prior precision of each leaf around its parent
    d: Any  # (…, M) diagonal of the leaf block of P+L
    W: Any  # (…, M, G) cell weights
    hM: Any  # (…, M) leaf part of h
    S_z: Any  # (…, Kz, Kz) Schur complement in constrained coordinates
    h_z: Any  # (…, Kz)
    scalar: Any  # (…) everything except −½log|S_z| + ½ h_zᵀS_z⁻¹h_z


def _numpy_ops() -> SimpleNamespace:
    return SimpleNamespace(log=np.log, swap=lambda x: np.swapaxes(x, -1, -2))


def _pytensor_ops() -> SimpleNamespace:
    import pytensor.tensor as pt

    return SimpleNamespace(log=pt.log, swap=lambda x: pt.swapaxes(x, -1, -2))


def assemble(theta: Any, c: dict[str, Any], likelihood: str, constrained: bool, xp: SimpleNamespace) -> Assembled:
    """Build the Schur-reduced system from θ (``(..., n_theta)``) and the constant arrays ``c``.

    Works for a single θ (PyTensor or numpy) and for a batch of θ (numpy, leading axes).
    """
    s_kept = theta[..., c["kept_src"]]
    s_leaf = theta[..., c["leaf_src"]]
    q_kept = c["kept_mask"] / s_kept**2
    q_leaf = c["leaf_mask"] / s_leaf**2
    logdet_prior = -(c["kept_mask"] * xp.log(s_kept)).sum(-1) - (c["leaf_mask"] * xp.log(s_leaf)).sum(-1)
    if constrained:
        var_sum = (c["add_counts"] ** 2 * s_kept**2).sum(-1)
        logdet_prior = logdet_prior + 0.5 * xp.log(var_sum / c["R"].shape[0])
    if likelihood == "cells_nms":
        s_own = theta[..., c["leaf_scale_src"]]
        r = 1.0 / s_own**2
        data_terms = -(c["n_sum"] * xp.log(s_own)).sum(-1) - 0.5 * (c["S_sum"] * r).sum(-1)
        data_terms = data_terms - 0.5 * (c["YYc"] * r).sum(-1)
        W = c["Wc"] * r[..., :, None]
        HY = c["Yc"] * r[..., :, None]
    else:
        data_terms = -0.5 * c["YYc"].sum()
        W = c["Wc"] + 0.0 * q_leaf[..., :, None]  # broadcast to the batch shape
        HY = c["Yc"] + 0.0 * q_leaf[..., :, None]
    d = q_leaf + W.sum(-1)
    hM = HY.sum(-1)
    A, E, R, T = c["A"], c["E"], c["R"], c["T"]
    # kept block: prior edges + leaf pull on parents − Schur correction (diagonal through A)
    S = (xp.swap(E) * q_kept[..., None, :]) @ E
    S = S + _diag((q_leaf - q_leaf**2 / d) @ A)
    cross = (xp.swap(A) @ ((q_leaf / d)[..., :, None] * W)) @ R  # family–region via models
    S = S + cross + xp.swap(cross)
    WdW = xp.swap(W) @ (W / d[..., :, None])
    RR = _diag(W.sum(-2)) - WdW
    S = S + xp.swap(R) @ RR @ R
    hd = hM / d
    h_add = HY.sum(-2) - (hd[..., None, :] @ W)[..., 0, :]
    h_K = (q_leaf * hd) @ A + h_add @ R
    S_z = xp.swap(T) @ S @ T
    h_z = h_K @ T
    leaf_terms = 0.5 * (hM * hd).sum(-1) - 0.5 * xp.log(d).sum(-1)
    return Assembled(q_leaf, d, W, hM, S_z, h_z, logdet_prior + data_terms + leaf_terms)


def _diag(v: Any) -> Any:
    n = v.shape[-1]
    eye = np.eye(int(n)) if isinstance(n, (int, np.integer)) else None
    if eye is None:
        import pytensor.tensor as pt

        return v[..., :, None] * pt.eye(n)
    return v[..., :, None] * eye


def marginal_loglik_pt(theta: Any, c: dict[str, Any], likelihood: str, constrained: bool, n_z: int, const: float) -> Any:
    """PyTensor expression of log p(cells | θ) (θ a 1-d tensor)."""
    import pytensor.tensor as pt

    a = assemble(theta, c, likelihood, constrained, _pytensor_ops())
    out = a.scalar + const
    if n_z:
        L = pt.linalg.cholesky(a.S_z)
        v = pt.linalg.solve_triangular(L, a.h_z, lower=True)
        out = out - pt.log(pt.diagonal(L)).sum() + 0.5 * (v**2).sum()
    return out


def marginal_loglik_np(theta: np.ndarray, st: Structure) -> np.ndarray:
    """numpy log p(cells | θ) for one θ or a batch ``(..., n_theta)`` (used by tests and checks)."""
    c = constant_arrays(st)
    constrained = _constrained(st)
    a = assemble(np.asarray(theta, float), c, st.spec.likelihood, constrained, _numpy_ops())
    out = a.scalar + st.const
    if st.n_z:
        L = np.linalg.cholesky(a.S_z)
        mean = np.linalg.solve(a.S_z, a.h_z[..., None])[..., 0]
        out = out - np.log(np.diagonal(L, axis1=-2, axis2=-1)).sum(-1) + 0.5 * (a.h_z * mean).sum(-1)
    return out


def _constrained(st: Structure) -> bool:
    return bool(st.spec.additive and st.spec.additive.sum_to_zero and st.n_add_leaf >= 2)


def draw_locations(theta: np.ndarray, st: Structure, rng: np.random.Generator, batch: int = 2048) -> tuple[np.ndarray, np.ndarray]:
    """Draw every location from its exact Gaussian conditional given each θ draw.

    Args:
        theta: ``(B, n_theta)`` draws of the scale vector.
        st: The structure.
        rng: Seeded generator.
        batch: Draws processed per vectorised block (bounds memory).

    Returns:
        ``(x_kept (B, K), x_leaf (B, M))`` in the original coordinates (regions sum to zero).
    """
    c = constant_arrays(st)
    B = theta.shape[0]
    xk = np.zeros((B, st.n_kept))
    xm = np.zeros((B, st.n_leaf))
    for lo in range(0, B, batch):
        hi = min(B, lo + batch)
        xk[lo:hi], xm[lo:hi] = _draw_block(theta[lo:hi], st, c, rng)
    return xk, xm


def _draw_block(theta, st, c, rng):
    a = assemble(theta, c, st.spec.likelihood, _constrained(st), _numpy_ops())
    nb = theta.shape[0]
    if st.n_z:
        L = np.linalg.cholesky(a.S_z)
        mean = np.linalg.solve(a.S_z, a.h_z[..., None])[..., 0]
        eps = rng.standard_normal((nb, st.n_z, 1))
        z = mean + np.linalg.solve(np.swapaxes(L, -1, -2), eps)[..., 0]
        x_k = z @ c["T"].T
    else:
        x_k = np.zeros((nb, 0))
    par = x_k @ c["A"].T if st.n_kept else np.zeros((nb, st.n_leaf))
    reg = x_k @ c["R"].T if st.n_kept else np.zeros((nb, c["Wc"].shape[1]))
    cond_mean = (a.hM + a.q_leaf * par - (a.W @ reg[..., None])[..., 0]) / a.d
    x_m = cond_mean + rng.standard_normal(cond_mean.shape) / np.sqrt(a.d)
    return x_k, x_m
