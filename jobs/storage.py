"""Before the first job: the database and the video folder are usable, with room to spare.

A job that renders for minutes and then cannot be written helps nobody, and an empty database
created in place of a lost one silently resets every member's credits; both are refused at
start, in one line that says what to do.
"""

from __future__ import annotations

import errno
import os
import shutil
import sqlite3
import tempfile
from pathlib import Path

MIN_FREE_BYTES = 256 * 2**20
"""Below this much free disk a few clips fill it: refuse to start rather than fail jobs."""


class StorageUnusable(Exception):
    """The database or the video folder cannot be used; the message is one line."""


def check_storage(database: Path, output_dir: Path, *, min_free: int = MIN_FREE_BYTES) -> None:
    database, output_dir = Path(database), Path(output_dir)
    videos = sorted(output_dir.glob("*.mp4")) if output_dir.is_dir() else []
    if not database.exists() and videos:
        raise StorageUnusable(
            f"The database {database} is missing, but {output_dir} holds {len(videos)} videos "
            "from an earlier run: restore the database from a backup (starting afresh would "
            "reset every member's credits), or move the videos away to start a new one."
        )
    for folder, what in ((database.parent, "the database"), (output_dir, "OUTPUT_DIR")):
        try:
            folder.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-check-"):
                pass
        except OSError as exc:
            raise StorageUnusable(
                f"Cannot write to {folder} ({what}): {exc.strerror or exc}; fix its "
                "permissions or point the setting elsewhere."
            ) from None
        free = shutil.disk_usage(folder).free
        if free < min_free:
            raise StorageUnusable(
                f"Only {free / 2**20:.0f} MiB free on the disk of {folder} ({what}); free "
                f"at least {min_free / 2**20:.0f} MiB."
            )
    if database.exists() and not os.access(database, os.R_OK | os.W_OK):
        raise StorageUnusable(f"Cannot read and write the database {database}; fix its permissions.")


_FULL_OR_READ_ONLY = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EIO, errno.EACCES}


_SQLITE_REFUSALS = ("readonly", "read-only", "disk", "full", "locked", "unable to open")
"""What SQLite says when the file or the disk refuses (not a bug such as "no such table")."""


def is_storage_fault(error: BaseException) -> bool:
    """Whether `error` is the database or the disk refusing a write (read-only, full, an I/O
    error): the member is told to try again later, not that something broke."""
    if isinstance(error, sqlite3.OperationalError):
        return any(word in str(error).lower() for word in _SQLITE_REFUSALS)
    return isinstance(error, OSError) and error.errno in _FULL_OR_READ_ONLY
