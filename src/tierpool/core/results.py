"""Result objects of a run: what happened to each node and test (data, no behaviour)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

RESOURCE_TYPES = {"seed": "seed", "source": "source", "sql": "model", "python": "model", "test": "test"}
# Statuses that make a run fail (exit code 1).
FAILING = ("error", "fail")


def unique_id(kind: str, name: str) -> str:
    """dbt-like id, e.g. ``model.residuals``, ``test.not_null_models_model_id``."""
    return f"{RESOURCE_TYPES.get(kind, kind)}.{name}"


@dataclass
class RunOptions:
    """What to run and how (built once by the CLI, passed explicitly).

    Attributes:
        select: ``--select`` selectors (None = everything).
        exclude: ``--exclude`` selectors.
        vars: CLI ``--vars`` (merged over project vars and options for ``ctx.vars``).
        options: Run options for Python models (fit_tune, fit_draws, fit_chains,
            fit_id, refit); None values are dropped.
        progress: Show progress bars in Python models.
        args: The invocation's arguments, recorded in run_results.json.
        full_refresh: Ignore the build state (target/state.json): rebuild every node
            and rerun every test, even those unchanged since they last succeeded.
        resource_types: ``--resource-type``: keep only these kinds (model, seed, source, test).
        threads: Nodes built at once (None: the target's ``threads``, default 1).
        fail_fast: After the first failure start nothing new; what has not started is
            skipped.
    """

    select: list[str] | None = None
    exclude: list[str] | None = None
    vars: dict[str, Any] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)
    progress: bool = True
    args: dict[str, Any] = field(default_factory=dict)
    full_refresh: bool = False
    resource_types: list[str] | None = None
    threads: int | None = None
    fail_fast: bool = False


@dataclass
class NodeResult:
    """The outcome of one node or data test.

    status is one of success, error, skipped (nodes) or pass, fail, warn, error,
    skipped (tests).
    """

    name: str
    kind: str
    status: str
    execution_time: float = 0.0
    rows: int | None = None
    message: str = ""
    relation: str = ""
    failures: int | None = None
    examples: list[dict[str, Any]] = field(default_factory=list)
    traceback: str = ""  # shown with --debug only; not written to run_results.json
    unchanged: bool = False  # not rebuilt / rerun: inputs unchanged since it last succeeded
    materialized: str = ""  # view, table, append, ... (nodes); shown in the build log

    @property
    def unique_id(self) -> str:
        return unique_id(self.kind, self.name)

    def to_json(self) -> dict[str, Any]:
        """The run_results.json entry."""
        out: dict[str, Any] = {
            "unique_id": self.unique_id,
            "name": self.name,
            "resource_type": RESOURCE_TYPES.get(self.kind, self.kind),
            "status": self.status,
            "execution_time": round(self.execution_time, 4),
            "rows": self.rows,
            "message": self.message,
        }
        if self.kind == "test":
            out.update(relation=self.relation, failures=self.failures, examples=self.examples)
        return out


@dataclass
class RunResults:
    """All results of one command, in execution order."""

    command: str
    results: list[NodeResult] = field(default_factory=list)
    elapsed: float = 0.0
    args: dict[str, Any] = field(default_factory=dict)

    def counts(self) -> dict[str, int]:
        """PASS / WARN / ERROR / SKIP / TOTAL, as in the summary line."""
        statuses = [r.status for r in self.results]
        return {
            "PASS": sum(s in ("success", "pass") for s in statuses),
            "WARN": sum(s == "warn" for s in statuses),
            "ERROR": sum(s in FAILING for s in statuses),
            "SKIP": sum(s == "skipped" for s in statuses),
            "TOTAL": len(statuses),
        }

    @property
    def success(self) -> bool:
        return not any(r.status in FAILING for r in self.results)

    @property
    def exit_code(self) -> int:
        return 0 if self.success else 1

    def by_name(self, name: str) -> NodeResult:
        """The result of a node or test by name (KeyError if it did not run)."""
        for result in self.results:
            if result.name == name:
                return result
        raise KeyError(name)


@dataclass
class ResultGroup:
    """A node's result with the tests reported under it, in build order.

    Attributes:
        index: 1-based position among the run's groups (``3`` of ``3/12``).
        total: Number of groups in the run.
        node: The node's result; None for a test that reads no node of this run (what
            ``tierpool test`` runs): it is reported on its own, as ``tests[0]``.
        tests: The node's tests: its audit and those that needed it last.
    """

    index: int
    total: int
    node: NodeResult | None
    tests: list[NodeResult] = field(default_factory=list)


class Reporter:
    """Receives progress events; the default reports nothing (library use).

    ``start`` and ``log`` come as things happen (``log`` possibly from a worker thread);
    ``finish`` comes in build order, whatever order parallel nodes end in, so the log of
    a run is the same for any number of threads.
    """

    def start(self, kind: str, name: str) -> None:
        """A node starts building (or a test starts, for tests without a node)."""

    def finish(self, group: ResultGroup) -> None:
        """A node and its tests are done."""

    def log(self, message: str, node: str = "") -> None:
        """A Python model called ``ctx.log`` (``node``: its name)."""
