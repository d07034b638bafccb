"""The runner: builds selected nodes in topological order and runs their data tests.

It returns result objects and keeps going: a failed node (or a failed
error-severity test) marks its descendants as skipped, naming the cause, while
independent branches still build. A writing command holds target/tierpool.core.lock
for its whole duration.

Write, audit, publish: a node's error-severity tests that need nothing else from this
run are its audit. They run against the node's new relations before those are published
(see :meth:`Session.publishing`); one failure and the node is not published, every one
of its relations keeps its previous contents, and its descendants are skipped. Warn
tests, and tests that also read relations built later, run after publishing.

Library API (the CLI is a thin layer over it)::

    from tierpool.core.project import load_project
    from tierpool.core import runner
    results = runner.build(load_project("."), runner.RunOptions(select=["residuals+"]))
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from tierpool import constants as c
from tierpool.core import artifacts
from tierpool.core.graph import Graph
from tierpool.core.lock import BuildLock
from tierpool.core.materialize import Session, build_node, resolve
from tierpool.core.nodes import DataTest, Node
from tierpool.core.results import NodeResult, Reporter, RunOptions, RunResults
from tierpool.core.selection import select_nodes
from tierpool.core.state import UNCHANGED, UP_TO_DATE, BuildState
from tierpool.errors import TierpoolError

if TYPE_CHECKING:
    from tierpool.core.project_model import Project

__all__ = ["RunOptions", "RunResults", "NodeResult", "build", "run", "seed", "test", "execute"]

COMMAND_KINDS = {
    "build": ("seed", "source", "sql", "python"),
    "run": ("source", "sql", "python"),
    "seed": ("seed",),
    "test": (),
}


def select_names(
    project: Project, graph: Graph, select: list[str] | None, exclude: list[str] | None
) -> list[str]:
    """Selected node names in build order (``--select`` / ``--exclude`` syntax)."""
    return select_nodes(project, graph, select, exclude)


def tests_for(project: Project, selected: Iterable[str]) -> list[DataTest]:
    """Data tests attached to any of the selected nodes, sorted by name."""
    chosen = set(selected)
    owner = project.relation_owner
    return [
        t for name, t in sorted(project.tests.items())
        if any(owner.get(r) in chosen for r in (t.attached_to or t.depends_on))
    ]


def build(project: Project, options: RunOptions | None = None, reporter: Reporter | None = None) -> RunResults:
    """Seeds, sources, models and their tests (each node's tests right after it)."""
    return execute(project, "build", options, reporter)


def run(project: Project, options: RunOptions | None = None, reporter: Reporter | None = None) -> RunResults:
    """Sources, SQL and Python models only (no seeds, no tests)."""
    return execute(project, "run", options, reporter)


def seed(project: Project, options: RunOptions | None = None, reporter: Reporter | None = None) -> RunResults:
    """Load the selected seeds."""
    return execute(project, "seed", options, reporter)


def test(project: Project, options: RunOptions | None = None, reporter: Reporter | None = None) -> RunResults:
    """Run the data tests attached to the selected nodes against the existing warehouse."""
    return execute(project, "test", options, reporter)


def execute(
    project: Project, command: str, options: RunOptions | None = None, reporter: Reporter | None = None
) -> RunResults:
    """Run ``command`` (build, run, seed, test) and write target/run_results.json.

    Raises:
        DatabaseError: The warehouse is locked by another build or process.
        ConfigError: A selector names nothing.
    """
    options = options or RunOptions()
    started = time.perf_counter()
    graph = project.graph()
    selected = select_names(project, graph, options.select, options.exclude)
    kinds = COMMAND_KINDS[command]
    nodes = [n for n in selected if project.nodes[n].kind in kinds]
    tests = tests_for(project, selected) if command in ("build", "test") else []
    artifacts.write_manifest(project, graph)
    results = RunResults(command=command, args=options.args)
    run = _Run(project, graph, options, reporter or Reporter(), results, len(nodes) + len(tests))
    adapter = run.session.adapter
    lock = BuildLock(project.target_dir / c.LOCK_FILE, adapter.description, f"tierpool {command}")
    with lock:
        # `tierpool test` is asked for explicitly: it reruns every test (and records passes).
        run.state = BuildState(project, use_stored=not options.full_refresh and command != "test",
                               key=adapter.state_key)
        try:
            run.go(nodes, tests)
        finally:
            run.session.close()
            run.state.save()
    results.elapsed = time.perf_counter() - started
    artifacts.write_run_results(project, results)
    return results


class _Run:
    """State of one run: results so far and which nodes are blocked, and why."""

    def __init__(
        self, project: Project, graph: Graph, options: RunOptions, reporter: Reporter,
        results: RunResults, total: int,
    ) -> None:
        self.project, self.graph, self.options = project, graph, options
        self.reporter, self.results, self.total = reporter, results, total
        self.session = Session(project.target, project.root)
        self.blocked: dict[str, str] = {}
        self.state = BuildState(project, use_stored=False, key="")  # replaced under the lock
        self.status: dict[str, str] = {}
        self.index = 0
        self.in_run: set[str] = set()  # nodes this run builds
        self.pending: list[DataTest] = []  # tests not run yet

    def go(self, nodes: list[str], tests: list[DataTest]) -> None:
        self.in_run = set(nodes)
        self.pending = list(tests)
        self._run_ready()
        for name in nodes:
            self._run_node(self.project.nodes[name])
            self._run_ready()

    def _required(self, test: DataTest) -> set[str]:
        owner = self.project.relation_owner
        rels = set(test.attached_to) | set(test.depends_on)
        return {owner[r] for r in rels if r in owner and owner[r] in self.in_run}

    def _run_ready(self) -> None:
        done = set(self.status)
        required_by = {t.name: self._required(t) for t in self.pending}
        ready = [t for t in self.pending if required_by[t.name] <= done]
        if not ready:
            return
        self.pending = [t for t in self.pending if not required_by[t.name] <= done]
        runnable = [t for t in ready if all(self.status[n] == "success" for n in required_by[t.name])]
        runnable_names = {t.name for t in runnable}
        for position, test in enumerate(ready, start=1):
            if test.name in runnable_names:
                self.reporter.start(self.index + position, self.total, "test", test.name)
        ran = dict(zip((t.name for t in runnable), self._test_results(runnable), strict=True))
        for test in ready:
            self._record_test(test, required_by[test.name], ran.get(test.name))

    def _audit_tests(self, node: Node) -> list[DataTest]:
        """Error-severity tests on ``node`` that can run as soon as it is written."""
        owner = self.project.relation_owner
        built = {name for name, status in self.status.items() if status == "success"}
        return [
            t for t in self.pending
            if t.severity == "error" and node.name in {owner.get(r) for r in t.attached_to}
            and self._required(t) - {node.name} <= built
        ]

    def _record(self, result: NodeResult) -> None:
        self.results.results.append(result)
        self.reporter.finish(self.index, self.total, result)

    def _run_node(self, node: Node) -> None:
        self.index += 1
        if node.name in self.blocked:
            self.status[node.name] = "skipped"
            self._record(NodeResult(node.name, node.kind, "skipped", message=self.blocked[node.name]))
            return
        self.reporter.start(self.index, self.total, node.kind, node.name)
        audit_tests = self._audit_tests(node)
        for test in audit_tests:
            self.pending.remove(test)
        result, audited = self._build(node, audit_tests)
        self.status[node.name] = result.status
        if result.status == "error":
            failed = [r.name for r in audited or () if r.status in ("fail", "error")]
            why = f" test {', '.join(failed)}" if failed else ""
            self._block_downstream(node.name, f"skipped: upstream {node.name} failed{why}")
        self._record(result)
        if audited is None:  # not written (unchanged, or failed before its audit)
            self.pending.extend(audit_tests)
            return
        for test_result in audited:
            self.index += 1
            self._record(test_result)

    def _fingerprint(self, node: Node) -> str | None:
        try:
            return self.state.node_fingerprint(node)
        except OSError:  # e.g. a file vanished while being hashed: just build the node
            return None

    def _build(self, node: Node, tests: list[DataTest]) -> tuple[NodeResult, list[NodeResult] | None]:
        """Build ``node`` with ``tests`` as its audit; returns its result and the tests'.

        The tests' results are None when the audit did not run.
        """
        started = time.perf_counter()
        result = NodeResult(node.name, node.kind, "success")
        fingerprint = self._fingerprint(node) if node.kind != "python" else None
        if self.state.can_skip(node, fingerprint, self.session.kind(node.name)):
            self.state.record_node(node, fingerprint)
            result.message, result.unchanged = UP_TO_DATE, True
            result.execution_time = time.perf_counter() - started
            return result, None
        previous, existed = {}, {}
        if node.kind == "python":
            previous = self.state.previous_outputs(node)
            existed = {rel: self.session.kind(rel) is not None for rel in node.relations}
            # Forgotten on disk before the model runs: if this process dies after the
            # outputs are written, the next build cannot take them as unchanged.
            self.state.forget_node(node)
            self.state.save()

        def record() -> None:  # before the audit: test keys include the new fingerprints
            if node.kind == "python":
                self.state.record_python(node, previous, self.session.written, existed)
            else:
                self.state.record_node(node, fingerprint)

        audited: list[NodeResult] | None = None
        audit_seconds = 0.0  # reported as the tests' time, not the node's

        def audit(staged: dict[str, str]) -> None:
            nonlocal audited, audit_seconds
            record()
            begun = time.perf_counter()
            audited = self._audit(tests, staged)
            audit_seconds = time.perf_counter() - begun
            failed = [r for r in audited if r.status in ("fail", "error")]
            if failed:
                raise _AuditFailed(node, failed)

        try:
            result.rows, result.message = build_node(
                self.session, node, self._ctx_args(), audit if tests else None
            )
        except Exception as exc:
            result.status = "error"
            result.message = self._error_message(node, exc)
            if not isinstance(exc, _AuditFailed):
                result.traceback = traceback.format_exc()
            self.state.forget_node(node)
        else:
            if not tests:
                record()
        if node.kind == "python" and result.status == "success":
            self.state.save()
        result.execution_time = time.perf_counter() - started - audit_seconds
        return result, audited

    def _audit(self, tests: list[DataTest], staged: dict[str, str]) -> list[NodeResult]:
        for offset, test in enumerate(tests, start=1):
            self.reporter.start(self.index + offset, self.total, "test", test.name)
        return self._test_results(tests, staged)

    def _error_message(self, node: Node, exc: Exception) -> str:
        if isinstance(exc, TierpoolError):
            return str(exc)
        where = node.name
        if node.path is not None:
            where = self.project.display(resolve(self.project.root, node.path))
        return f"{where}: {exc}".strip()

    def _ctx_args(self) -> dict[str, Any]:
        opts = {k: v for k, v in self.options.options.items() if v is not None}
        opts.setdefault("refit", False)
        opts["progress"] = self.options.progress
        return {
            "vars": {**self.project.vars, **opts, **self.options.vars},
            "options": opts,
            "target_dir": self.project.target_dir,
            "log": self.reporter.log,
            "progress": self.options.progress,
        }

    def _block_downstream(self, name: str, reason: str) -> None:
        for child in self.graph.downstream(name):
            self.blocked.setdefault(child, reason)

    def _record_test(self, test: DataTest, required: set[str], result: NodeResult | None) -> None:
        """Record a test's result (None: something it reads did not build)."""
        self.index += 1
        if result is None:
            failed = sorted(n for n in required if self.status.get(n) != "success")
            result = NodeResult(
                test.name, "test", "skipped",
                message=f"skipped: {', '.join(failed)} did not build",
                relation=", ".join(test.attached_to),
            )
        elif result.status == "fail":
            owner = self.project.relation_owner
            for rel in test.attached_to:
                if rel in owner:
                    self._block_downstream(owner[rel], f"skipped: test {test.name} failed")
        self._record(result)

    def _test_results(self, tests: list[DataTest], staged: dict[str, str] | None = None) -> list[NodeResult]:
        """Run tests (taking the last pass of those whose inputs did not change), in order.

        Engines that batch tests count them in one query. Otherwise they run one by one,
        and after a test that could not run the rest are skipped: on some engines a failed
        statement aborts the transaction the audit runs in.
        """
        from tierpool.core.execute_tests import run_data_test, run_data_tests

        keys = {t.name: self.state.test_key(t) for t in tests}
        results: dict[str, NodeResult] = {}
        for test in tests:
            if self.state.test_unchanged(test, keys[test.name]):
                relation = ", ".join(test.attached_to) or ", ".join(test.depends_on)
                results[test.name] = NodeResult(test.name, "test", "pass", message=UNCHANGED,
                                                relation=relation, failures=0, unchanged=True)
        to_run = [t for t in tests if t.name not in results]
        try:
            adapter = self.session.open()
            if adapter.batches_tests:
                ran = run_data_tests(adapter, to_run, staged)
            else:
                ran = []
                for test in to_run:
                    if staged is not None and any(r.status == "error" for r in ran):
                        ran.append(NodeResult(test.name, "test", "skipped", relation=", ".join(test.attached_to),
                                              message="skipped: an earlier test could not run"))
                    else:
                        ran.append(run_data_test(adapter, test, staged))
        except TierpoolError as exc:  # e.g. the database is locked or missing
            ran = [NodeResult(t.name, "test", "error", message=str(exc)) for t in to_run]
        for test, result in zip(to_run, ran, strict=True):
            self.state.record_test(test, keys[test.name], result.status)
            results[test.name] = result
        return [results[t.name] for t in tests]


class _AuditFailed(TierpoolError):
    """Error-severity tests failed on a node's new relations: nothing was published."""

    def __init__(self, node: Node, failed: list[NodeResult]) -> None:
        names = ", ".join(r.name for r in failed)
        kept = ", ".join(node.relations)
        super().__init__(
            f"not published: {len(failed)} error test(s) failed on the new {kept} ({names}); "
            f"{'they keep' if len(node.relations) > 1 else 'it keeps'} the previous contents. "
            "Fix the data or the model, then rebuild."
        )
