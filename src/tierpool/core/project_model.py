"""The loaded project as data: :class:`Project` (what loading returns, what every stage reads).

Kept apart from loading (``project.py``) so that the checks run while loading
(``references.py``) and the later stages can name the type without importing the loader.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tierpool import constants as c
from tierpool.core.config import Target
from tierpool.core.graph import Graph
from tierpool.core.nodes import DataTest, Node
from tierpool.core.sql import TableRef, normalize_name
from tierpool.errors import ProjectError

if TYPE_CHECKING:
    from collections.abc import Mapping

    from sqlglot import exp


@dataclass(frozen=True)
class Project:
    """A loaded project: data only (runner, data_tests and fit hold the behaviour).

    Attributes:
        root: Absolute project dir.
        target: The resolved connection target.
        nodes: Seeds, sources, SQL models and Python models, by name.
        tests: Data tests (generic and singular), by name.
        relation_owner: Relation name -> name of the node that produces it (a
            Python model's outputs map to the Python model).
        vars: ``vars`` of tierpool_project.yml.
        settings: The whole tierpool_project.yml mapping.
        parsed: Parsed query of every SQL model (by name) and singular test (by
            ``key_of_test(name)``), so compile checks reuse it instead of parsing again.
            A project read from target/project_cache.pkl parses on first access.
        table_refs: Tables each SQL model / singular test reads, with lines
            (same keys as ``parsed``).
        ref_lines: For Python models: relation -> line of its ``ctx.ref``.
    """

    root: Path
    target: Target
    nodes: dict[str, Node]
    tests: dict[str, DataTest]
    relation_owner: dict[str, str]
    vars: dict[str, Any] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    parsed: Mapping[str, exp.Query] = field(default_factory=dict, repr=False, compare=False)
    table_refs: dict[str, tuple[TableRef, ...]] = field(default_factory=dict, repr=False)
    ref_lines: dict[str, dict[str, int]] = field(default_factory=dict, repr=False)

    @property
    def target_dir(self) -> Path:
        """``<root>/target``: artifacts, the default database, fits."""
        return self.root / c.TARGET_DIR

    def node_for(self, relation: str) -> Node:
        """The node that produces a relation (or has that node name).

        Raises:
            ProjectError: No such relation; the message lists the closest names.
        """
        name = normalize_name(relation)
        if name in self.relation_owner:
            return self.nodes[self.relation_owner[name]]
        if name in self.nodes:
            return self.nodes[name]
        close = difflib.get_close_matches(name, sorted(self.relation_owner), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ProjectError(f"no node or table named '{relation}'{hint}")

    def display(self, path: Path | None) -> str:
        """A path as shown in messages: relative to the project dir when inside it."""
        return display_path(self.root, path)

    def graph(self) -> Graph:
        """The graph of the project's nodes (seeds, sources, SQL and Python models).

        Data tests are not part of it: they run after their attached relations.
        """
        return Graph.from_nodes(self.nodes, self.relation_owner)


def key_of_test(name: str) -> str:
    """Key of a singular test in ``Project.parsed`` / ``table_refs`` (tests and
    nodes live in separate namespaces, so a test may share a model's name)."""
    return f"test:{name}"


def display_path(root: Path, path: Path | None) -> str:
    """``path`` relative to ``root`` (POSIX separators) when inside it."""
    if path is None:
        return "<project>"
    try:
        return Path(path).resolve().relative_to(root).as_posix()
    except ValueError:
        return str(path)
