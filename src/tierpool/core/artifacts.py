"""target/manifest.json (the graph) and target/run_results.json (what happened).

Both are dbt-like in spirit: nodes keyed by ``unique_id`` (``seed.x``, ``model.y``,
``source.z``, ``test.t``), plain JSON, written atomically (temp file + rename).
"""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tierpool import __version__
from tierpool import constants as c
from tierpool.core.results import RunResults, unique_id

if TYPE_CHECKING:
    from tierpool.core.graph import Graph
    from tierpool.core.project_model import Project


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str) + "\n")
    os.replace(tmp, path)


def _rel_path(project: Project, path: Path | None) -> str | None:
    if path is None:
        return None
    try:
        return str(Path(path).resolve().relative_to(project.root.resolve()))
    except ValueError:
        return str(path)


def build_manifest(project: Project, graph: Graph) -> dict[str, Any]:
    """The manifest as a dict: nodes (kind, path, depends_on, relations, materialized, tags), tests, edges."""
    nodes: dict[str, Any] = {}
    for name in graph.topological_order():
        node = project.nodes[name]
        nodes[unique_id(node.kind, name)] = {
            "name": name,
            "kind": node.kind,
            "path": _rel_path(project, node.path),
            "depends_on": [unique_id(project.nodes[p].kind, p) for p in graph.parents(name)],
            "depends_on_relations": list(node.depends_on),
            "relations": list(node.relations),
            "materialized": node.materialized,
            "description": node.description,
            "tags": list(node.tags),
        }
    tests = {
        unique_id("test", name): {
            "name": name,
            "path": _rel_path(project, t.path),
            "severity": t.severity,
            "attached_to": list(t.attached_to),
            "depends_on_relations": list(t.depends_on),
            "tags": list(t.tags),
            "sql": t.sql,
        }
        for name, t in sorted(project.tests.items())
    }
    edges = [
        [unique_id(project.nodes[p].kind, p), unique_id(project.nodes[n].kind, n)]
        for n in graph.topological_order()
        for p in graph.parents(n)
    ]
    return {
        "metadata": {"tierpool_version": __version__, "generated_at": _now(),
                     "target": project.target.name},
        "nodes": nodes,
        "tests": tests,
        "edges": edges,
    }


def write_manifest(project: Project, graph: Graph) -> Path:
    """Write target/manifest.json and return its path."""
    path = project.target_dir / c.MANIFEST_FILE
    _write_json(path, build_manifest(project, graph))
    return path


def write_run_results(project: Project, results: RunResults) -> Path:
    """Write target/run_results.json and return its path."""
    path = project.target_dir / c.RUN_RESULTS_FILE
    _write_json(path, {
        "metadata": {"tierpool_version": __version__, "generated_at": _now(),
                     "command": results.command, "target": project.target.name},
        "results": [r.to_json() for r in results.results],
        "elapsed": round(results.elapsed, 4),
        "args": results.args,
        "counts": results.counts(),
    })
    return path
