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

Quantiles are of the true mixture because each draw simulates its own residual. With a
``cells_se`` likelihood there is no residual sd: the predictive is of the location. With
``student_t_families`` the new residual of a t-family model (fitted or new) is ``σ·t_ν`` (ν drawn
with the rest); every other draw is unchanged.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import pandas as pd

from tierpool.fit.spec import FitSpec
from tierpool.fit.structure import Structure


def _draws(idata: Any, var: str) -> np.ndarray | None:
    if var not in idata.posterior:
        return None
    x = idata.posterior[var].values
    return x.reshape(x.shape[0] * x.shape[1], -1)


def _stats(r: np.ndarray) -> dict[str, np.ndarray]:
    q = np.quantile(r, [0.05, 0.95], axis=0)
    return {"mean": r.mean(0), "sd": r.std(0, ddof=1), "q05": q[0], "q95": q[1]}


class _Ctx:
    """Flattened draws and group ids needed by every kind."""

    def __init__(self, idata: Any, st: Structure, seed: int, nu: dict[str, np.ndarray] | None = None) -> None:
        spec = st.spec
        self.nu = nu
        self.st, self.spec = st, spec
        self.rng = np.random.default_rng([seed, 104729])
        main = spec.main
        self.leaf = main.leaf
        self.mu_m = _draws(idata, f"mu_{main.leaf.name}")
        self.sd_m = _draws(idata, f"sigma_{main.leaf.name}") if spec.likelihood == "cells_nms" else None
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

    def noise(self, sd: np.ndarray | None, shape: tuple[int, ...], nu: np.ndarray | None = None) -> np.ndarray | float:
        if sd is None:
            return 0.0
        z = self.rng.standard_normal(shape)
        if nu is not None and np.isfinite(nu).any():  # Student-t: z / sqrt(χ²_ν / ν)
            nu_b = np.broadcast_to(nu.reshape(self.B, *([1] * (len(shape) - 1))), shape)
            ok = np.isfinite(nu_b)
            df = np.where(ok, nu_b, 1.0)
            z = np.where(ok, z / np.sqrt(self.rng.chisquare(df) / df), z)
        return sd.reshape(self.B, *([1] * (len(shape) - 1))) * z

    def nu_of(self, which: str, j: int) -> np.ndarray | None:
        """ν draws of leaf / parent group ``j`` (None for a Gaussian fit)."""
        return None if self.nu is None else self.nu[which][:, j]

    def new_region(self, c: int) -> np.ndarray:
        return self.mu_c[:, c] + self.sd_c[:, c] * self.rng.standard_normal(self.B)

    def new_leaf(self, mu_up: np.ndarray, sd_up: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        mu = mu_up + sd_up * self.rng.standard_normal(self.B)
        sd = np.abs(sd_up * self.rng.standard_normal(self.B)) if self.sd_m is not None else None
        return mu, sd


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
    return pd.concat(frames, ignore_index=True)


def _region_cols(ctx: _Ctx) -> dict[str, np.ndarray]:
    if ctx.reg is None:
        return {}
    cols = {ctx.reg.column: ctx.st.ids[ctx.reg.name]}
    if ctx.cls is not None:
        cols[ctx.cls.column] = ctx.st.ids[ctx.cls.name][ctx.st.parents[ctx.reg.name]]
    return cols


def _rows(kind: str, ids: dict[str, Any], stats: dict[str, np.ndarray], n: int) -> pd.DataFrame:
    frame = pd.DataFrame({"kind": [kind] * n})
    for k, v in ids.items():
        frame[k] = np.broadcast_to(np.asarray(v, dtype=object), (n,))
    for k, v in stats.items():
        frame[k] = v
    return frame


def _model_region(ctx: _Ctx) -> pd.DataFrame:
    st, out = ctx.st, []
    leaf_ids = st.ids[ctx.leaf.name]
    par_ids = st.ids[ctx.par.name][st.parents[ctx.leaf.name]] if ctx.par is not None else None
    G = ctx.mu_g.shape[1]
    for m in range(st.n_leaf):
        sd = None if ctx.sd_m is None else ctx.sd_m[:, m]
        r = ctx.mu_m[:, m, None] + ctx.mu_g + ctx.noise(sd, (ctx.B, G), ctx.nu_of("leaf", m))
        ids = {ctx.leaf.column: leaf_ids[m], **({ctx.par.column: par_ids[m]} if par_ids is not None else {})}
        ids.update(_region_cols(ctx))
        out.append(_rows("model_region", ids, _stats(r), G))
    return pd.concat(out, ignore_index=True)


def _model_new_region(ctx: _Ctx) -> pd.DataFrame:
    st, out = ctx.st, []
    C = ctx.mu_c.shape[1]
    new_g = np.stack([ctx.new_region(c) for c in range(C)], axis=1)
    for m in range(st.n_leaf):
        sd = None if ctx.sd_m is None else ctx.sd_m[:, m]
        r = ctx.mu_m[:, m, None] + new_g + ctx.noise(sd, (ctx.B, C), ctx.nu_of("leaf", m))
        ids = {ctx.leaf.column: st.ids[ctx.leaf.name][m], ctx.cls.column: st.ids[ctx.cls.name]}
        out.append(_rows("model_new_region", ids, _stats(r), C))
    return pd.concat(out, ignore_index=True)


def _new_leaf_kinds(ctx: _Ctx, mu_up, sd_up, prefix: str, up_ids, up_col) -> pd.DataFrame:
    """``<prefix>_region`` and ``<prefix>_new_region`` for each upper group (or one new family)."""
    out = []
    n_up = mu_up.shape[1]
    C = ctx.mu_c.shape[1] if ctx.cls is not None else 0
    new_g = np.stack([ctx.new_region(c) for c in range(C)], axis=1) if C else None
    for p in range(n_up):
        mu, sd = ctx.new_leaf(mu_up[:, p], sd_up[:, p])
        base = {up_col: up_ids[p]} if up_col else {}
        nu = ctx.nu_of("parent", p) if up_col else None  # a never-seen family is Gaussian
        r = mu[:, None] + ctx.mu_g + ctx.noise(sd, (ctx.B, ctx.mu_g.shape[1]), nu)
        out.append(_rows(f"{prefix}_region" if ctx.reg else prefix, {**base, **_region_cols(ctx)}, _stats(r), r.shape[1]))
        if C:
            r2 = mu[:, None] + new_g + ctx.noise(sd, (ctx.B, C), nu)
            ids = {**base, ctx.cls.column: ctx.st.ids[ctx.cls.name]}
            out.append(_rows(f"{prefix}_new_region", ids, _stats(r2), C))
    return pd.concat(out, ignore_index=True)


def _new_top(ctx: _Ctx) -> tuple[np.ndarray, np.ndarray] | None:
    """(μ, σ) draws of the level above the leaf for a never-seen top-level group, or None."""
    spec: FitSpec = ctx.spec
    levels = spec.main.levels
    top = levels[0]
    if len(levels) < 2 or top.scale_prior == "halfflat":
        return None
    B, rng = ctx.B, ctx.rng
    sd = np.abs(rng.normal(0, top.top_scale, B))
    if spec.global_level is not None:
        mu = _draws(ctx.idata, "mu_global")[:, 0] + _draws(ctx.idata, "tau_global")[:, 0] * rng.standard_normal(B)
    elif top.location_prior == "normal":
        mu = sd * rng.standard_normal(B)
    else:
        return None
    for _ in levels[1:-1]:  # descend to the leaf's parent level
        mu, sd = mu + sd * rng.standard_normal(B), np.abs(sd * rng.standard_normal(B))
    return mu[:, None], sd[:, None]


PredictiveFn = Callable[[Any, Structure, int], pd.DataFrame]
