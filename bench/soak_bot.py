"""`python -m bench.soak_bot`: exactly `python -m bot`, plus two fault switches for the soak.

The soak (:mod:`bench.soak`) kills processes from outside, but a database that turns read-only
or a disk that fills up cannot be arranged from outside an open file descriptor. So this
entry point, and nothing in the product, lets a signal flip them for SOAK_FAULT_SECONDS:

- SIGUSR1: the bot's SQLite connection becomes read-only (``PRAGMA query_only``): every write
  fails with "attempt to write a readonly database", as on a remounted file system;
- SIGUSR2: no file may grow (``RLIMIT_FSIZE`` 0): writes fail with EFBIG, as on a full disk.
  SQLite's WAL and the MP4s are hit alike; the log goes to a pipe, which has no size.
"""

from __future__ import annotations

import asyncio
import faulthandler
import logging
import os
import resource
import signal
import sys
from typing import Any

log = logging.getLogger("soak")

FAULT_SECONDS = float(os.environ.get("SOAK_FAULT_SECONDS", "3"))

_stores: list[Any] = []
_loop: asyncio.AbstractEventLoop | None = None


def _capture_store() -> None:
    """Remember the store the bot opens (the one connection to switch to read-only)."""
    from jobs.store import Store

    opened = Store.open.__func__  # type: ignore[attr-defined]

    async def open_and_remember(cls: type, *args: Any, **kwargs: Any) -> Any:
        global _loop
        store = await opened(cls, *args, **kwargs)
        _stores.append(store)
        _loop = asyncio.get_running_loop()
        return store

    Store.open = classmethod(open_and_remember)  # type: ignore[method-assign, assignment]


async def _read_only() -> None:
    db = _stores[-1].db
    async with db._lock:
        await db._conn.execute("PRAGMA query_only = ON")
    log.warning("SOAK: the database is read-only for %g s", FAULT_SECONDS)
    await asyncio.sleep(FAULT_SECONDS)
    async with db._lock:
        await db._conn.execute("PRAGMA query_only = OFF")
    log.warning("SOAK: the database is writable again")


async def _disk_full() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, hard))
    log.warning("SOAK: the disk is full for %g s", FAULT_SECONDS)
    try:
        await asyncio.sleep(FAULT_SECONDS)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    log.warning("SOAK: the disk has room again")


def _on_signal(fault: Any) -> Any:
    def handler(signum: int, frame: Any) -> None:
        if _loop is not None and _stores:
            _loop.call_soon_threadsafe(lambda: _loop.create_task(fault()))  # type: ignore[union-attr]

    return handler


def _dump_tasks() -> None:
    for task in asyncio.all_tasks(_loop):
        task.print_stack(limit=12, file=sys.stderr)


def _on_quit(signum: int, frame: Any) -> None:
    """A stuck soak shows where: every thread, then every asyncio task."""
    faulthandler.dump_traceback(all_threads=True)
    if _loop is not None:
        _loop.call_soon_threadsafe(_dump_tasks)


def main() -> int:
    signal.signal(signal.SIGQUIT, _on_quit)
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails, not kills
    signal.signal(signal.SIGUSR1, _on_signal(_read_only))
    signal.signal(signal.SIGUSR2, _on_signal(_disk_full))
    _capture_store()
    from bot.__main__ import main as bot_main

    return bot_main()


if __name__ == "__main__":
    sys.exit(main())
