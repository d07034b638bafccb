"""Node selection: ``--select`` / ``--exclude`` in dbt's graph-operator syntax.

``name`` selects one node, ``name+`` it and its descendants, ``+name`` its
ancestors and it, ``+name+`` both. Several selectors may be given (as separate
arguments, or separated by spaces or commas in one argument); the result is their
union. A Python model's output name selects the Python model that writes it.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable
from typing import TYPE_CHECKING

from tierpool.core.sql import normalize_name
from tierpool.errors import ConfigError

if TYPE_CHECKING:
    from tierpool.core.graph import Graph
    from tierpool.core.project_model import Project


def split_selectors(values: Iterable[str] | None) -> list[str]:
    """Split CLI values into single selectors.

    >>> split_selectors(["a+ +b", "c,d"])
    ['a+', '+b', 'c', 'd']
    """
    return [part for value in values or () for part in re.split(r"[\s,]+", value) if part]


def resolve_selector(project: Project, graph: Graph, selector: str) -> set[str]:
    """The node names one selector stands for.

    Args:
        project: The loaded project (for relation names of Python outputs).
        graph: The project's graph.
        selector: ``name``, ``name+``, ``+name`` or ``+name+``.

    Returns:
        The selected node names.

    Raises:
        ConfigError: The name is neither a node nor a relation; the message lists
            the closest names.
    """
    ancestors, descendants = selector.startswith("+"), selector.endswith("+")
    raw = selector.strip("+")
    name = normalize_name(raw)
    if name in project.nodes:
        node = name
    elif name in project.relation_owner:
        node = project.relation_owner[name]
    else:
        known = sorted(set(project.nodes) | set(project.relation_owner))
        close = difflib.get_close_matches(name, known, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ConfigError(f"selector '{selector}': no node or table named '{raw}'{hint}")
    chosen = {node}
    if ancestors:
        chosen.update(graph.upstream(node))
    if descendants:
        chosen.update(graph.downstream(node))
    return chosen


def select_nodes(
    project: Project,
    graph: Graph,
    select: list[str] | None,
    exclude: list[str] | None,
) -> list[str]:
    """Apply ``--select`` and ``--exclude`` and return node names in build order.

    Args:
        project: The loaded project.
        graph: The project's graph.
        select: Selectors to include; None or empty selects every node.
        exclude: Selectors to remove from the selection.

    Returns:
        Selected node names (data tests are not nodes here), in topological order.

    Raises:
        ConfigError: A selector names an unknown node.
    """
    selectors = split_selectors(select)
    if selectors:
        chosen: set[str] = set()
        for selector in selectors:
            chosen |= resolve_selector(project, graph, selector)
    else:
        chosen = set(graph.nodes)
    for selector in split_selectors(exclude):
        chosen -= resolve_selector(project, graph, selector)
    return [name for name in graph.topological_order() if name in chosen]
