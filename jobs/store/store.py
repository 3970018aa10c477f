"""The credits ledger and the job queue of record, in one SQLite file.

Open with :meth:`Store.open`; safe to share between coroutines and between processes. The
credits half lives in :mod:`jobs.store.credits`, the queue half in :mod:`jobs.store.queue`,
blocks in :mod:`jobs.store.moderation`, totals and activity in :mod:`jobs.store.reports`, a
member's kept clips and the retention sweep in :mod:`jobs.store.library`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from jobs.records import CreditPolicy
from jobs.store.credits import Credits
from jobs.store.db import Database
from jobs.store.library import Library
from jobs.store.moderation import Moderation
from jobs.store.queue import JobQueue
from jobs.store.reports import Reports


class Store(Credits, JobQueue, Moderation, Reports, Library):
    def __init__(
        self, db: Database, policy: CreditPolicy, clock: Callable[[], float] = time.time
    ) -> None:
        self.db = db
        self.policy = policy
        self.clock = clock

    @classmethod
    async def open(
        cls,
        path: str | Path,
        policy: CreditPolicy | None = None,
        *,
        clock: Callable[[], float] = time.time,
    ) -> Store:
        return cls(await Database.open(path), policy or CreditPolicy(), clock)

    async def close(self) -> None:
        await self.db.close()

    async def __aenter__(self) -> Store:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def get_meta(self, key: str) -> str | None:
        async with self.db.read() as tx:
            row = await tx.fetchone("SELECT value FROM meta WHERE key = ?", key)
        return None if row is None else row["value"]

    async def set_meta(self, key: str, value: str) -> None:
        async with self.db.write() as tx:
            await tx.execute(
                "INSERT INTO meta (key, value) VALUES (?, ?)"
                " ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (key, value),
            )
