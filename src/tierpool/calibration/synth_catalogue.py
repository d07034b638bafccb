"""The demo catalogue: real-world model families, models, datacentre regions.

These are the reference tables of DESIGN §4 (``families``, ``models``,
``region_classes``, ``regions``) used by :mod:`tierpool.calibration.synth`. Parameter counts
and release dates are the publicly announced ones; where a vendor never disclosed
a size (``mistral-medium-3``, ``command-a``) the figure is a public estimate and is
marked as such in the docstring below, not in the data. The numbers only shape the
synthetic tier-2 estimates: nothing statistical depends on them being exact.

The catalogue is deliberately a little awkward, the way real catalogues are:
mixture-of-experts models next to dense ones, a family (``jamba``) that the
generator never measures at tier 3, and a region class (``latam-hydro``) with no
tier-3 telemetry at all, so the prior fallbacks (family, class, global) are
exercised by the demo build.
"""

from __future__ import annotations

import pandas as pd

# family_id, display_name, vendor
FAMILIES: tuple[tuple[str, str, str], ...] = (
    ("llama", "Llama", "Meta"),
    ("mistral", "Mistral", "Mistral AI"),
    ("gemma", "Gemma", "Google"),
    ("qwen", "Qwen", "Alibaba Cloud"),
    ("deepseek", "DeepSeek", "DeepSeek"),
    ("phi", "Phi", "Microsoft"),
    ("gpt-oss", "gpt-oss", "OpenAI"),
    ("command", "Command", "Cohere"),
    ("falcon", "Falcon", "Technology Innovation Institute"),
    ("olmo", "OLMo", "Allen Institute for AI"),
    ("granite", "Granite", "IBM"),
    ("jamba", "Jamba", "AI21 Labs"),
    ("yi", "Yi", "01.AI"),
)

# model_id, family_id, architecture, total_params_b, active_params_b, released_on
# (mistral-medium-3 and command-a sizes: public estimates, the vendors did not disclose them)
MODELS: tuple[tuple[str, str, str, float, float, str], ...] = (
    ("llama-3.1-8b", "llama", "dense", 8.0, 8.0, "2024-07-23"),
    ("llama-3.1-70b", "llama", "dense", 70.6, 70.6, "2024-07-23"),
    ("llama-3.1-405b", "llama", "dense", 405.0, 405.0, "2024-07-23"),
    ("llama-3.2-1b", "llama", "dense", 1.24, 1.24, "2024-09-25"),
    ("llama-3.2-3b", "llama", "dense", 3.21, 3.21, "2024-09-25"),
    ("llama-3.3-70b", "llama", "dense", 70.6, 70.6, "2024-12-06"),
    ("llama-4-scout", "llama", "moe", 109.0, 17.0, "2025-04-05"),
    ("llama-4-maverick", "llama", "moe", 400.0, 17.0, "2025-04-05"),
    ("mistral-7b", "mistral", "dense", 7.3, 7.3, "2023-09-27"),
    ("mixtral-8x7b", "mistral", "moe", 46.7, 12.9, "2023-12-11"),
    ("mixtral-8x22b", "mistral", "moe", 141.0, 39.0, "2024-04-17"),
    ("mistral-nemo-12b", "mistral", "dense", 12.2, 12.2, "2024-07-18"),
    ("mistral-small-3", "mistral", "dense", 24.0, 24.0, "2025-01-30"),
    ("mistral-medium-3", "mistral", "dense", 70.0, 70.0, "2025-05-07"),
    ("mistral-large-2", "mistral", "dense", 123.0, 123.0, "2024-07-24"),
    ("ministral-8b", "mistral", "dense", 8.0, 8.0, "2024-10-16"),
    ("gemma-2-2b", "gemma", "dense", 2.6, 2.6, "2024-07-31"),
    ("gemma-2-9b", "gemma", "dense", 9.2, 9.2, "2024-06-27"),
    ("gemma-2-27b", "gemma", "dense", 27.2, 27.2, "2024-06-27"),
    ("gemma-3-1b", "gemma", "dense", 1.0, 1.0, "2025-03-12"),
    ("gemma-3-4b", "gemma", "dense", 4.3, 4.3, "2025-03-12"),
    ("gemma-3-12b", "gemma", "dense", 12.2, 12.2, "2025-03-12"),
    ("gemma-3-27b", "gemma", "dense", 27.4, 27.4, "2025-03-12"),
    ("qwen2.5-7b", "qwen", "dense", 7.6, 7.6, "2024-09-19"),
    ("qwen2.5-14b", "qwen", "dense", 14.7, 14.7, "2024-09-19"),
    ("qwen2.5-32b", "qwen", "dense", 32.5, 32.5, "2024-09-19"),
    ("qwen2.5-72b", "qwen", "dense", 72.7, 72.7, "2024-09-19"),
    ("qwen3-8b", "qwen", "dense", 8.2, 8.2, "2025-04-29"),
    ("qwen3-32b", "qwen", "dense", 32.8, 32.8, "2025-04-29"),
    ("qwen3-30b-a3b", "qwen", "moe", 30.5, 3.3, "2025-04-29"),
    ("qwen3-235b-a22b", "qwen", "moe", 235.0, 22.0, "2025-04-29"),
    ("deepseek-v2-lite", "deepseek", "moe", 15.7, 2.4, "2024-05-16"),
    ("deepseek-v2", "deepseek", "moe", 236.0, 21.0, "2024-05-06"),
    ("deepseek-coder-v2", "deepseek", "moe", 236.0, 21.0, "2024-06-17"),
    ("deepseek-v3", "deepseek", "moe", 671.0, 37.0, "2024-12-26"),
    ("deepseek-r1", "deepseek", "moe", 671.0, 37.0, "2025-01-20"),
    ("deepseek-r1-distill-llama-70b", "deepseek", "dense", 70.6, 70.6, "2025-01-20"),
    ("phi-3-mini", "phi", "dense", 3.8, 3.8, "2024-04-23"),
    ("phi-3-medium", "phi", "dense", 14.0, 14.0, "2024-05-21"),
    ("phi-3.5-moe", "phi", "moe", 41.9, 6.6, "2024-08-20"),
    ("phi-4", "phi", "dense", 14.7, 14.7, "2024-12-12"),
    ("phi-4-mini", "phi", "dense", 3.8, 3.8, "2025-02-26"),
    ("gpt-oss-20b", "gpt-oss", "moe", 21.0, 3.6, "2025-08-05"),
    ("gpt-oss-120b", "gpt-oss", "moe", 117.0, 5.1, "2025-08-05"),
    ("command-r", "command", "dense", 35.0, 35.0, "2024-03-11"),
    ("command-r-plus", "command", "dense", 104.0, 104.0, "2024-04-04"),
    ("command-r7b", "command", "dense", 8.0, 8.0, "2024-12-13"),
    ("command-a", "command", "dense", 111.0, 111.0, "2025-03-13"),
    ("falcon-7b", "falcon", "dense", 7.0, 7.0, "2023-03-15"),
    ("falcon-40b", "falcon", "dense", 40.0, 40.0, "2023-05-25"),
    ("falcon-180b", "falcon", "dense", 180.0, 180.0, "2023-09-06"),
    ("falcon-3-10b", "falcon", "dense", 10.3, 10.3, "2024-12-17"),
    ("falcon-mamba-7b", "falcon", "dense", 7.3, 7.3, "2024-08-12"),
    ("olmo-2-7b", "olmo", "dense", 7.3, 7.3, "2024-11-26"),
    ("olmo-2-13b", "olmo", "dense", 13.7, 13.7, "2024-11-26"),
    ("olmo-2-32b", "olmo", "dense", 32.2, 32.2, "2025-03-13"),
    ("olmoe-1b-7b", "olmo", "moe", 6.9, 1.3, "2024-09-03"),
    ("granite-3.0-2b", "granite", "dense", 2.5, 2.5, "2024-10-21"),
    ("granite-3.0-8b", "granite", "dense", 8.2, 8.2, "2024-10-21"),
    ("granite-3.0-3b-a800m", "granite", "moe", 3.3, 0.8, "2024-10-21"),
    ("granite-3.1-8b", "granite", "dense", 8.2, 8.2, "2024-12-18"),
    ("jamba-1.5-mini", "jamba", "moe", 52.0, 12.0, "2024-08-22"),
    ("jamba-1.5-large", "jamba", "moe", 398.0, 94.0, "2024-08-22"),
    ("yi-1.5-6b", "yi", "dense", 6.1, 6.1, "2024-05-13"),
    ("yi-1.5-9b", "yi", "dense", 8.8, 8.8, "2024-05-13"),
    ("yi-1.5-34b", "yi", "dense", 34.4, 34.4, "2024-05-13"),
)

# region_class_id, description, grid carbon intensity (gCO2e/kWh, used for tier-2 gco2e)
REGION_CLASSES: tuple[tuple[str, str, float], ...] = (
    ("western-eu-grid", "Western European EU-grid datacentre", 230.0),
    ("nordic-low-carbon", "Nordic low-carbon datacentre (hydro/geothermal)", 25.0),
    ("us-mixed-grid", "United States mixed-grid datacentre", 390.0),
    ("apac-coal-heavy", "Asia-Pacific coal-heavy grid datacentre", 620.0),
    ("latam-hydro", "Latin American hydro-dominated grid datacentre", 110.0),
)

# region_id, provider, region_class_id, power usage effectiveness (tier-2 input)
REGIONS: tuple[tuple[str, str, str, float], ...] = (
    ("scaleway-fr-par-1", "Scaleway", "western-eu-grid", 1.35),
    ("scaleway-fr-par-2", "Scaleway", "western-eu-grid", 1.25),
    ("scaleway-nl-ams-1", "Scaleway", "western-eu-grid", 1.30),
    ("aws-eu-west-3", "AWS", "western-eu-grid", 1.15),
    ("gcp-europe-west4", "Google Cloud", "western-eu-grid", 1.10),
    ("azure-germanywestcentral", "Microsoft Azure", "western-eu-grid", 1.18),
    ("atnorth-sto-1", "atNorth", "nordic-low-carbon", 1.20),
    ("atnorth-is-rey-1", "atNorth", "nordic-low-carbon", 1.15),
    ("aws-eu-north-1", "AWS", "nordic-low-carbon", 1.12),
    ("gcp-europe-north1", "Google Cloud", "nordic-low-carbon", 1.09),
    ("aws-us-east-1", "AWS", "us-mixed-grid", 1.20),
    ("aws-us-west-2", "AWS", "us-mixed-grid", 1.15),
    ("azure-eastus", "Microsoft Azure", "us-mixed-grid", 1.22),
    ("gcp-us-central1", "Google Cloud", "us-mixed-grid", 1.10),
    ("aws-ap-south-1", "AWS", "apac-coal-heavy", 1.45),
    ("gcp-asia-east1", "Google Cloud", "apac-coal-heavy", 1.25),
    ("azure-australiaeast", "Microsoft Azure", "apac-coal-heavy", 1.30),
    ("gcp-southamerica-east1", "Google Cloud", "latam-hydro", 1.20),
)

# The indicator catalogue (seed ``indicators``): indicator, unit, plausible range
# [min_value, max_value] of one request's value, description. Staging rejects a fact row
# whose indicator is not listed ('unknown_indicator') or whose value lies outside the range
# ('out_of_range'); see docs/data-contract.md. The ranges bound the physically POSSIBLE,
# not the usual, so heavy-tailed but real rows are never cut: one request uses from
# ~1e-7 Wh (one token of a 1B model) to ~1e5 Wh (an hour on a multi-node deployment),
# and the bounds leave five orders of magnitude each side. gCO2e = energy x grid
# intensity (~0.005 to ~1.2 g/Wh), with the same margin. What they catch: overflow and
# sentinel values (1e300, 3.4e38, 1.8e308), denormal garbage (5e-324), unit blunders of
# many orders of magnitude.
INDICATOR_CATALOGUE: tuple[tuple[str, str, float, float, str], ...] = (
    ("energy_wh", "Wh", 1e-12, 1e10,
     "Energy of one inference request, watt-hours (including datacentre overhead, PUE)."),
    ("gco2e", "gCO2e", 1e-15, 1e10,
     "Greenhouse-gas emissions of one inference request, grams of CO2 equivalent."),
)
INDICATORS: tuple[str, ...] = tuple(row[0] for row in INDICATOR_CATALOGUE)

# Tier-3 coverage, per model, as (plan, value): ("none", 0) never measured; ("few", k)
# exactly k measured requests; ("rate", p) each request measured with probability p.
# Models not listed get ("rate", 0.05). A whole family (jamba) is never measured.
TIER3_PLAN: dict[str, tuple[str, float]] = {
    "jamba-1.5-mini": ("none", 0),
    "jamba-1.5-large": ("none", 0),
    "llama-3.1-405b": ("none", 0),
    "gemma-3-1b": ("none", 0),
    "command-r7b": ("none", 0),
    "falcon-mamba-7b": ("none", 0),
    "mistral-large-2": ("few", 3),
    "gpt-oss-120b": ("few", 2),
    "yi-1.5-34b": ("few", 4),
    "olmoe-1b-7b": ("few", 1),
    "granite-3.0-3b-a800m": ("few", 3),
    "phi-3.5-moe": ("few", 4),
    "llama-3.1-8b": ("rate", 0.85),
    "mistral-7b": ("rate", 0.8),
    "qwen2.5-7b": ("rate", 0.6),
    "mixtral-8x22b": ("rate", 0.5),
}
NEVER_MEASURED_FAMILY = "jamba"
# Regions without any tier-3 telemetry: one inside a measured class (exercises the class
# fallback) and the only region of latam-hydro (exercises the global fallback).
UNMEASURED_REGIONS: tuple[str, ...] = ("azure-australiaeast", "gcp-southamerica-east1")


def families_frame() -> pd.DataFrame:
    """The ``families`` reference table."""
    return pd.DataFrame(FAMILIES, columns=["family_id", "display_name", "vendor"])


def models_frame() -> pd.DataFrame:
    """The ``models`` reference table (released_on as a date)."""
    frame = pd.DataFrame(
        MODELS,
        columns=[
            "model_id", "family_id", "architecture", "total_params_b", "active_params_b",
            "released_on",
        ],
    )
    frame["released_on"] = pd.to_datetime(frame["released_on"]).dt.date
    return frame


def region_classes_frame() -> pd.DataFrame:
    """The ``region_classes`` reference table."""
    return pd.DataFrame([row[:2] for row in REGION_CLASSES], columns=["region_class_id", "description"])


def regions_frame() -> pd.DataFrame:
    """The ``regions`` reference table."""
    return pd.DataFrame([row[:3] for row in REGIONS], columns=["region_id", "provider", "region_class_id"])


def indicators_frame() -> pd.DataFrame:
    """The ``indicators`` catalogue: unit and plausible range of each indicator."""
    return pd.DataFrame(INDICATOR_CATALOGUE,
                        columns=["indicator", "unit", "min_value", "max_value", "description"])
