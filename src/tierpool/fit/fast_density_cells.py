"""The numba kernel of a fit with the cell interaction (fit/interaction.py has the model).

With ``γ_mr ~ Normal(0, σ_cell)`` integrated out, a cell mean has variance ``s²/W + σ_cell²``, so
its weight ``ω = 1/(s²/W + σ_cell²)`` is no longer ``r·W`` with one ``r`` per model.
:func:`logp_grad_cells` is ``fast_density.logp_grad`` with the leaf elimination and the residual
sd's gradient written per cell (the same cancellation-free arrangement), the within-cell terms
``−(n − C)·ln s − S/(2s²)`` and ``½ Σ ln ω``, and one more gradient, σ_cell's. It is a kernel of
its own so that the additive kernel's machine code, and so every fit without the interaction,
draw for draw, is unchanged (numba's fastmath lets a changed loop body reorder the sums of
another). It is checked against the PyTensor model in tests/unit/test_fit_interaction.py.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from tierpool.fit.numba_linalg import FASTMATH, backward, cholesky, forward, lower_inverse
from tierpool.fit.priors import HALFNORMAL_PARENT, scale_logp_grad

from tierpool.fit.fast_density import U_MAX

_LOG_HALFNORMAL_CONST = 0.5 * math.log(2.0 / math.pi)


@njit(cache=True, nogil=True, error_model="numpy", fastmath=FASTMATH)
def cell_weight(W, r, tau_c2):
    """``ω = 1/(s²/W + σ_cell²) = W·r/(1 + W·r·σ_cell²)``; 0 for an empty cell (W = 0)."""
    wr = W * r
    return wr / (1.0 + wr * tau_c2)


@njit(cache=True, nogil=True, error_model="numpy", fastmath=FASTMATH)
def eliminate_cells(m, p, rm, qm, tau_c2, add_start, Wc, Mc, S, h, WdW, om, yb, cols):
    """Eliminate leaf m with per-cell weights ω (the cell interaction); returns ``d``. The same
    cancellation-free forms as the kernel's separable path: ``ω(q + Σ_other ω)/d`` on the region
    diagonal, pairwise differences of cell means in the shift. Fills ``om``, ``yb``, ``cols``."""
    G = Wc.shape[1]
    nc = 0
    tot = 0.0
    for g in range(G):
        if Wc[m, g] != 0.0:
            cols[nc] = g
            om[nc] = cell_weight(Wc[m, g], rm, tau_c2)
            yb[nc] = Mc[m, g]
            tot += om[nc]
            nc += 1
    d = qm + tot
    inv_d = 1.0 / d
    if p >= 0:
        hM = 0.0
        for c in range(nc):
            hM += om[c] * yb[c]
        S[p, p] += qm * tot * inv_d
        h[p] += qm * hM * inv_d
    for c in range(nc):
        a = add_start + cols[c]
        if p >= 0:
            S[p, a] += qm * om[c] * inv_d
            S[a, p] += qm * om[c] * inv_d
        others, shift = 0.0, 0.0
        for c2 in range(nc):
            if c2 != c:
                others += om[c2]
                shift += om[c2] * (yb[c] - yb[c2])
        S[a, a] += om[c] * (qm + others) * inv_d
        h[a] += om[c] * (qm * yb[c] + shift) * inv_d
        for c2 in range(nc):
            WdW[cols[c], cols[c2]] += om[c] * om[c2] * inv_d
    return d


@njit(cache=True, nogil=True, error_model="numpy", fastmath=FASTMATH)
def leaf_terms_cells(m, qm, d, rm, tau_c2, Wc, Mc, om, yb, cols):
    """``−½ Σ ω·ȳ² + ½ hM²/d − ½ log d + ½ Σ log ω`` of leaf m (cell interaction), written as
    ``−½ (q·Σ ω ȳ² + Σ_{c<c'} ω ω' (ȳ − ȳ')²)/d``; ``om``, ``yb`` as filled by eliminate_cells."""
    nc = 0
    for g in range(Wc.shape[1]):
        if Wc[m, g] != 0.0:
            nc += 1
    lp = -0.5 * math.log(d)
    q_part, spread = 0.0, 0.0
    for c in range(nc):
        lp += 0.5 * math.log(om[c])
        q_part += om[c] * yb[c] * yb[c]
        for c2 in range(c):
            spread += om[c] * om[c2] * (yb[c] - yb[c2]) ** 2
    return lp - 0.5 * (qm * q_part + spread) / d


@njit(cache=True, nogil=True, error_model="numpy", fastmath=FASTMATH)
def cells_gradient(m, sig, tau, tau2, rm, tau_c2, n_m, n_cells_m, S_m, Wc, Mc, add_start, cols, nc, mean_m, mean_K,
                   cov_K, inv_d, b_cov_b, cb):
    """``(∂/∂σ_m, ∂/∂σ_cell)`` of leaf m's cell terms by the Fisher identity: each cell mean's term
    ``−½ ln v − D/(2v)``, ``v = s²/W + σ_cell²``, has ``∂/∂v = ½(ω²·E[D] − ω)``, with ``∂v/∂σ_m = 2σ_m/W``
    and ``∂v/∂σ_cell = 2σ_cell``; the within terms ``−(n − C)·ln s − S/(2s²)`` reach σ_m through
    ``∂s/∂σ = σ/s`` (``tau2``: the resolution floor). ``E[D]`` from the kernel's posterior moments."""
    so = math.sqrt(sig * sig + tau2) if tau2 > 0.0 else sig
    g_own = (-(n_m - n_cells_m) / so + S_m / so**3) * (sig / so)
    g_tau = 0.0
    for c in range(nc):
        a = cols[c]
        g = a - add_start
        om = cell_weight(Wc[m, g], rm, tau_c2)
        fit = mean_m + mean_K[a]
        var = inv_d + b_cov_b + 2.0 * cb[c] + cov_K[a, a]
        t = om * om * ((Mc[m, g] - fit) ** 2 + var) - om
        g_own += t * sig / Wc[m, g]
        g_tau += t * tau
    return g_own, g_tau


@njit(cache=True, nogil=True, error_model="numpy", fastmath=FASTMATH)
def logp_grad_cells(u, prior_kind, u_lo, prior_arg, prior_arg2, theta_tail, kept_parent, kept_src, kept_mask,
                    leaf_parent, leaf_src, leaf_mask, leaf_scale_src, add_start, n_add, add_counts, Wc, Yc, w_tot,
                    y_tot, YYc, spread, n_sum, S_sum, nms, constrained, const, tau2, cell_sd, Mc, n_cells, grad):
    """``fast_density.logp_grad`` with the cell interaction (``cell_sd``: σ_cell's index in θ; ``Mc``
    the cell means, ``n_cells`` the cells per leaf); cells_nms with an additive side only."""
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
        else:
            lp_j, g_j = scale_logp_grad(prior_kind[j], s, prior_arg[j], prior_arg2[j])
            lp += lp_j
            g_theta[j] += g_j

    # ---- marginal likelihood: the Schur-reduced system with per-cell weights ω ------------------
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
    r = np.ones(M)
    for m in range(M):
        so = theta[leaf_scale_src[m]]
        if tau2 > 0.0:
            so = math.sqrt(so * so + tau2)
        r[m] = 1.0 / so**2
        lp -= (n_sum[m] - n_cells[m]) * math.log(so) + 0.5 * S_sum[m] * r[m]  # C of the n·ln s are in ½ Σ ln ω
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
    om = np.empty(G)
    yb = np.empty(G)
    cols = np.empty(G, dtype=np.int64)
    WdW = np.zeros((G, G))
    tau_c2 = theta[cell_sd] ** 2
    for m in range(M):
        d[m] = eliminate_cells(m, leaf_parent[m], r[m], q_leaf[m], tau_c2, add_start, Wc, Mc, S, h, WdW, om, yb, cols)
        lp += leaf_terms_cells(m, q_leaf[m], d[m], r[m], tau_c2, Wc, Mc, om, yb, cols)
    for g in range(G):  # the diagonal of WdW is not used: S[a, a] got its stable form
        for g2 in range(G):
            if g2 != g:
                S[add_start + g, add_start + g2] -= WdW[g, g2]
    lp += const

    mean_K = np.zeros(K)
    cov_K = np.zeros((K, K))
    if K > 0:  # the kept locations' posterior, the sum-to-zero as a rank-one conditioning (fast_density)
        L = cholesky(S)
        if L[0, 0] < 0.0:
            return -np.inf
        v = forward(L, h)
        mean_K = backward(L, v)
        for k in range(K):
            lp -= math.log(L[k, k])
            lp += 0.5 * v[k] * v[k]
        Linv = lower_inverse(L)
        for k in range(K):
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
            cov_c = backward(L, uc)
            c_cov_c = np.dot(uc, uc)
            c_mean = np.dot(uc, v)
            lp -= 0.5 * math.log(c_cov_c / n_add) + 0.5 * c_mean * c_mean / c_cov_c
            for i in range(K):
                mean_K[i] -= cov_c[i] * c_mean / c_cov_c
                for j in range(K):
                    cov_K[i, j] -= cov_c[i] * cov_c[j] / c_cov_c

    # ---- gradient by the Fisher identity (fast_density.logp_grad), per-cell weights -----------
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
        p = leaf_parent[m]
        rm, inv_d = r[m], 1.0 / d[m]
        coef_p = q_leaf[m] * inv_d
        mean_m = 0.0
        nc = 0
        for g in range(G):
            w = cell_weight(Wc[m, g], rm, tau_c2)
            cwd[g] = w * inv_d
            mean_m += w * Mc[m, g] * inv_d
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
            for g2 in range(G):
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
        if n_sum[m] > 0:
            g_own, g_tau = cells_gradient(m, theta[leaf_scale_src[m]], theta[cell_sd], tau2, rm, tau_c2, n_sum[m],
                                          n_cells[m], S_sum[m], Wc, Mc, add_start, cols, nc, mean_m, mean_K, cov_K,
                                          inv_d, b_cov_b, cb)
            g_theta[leaf_scale_src[m]] += g_own
            g_theta[cell_sd] += g_tau

    for j in range(n_s):  # to u = log θ: chain rule plus the log-Jacobian Σu
        lp += u[j]
        grad[j] = g_theta[j] * theta[j] + 1.0
    return lp
