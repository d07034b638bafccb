"""The numeric layout of a hierarchy: group ids, parent maps, and the cells reduced to matrices.

Locations ``x`` are split in two blocks:

* **kept** nodes ``K`` (dense system): the optional global mean, every non-leaf level of the main
  side, and every level of the additive side (its leaf last);
* **leaf** nodes ``M`` (the main side's leaf, e.g. models): their block of the posterior precision
  is diagonal given the kept nodes, so they are eliminated by a Schur complement.

The cells only enter through model × region matrices (counts, weighted sums) and per-model sums,
so the cost of a gradient does not grow with the number of rows or cells.

Scales live in one vector ``θ`` (``scale_layout``); every node reads its conditional prior sd from
``θ[sd_src]`` (``-1`` marks a flat location prior).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from tierpool.errors import FitError
from tierpool.fit.priors import Prior, tmix
from tierpool.fit.spec import PER_LEAF, SHARED, FitSpec, Side


@dataclass(frozen=True)
class ScaleBlock:
    """One scale parameter vector inside θ: PyMC name, dim name, size, offset and prior.

    ``level``: the level whose own scale this is (None for τ_global, the pooled residual sd and
    the mixing sd of a Student-t location). ``prior``: its prior (None: ``HalfNormal(σ_parent)``,
    the rule below a side's top level). ``parent_level``: the level whose σ is that parent sd.
    """

    name: str
    dim: str | None
    size: int
    offset: int
    level: str | None
    prior: Prior | None = None
    parent_level: str | None = None


@dataclass
class Structure:
    """Everything numeric the model and the conditional draws need (numpy only)."""

    spec: FitSpec
    ids: dict[str, np.ndarray]  # level name -> group ids (str)
    parents: dict[str, np.ndarray]  # level name -> index of each group's parent (levels below top)
    scale_layout: list[ScaleBlock]
    n_theta: int  # length of θ including the trailing constants (fixed location sds)
    theta_const: np.ndarray  # the trailing constants of θ
    kept_offset: dict[str, int]  # level name (or "global") -> offset in K
    n_kept: int
    n_leaf: int
    n_add_leaf: int
    kept_parent: np.ndarray  # (K,) parent position in K or -1
    kept_sd_src: np.ndarray  # (K,) index into θ or -1 (flat)
    leaf_parent: np.ndarray  # (M,) parent position in K or -1
    leaf_sd_src: np.ndarray  # (M,) index into θ or -1
    leaf_scale_src: np.ndarray  # (M,) index of the leaf's own residual sd in θ (nms) or -1
    add_counts: np.ndarray  # (K,) number of additive leaves under each kept node (0 if main)
    T: np.ndarray  # (K, Kz) basis of the constrained subspace (identity if unconstrained)
    cells: pd.DataFrame
    cell_leaf: np.ndarray
    cell_add: np.ndarray
    data: dict[str, np.ndarray] = field(default_factory=dict)
    const: float = 0.0
    cell_sd_src: int = -1  # index of σ_cell in θ (spec.cell_interaction), or -1

    @property
    def n_z(self) -> int:
        """Dimension of the kept block after the sum-to-zero constraint."""
        return int(self.T.shape[1])

    def key(self) -> tuple:
        """Cache key: the spec and the size of every level (data and index maps can vary)."""
        sizes = tuple((name, len(v)) for name, v in self.ids.items())
        return (self.spec, sizes)

    def level_of(self, name: str) -> np.ndarray:
        """Group ids of one level."""
        return self.ids[name]


def build_structure(cells: pd.DataFrame, spec: FitSpec, catalogue: pd.DataFrame | None = None) -> Structure:
    """Lay out a validated cells frame (see ``cells_check.validate_cells``) for the model.

    Args:
        cells: Validated cells, one row per (main leaf, additive leaf).
        spec: The fit spec.
        catalogue: Optional extra rows of group ids (e.g. models with no data yet) so that they get
            posterior draws and predictive rows too; needs the id columns of whole sides.

    Returns:
        The structure.
    """
    ids, parents = _group_maps(cells, spec, catalogue)
    layout, consts = _scale_layout(spec, ids)
    st = _node_layout(spec, ids, parents, layout, consts)
    st.cells = cells
    st.cell_leaf = _index(ids[spec.main.leaf.name], cells[spec.main.leaf.column])
    if spec.additive:
        st.cell_add = _index(ids[spec.additive.leaf.name], cells[spec.additive.leaf.column])
    else:
        st.cell_add = np.zeros(len(cells), dtype=np.int64)
    _reduce_cells(st)
    return st


def _index(universe: np.ndarray, values: pd.Series) -> np.ndarray:
    lookup = pd.Index(universe)
    return np.asarray(lookup.get_indexer(values.astype(str)), dtype=np.int64)


def _group_maps(cells: pd.DataFrame, spec: FitSpec, catalogue: pd.DataFrame | None):
    ids: dict[str, np.ndarray] = {}
    parents: dict[str, np.ndarray] = {}
    for side in (spec.main, spec.additive):
        if side is None:
            continue
        frame = _side_frame(cells, side, catalogue)
        for k, lv in enumerate(side.levels):
            ids[lv.name] = np.array(sorted(frame[lv.column].unique()), dtype=object)
            if k == 0:
                continue
            up = side.levels[k - 1]
            pairs = frame[[lv.column, up.column]].drop_duplicates()
            if pairs[lv.column].duplicated().any():
                gid = pairs.loc[pairs[lv.column].duplicated(), lv.column].iloc[0]
                raise FitError(f"{lv.name} {gid!r} belongs to more than one {up.name} (cells + catalogue)")
            pmap = dict(zip(pairs[lv.column], pairs[up.column]))
            parents[lv.name] = _index(ids[up.name], pd.Series([pmap[g] for g in ids[lv.name]]))
    return ids, parents


def _side_frame(cells: pd.DataFrame, side: Side, catalogue: pd.DataFrame | None) -> pd.DataFrame:
    cols = [lv.column for lv in side.levels]
    frame = cells[cols].astype(str)
    if catalogue is not None and all(c in catalogue.columns for c in cols):
        extra = catalogue[cols].dropna().astype(str)
        frame = pd.concat([frame, extra], ignore_index=True)
    return frame.drop_duplicates()


def _scale_layout(spec: FitSpec, ids: dict[str, np.ndarray]) -> tuple[list[ScaleBlock], dict[str, int]]:
    """θ = [sampled scales in blocks | constants]; returns the blocks and the constants' slots.

    The constants are fixed sds of ``normal(mu, sigma)`` location priors (the global location's,
    and a top level's), read from θ like any scale; ``"_"`` is a placeholder when there are none.
    """
    layout: list[ScaleBlock] = []
    offset = 0

    def add(name: str, dim: str | None, size: int, level: str | None, prior: Prior | None,
            parent: str | None = None) -> None:
        nonlocal offset
        layout.append(ScaleBlock(name, dim, size, offset, level, prior, parent))
        offset += size

    consts: dict[str, float] = {}
    for side in (spec.main, spec.additive):
        if side is None:
            continue
        for k, lv in enumerate(side.levels):
            if spec.has_scale(side, k):
                up = side.levels[k - 1].name if k else None
                add(f"sigma_{lv.name}", lv.name, len(ids[lv.name]), lv.name, None if k else lv.scale, up)
        top = spec.top_location(side)
        if top is not None and top.family == "studentt":
            add(f"sd_location_{side.levels[0].name}", side.levels[0].name, len(ids[side.levels[0].name]),
                None, tmix(top))
        elif top is not None and top.fixed_sd is not None:
            consts[side.levels[0].name] = top.fixed_sd
    if spec.likelihood == "cells_nms" and spec.residual_sd.pooling != PER_LEAF:
        level = spec.residual_level()
        add("sigma_residual", level.name if level else None, len(ids[level.name]) if level else 1, None,
            spec.residual_sd.prior)
    if spec.global_level is not None:
        g = spec.global_level
        add("tau_global", None, 1, None, g.scale)
        if g.location.family == "studentt":
            add("sd_location_global", None, 1, None, tmix(g.location))
        elif g.location.fixed_sd is not None:
            consts["global"] = g.location.fixed_sd
    if spec.cell_interaction is not None:
        add("sigma_cell", None, 1, None, spec.cell_interaction)
    if not consts:
        consts["_"] = 1.0  # θ always ends in a constant (the kernel's and the PyMC model's layout)
    return layout, {name: (offset + i, value) for i, (name, value) in enumerate(consts.items())}


def _node_layout(spec, ids, parents, layout, consts) -> Structure:
    sc = {b.level: b.offset for b in layout if b.level is not None}
    named = {b.name: b.offset for b in layout}
    n_theta = layout[-1].offset + layout[-1].size + len(consts) if layout else len(consts)
    kept_parent: list[int] = []
    kept_src: list[int] = []
    counts: list[int] = []
    offsets: dict[str, int] = {}
    glob = spec.global_level
    if glob is not None:
        offsets["global"] = 0
        kept_parent.append(-1)
        kept_src.append(_location_src(glob.location, "global", 1, named, consts, None)[0])
        counts.append(0)
    leaf = {}
    for side in (spec.main, spec.additive):
        if side is None:
            continue
        n_add = len(ids[side.leaf.name]) if side is spec.additive else 0
        for k, lv in enumerate(side.levels):
            n = len(ids[lv.name])
            if k == 0:
                par, src = _top_prior(spec, side, lv, n, sc, named, consts)
            else:
                up = side.levels[k - 1]
                par = offsets[up.name] + parents[lv.name]
                src = sc[up.name] + parents[lv.name]
            if side is spec.main and k == len(side.levels) - 1:
                leaf = {"parent": par, "src": src}
                continue
            offsets[lv.name] = len(kept_parent)
            kept_parent.extend(par.tolist())
            kept_src.extend(src.tolist())
            counts.extend(_leaf_counts(side, k, ids, parents) if n_add else [0] * n)
    n_kept = len(kept_parent)
    n_leaf = len(ids[spec.main.leaf.name])
    n_add_leaf = len(ids[spec.additive.leaf.name]) if spec.additive else 0
    T = _constraint_basis(spec, offsets, n_kept, n_add_leaf)
    cell_sd = named.get("sigma_cell", -1)
    return Structure(
        spec=spec, ids=ids, parents=parents, scale_layout=layout, n_theta=n_theta,
        theta_const=np.array([value for _, value in consts.values()], dtype=float),
        kept_offset=offsets, n_kept=n_kept, n_leaf=n_leaf, n_add_leaf=n_add_leaf,
        kept_parent=np.asarray(kept_parent, dtype=np.int64),
        kept_sd_src=np.asarray(kept_src, dtype=np.int64),
        leaf_parent=np.asarray(leaf["parent"], dtype=np.int64),
        leaf_sd_src=np.asarray(leaf["src"], dtype=np.int64),
        leaf_scale_src=_leaf_scale_src(spec, ids, parents, sc, named),
        add_counts=np.asarray(counts, dtype=float), T=T,
        cells=pd.DataFrame(), cell_leaf=np.zeros(0, np.int64), cell_add=np.zeros(0, np.int64),
        cell_sd_src=int(cell_sd),
    )


def _leaf_scale_src(spec: FitSpec, ids, parents, sc, named) -> np.ndarray:
    """Index in θ of each leaf's residual sd (cells_nms), or -1."""
    n_leaf = len(ids[spec.main.leaf.name])
    if spec.likelihood != "cells_nms":
        return np.full(n_leaf, -1, dtype=np.int64)
    pooling = spec.residual_sd.pooling
    if pooling == PER_LEAF:
        return sc[spec.main.leaf.name] + np.arange(n_leaf, dtype=np.int64)
    if pooling == SHARED:
        return np.full(n_leaf, named["sigma_residual"], dtype=np.int64)
    return named["sigma_residual"] + ancestor_index(spec.main, pooling, parents, np.arange(n_leaf))


def ancestor_index(side: Side, level: str, parents: dict[str, np.ndarray], idx: np.ndarray,
                   start: str | None = None) -> np.ndarray:
    """The index at ``level`` of the ancestor (or the group itself) of groups ``idx`` of level
    ``start`` (default: the side's leaf); ``parents[name]`` maps a group of ``name`` to its parent."""
    names = [lv.name for lv in side.levels]
    for name in reversed(names[:names.index(start or side.leaf.name) + 1]):
        if name == level:
            return idx
        idx = parents[name][idx]
    raise KeyError(level)


def _location_src(prior: Prior, name: str, n: int, named, consts, own: np.ndarray | None) -> np.ndarray:
    """Where the location prior sd of ``n`` top groups (or the global mean) is read in θ."""
    if prior.family == "flat":
        return np.full(n, -1, dtype=np.int64)
    if prior.family == "studentt":
        return named[f"sd_location_{name}"] + np.arange(n, dtype=np.int64)
    if prior.own_scale:
        return own
    return np.full(n, consts[name][0], dtype=np.int64)


def _top_prior(spec, side, lv, n, sc, named, consts):
    if side is spec.main and spec.global_level is not None:
        return np.zeros(n, dtype=np.int64), np.full(n, named["tau_global"], dtype=np.int64)
    own = sc[lv.name] + np.arange(n) if lv.name in sc else None
    return np.full(n, -1, dtype=np.int64), _location_src(lv.location, lv.name, n, named, consts, own)


def _leaf_counts(side: Side, k: int, ids, parents) -> list[float]:
    """How many additive-side leaves sit under each node of level k."""
    leaf_to = np.arange(len(ids[side.leaf.name]))
    for j in range(len(side.levels) - 1, k, -1):
        leaf_to = parents[side.levels[j].name][leaf_to]
    return np.bincount(leaf_to, minlength=len(ids[side.levels[k].name])).astype(float).tolist()


def _constraint_basis(spec: FitSpec, offsets: dict[str, int], n_kept: int, n_add_leaf: int) -> np.ndarray:
    """Orthonormal basis H of {x: Σ additive-leaf x = 0}, embedded as the identity elsewhere."""
    if not (spec.additive and spec.additive.sum_to_zero) or n_add_leaf < 2:
        return np.eye(n_kept)
    start = offsets[spec.additive.leaf.name]
    ones = np.ones((n_add_leaf, 1)) / math.sqrt(n_add_leaf)
    q, _ = np.linalg.qr(np.hstack([ones, np.eye(n_add_leaf)[:, :-1]]))
    H = q[:, 1:]  # columns orthogonal to the all-ones direction
    T = np.zeros((n_kept, n_kept - 1))
    T[:start, :start] = np.eye(start)
    T[start:start + n_add_leaf, start:start + n_add_leaf - 1] = H
    rest = n_kept - start - n_add_leaf
    T[start + n_add_leaf:, start + n_add_leaf - 1:] = np.eye(rest)
    return T


def _reduce_cells(st: Structure) -> None:
    """Cells -> model × region matrices and per-model sums (the only data the likelihood needs)."""
    spec, cells = st.spec, st.cells
    M, G = st.n_leaf, max(st.n_add_leaf, 1)
    mean = cells[spec.mean_col].to_numpy(float) - spec.location_shift  # see draw_locations
    if spec.likelihood == "cells_nms":
        n = cells[spec.n_col].to_numpy(float)  # rows: the normaliser −n·ln σ
        # the rows' summed weights: the precision W/σ² of the cell mean (W = n for single requests);
        # the constant ½ Σ ln w_i of weighted rows is left out (it does not depend on θ)
        w = cells[spec.w_col].to_numpy(float) if spec.w_col in cells.columns else n
        extra_s = np.bincount(st.cell_leaf, cells[spec.s_col].to_numpy(float), minlength=M)
        n_sum = np.bincount(st.cell_leaf, n, minlength=M)
        st.const = -0.5 * float(n.sum()) * math.log(2 * math.pi)
    else:
        se = cells[spec.se_col].to_numpy(float)
        w = 1.0 / se**2
        extra_s = np.zeros(M)
        n_sum = np.zeros(M)
        st.const = -float(np.log(se).sum()) - 0.5 * len(cells) * math.log(2 * math.pi)
    n_flat = int((st.kept_sd_src < 0).sum() + (st.leaf_sd_src < 0).sum())
    st.const += 0.5 * n_flat * math.log(2 * math.pi)
    Wc = np.zeros((M, G))
    Yc = np.zeros((M, G))
    np.add.at(Wc, (st.cell_leaf, st.cell_add), w)
    np.add.at(Yc, (st.cell_leaf, st.cell_add), w * mean)
    st.data = {
        "Wc": Wc,
        "Yc": Yc,
        "YYc": np.bincount(st.cell_leaf, w * mean**2, minlength=M),
        "n_sum": n_sum,
        "S_sum": extra_s,
    }
    if spec.cell_interaction is not None:
        # γ_mr integrated out: a cell mean ~ N(μ_m + μ_r, s²/W + σ_cell²), its own weight; the cell's
        # within term keeps −(n − 1)·ln s (n_cells per leaf) and −½ ln W is a constant (gaussian.py)
        has = Wc > 0
        st.data["Mc"] = np.divide(Yc, Wc, out=np.zeros_like(Yc), where=has)
        st.data["n_cells"] = has.sum(1).astype(float)
        st.const -= 0.5 * float(np.log(Wc[has]).sum())
