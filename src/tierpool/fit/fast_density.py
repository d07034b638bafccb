"""The scales' log density and its gradient, hand-written in numba (disk-cached, no PyTensor).

Same density as ``build.build_model`` (scale priors + the exact marginal likelihood of
``gaussian.py``), in the sampler's unconstrained coordinates ``u = log θ``. It exists for speed:

* **Gradient by the Fisher identity.** ``∂/∂θ log p(y | θ) = E[∂/∂θ log p(x, y | θ) | y, θ]``: every
  location ``x`` is Gaussian given θ, so the gradient needs only posterior means and variances of
  differences such as ``x_model − x_family`` — read off the same Cholesky factor the value needs —
  instead of reverse-mode differentiation through the matrix algebra (a PyTensor graph of ~100 µs
  per call on the demo; this is ~10× cheaper).
* **Compiled once per machine.** ``@njit(cache=True)`` keeps the machine code on disk, so a new
  process loads it in about a second instead of numba-compiling a PyTensor graph for 20–30 s, and
  the data are plain arguments, so one compiled kernel serves every structure and indicator.

The kernel is checked against the PyTensor model (value and gradient) in
``tests/unit/test_fit_fast_density.py``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from numba import njit

from tierpool.fit.gaussian import _constrained, constant_arrays
from tierpool.fit.numba_linalg import (
    FASTMATH,
    backward,
    cholesky,
    forward,
    lower_inverse,
)
from tierpool.fit.priors import HALFNORMAL_PARENT, scale_logp_grad
from tierpool.fit.spec import FitSpec
from tierpool.fit.structure import Structure

_LOG_HALFNORMAL_CONST = 0.5 * math.log(2.0 / math.pi)
# The kernel's domain in u = log σ: below U_MIN_PINNING for the own scale of a model with two or
# more cells, below U_MIN elsewhere, and above U_MAX, the log density is -inf. Such a model pins its
# regions' differences as σ → 0 and its marginal likelihood becomes a difference of O(1/σ²) terms
# that float64 cannot resolve (a naive form once produced a spurious mode 1,500 nats above the
# posterior that trapped a chain; the PyTensor graph returns NaN there): down to e^-18 the value is
# within ~0.1 nat (tests/unit/test_fit_fast_density.py), and the truncated mass is ~1e-7. Every
# other scale stays exact far out (checked to e^-60); U_MIN only keeps 1/σ² finite. A floor of
# e^-18 for all scales was tried first: the exponential left tail of a data-poor model's log σ
# reached it about once per 100k-row fit, which nutpie reports as a divergence.
U_MIN, U_MIN_PINNING, U_MAX = -60.0, -18.0, 14.0


@dataclass(frozen=True)
class DensityArrays:
    """Every argument of :func:`logp_grad` except ``u`` (numpy, C-contiguous)."""

    prior_kind: np.ndarray
    u_lo: np.ndarray  # lower end of the kernel's domain per sampled u (see U_MIN_PINNING)
    prior_arg: np.ndarray  # first argument of the prior (priors.scale_logp_grad), or the parent's index in θ
    prior_arg2: np.ndarray  # second argument (e.g. ν of a half-Student-t), else 0
    theta_tail: np.ndarray  # θ entries that are not sampled (the global location sd)
    kept_parent: np.ndarray
    kept_src: np.ndarray
    kept_mask: np.ndarray
    leaf_parent: np.ndarray
    leaf_src: np.ndarray
    leaf_mask: np.ndarray
    leaf_scale_src: np.ndarray
    add_start: int
    n_add: int
    add_counts: np.ndarray
    Wc: np.ndarray  # (M, G) cell weight W (Σ row weights, = n rows; or 1/se²); 0 where a leaf has no cell there
    Yc: np.ndarray  # (M, G) weight · cell mean
    w_tot: np.ndarray  # row sums of Wc
    y_tot: np.ndarray  # row sums of Yc
    YYc: np.ndarray
    spread: np.ndarray  # Σ_{c<c'} w_c w_c' (ȳ_c − ȳ_c')² per leaf (= W·YYc − Y², cancellation-free)
    n_sum: np.ndarray  # rows per leaf (the normaliser −n·ln s; differs from w_tot when rows are weighted)
    S_sum: np.ndarray
    nms: bool
    constrained: bool
    const: float
    tau2: float = 0.0  # resolution floor δ²/12 added to σ_m² in the cells' terms (0: none)
    cell_sd: int = -1  # index of σ_cell in θ (the cell interaction), or -1: none
    Mc: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))  # (M, G) cell means (interaction only)
    n_cells: np.ndarray = field(default_factory=lambda: np.zeros(0))  # (M,) cells per leaf (zeros without γ)

    def args(self) -> tuple:
        """Positional arguments of :func:`logp_grad` after ``u`` and before ``grad``."""
        return (self.prior_kind, self.u_lo, self.prior_arg, self.prior_arg2, self.theta_tail, self.kept_parent, self.kept_src,
                self.kept_mask, self.leaf_parent, self.leaf_src, self.leaf_mask, self.leaf_scale_src,
                self.add_start, self.n_add, self.add_counts, self.Wc, self.Yc, self.w_tot, self.y_tot, self.YYc,
                self.spread, self.n_sum, self.S_sum, self.nms, self.constrained, self.const, self.tau2)

    def kernel(self) -> tuple:
        """``(function, args)``: :func:`logp_grad`, or with a cell interaction
        ``fast_density_cells.logp_grad_cells`` (its own compiled kernel, so the additive one is
        unchanged); call ``function(u, *args, grad)``."""
        if self.cell_sd < 0:
            return logp_grad, self.args()
        from tierpool.fit.fast_density_cells import logp_grad_cells

        return logp_grad_cells, (*self.args(), self.cell_sd, self.Mc, self.n_cells)


def density_arrays(st: Structure) -> DensityArrays:
    """Flatten a structure into the kernel's arguments."""
    c = constant_arrays(st)
    kind, arg, arg2 = _scale_priors(st)
    n_sampled = len(kind)
    spec = st.spec
    add_start = st.kept_offset[spec.additive.leaf.name] if st.n_add_leaf else 0
    has = c["Wc"] != 0.0
    rows, cols = np.nonzero(has)
    cell_w, cell_y = c["Wc"][rows, cols], c["Yc"][rows, cols]
    spread = np.zeros(st.n_leaf)
    for m in range(st.n_leaf):
        w, ybar = cell_w[rows == m], cell_y[rows == m] / cell_w[rows == m]
        spread[m] = 0.5 * float((w[:, None] * w[None, :] * (ybar[:, None] - ybar[None, :]) ** 2).sum())
    assert st.n_theta == n_sampled + len(st.theta_const)  # the trailing constants are not sampled
    u_lo = np.full(n_sampled, U_MIN)
    tau2 = spec.resolution_var if spec.likelihood == "cells_nms" else 0.0
    if spec.likelihood == "cells_nms" and tau2 == 0.0:  # a floor bounds the weights by n/τ²: no pinning
        pinning = (c["Wc"] != 0).sum(1) >= 2
        u_lo[c["leaf_scale_src"][pinning]] = U_MIN_PINNING
    i64 = lambda a: np.ascontiguousarray(a, dtype=np.int64)  # noqa: E731
    f64 = lambda a: np.ascontiguousarray(a, dtype=np.float64)  # noqa: E731
    return DensityArrays(
        prior_kind=i64(kind), u_lo=f64(u_lo), prior_arg=f64(arg), prior_arg2=f64(arg2),
        theta_tail=f64(st.theta_const),
        kept_parent=i64(st.kept_parent), kept_src=i64(c["kept_src"]), kept_mask=f64(c["kept_mask"]),
        leaf_parent=i64(st.leaf_parent), leaf_src=i64(c["leaf_src"]), leaf_mask=f64(c["leaf_mask"]),
        leaf_scale_src=i64(c["leaf_scale_src"]), add_start=int(add_start), n_add=int(st.n_add_leaf),
        add_counts=f64(c["add_counts"]), Wc=f64(c["Wc"]), Yc=f64(c["Yc"]), w_tot=f64(c["Wc"].sum(1)),
        y_tot=f64(c["Yc"].sum(1)), YYc=f64(c["YYc"]), spread=f64(spread),
        n_sum=f64(c["n_sum"]), S_sum=f64(c["S_sum"]),
        nms=spec.likelihood == "cells_nms", constrained=_constrained(st), const=float(st.const), tau2=float(tau2),
        cell_sd=int(st.cell_sd_src), Mc=f64(c["Mc"] if "Mc" in c else np.zeros_like(c["Wc"])),
        n_cells=f64(c["n_cells"] if "n_cells" in c else np.zeros(st.n_leaf)),
    )


def _scale_priors(st: Structure) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per sampled scale, in the layout order of θ: its prior's kernel code and two arguments."""
    kind, arg, arg2 = [], [], []
    offsets = {b.level: b.offset for b in st.scale_layout if b.level is not None}
    for block in st.scale_layout:
        if block.prior is None:  # HalfNormal(σ_parent): the argument is the parent's index in θ
            kind += [HALFNORMAL_PARENT] * block.size
            arg += list(offsets[block.parent_level] + st.parents[block.level].astype(float))
            arg2 += [0.0] * block.size
            continue
        a, b = block.prior.kernel_args()
        kind += [block.prior.entry.code] * block.size
        arg += [a] * block.size
        arg2 += [b] * block.size
    return np.asarray(kind), np.asarray(arg, dtype=float), np.asarray(arg2, dtype=float)


def supported(spec: FitSpec) -> bool:
    """Whether the kernel covers this spec (the Student-t option keeps the PyTensor path)."""
    return not spec.student_t_families


@njit(cache=True, nogil=True, error_model="numpy", fastmath=FASTMATH)
def logp_grad(u, prior_kind, u_lo, prior_arg, prior_arg2, theta_tail, kept_parent, kept_src, kept_mask, leaf_parent,
              leaf_src, leaf_mask, leaf_scale_src, add_start, n_add, add_counts, Wc, Yc, w_tot, y_tot,
              YYc, spread, n_sum, S_sum, nms, constrained, const, tau2, grad):
    """Log density of ``u = log θ`` (scale priors + Jacobian + marginal likelihood); fills ``grad``.

    Cells are dense leaf × additive-leaf matrices: weight ``Wc`` (n or 1/se², 0 = no cell) and
    ``Yc`` = weight·mean, with row sums ``w_tot``, ``y_tot``. Returns ``-inf`` (grad untouched) where
    the location system is not positive definite. ``tau2`` (δ²/12 ≥ 0) is the resolution floor:
    the cells' terms use ``s_m = √(σ_m² + tau2)``, and their gradient reaches σ_m through
    ``∂s/∂σ = σ/s``.
    """
    n_s = u.shape[0]
    for j in range(n_s):
        if not (u_lo[j] <= u[j] <= U_MAX):  # also catches NaN
            return -np.inf
    theta = np.empty(n_s + theta_tail.shape[0])
    theta[:n_s] = np.exp(u)
    theta[n_s:] = theta_tail
    g_theta = np.zeros(theta.shape[0])  # ∂ log p / ∂θ
    K, M, G = kept_parent.shape[0], leaf_parent.shape[0], Wc.shape[1]

    # ---- scale priors (θ space) ------------------------------------------------------------
    lp = 0.0
    for j in range(n_s):
        s = theta[j]
        if prior_kind[j] == HALFNORMAL_PARENT:
            p = int(prior_arg[j])
            sd = theta[p]
            lp += _LOG_HALFNORMAL_CONST - math.log(sd) - 0.5 * (s / sd) ** 2
            g_theta[j] -= s / sd**2
            g_theta[p] += -1.0 / sd + s * s / sd**3
        else:  # a fixed-argument prior of the registry (priors.py)
            lp_j, g_j = scale_logp_grad(prior_kind[j], s, prior_arg[j], prior_arg2[j])
            lp += lp_j
            g_theta[j] += g_j

    # ---- marginal likelihood: the Schur-reduced system of gaussian.assemble ---------------------
    q_kept = np.zeros(K)
    for i in range(K):
        if kept_mask[i] > 0:
            q_kept[i] = 1.0 / theta[kept_src[i]] ** 2
            lp -= math.log(theta[kept_src[i]])
    q_leaf = np.zeros(M)
    for m in range(M):
        if leaf_mask[m] > 0:
            q_leaf[m] = 1.0 / theta[leaf_src[m]] ** 2
            lp -= math.log(theta[leaf_src[m]])
    var_sum = 0.0
    if constrained:
        for i in range(K):
            var_sum += add_counts[i] ** 2 * theta[kept_src[i]] ** 2
        lp += 0.5 * math.log(var_sum / n_add)
    r = np.ones(M)  # 1/σ_m² multiplies the cell weights (nms); 1 for known-se cells
    for m in range(M):
        if nms:
            so = theta[leaf_scale_src[m]]
            if tau2 > 0.0:
                so = math.sqrt(so * so + tau2)
            r[m] = 1.0 / so**2
            lp -= n_sum[m] * math.log(so) + 0.5 * S_sum[m] * r[m]
    d = np.empty(M)
    S = np.zeros((K, K))
    h = np.zeros(K)
    for i in range(K):
        p = kept_parent[i]
        S[i, i] += q_kept[i]
        if p >= 0:
            S[p, p] += q_kept[i]
            S[i, p] -= q_kept[i]
            S[p, i] -= q_kept[i]
    wr = np.empty(G)
    cols = np.empty(G, dtype=np.int64)
    WdW = np.zeros((G, G))
    for m in range(M):
        # eliminate leaf m: d = q + r·Σn; every O(r) difference is written without cancellation
        # (w − w²/d = w·(q + r·Σ_other n)/d; pairwise forms for the shift and the leaf term), so a
        # tiny σ_m (cell weights ~1/σ²) stays exact
        p = leaf_parent[m]
        rm, qm = r[m], q_leaf[m]
        d[m] = qm + rm * w_tot[m]
        inv_d = 1.0 / d[m]
        hM = rm * y_tot[m]
        if p >= 0:
            S[p, p] += qm * rm * w_tot[m] * inv_d
            h[p] += qm * hM * inv_d
        if n_add > 0:
            nc = 0
            for g in range(G):  # this model's cells: their columns and weights w = n·r
                if Wc[m, g] != 0.0:
                    cols[nc] = g
                    wr[nc] = Wc[m, g] * rm
                    nc += 1
            for c in range(nc):
                g = cols[c]
                a = add_start + g
                if p >= 0:
                    S[p, a] += qm * wr[c] * inv_d
                    S[a, p] += qm * wr[c] * inv_d
                S[a, a] += wr[c] * (qm + rm * (w_tot[m] - Wc[m, g])) * inv_d
                h[a] += (Yc[m, g] * rm * qm + rm * rm * (Yc[m, g] * w_tot[m] - Wc[m, g] * y_tot[m])) * inv_d
                # off-diagonal −w_g w_g2 / d: accumulated densely (vectorises), applied after the loop
                f = wr[c] * inv_d
                for g2 in range(G):
                    WdW[g, g2] += f * Wc[m, g2] * rm
        # −½ r·YYc + ½ hM²/d = −½ r (q·YYc + r·spread) / d
        lp -= 0.5 * rm * (qm * YYc[m] + rm * spread[m]) * inv_d + 0.5 * math.log(d[m])
    if n_add > 0:
        for g in range(G):  # the diagonal of WdW is not used: S[a, a] got its stable form above
            for g2 in range(G):
                if g2 != g:
                    S[add_start + g, add_start + g2] -= WdW[g, g2]
    lp += const

    mean_K = np.zeros(K)
    cov_K = np.zeros((K, K))
    if K > 0:
        # Gaussian posterior of the kept locations (precision S, shift h). The sum-to-zero
        # constraint cᵀx = 0 (c = 1 on the additive leaves) is a rank-one conditioning, equal to
        # gaussian.py's restriction to the subspace T: log|TᵀST| = log|S| + log(cᵀS⁻¹c / cᵀc).
        L = cholesky(S)
        if L[0, 0] < 0.0:
            return -np.inf
        # value from triangular solves (stable when some σ is tiny and S ill-conditioned); the
        # explicit inverse is used only for the gradient's variances
        v = forward(L, h)
        mean_K = backward(L, v)
        for k in range(K):
            lp -= math.log(L[k, k])
            lp += 0.5 * v[k] * v[k]
        Linv = lower_inverse(L)
        for k in range(K):  # S⁻¹ = Linvᵀ Linv, accumulated row by row of Linv
            for i in range(k + 1):
                x = Linv[k, i]
                for j in range(i + 1):
                    cov_K[i, j] += x * Linv[k, j]
        for i in range(K):
            for j in range(i):
                cov_K[j, i] = cov_K[i, j]
        if constrained:
            cvec = np.zeros(K)
            cvec[add_start:add_start + n_add] = 1.0
            uc = forward(L, cvec)
            cov_c = backward(L, uc)  # S⁻¹c
            c_cov_c = np.dot(uc, uc)
            c_mean = np.dot(uc, v)
            lp -= 0.5 * math.log(c_cov_c / n_add) + 0.5 * c_mean * c_mean / c_cov_c
            for i in range(K):
                mean_K[i] -= cov_c[i] * c_mean / c_cov_c
                for j in range(K):
                    cov_K[i, j] -= cov_c[i] * cov_c[j] / c_cov_c

    # ---- gradient of the marginal likelihood by the Fisher identity -----------------------------
    # ∂/∂s of (−log s − D/2s²) is −1/s + E[D]/s³, with D a squared deviation whose posterior mean
    # and variance come from mean_K, cov_K and each leaf's conditional x_m | x_K.
    for i in range(K):
        if kept_mask[i] > 0:
            p = kept_parent[i]
            diff = mean_K[i] - (mean_K[p] if p >= 0 else 0.0)
            var = cov_K[i, i] + (cov_K[p, p] - 2.0 * cov_K[i, p] if p >= 0 else 0.0)
            s = theta[kept_src[i]]
            g_theta[kept_src[i]] += -1.0 / s + (diff * diff + var) / s**3
        if constrained and add_counts[i] > 0:
            g_theta[kept_src[i]] += add_counts[i] ** 2 * theta[kept_src[i]] / var_sum
    cb = np.empty(G)
    cw = np.empty(G)
    cwd = np.zeros(G)
    for m in range(M):
        # x_m = a + bᵀx_K + ε, ε ~ N(0, 1/d): b = (q/d) e_parent − Σ_cells (w/d) e_region; b lives on
        # the parent and the model's regions, so Σb is needed only there
        p = leaf_parent[m]
        rm, inv_d = r[m], 1.0 / d[m]
        coef_p = q_leaf[m] * inv_d
        mean_m = rm * y_tot[m] * inv_d
        nc = 0
        if n_add > 0:
            for g in range(G):
                cwd[g] = Wc[m, g] * rm * inv_d
                if Wc[m, g] != 0.0:
                    cols[nc] = add_start + g
                    cw[nc] = cwd[g]
                    nc += 1
        cb_p = 0.0
        if p >= 0:
            cb_p = coef_p * cov_K[p, p]
            mean_m += coef_p * mean_K[p]
            for c in range(nc):
                cb_p -= cw[c] * cov_K[p, cols[c]]
        for c in range(nc):
            a = cols[c]
            mean_m -= cw[c] * mean_K[a]
            acc = coef_p * cov_K[a, p] if p >= 0 else 0.0
            for g2 in range(G):  # dense and contiguous: vectorises (cwd is 0 off the cells)
                acc -= cwd[g2] * cov_K[a, add_start + g2]
            cb[c] = acc
        b_cov_b = coef_p * cb_p if p >= 0 else 0.0
        for c in range(nc):
            b_cov_b -= cw[c] * cb[c]
        if leaf_mask[m] > 0:
            diff = mean_m
            var = inv_d + b_cov_b
            if p >= 0:
                diff -= mean_K[p]
                var += -2.0 * cb_p + cov_K[p, p]
            s = theta[leaf_src[m]]
            g_theta[leaf_src[m]] += -1.0 / s + (diff * diff + var) / s**3
        if nms and n_sum[m] > 0:
            ss = S_sum[m]
            if n_add > 0:
                for c in range(nc):
                    a = cols[c]
                    n = Wc[m, a - add_start]
                    fit = mean_m + mean_K[a]
                    var = inv_d + b_cov_b + 2.0 * cb[c] + cov_K[a, a]
                    ss += n * ((Yc[m, a - add_start] / n - fit) ** 2 + var)
            else:
                for g in range(G):
                    n = Wc[m, g]
                    if n != 0.0:
                        ss += n * ((Yc[m, g] / n - mean_m) ** 2 + inv_d + b_cov_b)
            sig = theta[leaf_scale_src[m]]
            so = math.sqrt(sig * sig + tau2) if tau2 > 0.0 else sig
            g_theta[leaf_scale_src[m]] += (-n_sum[m] / so + ss / so**3) * (sig / so)

    # ---- to u = log θ: chain rule plus the log-Jacobian Σu --------------------------------------
    for j in range(n_s):
        lp += u[j]
        grad[j] = g_theta[j] * theta[j] + 1.0
    return lp
