"""The runner: builds selected nodes in dependency order, up to ``threads`` at once, and runs
their data tests.

It returns result objects and keeps going: a failed node (or a failed
error-severity test) marks its descendants as skipped, naming the cause, while
independent branches still build (``--fail-fast``: nothing new starts). Which node may
start and the order results are reported in are :mod:`tierpool.core.scheduler`'s; a node is
built in a worker thread by :class:`tierpool.core.node_build.NodeBuilder`. A writing command
holds target/tierpool.lock for its whole duration.

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

import threading
import time
from collections.abc import Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import TYPE_CHECKING

from tierpool import constants as c
from tierpool.core import artifacts
from tierpool.core.graph import Graph
from tierpool.core.lock import BuildLock
from tierpool.core.materialize import Session
from tierpool.core.node_build import NodeBuilder
from tierpool.core.nodes import DataTest, Node
from tierpool.core.results import NodeResult, Reporter, RunOptions, RunResults
from tierpool.core.scheduler import NO_NODE, BuildPlan, ReportOrder, SessionPool
from tierpool.core.selection import resolve_selection, select_nodes
from tierpool.core.state import BuildState

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
    project: Project, graph: Graph, select: list[str] | None, exclude: list[str] | None,
    resource_types: Iterable[str] | None = None,
) -> list[str]:
    """Selected node names in build order: dbt's selector syntax (space = union, comma =
    intersection; see core/selection.py), then ``--resource-type`` (``resource_types``)."""
    return select_nodes(project, graph, select, exclude, resource_types=resource_types)


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
    chosen = resolve_selection(project, graph, options.select, options.exclude, options.resource_types)
    kinds = COMMAND_KINDS[command]
    nodes = [n for n in chosen.nodes if project.nodes[n].kind in kinds]
    tests = [project.tests[t] for t in sorted(chosen.tests)] if command in ("build", "test") else []
    artifacts.write_manifest(project, graph)
    results = RunResults(command=command, args=options.args)
    run = _Run(project, graph, options, reporter or Reporter(), results)
    adapter = run.session.adapter
    lock = BuildLock(project.target_dir / c.LOCK_FILE, adapter.description, f"tierpool {command}")
    with lock:
        # `tierpool test` is asked for explicitly: it reruns every test (and records passes).
        run.state = BuildState(project, use_stored=not options.full_refresh and command != "test",
                               key=adapter.state_key)
        run.session.state = run.state
        try:
            run.go(nodes, tests)
        finally:
            run.close()
            run.state.save()
    results.elapsed = time.perf_counter() - started
    artifacts.write_run_results(project, results)
    return results


class _Run:
    """State of one run: which nodes are done, blocked (and why), and what each test awaits.

    Everything here is changed by the main thread only; worker threads build nodes (with
    their audits) through their own sessions and hand back results. The build state is
    shared, under ``state_lock``.
    """

    def __init__(
        self, project: Project, graph: Graph, options: RunOptions, reporter: Reporter,
        results: RunResults,
    ) -> None:
        self.project, self.graph, self.options = project, graph, options
        self.reporter, self.results = reporter, results
        self.threads = max(1, options.threads or project.target.threads or 1)
        self.session = self._new_session()
        self.pool = SessionPool(self._new_session)
        self.blocked: dict[str, str] = {}
        self.state = BuildState(project, use_stored=False, key="")  # replaced under the lock
        self.state_lock = threading.RLock()
        self.status: dict[str, str] = {}
        self.pending: list[DataTest] = []  # tests not run yet
        self.python_running = 0  # Python models building now (idle connections are released)
        self.stopped = ""  # why nothing new starts (--fail-fast)

    def _new_session(self) -> Session:
        session = Session(self.project.target, self.project.root, full_refresh=self.options.full_refresh)
        session.state = getattr(self, "state", None)
        return session

    def close(self) -> None:
        self.pool.close()
        self.session.close()

    # -- scheduling ---------------------------------------------------------------------------

    def go(self, nodes: list[str], tests: list[DataTest]) -> None:
        self.builder = NodeBuilder(self.project, self.options, self.reporter, self.state, self.state_lock)
        self.plan = BuildPlan(self.project, self.graph, nodes, tests)
        self.order = ReportOrder(self.plan, nodes, tests, self.reporter, self.results)
        self.pending = list(tests)
        self._run_ready()
        waiting = list(nodes)
        if self.threads == 1:
            while waiting:
                name = self._next(waiting, running=False)
                assert name is not None  # with nothing running the relaxed rule always finds one
                waiting.remove(name)
                audit = self._start(name)
                if audit is not None:
                    self._finish(name, *self._build_node(self.project.nodes[name], audit, self.session))
            return
        pool = ThreadPoolExecutor(self.threads, thread_name_prefix="tierpool")
        try:
            self._go_parallel(pool, waiting)
        except BaseException:  # e.g. Ctrl-C: start nothing more; what runs ends with its transaction
            pool.shutdown(wait=False, cancel_futures=True)
            raise
        pool.shutdown()

    def _go_parallel(self, pool: ThreadPoolExecutor, waiting: list[str]) -> None:
        """Keep up to ``threads`` nodes building; handle each as it finishes (main thread)."""
        running: dict[Future, str] = {}
        while waiting or running:
            while waiting and len(running) < self.threads:
                name = self._next(waiting, running=bool(running))
                if name is None:
                    break
                waiting.remove(name)
                audit = self._start(name)
                if audit is not None:
                    running[pool.submit(self._in_worker, self.project.nodes[name], audit)] = name
            if not running:
                continue
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in sorted(done, key=lambda f: self.plan.order[running[f]]):
                self._finish(running.pop(future), *future.result())
            if self.python_running:  # the tests' connection too: let readers in during a fit
                self.session.release()

    def _next(self, waiting: list[str], running: bool) -> str | None:
        """The first waiting node (in build order) that may start now, if any."""
        finished = set(self.status)
        for strict in (True, False) if not running else (True,):
            for name in waiting:
                if self.stopped or name in self.blocked or self.plan.ready(name, finished, self.pending, strict):
                    return name
        return None

    def _start(self, name: str) -> list[DataTest] | None:
        """Start ``name``: its audit (taken from the pending tests); None if it is skipped."""
        node = self.project.nodes[name]
        reason = self.blocked.get(name) or self.stopped
        if reason:
            self.status[name] = "skipped"
            self.order.node(name, NodeResult(name, node.kind, "skipped", message=reason,
                                             materialized=_materialized(node)))
            self._run_ready()
            return None
        self.reporter.start(node.kind, name)
        audit = self._audit_tests(node)
        self.pending = [t for t in self.pending if t not in audit]
        return audit

    def _in_worker(
        self, node: Node, audit_tests: list[DataTest]
    ) -> tuple[NodeResult, list[NodeResult] | None, list[DataTest]]:
        session = self.pool.take()
        try:
            return self._build_node(node, audit_tests, session)
        finally:
            if self.python_running:
                session.release()
            self.pool.give(session)

    def _build_node(
        self, node: Node, audit_tests: list[DataTest], session: Session
    ) -> tuple[NodeResult, list[NodeResult] | None, list[DataTest]]:
        """Build a node with its audit (any thread); returns its result, the audit's, the audit."""
        if node.kind == "python":
            with self.state_lock:
                self.python_running += 1
            self.pool.release_idle()
        try:
            result, audited = self.builder.build(node, audit_tests, session)
        finally:
            if node.kind == "python":
                with self.state_lock:
                    self.python_running -= 1
        result.materialized = _materialized(node)
        return result, audited, audit_tests

    def _finish(self, name: str, result: NodeResult, audited: list[NodeResult] | None,
                audit_tests: list[DataTest]) -> None:
        """Record a built node and its audit (main thread), then run the tests now ready."""
        self.status[name] = result.status
        if result.status == "error":
            failed = [r.name for r in audited or () if r.status in ("fail", "error")]
            why = f" test {', '.join(failed)}" if failed else ""
            self._block_downstream(name, f"skipped: upstream {name} failed{why}")
            self._stop(name)
        self.order.node(name, result)
        if audited is None:  # not written (unchanged, or failed before its audit): run them later
            self.pending.extend(audit_tests)
        else:
            for test_result in audited:
                self.order.test(test_result)
        self._run_ready()

    def _stop(self, failed: str) -> None:
        if self.options.fail_fast and not self.stopped:
            self.stopped = f"skipped: --fail-fast after {failed} failed"

    # -- tests --------------------------------------------------------------------------------

    def _run_ready(self) -> None:
        """Run (or skip) every pending test whose nodes are all done."""
        done = set(self.status)
        ready = [t for t in self.pending if self.plan.required[t.name] <= done]
        if not ready:
            return
        self.pending = [t for t in self.pending if t not in ready]
        runnable = [t for t in ready if not self.stopped
                    and all(self.status[n] == "success" for n in self.plan.required[t.name])]
        for test in runnable:
            if self.plan.slot(test) == NO_NODE:
                self.reporter.start("test", test.name)
        ran = dict(zip((t.name for t in runnable), self.builder.test_results(runnable, self.session), strict=True))
        for test in ready:
            self._record_test(test, ran.get(test.name))

    def _audit_tests(self, node: Node) -> list[DataTest]:
        """Error-severity tests on ``node`` that run on its relations before they are published."""
        built = {name for name, status in self.status.items() if status == "success"}
        audit = []
        for test in self.pending:
            inputs = self.plan.audit_inputs(test, node.name)
            if inputs is not None and inputs <= built:
                audit.append(test)
        return audit

    def _record_test(self, test: DataTest, result: NodeResult | None) -> None:
        """Record a test's result (None: something it reads did not build, or --fail-fast)."""
        if result is None:
            required = self.plan.required[test.name]
            failed = sorted(n for n in required if self.status.get(n) != "success")
            message = f"skipped: {', '.join(failed)} did not build" if failed else self.stopped
            result = NodeResult(test.name, "test", "skipped", message=message,
                                relation=", ".join(test.attached_to))
        elif result.status == "fail":
            owner = self.project.relation_owner
            for rel in test.attached_to:
                if rel in owner:
                    self._block_downstream(owner[rel], f"skipped: test {test.name} failed")
        if result.status in ("fail", "error"):
            self._stop(test.name)
        self.order.test(result)

    def _block_downstream(self, name: str, reason: str) -> None:
        for child in self.graph.downstream(name):
            self.blocked.setdefault(child, reason)


def _materialized(node: Node) -> str:
    """How the build log names a node's materialization."""
    if node.kind in ("seed", "source", "python"):
        return node.kind
    return str(node.materialized)
