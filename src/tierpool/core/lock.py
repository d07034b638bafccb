"""The build lock: target/tierpool.core.lock holds the pid of the command writing the warehouse.

DuckDB's own file lock is released while a Python model runs (so other processes
can read the warehouse during a long fit); this lock keeps a second build out for
the whole build, including that window. A lock whose process is gone is taken over.
"""

from __future__ import annotations

import os
from pathlib import Path
from types import TracebackType

from tierpool.errors import DatabaseError


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _read_holder(path: Path) -> tuple[int, str]:
    try:
        pid_text, _, command = path.read_text().partition("\n")
        return int(pid_text.strip()), command.strip()
    except (OSError, ValueError):
        return -1, ""


class BuildLock:
    """Exclusive lock file for a writing command; use as a context manager.

    Args:
        lock_path: The lock file (target/tierpool.core.lock).
        warehouse: The warehouse as named in the error message (``Adapter.description``).
        command: What holds the lock, e.g. "tierpool build".
    """

    def __init__(self, lock_path: Path, warehouse: str | Path, command: str = "tierpool build") -> None:
        self.lock_path = Path(lock_path)
        self.warehouse = str(warehouse) if not isinstance(warehouse, Path) else f"database {warehouse}"
        self.command = command
        self._held = False

    def acquire(self) -> None:
        """Take the lock or raise DatabaseError naming the process that holds it."""
        self.lock_path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(3):  # a stale lock is removed, then creation is retried
            try:
                fd = os.open(self.lock_path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                pid, command = _read_holder(self.lock_path)
                if pid == os.getpid() or not _pid_alive(pid):
                    self.lock_path.unlink(missing_ok=True)
                    continue
                raise DatabaseError(
                    f"{self.warehouse} is in use by process {pid} ({command or 'tierpool'}). "
                    f"Wait for it to finish, or if that process is gone, delete {self.lock_path}."
                ) from None
            with os.fdopen(fd, "w") as handle:
                handle.write(f"{os.getpid()}\n{self.command}\n")
            self._held = True
            return
        raise DatabaseError(f"could not take the build lock {self.lock_path}; retry")

    def release(self) -> None:
        """Remove the lock file if this process holds it."""
        if self._held:
            pid, _ = _read_holder(self.lock_path)
            if pid == os.getpid():
                self.lock_path.unlink(missing_ok=True)
            self._held = False

    def __enter__(self) -> BuildLock:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()
