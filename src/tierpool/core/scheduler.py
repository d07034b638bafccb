"""What may build next, and in which order results are reported, when nodes build in parallel.

The runner builds up to ``threads`` nodes at once. Which node may start depends only on the
outcomes of others, never on timing, and results are reported in build order, so a run's
log and its run_results.json are the same for any number of threads:

- a node starts once every parent in the run has finished and every test that could still
  skip it has run (:meth:`BuildPlan.ready`);
- a node's audit (its error tests, run on the unpublished relations) is the set of its
  error tests whose other inputs come earlier in build order (:meth:`BuildPlan.audit_inputs`);
- each test is reported with the last node it reads (:meth:`BuildPlan.slot`), and a node's
  line is printed once it and every earlier node are done (:class:`ReportOrder`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from tierpool.core.results import NodeResult, Reporter, ResultGroup, RunResults

if TYPE_CHECKING:
    from tierpool.core.graph import Graph
    from tierpool.core.materialize import Session
    from tierpool.core.nodes import DataTest
    from tierpool.core.project_model import Project

# The slot of a test that reads no node of this run: reported before every node.
NO_NODE = -1


class BuildPlan:
    """The run's nodes in build order, and which of them each test needs."""

    def __init__(self, project: Project, graph: Graph, nodes: list[str], tests: Iterable[DataTest]) -> None:
        self.project, self.graph = project, graph
        self.order = {name: i for i, name in enumerate(nodes)}
        self.required = {t.name: self._required(t) for t in tests}
        self._parents = {n: {p for p in graph.parents(n) if p in self.order} for n in nodes}
        self._ancestors = {n: {a for a in graph.upstream(n) if a in self.order} for n in nodes}
        self._descendants = {n: {d for d in graph.downstream(n) if d in self.order} for n in nodes}

    def _required(self, test: DataTest) -> set[str]:
        """Nodes of this run that a test reads (it runs once they are all done)."""
        owner = self.project.relation_owner
        rels = set(test.attached_to) | set(test.depends_on)
        return {owner[r] for r in rels if r in owner and owner[r] in self.order}

    def slot(self, test: DataTest) -> int:
        """Build-order position of the last node ``test`` reads (NO_NODE: none)."""
        return max((self.order[n] for n in self.required[test.name]), default=NO_NODE)

    def audit_inputs(self, test: DataTest, node: str) -> set[str] | None:
        """Other nodes an error test of ``node`` needs to be part of its audit (None: it is not)."""
        owner = self.project.relation_owner
        if test.severity != "error" or node not in {owner.get(r) for r in test.attached_to}:
            return None
        others = self.required[test.name] - {node}
        if any(self.order[n] > self.order[node] for n in others):
            return None  # reads a node built later: it runs after both, not as this audit
        return others

    def ready(self, name: str, finished: set[str], pending: Iterable[DataTest], strict: bool = True) -> bool:
        """Whether ``name`` may start.

        Its parents and its audit's inputs must be finished; with ``strict``, so must every
        pending error test on its ancestors that does not wait for ``name`` itself (one that
        fails would skip it). The runner relaxes ``strict`` only when nothing can start
        otherwise (a test on an ancestor that also reads an unrelated later node).
        """
        if not self._parents[name] <= finished:
            return False
        pending = list(pending)
        for test in pending:
            inputs = self.audit_inputs(test, name)
            if inputs is not None and not inputs <= finished:
                return False
        if not strict:
            return True
        waits_for_me = {name} | self._descendants[name]
        owner = self.project.relation_owner
        for test in pending:
            if test.severity != "error" or self.required[test.name] & waits_for_me:
                continue
            if {owner.get(r) for r in test.attached_to} & self._ancestors[name]:
                return False
        return True


class ReportOrder:
    """Hands results to the reporter (and to run_results) in build order."""

    def __init__(self, plan: BuildPlan, nodes: list[str], tests: list[DataTest],
                 reporter: Reporter, results: RunResults) -> None:
        self.nodes, self.reporter, self.results = nodes, reporter, results
        self.standalone = [t.name for t in tests if plan.slot(t) == NO_NODE]
        self.expected: dict[int, int] = {}
        for test in tests:
            self.expected[plan.slot(test)] = self.expected.get(plan.slot(test), 0) + 1
        self.node_results: dict[int, NodeResult] = {}
        self.test_results: dict[int, list[NodeResult]] = {}
        self.slot_of = {t.name: plan.slot(t) for t in tests}
        self.total = len(self.standalone) + len(nodes)
        self.next_slot = NO_NODE
        self.index = 0

    def node(self, name: str, result: NodeResult) -> None:
        self.node_results[self.nodes.index(name)] = result
        self._flush()

    def test(self, result: NodeResult) -> None:
        self.test_results.setdefault(self.slot_of[result.name], []).append(result)
        self._flush()

    def _complete(self, slot: int) -> bool:
        tests_done = len(self.test_results.get(slot, ())) == self.expected.get(slot, 0)
        return tests_done and (slot == NO_NODE or slot in self.node_results)

    def _flush(self) -> None:
        while self.next_slot < len(self.nodes) and self._complete(self.next_slot):
            slot = self.next_slot
            tests = sorted(self.test_results.get(slot, []), key=lambda r: r.name)
            if slot == NO_NODE:
                for test in tests:
                    self._emit(None, [test])
            else:
                self._emit(self.node_results[slot], tests)
            self.next_slot += 1

    def _emit(self, node: NodeResult | None, tests: list[NodeResult]) -> None:
        self.index += 1
        self.results.results.extend(([node] if node else []) + tests)
        self.reporter.finish(ResultGroup(self.index, self.total, node, tests))


class SessionPool:
    """Read-write sessions for worker threads: each builds through its own connection.

    DuckDB: connections to the same file in one process share the database, each with its
    own transactions, so parallel writes keep their atomicity. Spark: sessions share the
    process's SparkSession. The main thread's session runs tests and serial builds.
    """

    def __init__(self, make: Callable[[], Session]) -> None:
        self._make = make
        self._idle: list[Session] = []
        self._all: list[Session] = []
        self._lock = threading.Lock()

    def take(self) -> Session:
        with self._lock:
            if self._idle:
                return self._idle.pop()
            session = self._make()
            self._all.append(session)
            return session

    def give(self, session: Session) -> None:
        with self._lock:
            self._idle.append(session)

    def release_idle(self) -> None:
        """Close idle sessions' connections (a Python model is running: let readers in)."""
        with self._lock:
            for session in self._idle:
                session.release()

    def close(self) -> None:
        for session in self._all:
            session.close()
