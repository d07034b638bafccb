"""``tierpool retry``: rerun what failed or was skipped in the last run, as dbt retry does.

The last run is target/run_results.json. Its failed and skipped nodes are selected again,
and so are the nodes whose tests failed, errored or were skipped (their tests rerun with
them; a node whose inputs did not change is not rebuilt, see the build state). The
command and its flags are the last run's.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tierpool import constants as c
from tierpool.errors import ConfigError

if TYPE_CHECKING:
    from tierpool.core.project_model import Project

RETRIED = ("error", "fail", "skipped")
# Flags of the last run that retry passes on (selection is replaced; the target is kept).
REUSED_FLAGS = ("fit_tune", "fit_draws", "fit_chains", "fit_id", "refit", "vars_text",
                "no_progress", "full_refresh", "threads", "fail_fast")


@dataclass
class RetryPlan:
    """What ``tierpool retry`` runs: the last command, its target and flags, the nodes to redo."""

    command: str
    target: str | None
    select: list[str] = field(default_factory=list)
    flags: dict[str, Any] = field(default_factory=dict)


def retry_plan(project: Project) -> RetryPlan:
    """The nodes of the last run (target/run_results.json) to run again.

    Raises:
        ConfigError: There is no readable run_results.json.
    """
    path = project.target_dir / c.RUN_RESULTS_FILE
    try:
        last = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"nothing to retry: no {project.display(path)} (run `tierpool build` first)") from None
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read {project.display(path)}: {exc}; run the command again instead") from exc
    args = last.get("args") or {}
    command = args.get("command") or last.get("metadata", {}).get("command", "build")
    owner = project.relation_owner
    names: set[str] = set()
    for result in last.get("results", []):
        if result.get("status") not in RETRIED:
            continue
        name = result.get("name", "")
        if name in project.nodes:
            names.add(name)
        elif name in project.tests:
            test = project.tests[name]
            names |= {owner[r] for r in test.attached_to or test.depends_on if r in owner}
    flags = {k: args[k] for k in REUSED_FLAGS if args.get(k)}
    return RetryPlan(command, args.get("target"), sorted(names), flags)
