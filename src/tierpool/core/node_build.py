"""Building one node with its audit, and running data tests: what a worker thread does.

The build state (target/state.json) is shared by every worker: each use of it holds the run's
``state_lock``. Everything else here works on the session it is given (the worker's own
connection), so nodes can build at once.
"""

from __future__ import annotations

import functools
import threading
import time
import traceback
from typing import TYPE_CHECKING, Any

from tierpool.adapters import EMPTY_DIGEST
from tierpool.core.materialize import Session, build_node, resolve
from tierpool.core.nodes import DataTest, Node
from tierpool.core.results import NodeResult, Reporter, RunOptions
from tierpool.core.state import UNCHANGED, UP_TO_DATE, BuildState
from tierpool.errors import TierpoolError

if TYPE_CHECKING:
    from tierpool.core.project_model import Project


class NodeBuilder:
    """Builds nodes (with their audits) and runs tests through a given session, in any thread."""

    def __init__(self, project: Project, options: RunOptions, reporter: Reporter, state: BuildState,
                 state_lock: threading.RLock) -> None:
        self.project, self.options, self.reporter = project, options, reporter
        self.state, self.state_lock = state, state_lock

    @functools.cached_property
    def _views(self) -> frozenset[str]:
        """Relations the project builds as views."""
        return frozenset(n.name for n in self.project.nodes.values()
                         if n.kind == "sql" and n.materialized == "view")

    def fingerprint(self, node: Node) -> str | None:
        try:
            with self.state_lock:
                return self.state.node_fingerprint(node)
        except OSError:  # e.g. a file vanished while being hashed: just build the node
            return None

    def build(
        self, node: Node, tests: list[DataTest], session: Session
    ) -> tuple[NodeResult, list[NodeResult] | None]:
        """Build ``node`` with ``tests`` as its audit; returns its result and the tests'.

        The tests' results are None when the audit did not run.
        """
        started = time.perf_counter()
        result = NodeResult(node.name, node.kind, "success")
        fingerprint = self.fingerprint(node) if node.kind != "python" else None
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

        def record(staged: dict[str, str] | None = None) -> None:
            # before the audit: test keys include the new fingerprints
            contents = _output_digests(session, staged, existed) if node.kind == "python" else None
            with lock:
                if node.kind == "python":
                    state.record_python(node, previous, session.written, existed, contents)
                else:
                    state.record_node(node, fingerprint)

        audited: list[NodeResult] | None = None
        audit_seconds = 0.0  # reported as the tests' time, not the node's

        def audit(staged: dict[str, str]) -> None:
            nonlocal audited, audit_seconds
            record(staged)
            begun = time.perf_counter()
            audited = self.test_results(tests, session, staged)
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

    def test_results(
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
                ran = run_data_tests(adapter, to_run, staged, self._views)
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


def _output_digests(
    session: Session, staged: dict[str, str] | None, existed: dict[str, bool]
) -> dict[str, str]:
    """A digest of the rows of each output the last Python model wrote ({} if unreadable).

    An output that got no row and did not exist before is empty: its digest is known
    without a query (its table may not exist yet while audited, and a failing query would
    abort the audit's transaction on DuckDB). So a model that writes no row, build after
    build, leaves its downstream up to date from the second build on.
    """
    empty = {rel: EMPTY_DIGEST for rel, rows in session.written.items() if not rows and not existed.get(rel)}
    visible = {rel: (staged or {}).get(rel, rel) for rel in session.written if rel not in empty}
    if not visible:
        return empty
    try:
        got = session.open().relation_digests(list(visible.values()))
    except Exception:  # a fresh fingerprint for each output, as before content digests
        return {}
    return {**empty, **{rel: got[name] for rel, name in visible.items() if name in got}}


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
