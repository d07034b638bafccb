"""Structural checks, run while a project loads: unknown tables (with the closest known
names, file and line) and dependency cycles (with their path)."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from typing import TYPE_CHECKING

from tierpool.core.sql import TableRef
from tierpool.errors import CycleError, SqlError, TierpoolError

if TYPE_CHECKING:
    from tierpool.core.nodes import Node
    from tierpool.core.project_model import Project


def _closest(name: str, known: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, sorted(known), n=3, cutoff=0.5)
    return f"; closest: {', '.join(close)}" if close else ""


def _unknown_tables(project: Project) -> list[TierpoolError]:
    known = project.relation_owner
    problems: list[TierpoolError] = []
    for name, node in sorted(project.nodes.items()):
        refs = project.table_refs.get(name) or _refs_of(project, name, node)
        problems += [_unknown_table(project, node.path, ref, known) for ref in refs
                     if ref.name not in known]
    for name, test in sorted(project.tests.items()):
        refs = project.table_refs.get(f"test:{name}") or tuple(TableRef(d) for d in test.depends_on)
        for ref in refs:
            if ref.name not in known:
                err = _unknown_table(project, test.path, ref, known)
                problems.append(SqlError(f"{err} (data test '{name}')"))
    return problems


def _refs_of(project: Project, name: str, node: Node) -> tuple[TableRef, ...]:
    lines = project.ref_lines.get(name, {})
    return tuple(TableRef(dep, lines.get(dep, 0)) for dep in node.depends_on)


def _unknown_table(project: Project, path: object, ref: TableRef, known: Iterable[str]) -> SqlError:
    where = project.display(path)  # type: ignore[arg-type]
    line = f":{ref.line}" if ref.line else ""
    return SqlError(f"{where}{line}: unknown table '{ref.name}'{_closest(ref.name, known)}")


def _cycle(project: Project) -> list[TierpoolError]:
    graph = project.graph()
    path = graph.find_cycle()
    if path is None:
        return []
    files = ", ".join(dict.fromkeys(project.display(project.nodes[n].path) for n in path))
    return [CycleError(f"dependency cycle: {' -> '.join(path)} (in {files})")]


def structural_problems(project: Project) -> list[TierpoolError]:
    """Unknown tables (file, line, name, closest names) and cycles (their path).

    Args:
        project: A project, possibly with problems.

    Returns:
        The problems found; empty when the graph is sound.
    """
    return _unknown_tables(project) + _cycle(project)
