"""Spec + structure → ``pm.Model`` whose only free variables are the scales.

Every Gaussian location is integrated out exactly (``gaussian.py``) and enters as one
``pm.Potential``; the locations are drawn afterwards from their exact conditional
(``posterior.py``). All data and index maps are ``pm.Data`` so a compiled model can be reused for
new data of the same structure (``nutpie``'s ``with_data``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tierpool.fit.gaussian import _constrained, constant_arrays, marginal_loglik_pt
from tierpool.fit.spec import FitSpec
from tierpool.fit.structure import ScaleBlock, Structure

POTENTIAL_NAME = "marginal_loglik"


def data_values(st: Structure) -> dict[str, np.ndarray]:
    """Name → value of every ``pm.Data`` of the model (what ``with_data`` is fed)."""
    out = {f"c_{k}": v for k, v in constant_arrays(st).items()}
    for name, idx in st.parents.items():
        out[f"parent_{name}"] = idx.astype(np.int64)
    return out


def build_model(st: Structure) -> Any:
    """Build the PyMC model of the scales with the marginal likelihood as a potential.

    Args:
        st: The structure (from ``structure.build_structure``).

    Returns:
        A ``pm.Model`` with coords named after the spec's levels.
    """
    import pymc as pm
    import pytensor.tensor as pt

    coords = {name: list(ids) for name, ids in st.ids.items()}
    values = data_values(st)
    with pm.Model(coords=coords) as model:
        data = {k: pm.Data(k, v) for k, v in values.items()}
        consts = {k[2:]: v for k, v in data.items() if k.startswith("c_")}
        sigmas: dict[str, Any] = {}
        parts = []
        for block in st.scale_layout:
            var = _scale_variable(st.spec, block, sigmas, data)
            sigmas[block.level or block.name] = var
            parts.append(var if block.dim else pt.atleast_1d(var))
        parts.append(pt.as_tensor_variable(st.theta_const))
        theta = pt.concatenate(parts)
        loglik = marginal_loglik_pt(theta, consts, st.spec.likelihood, _constrained(st), st.n_z, st.const)
        pm.Potential(POTENTIAL_NAME, loglik)
    return model


def _scale_variable(spec: FitSpec, block: ScaleBlock, sigmas: dict[str, Any], data: dict[str, Any]) -> Any:
    """The PyMC variable of one scale block: its prior's registry constructor, or HalfNormal(σ_parent)."""
    import pymc as pm

    if block.prior is not None:
        return block.prior.pymc(block.name, block.dim)
    parent_sigma = sigmas[block.parent_level]
    return pm.HalfNormal(block.name, sigma=parent_sigma[data[f"parent_{block.level}"]], dims=block.dim)


def theta_from_posterior(posterior: Any, st: Structure) -> np.ndarray:
    """Stack the sampled scales into θ draws ``(chains·draws, n_theta)`` in the layout order."""
    cols = []
    for block in st.scale_layout:
        arr = np.asarray(posterior[block.name].values, dtype=float)
        cols.append(arr.reshape(arr.shape[0] * arr.shape[1], -1))
    n = cols[0].shape[0] if cols else int(np.prod(posterior.sizes["chain"] * posterior.sizes["draw"]))
    cols.append(np.tile(st.theta_const, (n, 1)))
    return np.hstack(cols)
