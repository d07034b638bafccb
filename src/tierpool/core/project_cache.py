"""Reuse the last loaded Project when no project file changed (target/project_cache.pkl).

Loading a project parses every SQL file with sqlglot, which (with importing
sqlglot at all) dominates a small build's start-up. After a load the Project is
pickled with a key made of: the fingerprint of the project's files (path, size
and mtime, as in :mod:`tierpool.core.compile_cache`), the project dir, the tierpool
version, the resolved target and the expanded tierpool_project.yml (so
``--target``, ``$TIERPOOL_TARGET`` and every ``${VAR}`` that profiles.yml or
tierpool_project.yml expand are covered by their results). The next command with
the same key unpickles it instead of loading.

The parsed queries are not pickled (that would import sqlglot to unpickle): the
cached Project holds each query's text and parses it on first access. Any doubt
(unreadable, corrupt or foreign pickle, another key) means a normal load.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import pickle
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tierpool import __version__
from tierpool import constants as c
from tierpool.core import compile_cache

if TYPE_CHECKING:
    from sqlglot import exp

    from tierpool.core.project_model import Project

CACHE_FILE = "project_cache.pkl"
# Bump when the pickled layout changes, so older pickles are ignored.
_FORMAT = 3  # 2: strict configuration checks; 3: nodes carry tags


class LazyQueries(Mapping[str, "exp.Query"]):
    """``Project.parsed`` of a cached project: key -> query, parsed on first access.

    Args:
        texts: Key (as in ``Project.parsed``) -> (file text, path as named in errors).
    """

    def __init__(self, texts: dict[str, tuple[str, str]]) -> None:
        self._texts = dict(texts)
        self._parsed: dict[str, exp.Query] = {}

    def __getitem__(self, key: str) -> exp.Query:
        if key not in self._parsed:
            from tierpool.core.sql import parse_select

            text, display = self._texts[key]
            self._parsed[key] = parse_select(text, display)
        return self._parsed[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._texts)

    def __len__(self) -> int:
        return len(self._texts)

    def __getstate__(self) -> dict[str, Any]:
        # Parsed queries stay out of the pickle: unpickling them would import sqlglot.
        return {"_texts": self._texts, "_parsed": {}}


def cache_key(project_dir: Path | str, target: str | None) -> str | None:
    """The key a cached project must carry to be reused, or None when it cannot be made.

    Args:
        project_dir: The project folder.
        target: Target name (``--target``), as given to ``load_project``.

    Returns:
        A hex digest; None when the folder or its configuration cannot be read
        (the normal load then reports the problem).
    """
    from tierpool.core.config import load_project_config, load_target

    try:
        root = Path(project_dir).expanduser().resolve()
        if not root.is_dir():
            return None
        resolved = load_target(root, target)
        settings = load_project_config(root)
        prefix = f"{_FORMAT}|{__version__}|{root}|{resolved!r}|{settings!r}"
    except Exception:  # noqa: BLE001 - any doubt means a normal load
        return None
    return compile_cache.files_fingerprint(root, hashlib.sha256(prefix.encode()).hexdigest())


def _cache_path(project_dir: Path | str) -> Path:
    return Path(project_dir).expanduser().resolve() / c.TARGET_DIR / CACHE_FILE


def load(project_dir: Path | str, key: str | None) -> Project | None:
    """The cached project when its key is ``key``; None otherwise (or on any error)."""
    if key is None:
        return None
    try:
        with open(_cache_path(project_dir), "rb") as fh:
            data = pickle.load(fh)
    except Exception:  # noqa: BLE001 - missing, truncated, corrupt or foreign pickle
        return None
    from tierpool.core.project_model import Project

    if not isinstance(data, dict) or data.get("key") != key:
        return None
    project = data.get("project")
    return project if isinstance(project, Project) else None


def save(project: Project, key: str | None) -> None:
    """Store a freshly loaded project under ``key`` (best effort: errors are ignored).

    ``key`` must have been computed before the project was loaded, so that a file
    edited during the load makes the next command's key differ.
    """
    if key is None:
        return
    tmp: Path | None = None
    try:
        texts = {name: _source_text(project, name) for name in project.parsed}
        slim = dataclasses.replace(project, parsed=LazyQueries(texts))
        path = project.target_dir / CACHE_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{CACHE_FILE}.{os.getpid()}.tmp")
        with open(tmp, "wb") as fh:
            pickle.dump({"key": key, "project": slim}, fh, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp, path)
    except Exception:  # noqa: BLE001 - a missing cache only costs the next load
        if tmp is not None:
            tmp.unlink(missing_ok=True)


def _source_text(project: Project, key: str) -> tuple[str, str]:
    from tierpool.core.project_model import key_of_test

    owner = project.nodes.get(key)
    if owner is None:
        owner = next(t for n, t in project.tests.items() if key_of_test(n) == key)
    path = Path(owner.path)  # type: ignore[arg-type]
    return path.read_text(encoding="utf-8"), project.display(path)
