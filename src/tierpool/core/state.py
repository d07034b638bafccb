"""Build state: skip nodes and data tests whose inputs are unchanged since they last succeeded.

Every relation gets an input fingerprint (as sqlmesh fingerprints its snapshots):

* seed: the CSV's bytes, the SELECT that loads it (path, declared types) and its config;
* source: the expression plus (path, size, mtime_ns) of every file its quoted path globs
  match (small files also by content); an expression that names no file, or whose globs
  match nothing, is *volatile* (fingerprint None: never unchanged);
* SQL model: its SQL text, materialization, unique_key, config and its parents'
  fingerprints (a parent without one makes the model volatile, as do volatile functions
  such as ``now()`` or ``random()``, and file reads in the SQL that match nothing);
* Python model output: the model always runs and judges its own reuse; an output's
  fingerprint is derived from its previous one and the rows written this run, so an
  ``append`` output that received no row keeps it and its downstream stays unchanged.

A ``table`` node (or an ``append`` or ``incremental`` SQL node with a unique_key, whose
rerun is idempotent) whose fingerprint equals the one stored after its last successful build,
and whose relation still exists with the same kind, is not rebuilt. A data test whose
SQL and the fingerprints of everything it reads are unchanged since it last *passed* is
not rerun. Failures never record state and forget what was stored. The state lives in
``target/state.json``, one entry per database path; ``--full-refresh`` ignores it.

An incremental model's entry also keeps its *basis* (:class:`tierpool.core.incremental.Basis`):
the digests of its lookup parents' contents and of the SQL its rows were computed with at
its last successful build. An incremental model is never skipped while an event parent has
new rows: their fingerprint (files, SQL, parents) changed, so the model's did too.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import re
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tierpool import __version__
from tierpool.core.nodes import DataTest, Node

if TYPE_CHECKING:
    from tierpool.core.project_model import Project

STATE_FILE = "state.json"
FORMAT = 1
UP_TO_DATE = "up to date"  # message of a node that was not rebuilt
UNCHANGED = "unchanged"  # message of a data test that was not rerun
# Files up to this size are fingerprinted by content too (mtime granularity can hide edits).
CONTENT_HASH_MAX_BYTES = 4 * 2**20

_DOC_KEYS = frozenset({"meta", "tags", "docs", "description"})  # config keys that change nothing
_LITERAL = re.compile(r"'((?:[^']|'')*)'")
_COMMENTS = re.compile(r"--[^\n]*|/\*.*?\*/", re.S)
# Functions whose result changes between runs with the same inputs; matched outside string
# literals and comments. A column that happens to share a name is harmless: it only reruns.
_VOLATILE = re.compile(
    r"\b(now|current_timestamp|current_date|current_time|current_localtimestamp|localtimestamp"
    r"|localtime|get_current_timestamp|get_current_time|transaction_timestamp|today|random"
    r"|setseed|uuid|uuidv4|uuidv7|gen_random_uuid|getenv|getvariable|current_setting"
    r"|nextval|currval|duckdb_\w+|pragma_\w+|information_schema)\b",
    re.I,
)
_FILE_READ = re.compile(
    r"\b(read_\w+|\w+_scan|glob|sniff_csv)\s*\(|\b(from|join)\s+'|\battach\b", re.I
)


def _digest(*parts: Any) -> str:
    text = json.dumps([__version__, *parts], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _file_digest(path: Path) -> str:
    sha = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(2**20), b""):
            sha.update(block)
    return sha.hexdigest()


def _code_only(sql: str) -> str:
    """SQL without comments and string literals (for function-name checks)."""
    return _LITERAL.sub("''", _COMMENTS.sub(" ", sql))


def is_volatile_sql(sql: str) -> bool:
    """Whether a query calls something that can change between runs with the same inputs.

    >>> is_volatile_sql("select 'random' as mode, now() as at")
    True
    >>> is_volatile_sql("select 'random' as mode -- not now()")
    False
    """
    return bool(_VOLATILE.search(_code_only(sql)))


def file_inputs(text: str, root: Path) -> list[tuple[str, list[tuple[str, int, int, str]]]] | None:
    """The files each quoted path glob in ``text`` matches, with size, mtime_ns (and content).

    Relative globs resolve against ``root`` (as the engine's file_search_path does).

    Returns:
        One (literal, [(path, size, mtime_ns, content digest or "")]) per literal, or None
        when no literal matches any file (the reader is then volatile). URLs are volatile.
    """
    found, matched_any = [], False
    for literal in sorted({m.replace("''", "'") for m in _LITERAL.findall(text)}):
        if "://" in literal:
            return None
        if not literal.strip() or "\n" in literal:
            continue
        pattern = os.path.expanduser(literal)
        pattern = pattern if os.path.isabs(pattern) else str(Path(root) / pattern)
        files = []
        for name in sorted(glob.glob(pattern, recursive=True)):
            path = Path(name)
            if not path.is_file():
                continue
            st = path.stat()
            content = _file_digest(path) if st.st_size <= CONTENT_HASH_MAX_BYTES else ""
            files.append((name, st.st_size, st.st_mtime_ns, content))
        matched_any = matched_any or bool(files)
        found.append((literal, files))
    return found if matched_any else None


class BuildState:
    """Stored and current fingerprints of one database's relations and data tests.

    Args:
        project: The loaded project (root, target, relation owners).
        use_stored: False for ``--full-refresh``: nothing is considered unchanged, but
            successful nodes and tests still record their fingerprints.
        key: The warehouse's entry in the state file (``Adapter.state_key``; default:
            the target's resolved path).
    """

    def __init__(self, project: Project, use_stored: bool = True, key: str | None = None) -> None:
        self.project = project
        self.use_stored = use_stored
        self.path = project.target_dir / STATE_FILE
        # One entry per warehouse (the adapter's state_key; a DuckDB file's path).
        self.key = key if key is not None else str(Path(project.target.path).resolve())
        self.relations: dict[str, dict[str, Any]] = {}
        self.tests: dict[str, str] = {}
        self.current: dict[str, str | None] = {}  # fingerprints computed in this run
        # Bases of incremental models written in this run, kept by record_node.
        self._bases: dict[str, dict[str, Any]] = {}
        self._load()

    # -- storage --------------------------------------------------------------------------

    def _read_all(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            return {}
        return data

    def _load(self) -> None:
        entry = self._read_all().get("databases", {}).get(self.key, {})
        self.relations = dict(entry.get("relations", {}))
        self.tests = dict(entry.get("tests", {}))

    def save(self) -> None:
        """Write the state atomically (other databases' entries are kept)."""
        data = self._read_all()
        databases = data.get("databases", {}) if data else {}
        databases[self.key] = {"relations": self.relations, "tests": self.tests}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{STATE_FILE}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"format": FORMAT, "databases": databases}, indent=1, sort_keys=True))
        os.replace(tmp, self.path)

    # -- fingerprints ---------------------------------------------------------------------

    def relation_fingerprint(self, relation: str) -> str | None:
        """This run's fingerprint of a relation, else the stored one, else None."""
        if relation in self.current:
            return self.current[relation]
        stored = self.relations.get(relation)
        return stored.get("fingerprint") if stored else None

    def _parents(self, node: Node) -> list[tuple[str, str]] | None:
        pairs = []
        for rel in sorted(set(node.depends_on)):
            fp = self.relation_fingerprint(rel)
            if fp is None:
                return None
            pairs.append((rel, fp))
        return pairs

    def node_fingerprint(self, node: Node) -> str | None:
        """Input fingerprint of a seed, source or SQL model (None: volatile or unknown)."""
        root = self.project.root
        if node.kind == "seed":
            path = node.path if node.path and Path(node.path).is_absolute() else root / str(node.path)
            if not Path(path).is_file():
                return None
            types = {c.name: c.type for c in node.columns if c.type}
            return _digest("seed", str(path), types, _file_digest(Path(path)), node.config)
        if node.kind == "source":
            expression = getattr(node, "expression", "")
            files = file_inputs(expression, root)
            return None if files is None else _digest("source", expression, files, node.config)
        if node.kind == "sql":
            return self._sql_fingerprint(node)
        return None

    def _sql_fingerprint(self, node: Node) -> str | None:
        sql = getattr(node, "sql", "")
        if is_volatile_sql(sql):
            return None
        files: Any = ()
        if _FILE_READ.search(_COMMENTS.sub(" ", sql)):
            files = file_inputs(sql, self.project.root)
            if files is None:
                return None
        parents = self._parents(node)
        if parents is None:
            return None
        return _digest("sql", sql, node.materialized, list(node.unique_key), node.config, files, parents)

    # -- nodes ----------------------------------------------------------------------------

    def can_skip(self, node: Node, fingerprint: str | None, existing_kind: str | None) -> bool:
        """Whether ``node`` is up to date: same fingerprint as its last success, relation present.

        Views are always re-created (cheap); an ``append`` without unique_key always runs
        (each run adds rows); Python models always run.
        """
        if not self.use_stored or fingerprint is None or node.kind not in ("seed", "sql"):
            return False
        if node.materialized == "view" or (node.materialized == "append" and not node.unique_key):
            return False
        stored = self.relations.get(node.name)
        return bool(stored) and stored.get("fingerprint") == fingerprint and existing_kind == "table"

    def record_node(self, node: Node, fingerprint: str | None) -> None:
        """A seed, source or SQL model built successfully with this input fingerprint.

        An incremental model keeps its basis: the one noted by this build
        (:meth:`note_incremental`), else the stored one (it was not rebuilt).
        """
        self.current[node.name] = fingerprint
        basis = self._bases.pop(node.name, None)
        if basis is None:
            basis = (self.relations.get(node.name) or {}).get("incremental")
        if basis is not None and node.materialized == "incremental":
            # kept even without a fingerprint (volatile parents): it is what the rows hold
            self.relations[node.name] = {"fingerprint": fingerprint, "node": node.name,
                                         "incremental": basis}
        elif fingerprint is None:
            self.relations.pop(node.name, None)
        else:
            self.relations[node.name] = {"fingerprint": fingerprint, "node": node.name}

    def forget_node(self, node: Node) -> None:
        """A node failed (or is about to change its relations): its next run must rebuild."""
        for rel in node.relations:
            self.relations.pop(rel, None)
            self._bases.pop(rel, None)
            self.current[rel] = None

    # -- incremental models -------------------------------------------------------------

    def incremental_basis(self, name: str) -> dict[str, Any] | None:
        """The basis stored with an incremental model's last successful build (None: none)."""
        stored = self.relations.get(name)
        return stored.get("incremental") if stored else None

    def note_incremental(self, name: str, basis: dict[str, Any]) -> None:
        """What an incremental model's new rows were computed with; stored by record_node
        once the build succeeds (a failed build forgets it, and the next one is full)."""
        self._bases[name] = basis

    def incremental_code(self, node: Node, event_parents: list[str]) -> dict[str, str]:
        """Digests of the SQL an incremental model's rows come from: its own (with its
        config) and that of every SQL model and source its event parents are made from
        (walking up through SQL models; seeds and Python models end the walk)."""
        nodes, owner = self.project.nodes, self.project.relation_owner
        config = {k: v for k, v in node.config.items() if k not in _DOC_KEYS}
        code = {node.name: _digest("incremental", getattr(node, "sql", ""), node.materialized,
                                   list(node.unique_key), config)}
        stack = [owner.get(rel, rel) for rel in event_parents]
        while stack:
            name = stack.pop()
            parent = nodes.get(name)
            if name in code or parent is None or parent.kind not in ("sql", "source"):
                continue
            code[name] = _digest(parent.kind, getattr(parent, "sql", ""),
                                 getattr(parent, "expression", ""), parent.materialized)
            stack.extend(owner.get(rel, rel) for rel in parent.depends_on)
        return code

    def previous_outputs(self, node: Node) -> dict[str, str | None]:
        """Stored fingerprints of a Python model's outputs (before it runs)."""
        return {rel: (self.relations.get(rel) or {}).get("fingerprint") for rel in node.relations}

    def record_python(
        self, node: Node, previous: dict[str, str | None], written: dict[str, int],
        existed: dict[str, bool], contents: dict[str, str] | None = None,
    ) -> None:
        """A Python model wrote its outputs: derive each output's new fingerprint.

        ``contents``: a digest of the rows of each output (``Adapter.relation_digests``);
        an output with one is fingerprinted by it, so a model that wrote the same rows
        again (a reused fit, kept hold-out scores, no interim data) leaves its downstream
        up to date. Without one, an ``append`` output that received no row, existed before
        and had a fingerprint keeps it; any other output gets a fresh one.
        """
        specs = {o.name: o for o in getattr(node, "outputs", ())}
        contents = contents or {}
        for rel in node.relations:
            prev, rows = previous.get(rel), written.get(rel)
            spec = specs.get(rel)
            kept = spec is not None and spec.materialized == "append" and rows == 0
            if rel in contents:
                fp = _digest("python-rows", rel, contents[rel])
            elif kept and prev is not None and existed.get(rel):
                fp = prev
            else:
                fp = _digest("python", node.name, rel, prev, rows, time.time_ns())
            self.current[rel] = fp
            self.relations[rel] = {"fingerprint": fp, "node": node.name}

    # -- data tests -----------------------------------------------------------------------

    def test_key(self, test: DataTest) -> str | None:
        """Fingerprint of a test: its SQL and severity plus everything it reads (None: volatile)."""
        if is_volatile_sql(test.sql) or _FILE_READ.search(_COMMENTS.sub(" ", test.sql)):
            return None
        reads = []
        for rel in sorted(set(test.depends_on) | set(test.attached_to)):
            fp = self.relation_fingerprint(rel)
            if fp is None:
                return None
            reads.append((rel, fp))
        return _digest("test", test.sql, test.severity, reads)

    def test_unchanged(self, test: DataTest, key: str | None) -> bool:
        """Whether the test passed last time with this same key."""
        return self.use_stored and key is not None and self.tests.get(test.name) == key

    def record_test(self, test: DataTest, key: str | None, status: str) -> None:
        """Remember a pass; forget anything else (a failed or warned test reruns)."""
        if status == "pass" and key is not None:
            self.tests[test.name] = key
        else:
            self.tests.pop(test.name, None)
