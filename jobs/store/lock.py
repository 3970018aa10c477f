"""One process owns the queue of record: an exclusive lock on a file beside the database.

A second bot on the same database would requeue the first one's running jobs and render them
twice, so it must refuse to start, saying which process holds the queue. The operating
system drops the lock when the holder exits, however it exits, so a crash never leaves a
stale lock behind.
"""

from __future__ import annotations

import fcntl
import os
import socket
from pathlib import Path


class DatabaseInUse(Exception):
    """Another process holds the database; the message is one line for the operator."""


class ProcessLock:
    def __init__(self, database: str | os.PathLike[str]) -> None:
        self.database = Path(database)
        self.path = self.database.with_name(self.database.name + ".lock")
        self._fd: int | None = None

    def acquire(self) -> ProcessLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise DatabaseInUse(
                f"Another animate-bot ({holder}) is using {self.database}; stop it first, or "
                "give this one its own DATABASE_PATH."
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> ProcessLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
