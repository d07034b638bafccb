"""vars.fit.hierarchy in the calibration warehouse: read, checked at load time, part of the fingerprint."""

from __future__ import annotations

from dataclasses import replace

import pytest

from tierpool.calibration.settings import read_settings
from tierpool.errors import ConfigError
from tierpool.fit import DEFAULT_HIERARCHY, default_spec
from tierpool.fit.priors import Prior


def _with(**changes):
    return {"fit": {"hierarchy": {**DEFAULT_HIERARCHY, **changes}}}


def test_default_hierarchy_fits_todays_model_and_changed_priors_reach_the_spec():
    verbatim = read_settings({"fit": {"global_level": False}}, {})
    assert read_settings(_with(), {}).spec() == verbatim.spec()  # DEFAULT_HIERARCHY is DESIGN §5 verbatim
    assert read_settings({}, {}).spec() == replace(default_spec(global_level=True), resolution=verbatim.resolution)
    family = {**DEFAULT_HIERARCHY["levels"][0], "scale": "halfcauchy(0.5)"}
    settings = read_settings(_with(levels=[family, DEFAULT_HIERARCHY["levels"][1]],
                                   **{"global": {"location": "normal(-1, 2)"}}), {})
    spec = settings.spec()
    assert spec.main.levels[0].scale == Prior("halfcauchy", (0.5,))
    assert spec.global_level.location == Prior("normal", (-1.0, 2.0))
    assert spec.resolution == settings.resolution  # vars.fit.resolution still applies
    # a changed prior changes the fit's fingerprint: the next build refits
    assert settings.fingerprint_settings() != verbatim.fingerprint_settings()


@pytest.mark.parametrize(("vars_", "message"), [
    (_with(residual_sd={"pooling": "shared"}), "vars.fit.hierarchy.residual_sd.pooling: the calibration warehouse"),
    ({"fit": {"hierarchy": {"levels": [{"name": "county", "column": "county"}]}}},
     "the calibration warehouse fits the levels family (family_id), model (model_id)"),
    (_with(levels=[{"name": "family", "column": "family_id", "scale": "halfcauchy"}, {"name": "model", "column": "model_id"}]),
     "vars.fit.hierarchy.levels[0].scale: 'halfcauchy' takes 1 argument(s): halfcauchy(beta)"),
    ({"fit": {"global_level": True, "hierarchy": DEFAULT_HIERARCHY}}, "set either global_level or hierarchy"),
])
def test_bad_hierarchy_fails_at_load_naming_the_key(vars_, message):
    with pytest.raises(ConfigError) as err:
        read_settings(vars_, {})
    assert message in str(err.value) and "tierpool_project.yml" in str(err.value)
