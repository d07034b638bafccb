"""Predictive distributions of a NEW residual, simulated one residual per posterior draw.

Kinds (ids in the spec's column names; "parent" = the level above the main leaf, e.g. family;
"class" = the level above the additive leaf):

* ``model_region``: every fitted model × every fitted region (not only cells with data);
* ``new_model_region``: a new model of parent p at fitted region g (``μ ~ N(μ_p, σ_p)``,
  ``σ ~ HalfNormal(σ_p)``);
* ``model_new_region``: a fitted model at a new region of class c (``μ_g ~ N(μ_c, σ_c)``);
* ``new_model_new_region``: (p, c);
* ``new_family_region`` / ``new_family_new_region``: a model of a never-seen top-level group. In the
  verbatim spec this is the prior predictive (``σ ~ HalfNormal(0.5)``, ``μ ~ N(0, σ)``); with a
  global level the new family's mean is drawn around the learned global mean.

Every kind above also gets a ``bias_<kind>`` row per item: the same draws of the location
``μ_model + μ_region`` without the residual noise, i.e. the JOINT posterior of the bias of that
(model, region) cell (posterior correlation between the two sides included, which summing the two
sides' variances ignores). ``priors`` publishes bias_mean, bias_sd and bias_q05/q95 from them. They
are computed from the draws the predictive rows use and consume no random numbers, so the
predictive rows are unchanged; they are appended after all predictive rows.

With a cell interaction (``FitSpec.cell_interaction``) every location also carries the pair's
``γ_mr``: drawn from its exact conditional for a fitted pair that was measured (given the draw's
locations, σ_m and σ_cell; ``interaction.gamma_moments``), from ``N(0, σ_cell²)`` for every pair
never measured (a fitted model at a fitted region it never ran in, and every new-member kind). γ
has its own random stream, so the other draws are those of the fit without it.

Quantiles are of the true mixture because each draw simulates its own residual. With a
``cells_se`` likelihood there is no residual sd: the predictive is of the location. With
``student_t_families`` the new residual of a t-family model (fitted or new) is ``σ·t_ν`` (ν drawn
with the rest); every other draw is unchanged.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import pandas as pd

from tierpool.fit.interaction import CellData, draws_of_tau, gamma_moments
from tierpool.fit.quantiles import row_quantiles  # noqa: F401  (re-exported)
from tierpool.fit.quantiles import stats_rows as _stats_rows
from tierpool.fit.spec import PER_LEAF, FitSpec
from tierpool.fit.structure import Structure, ancestor_index


def _draws(idata: Any, var: str) -> np.ndarray | None:
    if var not in idata.posterior:
        return None
    x = idata.posterior[var].values
    return x.reshape(x.shape[0] * x.shape[1], -1)


_CHUNK = 1 << 21  # simulated residuals per block (16 MiB of float64): bounds memory


def _residual_rows(base_t: np.ndarray, mu: np.ndarray, sd: np.ndarray | None, z: np.ndarray | None) -> np.ndarray:
    """``(n, K, B)``: ``mu[j] + base[k] + sd[j]·z[j, k]``; ``z`` (standard normals, ``(n, K, B)``)
    is overwritten when given; without ``z``, the locations ``mu[j] + base[k]`` (a new array).

    ``base_t (K, B)``, ``mu, sd (n, B)``; ``z`` None: no residual noise.
    """
    if z is None:
        return base_t[None] + mu[:, None, :]
    z *= sd[:, None, :]
    z += base_t
    z += mu[:, None, :]
    return z


def _concat_stats(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


_STATS = ("mean", "sd", "q05", "q95")
BIAS_PREFIX = "bias_"  # kind prefix of the rows with the joint bias (location) of each predictive row


def _with_bias(rt: np.ndarray, bias: np.ndarray | None) -> dict[str, np.ndarray]:
    """Stats of the simulated residuals ``rt (N, B)`` and, as ``bias_*``, of the locations
    ``bias (N, B)`` they were simulated around (None: no residual noise, the residuals are the
    locations). Both are partitioned in place."""
    out = _stats_rows(rt)
    b = dict(out) if bias is None else _stats_rows(bias)
    return {**out, **{BIAS_PREFIX + k: v for k, v in b.items()}}


def _split_bias(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A kind's frame with residual and ``bias_*`` stats → (predictive rows, ``bias_<kind>`` rows)."""
    bias_cols = [BIAS_PREFIX + k for k in _STATS]
    pred = frame.drop(columns=bias_cols)
    bias = frame.drop(columns=list(_STATS)).rename(columns=dict(zip(bias_cols, _STATS)))
    bias["kind"] = BIAS_PREFIX + bias["kind"].astype(str)
    return pred, bias


class _Ctx:
    """Flattened draws and group ids needed by every kind."""

    def __init__(self, idata: Any, st: Structure, seed: int, nu: dict[str, np.ndarray] | None = None) -> None:
        spec = st.spec
        self.nu = nu
        self.st, self.spec = st, spec
        self.seed = seed
        self.rng = np.random.default_rng([seed, 104729])
        main = spec.main
        self.leaf = main.leaf
        self.mu_m = _draws(idata, f"mu_{main.leaf.name}")
        self.sd_m = residual_sd_draws(idata, st)
        self.B = self.mu_m.shape[0]
        self.par = main.levels[-2] if len(main.levels) > 1 else None
        if self.par is not None:
            self.mu_p = _draws(idata, f"mu_{self.par.name}")
            self.sd_p = _draws(idata, f"sigma_{self.par.name}")
        add = spec.additive
        self.reg = add.leaf if add else None
        self.cls = add.levels[-2] if add and len(add.levels) > 1 else None
        self.mu_g = _draws(idata, f"mu_{add.leaf.name}") if add else np.zeros((self.B, 1))
        if self.cls is not None:
            self.mu_c = _draws(idata, f"mu_{self.cls.name}")
            self.sd_c = _draws(idata, f"sigma_{self.cls.name}")
        self.idata = idata
        self.tau = draws_of_tau(idata)  # σ_cell draws of a cell interaction, else None
        if self.tau is not None:
            self.cells = CellData(st)
            self.gamma_rng = np.random.default_rng([seed, 611953])

    def gamma_fitted(self, j0: int, j1: int, base: np.ndarray) -> np.ndarray | None:
        """``(j1 − j0, G, B)`` γ draws of fitted models j0..j1 × fitted regions (None: no interaction)."""
        if self.tau is None:
            return None
        n, G = j1 - j0, base.shape[1]
        m, g = np.repeat(np.arange(j0, j1), G), np.tile(np.arange(G), n)
        mean, var = gamma_moments(self.cells, m, g, self.mu_m[:, m] + base[:, g], self.sd_m[:, m], self.tau)
        gam = mean + np.sqrt(var) * self.gamma_rng.standard_normal(mean.shape)
        return np.ascontiguousarray(gam.reshape(self.B, n, G).transpose(1, 2, 0))

    def gamma_new(self, shape: tuple[int, int]) -> np.ndarray | None:
        """``(items, columns, B)`` γ ~ N(0, σ_cell²) of pairs never measured (None: no interaction)."""
        if self.tau is None:
            return None
        return self.tau * self.gamma_rng.standard_normal((*shape, self.B))

    def noise(self, sd: np.ndarray | None, shape: tuple[int, ...], nu: np.ndarray | None = None) -> np.ndarray | float:
        if sd is None:
            return 0.0
        if self.spec.resolution > 0:  # a new *observed* residual carries the resolution error too
            sd = np.sqrt(sd**2 + self.spec.resolution_var)
        z = self.rng.standard_normal(shape)
        if nu is not None and np.isfinite(nu).any():  # Student-t: z / sqrt(χ²_ν / ν)
            nu_b = np.broadcast_to(nu.reshape(self.B, *([1] * (len(shape) - 1))), shape)
            ok = np.isfinite(nu_b)
            df = np.where(ok, nu_b, 1.0)
            z = np.where(ok, z / np.sqrt(self.rng.chisquare(df) / df), z)
        return sd.reshape(self.B, *([1] * (len(shape) - 1))) * z

    def new_leaf(self, mu_up: np.ndarray, sd_up: np.ndarray, up: int | None = None) -> tuple[np.ndarray, np.ndarray | None]:
        """A new leaf under upper group ``up`` (None: under a new top group): (μ, residual sd) draws."""
        mu = mu_up + sd_up * self.rng.standard_normal(self.B)
        if self.sd_m is None:
            return mu, None
        pooled = self.pooled_sd(up)
        sd = np.abs(sd_up * self.rng.standard_normal(self.B)) if pooled is None else pooled
        return mu, sd

    def pooled_sd(self, up: int | None, rng: np.random.Generator | None = None) -> np.ndarray | None:
        """The residual sd draws a new leaf under ``up`` shares (``residual_sd`` pooling), or None
        (per leaf); ``rng`` (default the context's) draws a new pooling group's from its prior."""
        spec = self.spec
        if spec.residual_sd.pooling == PER_LEAF:
            return None
        draws = _draws(self.idata, "sigma_residual")
        level = spec.residual_level()
        if level is None:  # shared
            return draws[:, 0]
        if up is None or level is spec.main.leaf:  # a new group of the pooling level: its prior
            return spec.residual_sd.prior.draw(rng or self.rng, self.B)
        # the pooling level is the parent's level or above it: the parent's ancestor there
        at = ancestor_index(spec.main, level.name, self.st.parents, np.array([up]), start=self.par.name)
        return draws[:, int(at[0])]


def predictive_table(idata: Any, st: Structure, seed: int, nu: dict[str, np.ndarray] | None = None) -> pd.DataFrame:
    """All predictive kinds in one long frame: kind, <ids>, mean, sd, q05, q95.

    ``nu``: ν draws ``{"leaf": (B, M), "parent": (B, P)}`` (``inf`` = Gaussian) of a Student-t fit.
    """
    ctx = _Ctx(idata, st, seed, nu)
    frames = [_model_region(ctx)]
    if ctx.par is not None:
        frames.append(_new_leaf_kinds(ctx, ctx.mu_p, ctx.sd_p, "new_model", st.ids[ctx.par.name], ctx.par.column))
    if ctx.cls is not None:
        frames.append(_model_new_region(ctx))
    top = _new_top(ctx)
    if top is not None:
        frames.append(_new_leaf_kinds(ctx, top[0], top[1], "new_family", None, None))
    pred, bias = zip(*(_split_bias(f) for f in frames))
    sides = [_new_family_sides(ctx, top[0][:, 0], top[1][:, 0])] if top is not None else []
    if ctx.tau is not None:  # σ_cell of the cell interaction, as a row of its own (kind cell_sigma)
        sides.append(_summary_row("cell_sigma", ctx.tau))
    return pd.concat([*pred, *sides, *bias], ignore_index=True)


def _new_family_sides(ctx: _Ctx, mu_up: np.ndarray, sd_up: np.ndarray) -> pd.DataFrame:
    """A new model of a never-seen family: its level (``new_family_level``, the model side of the
    bias) and residual sd (``new_family_sigma``), as priors' fallback reads them (with the global
    level they are learned; verbatim they are the prior's). Its own random stream: the other kinds'
    draws are unchanged."""
    rng = np.random.default_rng([ctx.seed, 7919])
    level = mu_up + sd_up * rng.standard_normal(ctx.B)
    parts = [("new_family_level", level)]
    if ctx.sd_m is not None:
        pooled = ctx.pooled_sd(None, rng)
        parts.append(("new_family_sigma", np.abs(sd_up * rng.standard_normal(ctx.B)) if pooled is None else pooled))
    return pd.concat([_summary_row(kind, x) for kind, x in parts], ignore_index=True)


def _summary_row(kind: str, x: np.ndarray) -> pd.DataFrame:
    """One row without ids: mean, sd, q05, q95 of the draws ``x``."""
    q05, q95 = np.quantile(x, [0.05, 0.95])
    return pd.DataFrame({"kind": [kind], "mean": [float(x.mean())], "sd": [float(x.std(ddof=1))],
                         "q05": [float(q05)], "q95": [float(q95)]})


def _region_cols(ctx: _Ctx) -> dict[str, np.ndarray]:
    if ctx.reg is None:
        return {}
    cols = {ctx.reg.column: ctx.st.ids[ctx.reg.name]}
    if ctx.cls is not None:
        cols[ctx.cls.column] = ctx.st.ids[ctx.cls.name][ctx.st.parents[ctx.reg.name]]
    return cols


def _frame(kind: str, outer: dict[str, np.ndarray], inner: dict[str, np.ndarray], stats: dict[str, np.ndarray]) -> pd.DataFrame:
    """Rows item × inner (item-major): ids ``outer`` per item (repeated), ``inner`` per row (tiled)."""
    n_out = len(next(iter(outer.values()))) if outer else 1
    n_in = len(next(iter(inner.values()))) if inner else 1
    n = n_out * n_in
    frame = pd.DataFrame({"kind": [kind] * n})
    for k, v in outer.items():
        frame[k] = np.repeat(np.asarray(v, dtype=object), n_in)
    for k, v in inner.items():
        frame[k] = np.tile(np.asarray(v, dtype=object), n_out)
    for k, v in stats.items():
        frame[k] = v
    return frame


def _simulate(ctx: _Ctx, mu: np.ndarray, base: np.ndarray, sd: np.ndarray | None, nu: np.ndarray | None,
              gamma: Callable[[int, int], np.ndarray | None] = lambda j0, j1: None) -> dict[str, np.ndarray]:
    """Stats of ``mu[:, j] + base[:, k] (+ γ_jk) + noise(sd[:, j], ν[:, j])`` for items j (outer) × columns k.

    ``mu, sd, nu``: ``(B, J)``; ``base``: ``(B, K)``; ``gamma(j0, j1)``: the cell interaction's
    ``(j1 − j0, K, B)`` draws, or None. Gaussian noise is drawn as one ``(items, K, B)`` block per
    chunk of items (the layout the stats want); Student-t noise item by item (``noise``).
    """
    B, J = mu.shape
    Kb = base.shape[1]
    base_t = np.ascontiguousarray(base.T)
    step = max(1, _CHUNK // max(B * Kb, 1))
    parts = []
    for j0 in range(0, J, step):
        j1 = min(J, j0 + step)
        mu_j = mu[:, j0:j1].T
        bias = _residual_rows(base_t, mu_j, None, None)
        gam = gamma(j0, j1)
        if gam is not None:
            bias += gam
        if sd is not None and nu is not None:  # Student-t: the per-item stream (normal, χ², ...)
            rt = bias.copy()
            for j in range(j0, j1):
                rt[j - j0] += ctx.noise(sd[:, j], (B, Kb), nu[:, j]).T
        elif sd is not None:
            rt = _residual_rows(base_t, mu_j, sd[:, j0:j1].T, ctx.rng.standard_normal((j1 - j0, Kb, B)))
            if gam is not None:
                rt += gam
        else:
            rt, bias = bias, None
        parts.append(_with_bias(rt.reshape(-1, B), None if bias is None else bias.reshape(-1, B)))
    return _concat_stats(parts)


def _model_region(ctx: _Ctx) -> pd.DataFrame:
    st = ctx.st
    outer = {ctx.leaf.column: st.ids[ctx.leaf.name]}
    if ctx.par is not None:
        outer[ctx.par.column] = st.ids[ctx.par.name][st.parents[ctx.leaf.name]]
    nu = None if ctx.nu is None else ctx.nu["leaf"]
    stats = _simulate(ctx, ctx.mu_m, ctx.mu_g, ctx.sd_m, nu, lambda j0, j1: ctx.gamma_fitted(j0, j1, ctx.mu_g))
    return _frame("model_region", outer, _region_cols(ctx), stats)


def _new_regions(ctx: _Ctx) -> np.ndarray:
    """``(B, C)`` new-region draws per class (class c after class c−1, as ``new_region``)."""
    z = ctx.rng.standard_normal((ctx.mu_c.shape[1], ctx.B)).T
    return ctx.mu_c + ctx.sd_c * z


def _model_new_region(ctx: _Ctx) -> pd.DataFrame:
    st = ctx.st
    new_g = _new_regions(ctx)
    nu = None if ctx.nu is None else ctx.nu["leaf"]
    stats = _simulate(ctx, ctx.mu_m, new_g, ctx.sd_m, nu, lambda j0, j1: ctx.gamma_new((j1 - j0, new_g.shape[1])))
    return _frame("model_new_region", {ctx.leaf.column: st.ids[ctx.leaf.name]}, {ctx.cls.column: st.ids[ctx.cls.name]}, stats)


def _new_leaf_kinds(ctx: _Ctx, mu_up, sd_up, prefix: str, up_ids, up_col) -> pd.DataFrame:
    """``<prefix>_region`` and ``<prefix>_new_region`` for each upper group (or one new family).

    Rows per upper group p: its region rows, then its new-region rows. The random stream per p is
    (μ, σ of the new leaf, noise at the regions, noise at the new regions), as one block per p.
    """
    B, G = ctx.B, ctx.mu_g.shape[1]
    n_up = mu_up.shape[1]
    C = ctx.mu_c.shape[1] if ctx.cls is not None else 0
    new_g = _new_regions(ctx) if C else None
    has_sd = ctx.sd_m is not None
    nu_up = ctx.nu["parent"] if (ctx.nu is not None and up_col) else None  # a never-seen family is Gaussian
    reg_parts, new_parts = [], []
    per_p = B * (2 + G + C) if has_sd else B
    step = max(1, _CHUNK // per_p)
    for p0 in range(0, n_up, step):
        p1 = min(n_up, p0 + step)
        n = p1 - p0
        if nu_up is None:
            z = ctx.rng.standard_normal((n, per_p))
            mu = mu_up[:, p0:p1].T + sd_up[:, p0:p1].T * z[:, :B]  # (n, B)
            sd = np.abs(sd_up[:, p0:p1].T * z[:, B:2 * B]) if has_sd else None
            if has_sd and ctx.spec.residual_sd.pooling != PER_LEAF:  # the pooled residual sd
                sd = np.stack([ctx.pooled_sd(p if up_col else None) for p in range(p0, p1)])
            z1 = z[:, 2 * B:(2 + G) * B].reshape(n, G, B) if has_sd else None
            r1 = _residual_rows(np.ascontiguousarray(ctx.mu_g.T), mu, sd, z1)
            b1 = _residual_rows(np.ascontiguousarray(ctx.mu_g.T), mu, None, None) if has_sd else None
            if C:
                z2 = z[:, (2 + G) * B:].reshape(n, C, B) if has_sd else None
                r2 = _residual_rows(np.ascontiguousarray(new_g.T), mu, sd, z2)
                b2 = _residual_rows(np.ascontiguousarray(new_g.T), mu, None, None) if has_sd else None
        else:
            r1, b1 = np.empty((n, G, B)), np.empty((n, G, B))
            r2, b2 = (np.empty((n, C, B)), np.empty((n, C, B))) if C else (None, None)
            for p in range(p0, p1):
                mu, sd = ctx.new_leaf(mu_up[:, p], sd_up[:, p], p if up_col else None)
                nu = nu_up[:, p]
                b1[p - p0] = (mu[:, None] + ctx.mu_g).T
                r1[p - p0] = b1[p - p0] + ctx.noise(sd, (B, G), nu).T
                if C:
                    b2[p - p0] = (mu[:, None] + new_g).T
                    r2[p - p0] = b2[p - p0] + ctx.noise(sd, (B, C), nu).T
        gam = ctx.gamma_new((n, G))  # the cell interaction: a new model's pairs were never measured
        if gam is not None:
            r1 += gam
            b1 += gam
            if C:
                gam = ctx.gamma_new((n, C))
                r2 += gam
                b2 += gam
        reg_parts.append(_with_bias(r1.reshape(-1, B), None if b1 is None else b1.reshape(-1, B)))
        if C:
            new_parts.append(_with_bias(r2.reshape(-1, B), None if b2 is None else b2.reshape(-1, B)))
    outer = {up_col: up_ids[:n_up]} if up_col else {}
    kind = f"{prefix}_region" if ctx.reg else prefix
    frames = [_frame(kind, outer, _region_cols(ctx), _concat_stats(reg_parts))]
    if C:
        frames.append(_frame(f"{prefix}_new_region", outer, {ctx.cls.column: ctx.st.ids[ctx.cls.name]}, _concat_stats(new_parts)))
    out = pd.concat(frames, ignore_index=True)
    if C:  # interleave: each upper group's region rows, then its new-region rows
        n_reg = G if ctx.reg else 1
        p_of = np.concatenate([np.repeat(np.arange(n_up), n_reg), np.repeat(np.arange(n_up), C)])
        out = out.take(np.argsort(p_of, kind="stable")).reset_index(drop=True)
    return out


def _new_top(ctx: _Ctx) -> tuple[np.ndarray, np.ndarray] | None:
    """(μ, σ) draws of the level above the leaf for a never-seen top-level group, or None."""
    spec: FitSpec = ctx.spec
    levels = spec.main.levels
    top = levels[0]
    if len(levels) < 2 or top.scale.family == "halfflat":
        return None
    B, rng = ctx.B, ctx.rng
    sd = top.scale.draw(rng, B)
    prior = spec.top_location(spec.main)
    if prior is None:
        mu = _draws(ctx.idata, "mu_global")[:, 0] + _draws(ctx.idata, "tau_global")[:, 0] * rng.standard_normal(B)
    elif prior.own_scale:
        mu = prior.mean + sd * rng.standard_normal(B)
    elif prior.family != "flat":
        mu = prior.draw(rng, B)
    else:
        return None
    for _ in levels[1:-1]:  # descend to the leaf's parent level
        mu, sd = mu + sd * rng.standard_normal(B), np.abs(sd * rng.standard_normal(B))
    return mu[:, None], sd[:, None]


def residual_sd_draws(idata: Any, st: Structure) -> np.ndarray | None:
    """``(B, M)`` draws of each leaf's residual sd (cells_nms), whatever its pooling; None for cells_se."""
    spec = st.spec
    if spec.likelihood != "cells_nms":
        return None
    if spec.residual_sd.pooling == PER_LEAF:
        return _draws(idata, f"sigma_{spec.main.leaf.name}")
    draws = _draws(idata, "sigma_residual")
    level = spec.residual_level()
    if level is None:
        return np.repeat(draws, st.n_leaf, axis=1)
    return draws[:, ancestor_index(spec.main, level.name, st.parents, np.arange(st.n_leaf))]


PredictiveFn = Callable[[Any, Structure, int], pd.DataFrame]
