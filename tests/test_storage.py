"""What start-up refuses about storage, and the lock that gives one process the queue."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from jobs import DatabaseInUse, ProcessLock, StorageUnusable, check_storage


def test_usable_storage_passes(tmp_path: Path) -> None:
    check_storage(tmp_path / "data" / "bot.sqlite3", tmp_path / "data" / "outputs")
    assert (tmp_path / "data" / "outputs").is_dir()


def test_a_lost_database_beside_old_videos_is_refused(tmp_path: Path) -> None:
    outputs = tmp_path / "outputs"
    outputs.mkdir()
    for n in (1, 2):
        (outputs / f"{n}.mp4").write_bytes(b"mp4")
    with pytest.raises(StorageUnusable) as info:
        check_storage(tmp_path / "bot.sqlite3", outputs)
    assert "is missing" in str(info.value) and "2 videos" in str(info.value)
    (tmp_path / "bot.sqlite3").write_bytes(b"")  # restored: fine again
    check_storage(tmp_path / "bot.sqlite3", outputs)


def test_an_unwritable_output_dir_is_refused(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("not a folder")
    with pytest.raises(StorageUnusable, match="Cannot write to .*a-file/outputs .*OUTPUT_DIR"):
        check_storage(tmp_path / "bot.sqlite3", tmp_path / "a-file" / "outputs")


def test_too_little_free_disk_is_refused(tmp_path: Path) -> None:
    free = os.statvfs(tmp_path).f_bavail * os.statvfs(tmp_path).f_frsize
    with pytest.raises(StorageUnusable, match="MiB free on the disk"):
        check_storage(tmp_path / "bot.sqlite3", tmp_path / "out", min_free=free + 2**40)


def test_one_process_holds_the_database(tmp_path: Path) -> None:
    database = tmp_path / "bot.sqlite3"
    with ProcessLock(database):
        with pytest.raises(DatabaseInUse) as info:
            ProcessLock(database).acquire()
        assert f"pid {os.getpid()} on " in str(info.value) and str(database) in str(info.value)
    with ProcessLock(database):  # released: the next start takes it
        pass


def test_storage_faults_are_told_apart_from_bugs() -> None:
    """A read-only or full database is the member's "try again later"; a bug is not."""
    import errno
    import sqlite3

    from jobs import is_storage_fault

    assert is_storage_fault(sqlite3.OperationalError("attempt to write a readonly database"))
    assert is_storage_fault(sqlite3.OperationalError("database or disk is full"))
    assert is_storage_fault(OSError(errno.ENOSPC, "No space left on device"))
    assert not is_storage_fault(sqlite3.OperationalError("no such table: jobs"))
    assert not is_storage_fault(OSError(errno.ENOENT, "No such file or directory"))
