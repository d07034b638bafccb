"""Student-t likelihood for chosen families, exact alongside the Gaussian marginalisation.

The Student-t has no sufficient statistics, so the locations it touches cannot be integrated out.
The design (docs/fit.md, "Heavy tails") keeps it exact by sampling just those locations:

* the leaves (models) of the t-families, ``x_t`` (centred: these families are chosen because they
  have many rows, so their locations are data-dominated);
* the additive leaf (regions), in the sum-to-zero coordinates ``z_r`` (``x_region = H z_r``),
  because t rows have mean ``μ_model + μ_region``;

and integrating every other location (families, classes, the Gaussian models) out exactly given
``(θ, x_t, z_r)``. The t-models keep their place in the structure but their Gaussian cells are
removed, so their integrated contribution is exactly zero; the fixed value ``x_t`` then enters as
its prior density ``N(x_t | μ_parent, σ_parent²)``, which is Gaussian in the kept nodes: it adds
``q`` to the parent's precision and ``q·x_t`` to its linear term. Fixing ``z_r`` is a partition of
the kept system: with ``S``/``h`` the Schur-reduced precision and linear term (``gaussian.py``),

    log p(y_gauss, x_t, z_r | θ) = c − (K_r/2)·log 2π − ½log|S_oo| + ½ bᵀS_oo⁻¹b
                                   − ½ z_rᵀS_rr z_r + h_rᵀz_r,          b = h_o − S_or z_r

(``c`` = the scalar terms of the marginal). The t rows add ``Σ log t_ν(r | x_t + x_region, σ_m)``.
Posterior draws of the other locations are exact Gaussian conditionals given each draw.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd

from tierpool.errors import FitError
from tierpool.fit.gaussian import (
    _constrained,
    _numpy_ops,
    _pytensor_ops,
    assemble,
    constant_arrays,
)
from tierpool.fit.structure import Structure, _reduce_cells

_COMPILED: dict[tuple, Any] = {}
T_LOC = "t_location"  # explicit locations of the t-models (dropped after the full draws)
REGION_Z = "region_z"  # explicit region effects in sum-to-zero coordinates (dropped likewise)
NU = "nu"


@dataclass
class TLayout:
    """Numeric layout of the Student-t part (numpy only)."""

    families: np.ndarray  # (F_t,) t-family ids, the dim of ν
    t_leaf: np.ndarray  # (M_t,) leaf index of each t-model
    t_nu: np.ndarray  # (M_t,) index of each t-model's ν
    row_t: np.ndarray  # (N,) position in t_leaf of each row's model
    row_add: np.ndarray  # (N,) region index of each row (0 without an additive side)
    row_y: np.ndarray  # (N,) residuals
    o_idx: np.ndarray  # z coordinates integrated out
    r_idx: np.ndarray  # z coordinates of the regions (explicit)
    Rz: np.ndarray  # (G, K_r) region effects from z_r
    leaf_family: np.ndarray  # (M,) index into families or -1 (Gaussian leaf)


def _top_ancestor(st: Structure, level_idx: int, k_level: int) -> np.ndarray:
    """Top-level group index of each group of main-side level ``k_level``."""
    levels = st.spec.main.levels
    idx = np.arange(len(st.ids[levels[k_level].name])) if level_idx < 0 else np.array([level_idx])
    for j in range(k_level, 0, -1):
        idx = st.parents[levels[j].name][idx]
    return idx


def prepare(st: Structure, rows: pd.DataFrame | None) -> TLayout:
    """Remove the t-models' cells from the Gaussian reduction and lay out their rows.

    Args:
        st: Structure built from ALL cells (so ids and n_obs cover the t-models); its ``data``
            and ``const`` are replaced by those of the Gaussian cells only.
        rows: Raw residual rows: the main leaf's and the additive leaf's id columns plus
            ``spec.row_col``. Rows of other families are ignored.

    Raises:
        FitError: Unknown t-family, rows missing columns, or rows of an unknown model/region.
    """
    spec = st.spec
    if not isinstance(spec.student_t_families, tuple):
        raise FitError("fit spec: student_t_families must be a tuple of family ids")
    top, leaf, add = spec.main.levels[0], spec.main.leaf, spec.additive
    fam_ids = st.ids[top.name]
    unknown = sorted(set(spec.student_t_families) - set(fam_ids))
    if unknown:
        raise FitError(f"student_t_families {unknown} are not {top.name} ids of the cells/catalogue ({list(fam_ids)})")
    families = np.array(sorted(spec.student_t_families), dtype=object)
    leaf_top = _top_ancestor(st, -1, len(spec.main.levels) - 1)
    fam_pos = {f: i for i, f in enumerate(families)}
    leaf_family = np.array([fam_pos.get(fam_ids[t], -1) for t in leaf_top], dtype=np.int64)
    t_leaf = np.nonzero(leaf_family >= 0)[0]
    if rows is None:
        raise FitError("student_t_families needs the raw residual rows of those families: fit_hierarchical(rows=...)")
    cols = [leaf.column] + ([add.leaf.column] if add else []) + [spec.row_col]
    missing = [c for c in cols if c not in rows.columns]
    if missing:
        raise FitError(f"rows frame is missing column(s) {missing}; it has {list(rows.columns)}")
    leaf_pos = {m: i for i, m in enumerate(st.ids[leaf.name])}
    t_pos = {int(m): i for i, m in enumerate(t_leaf)}
    r_leaf = rows[leaf.column].astype(str).map(leaf_pos)
    mine = r_leaf.map(lambda i: i in t_pos if pd.notna(i) else False).astype(bool)
    part = rows[mine]
    row_t = np.array([t_pos[int(i)] for i in r_leaf[mine]], dtype=np.int64)
    if add:
        reg_pos = {g: i for i, g in enumerate(st.ids[add.leaf.name])}
        row_add = part[add.leaf.column].astype(str).map(reg_pos)
        if row_add.isna().any():
            bad = part.loc[row_add.isna(), add.leaf.column].iloc[0]
            raise FitError(f"rows: {add.leaf.name} {bad!r} is not in the cells/catalogue")
        row_add = row_add.to_numpy(np.int64)
    else:
        row_add = np.zeros(len(part), dtype=np.int64)
    row_y = pd.to_numeric(part[spec.row_col]).to_numpy(float)
    if not np.isfinite(row_y).all():
        raise FitError(f"rows column {spec.row_col!r} has NaN/infinite values")
    _refuse_weighted_rows(part, leaf.column)
    with_cells = set(np.unique(st.cell_leaf)) & set(t_leaf.tolist())
    no_rows = sorted(set(st.ids[leaf.name][list(with_cells)]) - set(st.ids[leaf.name][t_leaf[np.unique(row_t)]]))
    if no_rows:
        raise FitError(f"t-family {leaf.name}(s) {no_rows} have cells but no rows: pass their residual rows")
    _gaussian_data_only(st, t_leaf)
    o_idx, r_idx, Rz = _region_coordinates(st)
    return TLayout(families, t_leaf, leaf_family[t_leaf], row_t, row_add, row_y, o_idx, r_idx, Rz, leaf_family)


def _refuse_weighted_rows(rows: pd.DataFrame, leaf_col: str, col: str = "weight") -> None:
    """The t likelihood is per request: a row averaging w > 1 requests is no t variate (the mean of
    t variates has no closed form), so rows with a weight other than 1 are refused, not approximated."""
    if col not in rows.columns:
        return
    weight = pd.to_numeric(rows[col]).to_numpy(float)
    bad = ~(weight == 1.0)
    if bad.any():
        models = sorted(set(rows.loc[bad, leaf_col].astype(str)))[:5]
        raise FitError(f"student_t_families: {int(bad.sum())} row(s) average several requests (weight != 1), e.g. of "
                       f"{models}: the Student-t likelihood takes single-request rows only; fit those families with "
                       "the Gaussian likelihood (weighted rows are exact there) or load their unaveraged rows")


def _gaussian_data_only(st: Structure, t_leaf: np.ndarray) -> None:
    keep = ~np.isin(st.cell_leaf, t_leaf)
    tmp = replace(st, cells=st.cells[keep].reset_index(drop=True), cell_leaf=st.cell_leaf[keep],
                  cell_add=st.cell_add[keep], data={})
    _reduce_cells(tmp)
    st.data, st.const = tmp.data, tmp.const


def _region_coordinates(st: Structure) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    n_z = st.n_z
    if not st.n_add_leaf:
        return np.arange(n_z), np.zeros(0, dtype=np.int64), np.zeros((1, 0))
    start = st.kept_offset[st.spec.additive.leaf.name]
    block = st.T[start:start + st.n_add_leaf]
    r_idx = np.nonzero(np.abs(block).sum(0) > 0)[0]
    o_idx = np.setdiff1d(np.arange(n_z), r_idx)
    return o_idx, r_idx, block[:, r_idx]


def t_arrays(tl: TLayout) -> dict[str, np.ndarray]:
    """The t part's arrays (fed as pm.Data)."""
    return {"t_leaf": tl.t_leaf, "t_nu": tl.t_nu, "row_t": tl.row_t, "row_add": tl.row_add,
            "n_rows": np.bincount(tl.row_t, minlength=len(tl.t_leaf)).astype(float),
            "row_y": tl.row_y, "o_idx": tl.o_idx, "r_idx": tl.r_idx, "Rz": tl.Rz}


def augmented(a: Any, theta: Any, x_t: Any, c: dict[str, Any], t: dict[str, Any], xp: Any) -> tuple[Any, Any, Any]:
    """Add the fixed t-leaves' prior densities to the Schur system: (S', h', extra scalar)."""
    q_t = a.q_leaf[..., t["t_leaf"]]
    A_t = c["A"][t["t_leaf"]]
    S_add = xp.swap(A_t) @ (q_t[..., :, None] * A_t)
    T = c["T"]
    S = a.S_z + xp.swap(T) @ S_add @ T
    h = a.h_z + ((q_t * x_t) @ A_t) @ T
    extra = (0.5 * xp.log(q_t) - 0.5 * q_t * x_t**2).sum(-1) - 0.5 * math.log(2 * math.pi) * q_t.shape[-1]
    return S, h, extra


def t_loglik_pt(theta: Any, x_t: Any, z_r: Any, nu: Any, c: dict[str, Any], t: dict[str, Any],
                constrained: bool, const: float, n_r: int) -> Any:
    """PyTensor log p(y_gauss, t rows, x_t, z_r | θ, ν) (locations other than x_t, z_r integrated out)."""
    import pytensor.tensor as pt
    from pytensor.tensor.math import gammaln

    xp = _pytensor_ops()
    a = assemble(theta, c, "cells_nms", constrained, xp)
    S, h, extra = augmented(a, theta, x_t, c, t, xp)
    o, r = t["o_idx"], t["r_idx"]
    S_oo = S[o][:, o]
    b = h[o]
    out = a.scalar + const + extra
    if n_r:
        b = b - S[o][:, r] @ z_r
        out = out - 0.5 * n_r * math.log(2 * math.pi) - 0.5 * z_r @ S[r][:, r] @ z_r + h[r] @ z_r
    L = pt.linalg.cholesky(S_oo)
    v = pt.linalg.solve_triangular(L, b, lower=True)
    out = out - pt.log(pt.diagonal(L)).sum() + 0.5 * (v**2).sum()
    loc = x_t[t["row_t"]]
    if n_r:
        loc = loc + (t["Rz"] @ z_r)[t["row_add"]]
    # per-model constants once, then one elementwise log1p per row (cheaper to compile than pm.logp)
    nu_m = nu[t["t_nu"]]
    s_m = theta[c["leaf_scale_src"][t["t_leaf"]]]
    if "tau2" in c:  # resolution floor, as in the Gaussian cells (a moment match for the t)
        s_m = (s_m**2 + c["tau2"]) ** 0.5
    n_m = t["n_rows"]
    norm = gammaln((nu_m + 1) / 2) - gammaln(nu_m / 2) - 0.5 * pt.log(nu_m * math.pi) - pt.log(s_m)
    nu_r = nu_m[t["row_t"]]
    u = (t["row_y"] - loc) / s_m[t["row_t"]]
    return out + (n_m * norm).sum() - (0.5 * (nu_r + 1) * pt.log1p(u**2 / nu_r)).sum()


def build_t_model(st: Structure, tl: TLayout) -> Any:
    """PyMC model: scales, ν per t-family, explicit x_t and z_r, one potential."""
    import pymc as pm
    import pytensor.tensor as pt

    from tierpool.fit.build import _scale_variable, data_values

    spec = st.spec
    coords = {name: list(ids) for name, ids in st.ids.items()}
    coords.update({"student_t_family": list(tl.families), "t_model": list(st.ids[spec.main.leaf.name][tl.t_leaf]),
                   "region_z_coord": list(range(len(tl.r_idx)))})
    values = data_values(st)
    with pm.Model(coords=coords) as model:
        data = {k: pm.Data(k, v) for k, v in values.items()}
        consts = {k[2:]: v for k, v in data.items() if k.startswith("c_")}
        tdata = {k: pm.Data(f"t_{k}", v) for k, v in t_arrays(tl).items()}
        sigmas: dict[str, Any] = {}
        parts = []
        for block in st.scale_layout:
            var = _scale_variable(spec, block, sigmas, data)
            sigmas[block.level or block.name] = var
            parts.append(var if block.dim else pt.atleast_1d(var))
        parts.append(pt.as_tensor_variable(st.theta_const))
        theta = pt.concatenate(parts)
        alpha, beta = spec.nu_prior
        nu = pm.Gamma(NU, alpha=alpha, beta=beta, dims="student_t_family")
        x_t = pm.Flat(T_LOC, dims="t_model")  # its prior N(μ_parent, σ_parent) is inside the potential
        n_r = len(tl.r_idx)
        z_r = pm.Flat(REGION_Z, dims="region_z_coord") if n_r else pt.zeros(0)  # prior likewise
        loglik = t_loglik_pt(theta, x_t, z_r, nu, consts, tdata, _constrained(st), st.const, n_r)
        pm.Potential("marginal_loglik", loglik)
    return model


def sample(st: Structure, tl: TLayout, settings: Any) -> Any:
    """nutpie sampling of the t model (compiled models cached by structure and row count)."""
    import os

    import nutpie

    from tierpool.fit.build import data_values
    from tierpool.fit.sample import SampleOutput, single_thread_blas

    settings.validate()
    if settings.sampler != "nutpie":
        raise FitError("student_t_families is implemented for the nutpie sampler only")
    with single_thread_blas():
        start = time.perf_counter()
        key = (st.key(), len(tl.t_leaf), len(tl.row_y), len(tl.r_idx))
        hit = key in _COMPILED
        if not hit:
            _COMPILED[key] = nutpie.compile_pymc_model(build_t_model(st, tl), backend="numba")
        compiled = _COMPILED[key]
        if hit:
            values = {**data_values(st), **{f"t_{k}": v for k, v in t_arrays(tl).items()}}
            compiled = compiled.with_data(**{k: v for k, v in values.items() if k in compiled.shared_data})
        t_compile = time.perf_counter() - start
        start = time.perf_counter()
        idata = nutpie.sample(
            compiled, draws=settings.draws, tune=settings.tune, chains=settings.chains,
            cores=settings.cores or min(settings.chains, os.cpu_count() or 1), seed=settings.seed,
            progress_bar=settings.progress, target_accept=settings.target_accept, save_warmup=False,
        )
    return SampleOutput(idata, {"compile": t_compile, "sampling": time.perf_counter() - start}, hit)


def draw_locations_t(theta: np.ndarray, x_t: np.ndarray, z_r: np.ndarray, st: Structure, tl: TLayout,
                     rng: np.random.Generator, batch: int = 2048) -> tuple[np.ndarray, np.ndarray]:
    """Every location given each draw of (θ, x_t, z_r): exact Gaussian conditionals for the rest."""
    c = constant_arrays(st)
    t = t_arrays(tl)
    B = theta.shape[0]
    xk, xm = np.zeros((B, st.n_kept)), np.zeros((B, st.n_leaf))
    for lo in range(0, B, batch):
        hi = min(B, lo + batch)
        xk[lo:hi], xm[lo:hi] = _draw_block(theta[lo:hi], x_t[lo:hi], z_r[lo:hi], st, c, t, rng)
    return xk, xm


def _draw_block(theta, x_t, z_r, st, c, t, rng):
    xp = _numpy_ops()
    a = assemble(theta, c, "cells_nms", _constrained(st), xp)
    S, h, _ = augmented(a, theta, x_t, c, t, xp)
    o, r = t["o_idx"], t["r_idx"]
    S_oo = S[:, o][:, :, o]
    b = h[:, o] - (S[:, o][:, :, r] @ z_r[..., None])[..., 0]
    L = np.linalg.cholesky(S_oo)
    mean = np.linalg.solve(S_oo, b[..., None])[..., 0]
    z_o = mean + np.linalg.solve(np.swapaxes(L, -1, -2), rng.standard_normal(mean.shape + (1,)))[..., 0]
    z = np.zeros((theta.shape[0], st.n_z))
    z[:, o], z[:, r] = z_o, z_r
    x_k = z @ c["T"].T
    par = x_k @ c["A"].T
    reg = x_k @ c["R"].T
    cond = (a.hM + a.q_leaf * par - (a.W @ reg[..., None])[..., 0]) / a.d
    x_m = cond + rng.standard_normal(cond.shape) / np.sqrt(a.d)
    x_m[:, t["t_leaf"]] = x_t
    return x_k, x_m


def log_density_np(theta: np.ndarray, x_t: np.ndarray, z_r: np.ndarray, st: Structure, tl: TLayout) -> float:
    """numpy log p(y_gauss, x_t, z_r | θ) without the t rows (for exactness checks)."""
    xp = _numpy_ops()
    c, t = constant_arrays(st), t_arrays(tl)
    a = assemble(np.asarray(theta, float), c, "cells_nms", _constrained(st), xp)
    S, h, extra = augmented(a, theta, np.asarray(x_t, float), c, t, xp)
    o, r = t["o_idx"], t["r_idx"]
    b = h[o] - S[np.ix_(o, r)] @ z_r
    out = a.scalar + st.const + extra - 0.5 * len(r) * math.log(2 * math.pi)
    out += -0.5 * z_r @ S[np.ix_(r, r)] @ z_r + h[r] @ z_r
    S_oo = S[np.ix_(o, o)]
    return float(out - 0.5 * np.linalg.slogdet(S_oo)[1] + 0.5 * b @ np.linalg.solve(S_oo, b))


def _flat(post: Any, var: str) -> np.ndarray:
    x = np.asarray(post[var].values, dtype=float)
    return x.reshape(x.shape[0] * x.shape[1], -1)


def add_locations_t(idata: Any, st: Structure, tl: TLayout, seed: int) -> np.ndarray:
    """Like ``posterior.add_locations`` for a t fit; the explicit x_t and z_r become mu_<level>.

    Returns:
        Pooling factor per leaf and draw ``(chains, draws, M)``; for t-models the Gaussian
        equivalent with the t's Fisher information per row, ``(ν+1)/((ν+3)σ²)``.
    """
    from tierpool.fit.build import theta_from_posterior
    from tierpool.fit.posterior import store_locations

    post = idata.posterior
    nc, nd = post.sizes["chain"], post.sizes["draw"]
    theta = theta_from_posterior(post, st)
    x_t = _flat(post, T_LOC)
    z_r = _flat(post, REGION_Z) if len(tl.r_idx) else np.zeros((theta.shape[0], 0))
    xk, xm = draw_locations_t(theta, x_t, z_r, st, tl, np.random.default_rng([seed, 7919]))
    post = post.drop_vars([v for v in (T_LOC, REGION_Z) if v in post.data_vars])
    post = post.drop_dims([d for d in ("t_model", "region_z_coord") if d in post.dims])
    idata.posterior = store_locations(post, st, xk, xm)
    return _pooling_t(theta, _flat(post, NU), st, tl).reshape(nc, nd, -1)


def _pooling_t(theta: np.ndarray, nu: np.ndarray, st: Structure, tl: TLayout) -> np.ndarray:
    c = constant_arrays(st)
    a = assemble(theta, c, "cells_nms", _constrained(st), _numpy_ops())
    out = a.q_leaf / a.d
    n_t = np.bincount(tl.row_t, minlength=len(tl.t_leaf)).astype(float)
    s = np.sqrt(theta[:, c["leaf_scale_src"][tl.t_leaf]] ** 2 + c.get("tau2", 0.0))
    nu_t = nu[:, tl.t_nu]
    info = n_t * (nu_t + 1) / ((nu_t + 3) * s**2)
    q = a.q_leaf[:, tl.t_leaf]
    out[:, tl.t_leaf] = q / (q + info)
    return out


def predictive_nu(idata: Any, st: Structure, tl: TLayout) -> dict[str, np.ndarray]:
    """ν draws per leaf and per leaf-parent group, ``inf`` for Gaussian ones (for predictive.py)."""
    nu = _flat(idata.posterior, NU)
    B = nu.shape[0]
    levels = st.spec.main.levels

    def per(fam_idx: np.ndarray) -> np.ndarray:
        out = np.full((B, len(fam_idx)), np.inf)
        ok = fam_idx >= 0
        out[:, ok] = nu[:, fam_idx[ok]]
        return out

    fam_of_top = {f: i for i, f in enumerate(tl.families)}
    top_ids = st.ids[levels[0].name]
    par_top = _top_ancestor(st, -1, len(levels) - 2)
    par_family = np.array([fam_of_top.get(top_ids[t], -1) for t in par_top], dtype=np.int64)
    return {"leaf": per(tl.leaf_family), "parent": per(par_family)}
