"""What one selector method matches: the nodes and data tests of ``method:value`` (dbt's methods).

A helper of :mod:`tierpool.core.selection`, which parses selectors and applies graph and
set operators. Every method returns the nodes and the tests it matches *directly*; indirect
test selection and graph operators are the caller's.

Values may hold fnmatch wildcards (``*``, ``?``, ``[...]``). A method that matches nothing
is an error naming the closest values (a typo should not quietly select nothing), except
``state:`` and the valid values of ``resource_type:``, ``test_type:`` and ``config.*:``,
which may legitimately select nothing.
"""

from __future__ import annotations

import difflib
import posixpath
from fnmatch import fnmatchcase
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tierpool.core.sql import normalize_name
from tierpool.errors import ConfigError

if TYPE_CHECKING:
    from tierpool.core.graph import Graph
    from tierpool.core.nodes import Node
    from tierpool.core.project_model import Project
    from tierpool.core.state import BuildState

Matched = tuple[set[str], set[str]]  # node names, test names

# dbt's resource types (and tierpool's node kinds, which are narrower) -> node kinds.
RESOURCE_TYPES: dict[str, tuple[str, ...]] = {
    "model": ("sql", "python"), "seed": ("seed",), "source": ("source",), "test": ("test",),
    "sql": ("sql",), "python": ("python",),
}
MATERIALIZED = ("view", "table", "append", "incremental", "seed", "test")
STATES = ("modified", "new", "unmodified", "old")
TEST_TYPES = ("generic", "singular", "data")
METHODS = ("tag", "path", "file", "config.materialized", "config.<key>", "resource_type", "source",
           "state", "test_name", "test_type")


def has_wildcard(value: str) -> bool:
    return any(ch in value for ch in "*?[")


def resource_type(kind: str) -> str:
    """dbt's resource type of a node kind (``sql`` and ``python`` are models)."""
    return "model" if kind in ("sql", "python") else kind


def materializations(node: Node) -> set[str]:
    """How a node is materialized, in dbt's words: a seed is ``seed``, a source nothing, a
    Python model each of its outputs' materializations."""
    if node.kind == "seed":
        return {"seed"}
    if node.kind == "source":
        return set()
    if node.kind == "test":
        return {"test"}
    outputs = getattr(node, "outputs", ())
    return {o.materialized for o in outputs} if outputs else {node.materialized}


def _close(value: str, known: set[str] | list[str]) -> str:
    close = difflib.get_close_matches(value, sorted(known), n=3)
    return f"; did you mean {', '.join(close)}?" if close else ""


def _choice(selector: str, what: str, value: str, valid: tuple[str, ...]) -> None:
    if not has_wildcard(value) and value not in valid:
        raise ConfigError(f"selector '{selector}': unknown {what} '{value}'; "
                          f"valid: {', '.join(valid)}{_close(value, valid)}")


class Matcher:
    """Direct matches of selector methods on one project.

    Args:
        project: The loaded project.
        graph: Its graph.
        state_key: The warehouse's entry in target/state.json, for ``state:`` (default: the
            target's adapter's ``state_key``, computed when a ``state:`` selector is used).
    """

    def __init__(self, project: Project, graph: Graph, state_key: str | None = None) -> None:
        self.project, self.graph, self.state_key = project, graph, state_key
        owner = project.relation_owner
        self.test_parents: dict[str, set[str]] = {
            name: {owner[r] for r in (*t.attached_to, *t.depends_on) if r in owner}
            for name, t in project.tests.items()
        }
        self._state: BuildState | None = None

    # -- dispatch -------------------------------------------------------------------------

    def match(self, method: str | None, value: str, selector: str) -> Matched:
        """Nodes and tests ``method:value`` matches directly.

        Raises:
            ConfigError: Unknown method or value, or nothing matches a name, tag or path.
        """
        if method is None:
            if "/" in value or value.endswith((".sql", ".py", ".csv", ".yml", ".yaml")):
                return self.path(value, selector)  # dbt: a bare path selects by path
            return self.name(value, selector)
        method = method.lower()
        if method == "config.materialized":
            return self.materialized(value, selector)
        if method.startswith("config.") and len(method) > len("config."):
            return self.config(method.removeprefix("config."), value)
        handler = {
            "fqn": self.name, "tag": self.tag, "path": self.path, "file": self.file,
            "resource_type": self.resource_type, "source": self.source, "state": self.state,
            "test_name": self.test_name, "test_type": self.test_type,
        }.get(method)
        if handler is None:
            raise ConfigError(f"selector '{selector}': unknown method '{method}:'; tierpool knows "
                              f"{', '.join(m + ':' for m in METHODS)}{_close(method, METHODS)}")
        return handler(value, selector)

    def _nodes(self, keep: Any) -> set[str]:
        return {name for name, node in self.project.nodes.items() if keep(node)}

    def _tests(self, keep: Any) -> set[str]:
        return {name for name, test in self.project.tests.items() if keep(test)}

    # -- methods --------------------------------------------------------------------------

    def name(self, value: str, selector: str) -> Matched:
        """A node, a relation (a Python output selects its model) or a test, by name."""
        pattern = normalize_name(value)
        owner = self.project.relation_owner
        nodes = {n for n in self.project.nodes if fnmatchcase(n, pattern)}
        nodes |= {owner[r] for r in owner if fnmatchcase(r, pattern)}
        tests = {t for t in self.project.tests if fnmatchcase(t, pattern)}
        if not nodes and not tests:
            if has_wildcard(pattern):
                raise ConfigError(f"selector '{selector}': no node, table or test matches '{value}'")
            known = set(self.project.nodes) | set(owner) | set(self.project.tests)
            raise ConfigError(
                f"selector '{selector}': no node or table named '{value}'{_close(pattern, known)}")
        return nodes, tests

    def tag(self, value: str, selector: str) -> Matched:
        """Nodes with the tag; tests with it themselves (a test of a tagged node is selected
        indirectly)."""
        nodes = self._nodes(lambda n: any(fnmatchcase(t, value) for t in n.tags))
        tests = self._tests(lambda t: t.spec is not None and any(fnmatchcase(g, value) for g in t.spec.tags))
        if not nodes and not tests:
            known = {t for n in self.project.nodes.values() for t in n.tags}
            known |= {g for t in self.project.tests.values() if t.spec for g in t.spec.tags}
            listed = f" (tags in this project: {', '.join(sorted(known))})" if known else \
                " (no node has tags: add tags: [...] or config: {tags: [...]} in a properties yml)"
            raise ConfigError(f"selector '{selector}': no node or test has tag '{value}'"
                              f"{_close(value, known) or listed}")
        return nodes, tests

    def _relpath(self, path: Path | None) -> str | None:
        return None if path is None else self.project.display(self.project.root / path)

    def path(self, value: str, selector: str) -> Matched:
        """Nodes and tests whose file is the path or lies under it (relative to the project)."""
        raw = Path(value).expanduser()
        wanted = self.project.display(raw if raw.is_absolute() else self.project.root / raw)
        wanted = posixpath.normpath(wanted)

        def inside(path: Path | None) -> bool:
            rel = self._relpath(path)
            return rel is not None and (wanted == "." or rel == wanted or rel.startswith(wanted + "/")
                                        or fnmatchcase(rel, wanted))

        nodes, tests = self._nodes(lambda n: inside(n.path)), self._tests(lambda t: inside(t.path))
        if not nodes and not tests:
            every = (*self.project.nodes.values(), *self.project.tests.values())
            files = {self._relpath(x.path) for x in every}
            known = {p for f in files if f for p in (f, posixpath.dirname(f)) if p}
            raise ConfigError(f"selector '{selector}': no node or test is defined in '{wanted}' "
                              f"(paths are relative to the project dir){_close(wanted, known)}")
        return nodes, tests

    def file(self, value: str, selector: str) -> Matched:
        """Nodes and tests whose file name (or its stem) matches."""
        def hit(path: Path | None) -> bool:
            parts = () if path is None else (Path(path).name, Path(path).stem)
            return any(fnmatchcase(part, value) for part in parts)

        nodes, tests = self._nodes(lambda n: hit(n.path)), self._tests(lambda t: hit(t.path))
        if not nodes and not tests:
            raise ConfigError(f"selector '{selector}': no node or test is defined in a file named '{value}'")
        return nodes, tests

    def materialized(self, value: str, selector: str) -> Matched:
        """``config.materialized:`` (a seed is ``seed``, a Python model each of its outputs')."""
        value = value.lower()
        _choice(selector, "materialization", value, MATERIALIZED)
        nodes = self._nodes(lambda n: any(fnmatchcase(m, value) for m in materializations(n)))
        tests = set(self.project.tests) if fnmatchcase("test", value) else set()
        return nodes, tests

    def config(self, key: str, value: str) -> Matched:
        """``config.<key>:value`` against each node's yml ``config:`` (lists: any item)."""
        def hit(config: dict[str, Any]) -> bool:
            found = config.get(key)
            items = found if isinstance(found, list | tuple) else [] if found is None else [found]
            return any(fnmatchcase(str(i).lower(), value.lower()) for i in items)

        return self._nodes(lambda n: hit(n.config)), set()

    def resource_type(self, value: str, selector: str) -> Matched:
        value = value.lower()
        _choice(selector, "resource type", value, tuple(RESOURCE_TYPES))
        kinds = {k for rt, ks in RESOURCE_TYPES.items() if fnmatchcase(rt, value) for k in ks}
        return self._nodes(lambda n: n.kind in kinds), set(self.project.tests) if "test" in kinds else set()

    def source(self, value: str, selector: str) -> Matched:
        """Sources by name (``source:raw.orders`` also works: the group is not kept)."""
        sources = {n for n, node in self.project.nodes.items() if node.kind == "source"}
        pattern = normalize_name(value)
        found = {n for n in sources if fnmatchcase(n, pattern)}
        if not found and "." in pattern:
            found = {n for n in sources if fnmatchcase(n, pattern.rsplit(".", 1)[1])}
        if not found:
            raise ConfigError(f"selector '{selector}': no source named '{value}'{_close(pattern, sources)}")
        return found, set()

    def test_name(self, value: str, selector: str) -> Matched:
        """Generic tests by kind (``test_name:not_null``), singular tests by name."""
        pattern = value.lower()
        tests = self._tests(lambda t: fnmatchcase(t.spec.kind if t.spec else t.name, pattern))
        if not tests:
            known = {t.spec.kind if t.spec else t.name for t in self.project.tests.values()}
            raise ConfigError(f"selector '{selector}': no test named '{value}'{_close(pattern, known)}")
        return set(), tests

    def test_type(self, value: str, selector: str) -> Matched:
        value = value.lower()
        if value == "unit":
            raise ConfigError(f"selector '{selector}': tierpool has no unit tests (data tests only)")
        _choice(selector, "test type", value, TEST_TYPES)
        return set(), self._tests(lambda t: fnmatchcase("data", value) or
                                  fnmatchcase("generic" if t.spec else "singular", value))

    # -- state ----------------------------------------------------------------------------

    def state(self, value: str, selector: str) -> Matched:
        """Against the target's build state (target/state.json, per warehouse).

        ``modified``: the node's input fingerprint differs from the stored one, or it has
        none (never built on this target, volatile SQL, a Python model: those always run),
        ``new``: no stored fingerprint, ``unmodified`` and ``old`` their complements.
        """
        value = value.lower()
        _choice(selector, "state", value, STATES)
        states = self._states()
        return {n for n, s in states.items() if any(fnmatchcase(x, value) for x in s)}, set()

    def _states(self) -> dict[str, set[str]]:
        state = self._build_state()
        found: dict[str, set[str]] = {}
        for name, node in self.project.nodes.items():
            new = not any(state.relations.get(r) for r in node.relations)
            try:
                current = state.node_fingerprint(node)
            except OSError:
                current = None
            stored = (state.relations.get(name) or {}).get("fingerprint")
            modified = new or current is None or current != stored
            found[name] = {"new" if new else "old", "modified" if modified else "unmodified"}
        return found

    def _build_state(self) -> BuildState:
        if self._state is None:
            from tierpool.core.state import BuildState

            key = self.state_key
            if key is None:
                from tierpool.adapters import adapter_for

                key = adapter_for(self.project.target, self.project.root, read_only=True).state_key
            self._state = BuildState(self.project, use_stored=True, key=key)
        return self._state
