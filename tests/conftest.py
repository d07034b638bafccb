"""Shared pytest fixtures: fixture projects copied or written into tmp_path."""

from __future__ import annotations

import shutil
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"
PROJECTS = FIXTURES / "projects"


@pytest.fixture
def copy_project(tmp_path: Path) -> Callable[[str], Path]:
    """Copy ``tests/fixtures/projects/<name>`` into tmp_path and return the copy."""

    def copy(name: str) -> Path:
        dest = tmp_path / name
        shutil.copytree(PROJECTS / name, dest, ignore=shutil.ignore_patterns("target"))
        return dest

    return copy


@pytest.fixture
def project_factory(tmp_path: Path) -> Callable[..., Path]:
    """Write a project from a dict of ``relative path -> file text`` (dedented).

    ``base`` copies a fixture project first, so a test can add or override files.
    """

    def make(files: dict[str, str], base: str | None = None, name: str = "project") -> Path:
        root = tmp_path / name
        if base is not None:
            shutil.copytree(PROJECTS / base, root, ignore=shutil.ignore_patterns("target"))
        root.mkdir(parents=True, exist_ok=True)
        for rel, text in files.items():
            path = root / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
        return root

    return make
