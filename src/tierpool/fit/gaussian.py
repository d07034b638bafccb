"""Exact marginalisation of every Gaussian location, given the scales θ.

Given θ, all locations ``x`` are jointly Gaussian a priori (precision ``P``) and the cell
likelihood is Gaussian in ``x`` (``L = Σ w a aᵀ``, ``h = Σ w·mean·a``, ``a`` = indicator of the
cell's model and region, ``w = W/σ_m²`` or ``1/se²``; with a resolution floor δ every σ_m in the
cells' terms is ``√(σ_m² + δ²/12)``). ``W`` is the sum of the cell's row weights (rows that are
averages of w_i requests have variance σ²/w_i; ``W = n`` for single requests), ``n`` its number
of rows, ``mean`` and ``S`` the weighted mean and sum of squares. Hence

    log p(cells | θ) = ½log|P| − ½log|P+L| + ½ hᵀ(P+L)⁻¹h − ½Σ w·mean² [− Σ n lnσ − Σ S/(2σ²)] + c

(precision from W, the normaliser from n; the constant ½ Σ ln w_i of weighted rows is left out).

The model (leaf) block of ``P+L`` is diagonal (``d_m = 1/σ_parent² + Σ_g w_mg``), so it is
eliminated by a Schur complement, leaving a dense system over the kept nodes (families, classes,
regions, ...) for one Cholesky. A sum-to-zero constraint on the additive leaf is imposed exactly by
restricting the kept block to the subspace ``x = T z`` (``T`` orthonormal on the region part); its
prior normaliser is ``½log|TᵀPT| = ½log|P| + ½log(cᵀP⁻¹c / cᵀc)`` where ``cᵀP⁻¹c`` is the prior
variance of the sum of the region effects, ``Σ_nodes count² · sd²`` for a tree.

Three implementations of this system exist, each checked against the others and against dense
references: :func:`assemble` (PyTensor: the PyMC model of build.py; numpy: ``marginal_loglik_np``),
the batched numpy builder behind :func:`draw_locations`, and the numba kernel that nutpie samples
(fast_density.py; tests/unit/test_fit_fast_density.py compares it with the PyTensor graph).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import numpy as np

from tierpool.fit.interaction import interaction_terms
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
    if st.spec.likelihood == "cells_nms" and st.spec.resolution > 0:
        out["tau2"] = np.asarray(st.spec.resolution_var)  # δ²/12 added to σ² in the cells' likelihood
    if st.cell_sd_src >= 0:
        out["cell_sd_src"] = np.asarray(st.cell_sd_src, dtype=np.int64)  # σ_cell's index in θ
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
        if "tau2" in c:  # resolution floor: the observed residual's sd is √(σ² + δ²/12)
            s_own = (s_own**2 + c["tau2"]) ** 0.5
        r = 1.0 / s_own**2
        if "cell_sd_src" in c:  # cell interaction: each cell mean ~ N(μ_m + μ_g, s²/W + σ_cell²)
            data_terms, W, HY = interaction_terms(theta, c, s_own, r, xp)
        else:
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


def draw_locations(
    theta: np.ndarray, st: Structure, rng: np.random.Generator, batch: int = 512, return_pooling: bool = False
) -> tuple[np.ndarray, ...]:
    """Draw every location from its exact Gaussian conditional given each θ draw.

    numpy only: the reduced system is built by :func:`_reduced_np` (the same algebra as
    :func:`assemble`, with the 0/1 matrices replaced by index scatters and the data sums by single
    matrix products) and solved with one batched Cholesky and two vectorised substitutions.

    Args:
        theta: ``(B, n_theta)`` draws of the scale vector.
        st: The structure.
        rng: Seeded generator.
        batch: Draws processed per vectorised block (bounds memory; the random stream is drawn
            block by block, so it depends on this).
        return_pooling: Also return the pooling factor ``q_m/d_m`` per draw and leaf ``(B, M)``.

    Returns:
        ``(x_kept (B, K), x_leaf (B, M))`` in the original coordinates (regions sum to zero), plus
        the pooling factor if asked.
    """
    lay = _NumpyLayout(st)
    B = theta.shape[0]
    xk = np.zeros((B, st.n_kept))
    xm = np.zeros((B, st.n_leaf))
    pool = np.zeros((B, st.n_leaf)) if return_pooling else None
    draw = _draw_block
    if st.cell_sd_src >= 0:  # cell interaction: per-cell weights (fit/interaction.py)
        from tierpool.fit.interaction import draw_block as draw
    with _one_blas_thread():
        for lo in range(0, B, batch):
            hi = min(B, lo + batch)
            xk[lo:hi], xm[lo:hi], pooling = draw(theta[lo:hi], lay, rng)
            if pool is not None:
                pool[lo:hi] = pooling
    _shift_main_side(xk, xm, st)
    return (xk, xm, pool) if return_pooling else (xk, xm)


def _shift_main_side(xk: np.ndarray, xm: np.ndarray, st: Structure) -> None:
    """Undo the centring of the cells on the main side's prior mean (``structure._reduce_cells``).

    Centring every residual by m and every main-side location (global, main levels) by m leaves
    the model unchanged, with prior means 0: the Gaussian algebra assumes them.
    """
    shift = st.spec.location_shift
    if shift == 0.0:
        return
    xm += shift
    for name in ["global", *(lv.name for lv in st.spec.main.levels[:-1])]:
        if name in st.kept_offset:
            off = st.kept_offset[name]
            xk[:, off:off + (1 if name == "global" else len(st.ids[name]))] += shift


@contextmanager
def _one_blas_thread() -> Iterator[None]:
    """One BLAS thread: the products here are many small ones, which threads only slow down
    (10× on a busy 2-core machine). threadpoolctl is optional; without it nothing changes."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        yield
        return
    with threadpool_limits(limits=1, user_api="blas"):
        yield


class _NumpyLayout:
    """Index maps and data products for the batched numpy system (precomputed once per call)."""

    def __init__(self, st: Structure) -> None:
        c = constant_arrays(st)
        self.st, self.c = st, c
        self.K, self.M, self.n_z = st.n_kept, st.n_leaf, st.n_z
        self.nms = st.spec.likelihood == "cells_nms"
        Wc, Yc = c["Wc"], c["Yc"]
        self.Wc, self.Yc = Wc, Yc
        self.Wc_T = np.ascontiguousarray(Wc.T)
        self.W_sum, self.Y_sum = Wc.sum(1), Yc.sum(1)
        G = Wc.shape[1]
        self.G = G
        # kept prior E^T diag(q) E: q_k on the diagonal at k and at its parent, −q_k off it
        self.child = np.nonzero(st.kept_parent >= 0)[0]
        parent = st.kept_parent[self.child]
        C = np.zeros((self.K, self.K))
        C[self.child, parent] = 1.0
        self.C = C
        self.off_flat = np.concatenate([self.child * self.K + parent, parent * self.K + self.child])
        self.A = c["A"]
        lp = st.leaf_parent
        self.has_lp = lp >= 0
        self.lp = np.maximum(lp, 0)
        # additive leaf (regions): a contiguous block [a, a+G) of the kept nodes
        self.has_add = bool(st.n_add_leaf) and self.K > 0
        self.has_cross = self.has_add and bool(self.has_lp.any())
        if self.has_cross:
            # the leaves' parents lie in rows [p0, p1) (one level; any node between gets zero columns)
            self.p0, self.p1 = int(lp[self.has_lp].min()), int(lp[self.has_lp].max()) + 1
            Ap = self.A[:, self.p0:self.p1]
            self.AW = (Ap[:, :, None] * Wc[:, None, :]).reshape(self.M, -1)
        if self.has_add:
            self.a = st.kept_offset[st.spec.additive.leaf.name]
            O = Wc[:, :, None] * Wc[:, None, :]  # Σ_m coef_m Wc_m Wc_mᵀ, off-diagonal part
            O[:, np.arange(G), np.arange(G)] = 0.0
            self.O = O.reshape(self.M, G * G)
            self.W_rest = Wc * (self.W_sum[:, None] - Wc)  # W_mg · Σ_{g'≠g} W_mg'
        self.T = c["T"]
        self.T_T = np.ascontiguousarray(self.T.T)
        self.identity_T = self.T.shape == (self.K, self.K) and np.array_equal(self.T, np.eye(self.K))
        # sum-to-zero on the regions: any basis of the constrained subspace gives the same
        # distribution of x = T z; the difference basis (x_g = z_g, x_last = −Σ z_g) is applied by
        # subtracting the last region's row and column instead of two dense products with T.
        self.diff_basis = False
        if self.has_add and not self.identity_T and self.T.shape[1] == self.K - 1:
            a, g = self.a, G
            ref = np.zeros_like(self.T)
            ref[:a, :a] = np.eye(a)
            ref[a:a + g, a:a + g - 1] = self.T[a:a + g, a:a + g - 1]
            ref[a + g:, a + g - 1:] = np.eye(self.K - a - g)
            self.diff_basis = bool(np.array_equal(ref, self.T))
            self.last = a + g - 1
            self.keep = np.delete(np.arange(self.K), self.last)


def _reduced_np(theta: np.ndarray, lay: _NumpyLayout) -> tuple[np.ndarray, ...]:
    """numpy-only ``assemble`` for a batch ``(nb, n_theta)``: ``(q_leaf, d, r, hM, S_z, h_z)``.

    ``S_z, h_z`` are in the difference basis of the region block when ``lay.diff_basis`` (else in
    the structure's ``T``), so they equal ``assemble``'s only up to that change of basis.

    ``r`` is the per-leaf data weight (``1/σ_m²`` for cells_nms, 1 for cells_se), so the cell
    weights are ``W = r[:, :, None] * Wc`` without ever forming them.
    """
    c, K, nb = lay.c, lay.K, theta.shape[0]
    q_kept = c["kept_mask"] / theta[:, c["kept_src"]] ** 2
    q_leaf = c["leaf_mask"] / theta[:, c["leaf_src"]] ** 2
    r = 1.0 / (theta[:, c["leaf_scale_src"]] ** 2 + c.get("tau2", 0.0)) if lay.nms else np.ones_like(q_leaf)
    d = q_leaf + r * lay.W_sum
    hM = r * lay.Y_sum
    hd = hM / d
    if K == 0:
        return q_leaf, d, r, hM, np.zeros((nb, 0, 0)), np.zeros((nb, 0))
    S = np.zeros((nb, K, K))
    flat = S.reshape(nb, K * K)  # a view: diagonal and scattered entries through flat indices
    flat[:, :: K + 1] = q_kept + q_kept @ lay.C + (q_leaf * (r * lay.W_sum) / d) @ lay.A  # q − q²/d, no cancelling
    flat[:, lay.off_flat] = np.tile(-q_kept[:, lay.child], 2)
    h_K = (q_leaf * hd) @ lay.A
    if lay.has_add:
        a, g = lay.a, lay.G
        if lay.has_cross:
            p0, p1 = lay.p0, lay.p1
            cross = ((q_leaf * r / d) @ lay.AW).reshape(nb, p1 - p0, g)  # Aᵀ diag(q/d) W, parents × regions
            S[:, p0:p1, a:a + g] += cross
            S[:, a:a + g, p0:p1] += np.swapaxes(cross, 1, 2)
        S[:, a:a + g, a:a + g] -= ((r * r / d) @ lay.O).reshape(nb, g, g)
        # its diagonal Σ_m W_mg(1 − W_mg/d_m) = Σ_m W_mg(q_m + Σ_{g'≠g} W_mg')/d_m, no cancelling
        flat[:, a * (K + 1):(a + g) * (K + 1):K + 1] += (q_leaf * r / d) @ lay.Wc + (r * r / d) @ lay.W_rest
        h_K[:, a:a + g] += r @ lay.Yc - (hd * r) @ lay.Wc
    if lay.identity_T:
        return q_leaf, d, r, hM, S, h_K
    if lay.diff_basis:  # Dᵀ S D and Dᵀ h for the difference basis D of the region block
        a, last = lay.a, lay.last
        S[:, :, a:last] -= S[:, :, last:last + 1]
        S[:, a:last, :] -= S[:, last:last + 1, :]
        h_K[:, a:last] -= h_K[:, last:last + 1]
        if last == K - 1:
            return q_leaf, d, r, hM, S[:, :last, :last], h_K[:, :last]
        return q_leaf, d, r, hM, S[:, lay.keep[:, None], lay.keep], h_K[:, lay.keep]
    return q_leaf, d, r, hM, lay.T_T @ S @ lay.T, h_K @ lay.T


def _draw_block(theta, lay, rng):
    """Locations for one block of θ draws; the random stream is (ε of the kept block, ε of the leaves)."""
    st, nb = lay.st, theta.shape[0]
    q_leaf, d, r, hM, S_z, h_z = _reduced_np(theta, lay)
    if st.n_z:
        L = np.linalg.cholesky(S_z)
        eps = rng.standard_normal((nb, st.n_z, 1))[..., 0]
        # z = S_z⁻¹h_z + L⁻ᵀε = L⁻ᵀ(L⁻¹h_z + ε)
        z = _solve_lower_t(L, _solve_lower(L, h_z) + eps)
        if lay.diff_basis:
            x_k = np.empty((nb, st.n_kept))
            x_k[:, lay.keep] = z
            x_k[:, lay.last] = -z[:, lay.a:lay.last].sum(1)
        else:
            x_k = z @ lay.T_T
    else:
        x_k = np.zeros((nb, st.n_kept))
    cond = hM.copy()
    if st.n_kept:
        cond += q_leaf * np.where(lay.has_lp, x_k[:, lay.lp], 0.0)
        if lay.has_add:
            cond -= r * (x_k[:, lay.a:lay.a + lay.G] @ lay.Wc_T)
    cond /= d
    x_m = cond + rng.standard_normal(cond.shape) / np.sqrt(d)
    return x_k, x_m, q_leaf / d


def _solve_lower(L: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``L⁻¹b`` for a batch of lower-triangular ``L (nb, n, n)`` and ``b (nb, n)`` (forward substitution)."""
    n = L.shape[-1]
    u = np.empty_like(b)
    for i in range(n):
        u[:, i] = (b[:, i] - np.einsum("bj,bj->b", L[:, i, :i], u[:, :i])) / L[:, i, i]
    return u


def _solve_lower_t(L: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``L⁻ᵀb`` for a batch of lower-triangular ``L`` (back substitution on ``Lᵀ``)."""
    n = L.shape[-1]
    u = np.empty_like(b)
    for i in range(n - 1, -1, -1):
        u[:, i] = (b[:, i] - np.einsum("bj,bj->b", L[:, i + 1:, i], u[:, i + 1:])) / L[:, i, i]
    return u
