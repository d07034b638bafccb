"""pydantic model of tierpool_project.yml (imported only to report a problem; see config_checks).

tierpool_project.yml holds ``name`` and free-form ``vars`` (handed to Python models as
``ctx.vars``). dbt's ``version``, ``config-version`` and ``profile: tierpool`` are accepted;
dbt's project-wide settings (paths, hooks, ``models:``/``seeds:`` config trees, packages)
are refused with the reason (:data:`tierpool.core.config_checks.PROJECT_UNSUPPORTED`).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from tierpool import constants as c


class TierpoolProject(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, coerce_numbers_to_str=True)

    name: str | None = None
    vars: dict[str, Any] | None = None
    version: str | None = None
    profile: Literal[c.PROFILE_NAME] | None = None  # type: ignore[valid-type]
    config_version: Literal[2] | None = Field(None, alias="config-version")
