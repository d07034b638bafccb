"""Lineage graphs as inline SVG, laid out in Python (no JavaScript, no network).

Layered layout: a relation's column is its depth in the graph (the longest path from a root,
:meth:`Graph.layers`); within a column, relations are ordered by the mean position of their
parents, then of their children (two barycentre sweeps), which removes most edge crossings of
a warehouse DAG. Every box links to its relation's page.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from dataclasses import dataclass

from tierpool.core.graph import Graph

BOX_H = 26
ROW_GAP = 14
COL_GAP = 56
CHAR_W = 7.2  # average width of a 12px monospace glyph
PAD = 12
KIND_CLASS = {"seed": "k-seed", "source": "k-source", "sql": "k-sql", "python": "k-python"}


@dataclass(frozen=True)
class Box:
    """A placed relation: top-left corner, width."""

    name: str
    x: float
    y: float
    w: float


def _order_layers(graph: Graph) -> list[list[str]]:
    """Layers (by depth), each ordered to keep edges short (barycentre heuristic)."""
    layers = graph.layers()
    position: dict[str, float] = {}
    for layer in layers:
        for i, name in enumerate(layer):
            position[name] = float(i)

    def sweep(order: list[list[str]], neighbours: Callable[[str], list[str]]) -> None:
        for layer in order:
            def key(name: str) -> tuple[float, str]:
                near = [position[n] for n in neighbours(name) if n in position]
                return (sum(near) / len(near) if near else position[name], name)

            layer.sort(key=key)
            for i, name in enumerate(layer):
                position[name] = float(i)

    for _ in range(2):
        sweep(layers[1:], graph.parents)
        sweep(layers[-2::-1], graph.children)
    return layers


def layout(graph: Graph) -> tuple[dict[str, Box], float, float]:
    """Boxes of every node of ``graph`` and the drawing's width and height."""
    layers = _order_layers(graph)
    boxes: dict[str, Box] = {}
    x = float(PAD)
    tallest = max((len(layer) for layer in layers), default=0)
    height = 2 * PAD + tallest * BOX_H + max(tallest - 1, 0) * ROW_GAP
    for layer in layers:
        width = max(len(name) for name in layer) * CHAR_W + 20
        column_h = len(layer) * BOX_H + (len(layer) - 1) * ROW_GAP
        y = PAD + (height - 2 * PAD - column_h) / 2
        for name in layer:
            boxes[name] = Box(name, x, y, width)
            y += BOX_H + ROW_GAP
        x += width + COL_GAP
    return boxes, max(x - COL_GAP + PAD, 2 * PAD), float(height)


def _edge(a: Box, b: Box) -> str:
    x1, y1 = a.x + a.w, a.y + BOX_H / 2
    x2, y2 = b.x, b.y + BOX_H / 2
    mid = (x1 + x2) / 2
    return (f'<path class="edge" d="M{x1:.1f},{y1:.1f} C{mid:.1f},{y1:.1f} {mid:.1f},{y2:.1f} '
            f'{x2 - 4:.1f},{y2:.1f}" marker-end="url(#arrow)"/>')


def lineage_svg(graph: Graph, kinds: dict[str, str], href: Callable[[str], str],
                focus: str | None = None, built: set[str] | None = None) -> str:
    """An ``<svg>`` drawing of ``graph``: one linked box per relation, arrows in data-flow direction.

    Args:
        graph: The relations to draw and their edges.
        kinds: Relation -> node kind (colours the box).
        href: Relation -> the link of its page.
        focus: A relation to highlight (its own page).
        built: Relations present in the warehouse; the others are drawn dashed (not built).
    """
    if len(graph) == 0:
        return '<p class="muted">No relations.</p>'
    boxes, width, height = layout(graph)
    parts = [
        f'<svg class="lineage" xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" height="{height:.0f}" '
        f'viewBox="0 0 {width:.0f} {height:.0f}" role="img" aria-label="lineage graph">',
        '<defs><marker id="arrow" viewBox="0 0 8 8" refX="7" refY="4" markerWidth="7" markerHeight="7" '
        'orient="auto"><path d="M0,0 L8,4 L0,8 z" class="arrowhead"/></marker></defs>',
    ]
    for child in graph.nodes:
        for parent in graph.parents(child):
            parts.append(_edge(boxes[parent], boxes[child]))
    for name in graph.nodes:
        box = boxes[name]
        classes = ["node", KIND_CLASS.get(kinds.get(name, ""), "k-sql")]
        if name == focus:
            classes.append("focus")
        if built is not None and name not in built:
            classes.append("unbuilt")
        label = html.escape(name)
        parts.append(
            f'<a href="{html.escape(href(name))}" class="{" ".join(classes)}">'
            f'<rect x="{box.x:.1f}" y="{box.y:.1f}" width="{box.w:.1f}" height="{BOX_H}" rx="5"/>'
            f'<text x="{box.x + 10:.1f}" y="{box.y + BOX_H / 2 + 4:.1f}">{label}</text></a>'
        )
    parts.append("</svg>")
    return "".join(parts)


def neighbourhood(graph: Graph, relation: str) -> Graph:
    """The relation with all its ancestors and descendants (dbt's ``+relation+``)."""
    return graph.subgraph({relation, *graph.upstream(relation), *graph.downstream(relation)})
