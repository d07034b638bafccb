"""The synthetic ground truth: parameters of DESIGN §5 drawn from its own priors.

For each indicator (drawn independently, from its own seeded stream):

    σ_family[f] ~ HalfNormal(0.5)            μ_family[f] ~ Normal(0, σ_family[f])
    σ_model[m]  ~ HalfNormal(σ_family[f])    μ_model[m]  ~ Normal(μ_family[f], σ_family[f])
    σ_class[c]  ~ HalfNormal(0.5)            μ_class[c]  ~ Normal(0, σ_class[c])
                                             μ_region[g] ~ Normal(μ_class[c], σ_class[c])
    residual r ~ Normal(μ_model[m] + μ_region[g], σ_model[m])

Two documented departures keep the demo a dataset a healthy sampler can fit and a
reader can believe: scales are clipped (σ_family to [0.1, 0.8], σ_model to
[0.05, 1.0], σ_class to [0.05, 0.6]), because a σ_model of 0.001 drawn from the
half-normal would make tier 2 and tier 3 agree to the third decimal, which no real
telemetry does.

Because only μ_model + μ_region is identified, the truth is also written in the
identified form the fit reports: region ``deviation`` = μ_region − mean over the
catalogue's regions (they sum to zero), class ``deviation`` = μ_class − the same
mean, and model ``level`` = μ_model + the same mean (the model at the average
region). The fit centres over the regions it saw; to compare, re-centre the truth
over the same regions.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from tierpool.calibration import synth_catalogue as cat

SIGMA_FAMILY_CLIP = (0.1, 0.8)
SIGMA_MODEL_CLIP = (0.05, 1.0)
SIGMA_CLASS_CLIP = (0.05, 0.6)
TOP_SCALE = 0.5


@dataclass(frozen=True)
class IndicatorTruth:
    """True parameters for one indicator, as arrays aligned with the catalogue order."""

    indicator: str
    family_mu: np.ndarray
    family_sigma: np.ndarray
    model_mu: np.ndarray
    model_sigma: np.ndarray
    class_mu: np.ndarray
    class_sigma: np.ndarray
    region_mu: np.ndarray

    @property
    def region_offset(self) -> float:
        """Mean of μ_region over the catalogue: the unidentified level moved to models."""
        return float(self.region_mu.mean())

    @property
    def model_level(self) -> np.ndarray:
        """Identified model bias at the average region."""
        return self.model_mu + self.region_offset

    @property
    def region_deviation(self) -> np.ndarray:
        """Identified region deviations (sum to zero over the catalogue)."""
        return self.region_mu - self.region_offset


def _half_normal(rng: np.random.Generator, scale: np.ndarray | float, size: int) -> np.ndarray:
    return np.abs(rng.normal(0.0, 1.0, size)) * scale


def draw_truth(indicator_index: int, indicator: str, seed: int) -> IndicatorTruth:
    """Draw one indicator's parameters from the model's priors (clipped scales).

    Args:
        indicator_index: position of the indicator; it selects an independent stream.
        indicator: indicator name, recorded on the result.
        seed: the generator seed.

    Returns:
        The indicator's true parameters.
    """
    rng = np.random.default_rng([seed, 1, indicator_index])
    family_index = {f[0]: i for i, f in enumerate(cat.FAMILIES)}
    class_index = {c[0]: i for i, c in enumerate(cat.REGION_CLASSES)}
    fam_of_model = np.array([family_index[m[1]] for m in cat.MODELS])
    class_of_region = np.array([class_index[r[2]] for r in cat.REGIONS])

    family_sigma = np.clip(_half_normal(rng, TOP_SCALE, len(cat.FAMILIES)), *SIGMA_FAMILY_CLIP)
    family_mu = rng.normal(0.0, family_sigma)
    model_sigma = np.clip(
        _half_normal(rng, family_sigma[fam_of_model], len(cat.MODELS)), *SIGMA_MODEL_CLIP
    )
    model_mu = rng.normal(family_mu[fam_of_model], family_sigma[fam_of_model])
    class_sigma = np.clip(_half_normal(rng, TOP_SCALE, len(cat.REGION_CLASSES)), *SIGMA_CLASS_CLIP)
    class_mu = rng.normal(0.0, class_sigma)
    region_mu = rng.normal(class_mu[class_of_region], class_sigma[class_of_region])
    return IndicatorTruth(
        indicator, family_mu, family_sigma, model_mu, model_sigma, class_mu, class_sigma, region_mu
    )


def truth_frames(truths: list[IndicatorTruth]) -> dict[str, pd.DataFrame]:
    """The truth as tidy frames, one row per indicator and group.

    Returns:
        ``truth_families`` (indicator, family_id, mu, sigma), ``truth_models`` (indicator,
        model_id, family_id, mu, sigma, level), ``truth_region_classes`` (indicator,
        region_class_id, mu, sigma, deviation) and ``truth_regions`` (indicator, region_id,
        region_class_id, mu, deviation).
    """
    out: dict[str, list[pd.DataFrame]] = {
        "truth_families": [], "truth_models": [], "truth_region_classes": [], "truth_regions": []
    }
    for t in truths:
        k = t.indicator
        out["truth_families"].append(pd.DataFrame({
            "indicator": k, "family_id": [f[0] for f in cat.FAMILIES],
            "mu": t.family_mu, "sigma": t.family_sigma,
        }))
        out["truth_models"].append(pd.DataFrame({
            "indicator": k, "model_id": [m[0] for m in cat.MODELS],
            "family_id": [m[1] for m in cat.MODELS],
            "mu": t.model_mu, "sigma": t.model_sigma, "level": t.model_level,
        }))
        out["truth_region_classes"].append(pd.DataFrame({
            "indicator": k, "region_class_id": [c[0] for c in cat.REGION_CLASSES],
            "mu": t.class_mu, "sigma": t.class_sigma, "deviation": t.class_mu - t.region_offset,
        }))
        out["truth_regions"].append(pd.DataFrame({
            "indicator": k, "region_id": [r[0] for r in cat.REGIONS],
            "region_class_id": [r[2] for r in cat.REGIONS],
            "mu": t.region_mu, "deviation": t.region_deviation,
        }))
    return {name: pd.concat(parts, ignore_index=True) for name, parts in out.items()}
