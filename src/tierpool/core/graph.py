"""A small deterministic DAG of node names.

Each ready layer is sorted by name, so the build order is reproducible across runs
and machines. A cycle is reported with its path (``a -> b -> c -> a``), read in the
direction data flows: each node feeds the next.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from tierpool.errors import CycleError

if TYPE_CHECKING:
    from tierpool.core.nodes import Node


class Graph:
    """Nodes and their parent edges (``parents[child]`` = the nodes it reads from)."""

    def __init__(self, parents: Mapping[str, Iterable[str]]) -> None:
        """Build a graph.

        Args:
            parents: For every node, the nodes it depends on. Parents that are not
                themselves keys are added as nodes without parents.
        """
        self._parents: dict[str, set[str]] = {}
        for name, deps in parents.items():
            self._parents.setdefault(name, set()).update(deps)
            for dep in deps:
                self._parents.setdefault(dep, set())
        self._children: dict[str, set[str]] = {name: set() for name in self._parents}
        for name, deps in self._parents.items():
            for dep in deps:
                self._children[dep].add(name)

    @classmethod
    def from_nodes(cls, nodes: Mapping[str, Node], relation_owner: Mapping[str, str]) -> Graph:
        """The graph of nodes whose ``depends_on`` relations map to owners.

        Unknown relations are skipped (compile checks report them). A Python or
        append model reading its own output reads the previous version, which is
        not an edge.
        """
        parents: dict[str, set[str]] = {}
        for name, node in nodes.items():
            deps = {relation_owner[r] for r in node.depends_on if r in relation_owner}
            if node.kind == "python" or node.materialized == "append":
                deps.discard(name)
            parents[name] = deps
        return cls(parents)

    @property
    def nodes(self) -> list[str]:
        """All node names, sorted."""
        return sorted(self._parents)

    def __contains__(self, name: object) -> bool:
        return name in self._parents

    def __len__(self) -> int:
        return len(self._parents)

    def parents(self, name: str) -> list[str]:
        """Direct dependencies of a node, sorted."""
        return sorted(self._parents[name])

    def children(self, name: str) -> list[str]:
        """Nodes that read a node directly, sorted."""
        return sorted(self._children[name])

    def upstream(self, name: str) -> list[str]:
        """All ancestors of a node (not the node itself), sorted."""
        return sorted(self._reach(name, self._parents))

    def downstream(self, name: str) -> list[str]:
        """All descendants of a node (not the node itself), sorted."""
        return sorted(self._reach(name, self._children))

    @staticmethod
    def _reach(start: str, edges: Mapping[str, set[str]]) -> set[str]:
        seen: set[str] = set()
        stack = list(edges[start])
        while stack:
            name = stack.pop()
            if name not in seen:
                seen.add(name)
                stack.extend(edges[name])
        return seen

    def subgraph(self, names: Iterable[str]) -> Graph:
        """The graph restricted to ``names`` (edges to other nodes are dropped)."""
        keep = set(names)
        return Graph({n: self._parents[n] & keep for n in keep})

    def layers(self) -> list[list[str]]:
        """Nodes grouped into layers that can run once the previous ones are done.

        Returns:
            Layers in order, each sorted by name.

        Raises:
            CycleError: The graph has a cycle; the message prints its path.
        """
        remaining = {name: len(deps) for name, deps in self._parents.items()}
        ready = sorted(n for n, count in remaining.items() if count == 0)
        layers: list[list[str]] = []
        while ready:
            layers.append(ready)
            next_ready: list[str] = []
            for name in ready:
                for child in self._children[name]:
                    remaining[child] -= 1
                    if remaining[child] == 0:
                        next_ready.append(child)
            ready = sorted(next_ready)
        if sum(len(layer) for layer in layers) != len(self._parents):
            cycle = self.find_cycle() or []
            raise CycleError(f"dependency cycle: {' -> '.join(cycle)}")
        return layers

    def topological_order(self) -> list[str]:
        """Node names in a deterministic build order (parents before children).

        Raises:
            CycleError: The graph has a cycle.

        Examples:
            >>> Graph({"c": ["b"], "b": ["a"], "d": ["a"]}).topological_order()
            ['a', 'b', 'd', 'c']
        """
        return [name for layer in self.layers() for name in layer]

    def find_cycle(self) -> list[str] | None:
        """A cycle as a path in data-flow order, first node repeated at the end.

        Returns:
            e.g. ``["a", "b", "c", "a"]`` (a feeds b, b feeds c, c feeds a), or None.

        Examples:
            >>> Graph({"a": ["c"], "b": ["a"], "c": ["b"]}).find_cycle()
            ['a', 'b', 'c', 'a']
        """
        state: dict[str, int] = {}  # 1 = on the current path, 2 = finished
        for start in sorted(self._parents):
            if state.get(start):
                continue
            path: list[str] = []
            stack: list[tuple[str, list[str]]] = [(start, sorted(self._children[start]))]
            state[start] = 1
            path.append(start)
            while stack:
                name, todo = stack[-1]
                if not todo:
                    stack.pop()
                    path.pop()
                    state[name] = 2
                    continue
                child = todo.pop(0)
                if state.get(child) == 1:
                    return path[path.index(child) :] + [child]
                if not state.get(child):
                    state[child] = 1
                    path.append(child)
                    stack.append((child, sorted(self._children[child])))
        return None


__all__ = ["Graph"]
