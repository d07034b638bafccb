"""nutpie's model object for the numba density of ``fast_density.py``, and its compile cache.

nutpie's numba interface takes C callbacks: two thin ``numba.cfunc`` wrappers bind one fit's arrays
as constants and call the disk-cached kernel. They are handed to nutpie as its own numba model
object (``nutpie.compile_pymc.CompiledPyMCModel``), which is why pyproject pins nutpie to 0.16.x.
"""

from __future__ import annotations

import math

import numpy as np

from tierpool.fit.fast_density import density_arrays, logp_grad
from tierpool.fit.structure import Structure


def nutpie_model(st: Structure):
    """A nutpie model of the scales driven by :func:`logp_grad`, called from nutpie's threads.

    nutpie's numba interface takes C callbacks (``numba.cfunc``); the thin wrappers below bind
    this structure's arrays as constants and call the disk-cached kernel, so building them costs
    about a second rather than a PyTensor compile, and no Python runs per gradient.
    """
    import numba
    from nutpie.compile_pymc import CompiledPyMCModel

    a = density_arrays(st)
    n_dim = len(a.prior_kind)
    kernel, args = a.kernel()  # the additive kernel, or the cell interaction's (fast_density_cells.py)
    (prior_kind, u_lo, prior_arg, prior_arg2, theta_tail, kept_parent, kept_src, kept_mask, leaf_parent, leaf_src,
     leaf_mask, leaf_scale_src, add_start, n_add, add_counts, Wc, Yc, w_tot, y_tot, YYc,
     spread, n_sum, S_sum, nms, constrained, const, tau2) = a.args()
    cell_sd, Mc, n_cells = a.cell_sd, a.Mc, a.n_cells
    with_cells = kernel is not logp_grad
    f64p = numba.types.CPointer(numba.types.double)

    def logp_additive(dim, x_, out_, logp_, _user_data):
        if dim != n_dim:
            return -1
        x = numba.carray(x_, (n_dim,))
        out = numba.carray(out_, (n_dim,))
        value = logp_grad(x, prior_kind, u_lo, prior_arg, prior_arg2, theta_tail, kept_parent, kept_src, kept_mask,
                          leaf_parent, leaf_src, leaf_mask, leaf_scale_src, add_start, n_add,
                          add_counts, Wc, Yc, w_tot, y_tot, YYc, spread, n_sum, S_sum,
                          nms, constrained, const, tau2, out)
        numba.carray(logp_, (1,))[0] = value
        if not np.isfinite(value):
            return 4  # nutpie: a non-finite density (treated as a divergence)
        for j in range(n_dim):
            if not np.isfinite(out[j]):
                return 3
        return 0

    def logp_cells(dim, x_, out_, logp_, _user_data):  # the same, with the cell interaction's kernel
        if dim != n_dim:
            return -1
        x = numba.carray(x_, (n_dim,))
        out = numba.carray(out_, (n_dim,))
        value = kernel(x, prior_kind, u_lo, prior_arg, prior_arg2, theta_tail, kept_parent, kept_src, kept_mask,
                       leaf_parent, leaf_src, leaf_mask, leaf_scale_src, add_start, n_add,
                       add_counts, Wc, Yc, w_tot, y_tot, YYc, spread, n_sum, S_sum,
                       nms, constrained, const, tau2, cell_sd, Mc, n_cells, out)
        numba.carray(logp_, (1,))[0] = value
        if not np.isfinite(value):
            return 4
        for j in range(n_dim):
            if not np.isfinite(out[j]):
                return 3
        return 0

    logp_c = logp_cells if with_cells else logp_additive

    def expand_c(dim, n_expanded, x_, out_, _user_data):
        if dim != n_dim or n_expanded != n_dim:
            return -1
        x = numba.carray(x_, (n_dim,))
        out = numba.carray(out_, (n_dim,))
        for j in range(n_dim):
            out[j] = math.exp(x[j])
        return 0

    logp_sig = numba.types.int64(numba.types.uint64, f64p, f64p, f64p, numba.types.voidptr)
    expand_sig = numba.types.int64(numba.types.uint64, numba.types.uint64, f64p, f64p, numba.types.voidptr)
    blocks = st.scale_layout
    names = [b.name for b in blocks]
    slices = [slice(b.offset, b.offset + b.size) for b in blocks]
    shapes = [(b.size,) if b.dim else () for b in blocks]

    def initial_point(seed):
        # like PyMC's jittered start: a moderate scale, log-uniform within a factor e
        return np.random.default_rng(seed).uniform(-1.0, 1.0, n_dim) + math.log(0.5)

    return CompiledPyMCModel(
        _n_dim=n_dim,
        dims={b.name: (b.dim,) for b in blocks if b.dim},
        _coords={b.dim: list(st.ids[b.dim]) for b in blocks if b.dim},
        _shapes=dict(zip(names, shapes)),
        compiled_logp_func=numba.cfunc(logp_sig, error_model="numpy")(logp_c),
        compiled_expand_func=numba.cfunc(expand_sig, error_model="numpy")(expand_c),
        initial_point_func=initial_point,
        shared_data={},
        user_data=np.zeros(1),
        n_expanded=n_dim,
        shape_info=(names, slices, shapes),
        logp_func=None,
        expand_func=None,
    )


_READY: dict[str, bool] = {}


def ensure_compiled(st: Structure) -> bool:
    """Make the structure's kernel callable in this process; True if nothing had to be compiled."""
    arrays = density_arrays(st)
    kernel, args = arrays.kernel()
    name = kernel.__name__
    if _READY.get(name):
        return True
    n = len(arrays.prior_kind)
    kernel(np.zeros(n), *args, np.empty(n))
    _READY[name] = True
    return sum(kernel.stats.cache_hits.values()) > 0


def forget_compiled() -> None:
    """Treat the kernel as not yet loaded (the next fit reports its load or compile time)."""
    _READY.clear()
