"""Headless Chromium for the tests that open tierpool's HTML (the report, the docs site).

Chromium (Debian's ``chromium``) is installed by the README's test command (.ci/run). Where
it is missing, the browser tests skip, except under CI (``CI`` or
``TIERPOOL_REQUIRE_CHROMIUM=1``), where they fail.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)


def require_chromium() -> str:
    """The Chromium executable; skips (fails under CI) when there is none."""
    if CHROMIUM:
        return CHROMIUM
    strict = os.environ.get("CI", "").lower() in ("1", "true") or os.environ.get("TIERPOOL_REQUIRE_CHROMIUM") == "1"
    message = "chromium not installed: run the README's test command (.ci/run) or `apt-get install -y chromium`"
    if strict:
        pytest.fail(message)
    pytest.skip(message)


def dump_dom(page: Path, profile: Path, *options: str) -> str:
    """The DOM of a local page after load, as headless Chromium builds it."""
    assert page.is_file(), f"{page} does not exist"
    result = subprocess.run(
        [require_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={profile}",
         *options, "--dump-dom", page.as_uri()],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout
