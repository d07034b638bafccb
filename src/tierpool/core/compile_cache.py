"""Skip compile checks when nothing they read has changed since they last passed.

Column checks run sqlglot's qualifier over every model (milliseconds each), which
dominates a small build's start-up. After a successful check the fingerprint of
the project's own files (path, size, mtime of everything under seeds/, sql/,
python_models/, tests/data/ plus profiles.yml and tierpool_project.yml), the
target and the tierpool version is stored in target/compile_ok.json; the next
command with the same fingerprint trusts it. External files read by sources are
not part of it: a changed external schema surfaces as a runtime error instead.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

from tierpool import __version__
from tierpool import constants as c

if TYPE_CHECKING:
    from tierpool.core.project_model import Project

CACHE_FILE = "compile_ok.json"
_FOLDERS = (c.SEEDS_DIR, c.SQL_DIR, c.PYTHON_MODELS_DIR, c.DATA_TESTS_DIR)
_FILES = (c.PROFILES_FILE, c.PROJECT_FILE)


def fingerprint(project: Project) -> str:
    """A hash of every project input file's path, size and mtime, the target and the version."""
    return files_fingerprint(
        Path(project.root), f"{__version__}|{project.target.name}|{project.target.path}"
    )


def files_fingerprint(root: Path, prefix: str = "") -> str:
    """A hash of ``prefix`` and every project input file's path, size and mtime under ``root``."""
    digest = hashlib.sha256(prefix.encode())
    paths = [root / f for f in _FILES]
    for folder in _FOLDERS:
        for dirpath, dirnames, filenames in os.walk(root / folder):
            # Hidden folders count: the loader's ``**`` globs read files inside them too.
            dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
            paths += [Path(dirpath) / f for f in sorted(filenames)]
    for path in paths:
        try:
            st = path.stat()
        except OSError:
            continue
        digest.update(f"{path.relative_to(root)}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def is_fresh(project: Project, key: str) -> bool:
    """Whether the last successful compile check had this fingerprint."""
    try:
        data = json.loads((project.target_dir / CACHE_FILE).read_text())
    except (OSError, ValueError):
        return False
    return data.get("fingerprint") == key


def remember(project: Project, key: str) -> None:
    """Record that the compile check passed for this fingerprint."""
    project.target_dir.mkdir(parents=True, exist_ok=True)
    (project.target_dir / CACHE_FILE).write_text(json.dumps({"fingerprint": key}) + "\n")
