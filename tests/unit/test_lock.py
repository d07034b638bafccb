"""The build lock file: exclusive, names its holder, stale locks are taken over."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tierpool.core.lock import BuildLock
from tierpool.errors import DatabaseError


def test_second_lock_names_live_holder(tmp_path):
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        (tmp_path / "tierpool.core.lock").write_text(f"{sleeper.pid}\ntierpool build\n")
        with pytest.raises(DatabaseError) as info:
            BuildLock(tmp_path / "tierpool.core.lock", tmp_path / "w.duckdb").acquire()
        assert f"is in use by process {sleeper.pid} (tierpool build)" in str(info.value)
        assert "Wait for it to finish" in str(info.value)
    finally:
        sleeper.kill()
        sleeper.wait()


def test_stale_lock_is_taken_over_and_released(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    lock_file = tmp_path / "tierpool.core.lock"
    lock_file.write_text(f"{dead.pid}\ntierpool build\n")
    with BuildLock(lock_file, tmp_path / "w.duckdb"):
        assert lock_file.read_text().split()[0] == str(os.getpid())
    assert not lock_file.exists()
