"""A member's library: the clips delivered to them whose MP4 the bot still keeps.

Newest first, optionally favourites only; a favourite flag per clip; and the retention sweep
that forgets clips older than the operator's retention period (favourites by their own,
longer one), in batches, each batch one transaction.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from jobs.records import Job, LibraryPage
from jobs.refusals import UnknownJob
from jobs.store.db import Database
from jobs.store.queue import forget_in

# Literal on purpose: the partial indexes of migration 5 are used only when the query repeats
# their WHERE clause word for word (a bound parameter would not prove it).
IN_LIBRARY = "status = 'delivered' AND result_path IS NOT NULL"


class Library:
    db: Database
    clock: Callable[[], float]

    async def library(
        self, user_id: int, *, favourites: bool = False, offset: int = 0, limit: int = 4
    ) -> LibraryPage:
        """The member's kept clips, newest first, `limit` of them after the `offset` newest."""
        where = f"user_id = ? AND {IN_LIBRARY}" + (" AND favourite = 1" if favourites else "")
        async with self.db.read() as tx:
            total = await Database.scalar(tx, f"SELECT COUNT(*) FROM jobs WHERE {where}", user_id)
            rows = await tx.fetchall(
                f"SELECT * FROM jobs WHERE {where} ORDER BY id DESC LIMIT ? OFFSET ?",
                user_id, limit, max(0, offset),
            )
        return LibraryPage(jobs=[Job.from_row(row) for row in rows], total=total, offset=offset)

    async def set_favourite(self, job_id: int, favourite: bool) -> Job:
        """Mark or unmark a clip in the library; UnknownJob when it is not (or no longer) there."""
        async with self.db.write() as tx:
            cursor = await tx.execute(
                f"UPDATE jobs SET favourite = ? WHERE id = ? AND {IN_LIBRARY}",
                (int(favourite), job_id),
            )
            if not cursor.rowcount:
                raise UnknownJob(job_id)
            row = await tx.fetchone("SELECT * FROM jobs WHERE id = ?", job_id)
        return Job.from_row(row)

    async def forget_expired(
        self,
        *,
        delivered_before: float | None,
        favourites_before: float | None,
        limit: int = 100,
    ) -> list[Job]:
        """Forget up to `limit` kept clips delivered before `delivered_before` (favourites:
        before `favourites_before`; None: kept forever), as a member's Delete does. Returns
        them as they were, for the caller to remove their MP4s."""
        kinds: list[str] = []
        args: list[Any] = []
        if delivered_before is not None:
            kinds.append("(favourite = 0 AND delivered_at < ?)")
            args.append(delivered_before)
        if favourites_before is not None:
            kinds.append("(favourite = 1 AND delivered_at < ?)")
            args.append(favourites_before)
        if not kinds:
            return []
        async with self.db.write() as tx:
            rows = await tx.fetchall(
                f"SELECT * FROM jobs WHERE {IN_LIBRARY} AND ({' OR '.join(kinds)})"
                " ORDER BY delivered_at LIMIT ?",
                *args, limit,
            )
            jobs = [Job.from_row(row) for row in rows]
            for job in jobs:
                await forget_in(tx, job)
        return jobs
