"""Lines of ``tierpool ls``: a table (kind, name, parents), names, paths, or JSON per line.

The JSON objects follow ``dbt ls --output json``: ``name``, ``unique_id``, ``resource_type``
(model, seed, source, test), ``path`` (relative to the project dir), ``materialized``
(dbt's words: a seed is ``seed``, a test ``test``, a source none; a Python model its outputs'
materializations, comma-separated when they differ), ``tags`` and ``depends_on``
(``{"nodes": [unique ids]}``), plus tierpool's ``kind``, ``relations`` and, for a Python
model, ``outputs`` (output -> materialization) and, for a test, ``severity``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from tierpool.core.selector_methods import materializations, resource_type

if TYPE_CHECKING:
    from tierpool.core.graph import Graph
    from tierpool.core.project_model import Project


def _uid(project: Project, name: str) -> str:
    return f"{resource_type(project.nodes[name].kind)}.{name}"


def test_parents(project: Project, name: str) -> list[str]:
    """Nodes a data test reads, sorted."""
    test, owner = project.tests[name], project.relation_owner
    return sorted({owner[r] for r in (*test.attached_to, *test.depends_on) if r in owner})


def node_json(project: Project, graph: Graph, name: str) -> dict[str, Any]:
    """The ``--output json`` object of a node."""
    node = project.nodes[name]
    found = sorted(materializations(node))
    out: dict[str, Any] = {
        "name": name,
        "unique_id": _uid(project, name),
        "resource_type": resource_type(node.kind),
        "kind": node.kind,
        "path": project.display(project.root / node.path) if node.path else None,
        "materialized": ",".join(found) if found else None,
        "tags": list(node.tags),
        "depends_on": {"nodes": [_uid(project, p) for p in graph.parents(name)]},
        "relations": list(node.relations),
    }
    if node.kind == "python":
        out["outputs"] = {o.name: o.materialized for o in getattr(node, "outputs", ())}
    return out


def test_json(project: Project, name: str) -> dict[str, Any]:
    """The ``--output json`` object of a data test."""
    test = project.tests[name]
    return {
        "name": name,
        "unique_id": f"test.{name}",
        "resource_type": "test",
        "kind": "test",
        "path": project.display(project.root / test.path) if test.path else None,
        "materialized": "test",
        "tags": list(test.spec.tags) if test.spec else [],
        "depends_on": {"nodes": [_uid(project, p) for p in test_parents(project, name)]},
        "relations": list(test.attached_to),
        "severity": test.severity,
    }


def ls_lines(project: Project, graph: Graph, nodes: list[str], tests: list[str], output: str) -> Iterator[str]:
    """Lines to print for the selected nodes (build order) and then tests.

    Args:
        output: ``table``, ``name``, ``path`` or ``json``.
    """
    if output == "name":
        yield from (*nodes, *tests)
    elif output == "path":
        for item in [node_json(project, graph, n) for n in nodes] + [test_json(project, t) for t in tests]:
            if item["path"]:
                yield item["path"]
    elif output == "json":
        for n in nodes:
            yield json.dumps(node_json(project, graph, n))
        for t in tests:
            yield json.dumps(test_json(project, t))
    else:
        width = max([len(n) for n in (*nodes, *tests)] + [4])
        rows = [(project.nodes[n].kind, n, graph.parents(n)) for n in nodes]
        rows += [("test", t, test_parents(project, t)) for t in tests]
        for kind, name, parents in rows:
            node = project.nodes.get(name) if kind != "test" else None
            extra = f" -> {', '.join(node.relations)}" if node is not None and kind == "python" else ""
            line = f"{kind:<7} {name:<{width}}{extra}"
            yield f"{line}  <- {', '.join(parents)}" if parents else line
