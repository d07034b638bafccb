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

import functools
import threading
import time
import traceback
from collections.abc import Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import TYPE_CHECKING, Any

from tierpool import constants as c
from tierpool.core import artifacts
from tierpool.core.graph import Graph
from tierpool.core.lock import BuildLock
from tierpool.core.materialize import Session, build_node, resolve
from tierpool.core.nodes import DataTest, Node
from tierpool.core.results import NodeResult, Reporter, RunOptions, RunResults
from tierpool.core.scheduler import NO_NODE, BuildPlan, ReportOrder, SessionPool
from tierpool.core.selection import resolve_selection, select_nodes
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
        with ThreadPoolExecutor(self.threads, thread_name_prefix="tierpool") as pool:
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
            result, audited = self._build(node, audit_tests, session)
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
        ran = dict(zip((t.name for t in runnable), self._test_results(runnable, self.session), strict=True))
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

    # -- one node (any thread) ------------------------------------------------------------------

    def _fingerprint(self, node: Node) -> str | None:
        try:
            with self.state_lock:
                return self.state.node_fingerprint(node)
        except OSError:  # e.g. a file vanished while being hashed: just build the node
            return None

    def _build(
        self, node: Node, tests: list[DataTest], session: Session
    ) -> tuple[NodeResult, list[NodeResult] | None]:
        """Build ``node`` with ``tests`` as its audit; returns its result and the tests'.

        The tests' results are None when the audit did not run.
        """
        started = time.perf_counter()
        result = NodeResult(node.name, node.kind, "success")
        fingerprint = self._fingerprint(node) if node.kind != "python" else None
        state, lock = self.state, self.state_lock
        with lock:
            skip = state.can_skip(node, fingerprint, session.kind(node.name))
            if skip:
                state.record_node(node, fingerprint)
        if skip:
            result.message, result.unchanged = UP_TO_DATE, True
            result.execution_time = time.perf_counter() - started
            return result, None
        previous, existed = {}, {}
        if node.kind == "python":
            with lock:
                previous = state.previous_outputs(node)
                existed = {rel: session.kind(rel) is not None for rel in node.relations}
                # Forgotten on disk before the model runs: if this process dies after the
                # outputs are written, the next build cannot take them as unchanged.
                state.forget_node(node)
                state.save()

        def record() -> None:  # before the audit: test keys include the new fingerprints
            with lock:
                if node.kind == "python":
                    state.record_python(node, previous, session.written, existed)
                else:
                    state.record_node(node, fingerprint)

        audited: list[NodeResult] | None = None
        audit_seconds = 0.0  # reported as the tests' time, not the node's

        def audit(staged: dict[str, str]) -> None:
            nonlocal audited, audit_seconds
            record()
            begun = time.perf_counter()
            audited = self._test_results(tests, session, staged)
            audit_seconds = time.perf_counter() - begun
            failed = [r for r in audited if r.status in ("fail", "error")]
            if failed:
                raise _AuditFailed(node, failed)

        try:
            result.rows, result.message = build_node(
                session, node, self._ctx_args(node), audit if tests else None
            )
        except Exception as exc:
            result.status = "error"
            result.message = self._error_message(node, exc)
            if not isinstance(exc, _AuditFailed):
                result.traceback = traceback.format_exc()
            with lock:
                state.forget_node(node)
        else:
            if not tests:
                record()
        if node.kind == "python" and result.status == "success":
            with lock:
                state.save()
        result.execution_time = time.perf_counter() - started - audit_seconds
        return result, audited

    def _error_message(self, node: Node, exc: Exception) -> str:
        if isinstance(exc, TierpoolError):
            return str(exc)
        where = node.name
        if node.path is not None:
            where = self.project.display(resolve(self.project.root, node.path))
        return f"{where}: {exc}".strip()

    def _ctx_args(self, node: Node) -> dict[str, Any]:
        opts = {k: v for k, v in self.options.options.items() if v is not None}
        opts.setdefault("refit", False)
        opts["progress"] = self.options.progress
        return {
            "vars": {**self.project.vars, **opts, **self.options.vars},
            "options": opts,
            "target_dir": self.project.target_dir,
            "log": functools.partial(self.reporter.log, node=node.name),
            "progress": self.options.progress,
        }

    def _test_results(
        self, tests: list[DataTest], session: Session, staged: dict[str, str] | None = None
    ) -> list[NodeResult]:
        """Run tests (taking the last pass of those whose inputs did not change), in order.

        Engines that batch tests count them in one query. Otherwise they run one by one,
        and after a test that could not run the rest are skipped: on some engines a failed
        statement aborts the transaction the audit runs in.
        """
        from tierpool.core.execute_tests import run_data_test, run_data_tests

        with self.state_lock:
            keys = {t.name: self.state.test_key(t) for t in tests}
            unchanged = {t.name for t in tests if self.state.test_unchanged(t, keys[t.name])}
        results: dict[str, NodeResult] = {}
        for test in tests:
            if test.name in unchanged:
                relation = ", ".join(test.attached_to) or ", ".join(test.depends_on)
                results[test.name] = NodeResult(test.name, "test", "pass", message=UNCHANGED,
                                                relation=relation, failures=0, unchanged=True)
        to_run = [t for t in tests if t.name not in results]
        try:
            adapter = session.open()
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
        with self.state_lock:
            for test, result in zip(to_run, ran, strict=True):
                self.state.record_test(test, keys[test.name], result.status)
                results[test.name] = result
        return [results[t.name] for t in tests]


def _materialized(node: Node) -> str:
    """How the build log names a node's materialization."""
    if node.kind in ("seed", "source", "python"):
        return node.kind
    return str(node.materialized)


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
