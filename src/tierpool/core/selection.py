"""Node selection: dbt's selector language for ``--select``, ``--exclude`` and ``--resource-type``.

Set operators, as in dbt:

* **union**: several ``--select`` values, or selectors separated by spaces in one value
  (``--select "a b"`` is ``--select a --select b``);
* **intersection**: selectors joined by commas, without spaces
  (``tag:nightly,config.materialized:table``: tagged nightly *and* a table);
* ``--exclude`` takes the same syntax; what it matches is removed afterwards;
* ``--resource-type`` (``model``, ``seed``, ``source``, ``test``; also tierpool's ``sql``,
  ``python``) keeps only those types, last.

A selector is ``[@][N+][method:]value[+N]``. Without a method the value is a node name (a
Python model's output selects its Python model; a data test's name selects the test), or a
path when it holds a ``/``. Methods (:mod:`tierpool.core.selector_methods`): ``tag:``,
``path:``, ``file:``, ``config.materialized:`` (``view``, ``table``, ``append``,
``incremental``; seeds are ``seed``), ``config.<key>:``, ``resource_type:``,
``source:``, ``state:modified`` / ``new`` / ``unmodified`` / ``old`` (against the target's
build state, target/state.json), ``test_name:``, ``test_type:``. Names and values take
fnmatch wildcards (``stg_*``, ``tag:team_?``). Graph operators: ``+x`` adds x's ancestors,
``x+`` its descendants, ``2+x`` / ``x+1`` only that many generations, ``@x`` x, its
descendants and all of their ancestors.

Data tests are selected as dbt's default "eager" indirect selection does: a selector
selects the tests it matches itself (name, own tags, file, ``resource_type:test``...) and
every test that reads a node it selects. So ``tag:x`` runs the tests of nodes tagged x, and
``--exclude orders`` drops the tests on ``orders`` too.

A bare name, tag, path or source that matches nothing is an error naming the closest
names (exit 2). ``state:`` and valid ``resource_type:`` / ``config.*:`` values may select
nothing; the command then has nothing to do.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from tierpool.core.selector_methods import RESOURCE_TYPES, Matcher
from tierpool.errors import ConfigError

if TYPE_CHECKING:
    from tierpool.core.graph import Graph
    from tierpool.core.project_model import Project

__all__ = ["Selection", "Selector", "parse_selector", "resolve_selection", "resource_kinds", "select_nodes",
           "split_selectors"]

_ALL = 10**9  # "every generation"
_SELECTOR = re.compile(
    r"^(?P<at>@)?(?:(?P<up>\d*)\+)?(?:(?P<method>[A-Za-z_][\w.]*):)?(?P<value>.*?)(?:\+(?P<down>\d*))?$"
)
Matched = tuple[set[str], set[str], set[str]]  # nodes, tests, tests matched directly


@dataclass(frozen=True)
class Selector:
    """One selector, parsed.

    Attributes:
        raw: As written.
        method: ``tag``, ``path``... or None for a bare name.
        value: What the method matches.
        parents: Generations of ancestors to add (None: no ``+`` in front).
        children: Generations of descendants to add (None: no ``+`` behind).
        at: ``@``: the node, its descendants and all of their ancestors.
    """

    raw: str
    method: str | None
    value: str
    parents: int | None = None
    children: int | None = None
    at: bool = False


@dataclass(frozen=True)
class Selection:
    """What ``--select`` / ``--exclude`` / ``--resource-type`` stand for.

    Attributes:
        nodes: Node names in build order.
        tests: Data test names, sorted (those of the nodes and those selected themselves).
        named_tests: The tests among ``tests`` a selector matched itself (by name, own tag,
            file, ``resource_type:test``...; in an intersection, every part), not only through
            a node they read.
    """

    nodes: list[str]
    tests: list[str]
    named_tests: list[str]


def split_selectors(values: Iterable[str] | None) -> list[str]:
    """Split CLI values into union terms (spaces separate; commas intersect within a term).

    >>> split_selectors(["a+ +b", "c,d"])
    ['a+', '+b', 'c,d']
    """
    return [part for value in values or () for part in value.split() if part]


def parse_selector(text: str) -> Selector:
    """Parse ``[@][N+][method:]value[+N]``.

    >>> parse_selector("2+tag:nightly+1")
    Selector(raw='2+tag:nightly+1', method='tag', value='nightly', parents=2, children=1, at=False)

    Raises:
        ConfigError: An empty value, or ``@`` together with a ``+`` in front.
    """
    match = _SELECTOR.match(text)
    if not match or not match["value"]:
        raise ConfigError(f"selector '{text}': nothing to select; write a name, or method:value "
                          "such as tag:nightly (space = union, comma = intersection)")
    if match["at"] and match["up"] is not None:
        raise ConfigError(f"selector '{text}': '@' already adds all ancestors; drop the '+' in front")

    def depth(digits: str | None) -> int | None:
        return None if digits is None else int(digits) if digits else _ALL

    return Selector(text, match["method"], match["value"], depth(match["up"]), depth(match["down"]),
                    bool(match["at"]))


def resource_kinds(resource_types: Iterable[str]) -> set[str]:
    """Node kinds (and ``test``) of ``--resource-type`` values.

    Raises:
        ConfigError: An unknown resource type.
    """
    kinds: set[str] = set()
    for value in resource_types:
        if value.lower() not in RESOURCE_TYPES:
            raise ConfigError(f"--resource-type '{value}' is not one of {', '.join(RESOURCE_TYPES)}")
        kinds.update(RESOURCE_TYPES[value.lower()])
    return kinds


def _walk(graph: Graph, starts: Iterable[str], up: bool, depth: int) -> set[str]:
    """Nodes up to ``depth`` generations above (``up``) or below ``starts``, not themselves."""
    edges = graph.parents if up else graph.children
    seen: set[str] = set()
    frontier = set(starts)
    for _ in range(min(depth, len(graph))):
        frontier = {m for n in frontier for m in edges(n)} - seen
        if not frontier:
            break
        seen |= frontier
    return seen


def _atom(matcher: Matcher, selector: Selector) -> Matched:
    """One selector: its direct matches, graph operators, then the tests of its nodes."""
    nodes, direct = matcher.match(selector.method, selector.value, selector.raw)
    graph = matcher.graph
    chosen = set(nodes)
    read = {p for t in direct for p in matcher.test_parents[t]}  # a test's parents: 1 generation up
    if selector.at:
        below = nodes | _walk(graph, nodes, up=False, depth=_ALL)
        chosen = below | read | _walk(graph, below | read, up=True, depth=_ALL)
    if selector.parents is not None:
        chosen |= _walk(graph, nodes, up=True, depth=selector.parents)
        if selector.parents >= 1:
            chosen |= read | _walk(graph, read, up=True, depth=selector.parents - 1)
    if selector.children is not None:
        chosen |= _walk(graph, nodes, up=False, depth=selector.children)
    tests = direct | {t for t, parents in matcher.test_parents.items() if parents & chosen}
    return chosen, tests, direct


def _term(matcher: Matcher, term: str) -> Matched:
    """Comma-separated selectors: their intersection."""
    parts = term.split(",")
    if not all(parts):
        raise ConfigError(f"selector '{term}': empty selector around a comma "
                          "(comma = intersection, space = union)")
    found = [_atom(matcher, parse_selector(part)) for part in parts]
    nodes = set.intersection(*(f[0] for f in found))
    tests = set.intersection(*(f[1] for f in found))
    return nodes, tests, set.intersection(*(f[2] for f in found))  # named only if every part names it


def resolve_selection(
    project: Project,
    graph: Graph,
    select: Iterable[str] | None = None,
    exclude: Iterable[str] | None = None,
    resource_types: Iterable[str] | None = None,
    state_key: str | None = None,
) -> Selection:
    """Apply ``--select``, ``--exclude`` and ``--resource-type``.

    Args:
        project: The loaded project.
        graph: The project's graph.
        select: Selector values (union of them); None or empty selects everything.
        exclude: Selector values removed from the selection.
        resource_types: Keep only these types (``model``, ``seed``, ``source``, ``test``,
            ``sql``, ``python``); None or empty keeps all.
        state_key: The warehouse's entry in target/state.json for ``state:`` selectors
            (default: the target's adapter's ``state_key``).

    Returns:
        The selected nodes (build order) and data tests.

    Raises:
        ConfigError: A selector is malformed, names an unknown method or value, or a name,
            tag, path or source in it matches nothing.
    """
    matcher = Matcher(project, graph, state_key)
    include = split_selectors(select)
    nodes: set[str] = set(graph.nodes) if not include else set()
    tests: set[str] = set(project.tests) if not include else set()
    direct: set[str] = set()
    for term in include:
        more = _term(matcher, term)
        nodes, tests, direct = nodes | more[0], tests | more[1], direct | more[2]
    for term in split_selectors(exclude):
        less = _term(matcher, term)
        nodes, tests = nodes - less[0], tests - less[1]
    if resource_types:
        kinds = resource_kinds(resource_types)
        nodes = {n for n in nodes if project.nodes[n].kind in kinds}
        tests = tests if "test" in kinds else set()
    return Selection(
        nodes=[name for name in graph.topological_order() if name in nodes],
        tests=sorted(tests),
        named_tests=sorted(tests & direct),
    )


def select_nodes(
    project: Project,
    graph: Graph,
    select: list[str] | None,
    exclude: list[str] | None,
    *,
    resource_types: Iterable[str] | None = None,
    state_key: str | None = None,
) -> list[str]:
    """Selected node names in build order (data tests are not nodes here); see :func:`resolve_selection`.

    Raises:
        ConfigError: As :func:`resolve_selection`.
    """
    return resolve_selection(project, graph, select, exclude, resource_types, state_key).nodes
