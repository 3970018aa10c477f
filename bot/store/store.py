"""The credits ledger and the job queue of record, in one SQLite file.

Every state change is one transaction: a job is created together with its debit, and a job
that fails or is cancelled gets its refund in the same transaction that ends it. Transitions
are guarded by the current status in the UPDATE itself, so two processes racing to finish or
refund the same job cannot both succeed.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Collection, Sequence
from pathlib import Path
from typing import Any

from bot.store import ledger
from bot.store.db import Database, _Tx
from bot.store.models import (
    ACTIVE,
    Account,
    CreditPolicy,
    InsufficientCredits,
    InvalidAmount,
    Job,
    JobStatus,
    LedgerEntry,
    QueueFull,
    Recovery,
    StoreError,
    TooManyQueued,
    UnknownJob,
)

# Fair order: a member's n-th waiting job (counting the ones already rendering) takes turn n;
# within a turn, first come first served. One member's burst cannot starve the others.
_FAIR_ORDER = """
    SELECT j.id,
           ROW_NUMBER() OVER (PARTITION BY j.user_id ORDER BY j.id)
             + (SELECT COUNT(*) FROM jobs r WHERE r.user_id = j.user_id AND r.status = 'running')
             AS turn
      FROM jobs j
     WHERE j.status = 'queued' {model_filter}
     ORDER BY turn, j.id
"""


class Store:
    """Open with :meth:`open`; safe to share between coroutines and between processes."""

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

    # ---- credits -------------------------------------------------------------------------

    async def account(self, user_id: int) -> Account:
        """Balance and next refill; the first call for a member grants the welcome credits."""
        async with self.db.write() as tx:
            await ledger.touch(tx, user_id, self.policy, self.clock())
            return await ledger.account(tx, user_id, self.policy)

    async def balance(self, user_id: int) -> int:
        return (await self.account(user_id)).balance

    async def grant(self, user_id: int, amount: int, *, operator_id: int, reason: str = "") -> int:
        """An operator adds credits; returns the new balance."""
        if amount <= 0:
            raise InvalidAmount("The amount must be a positive whole number.")
        async with self.db.write() as tx:
            now = self.clock()
            await ledger.touch(tx, user_id, self.policy, now)
            await ledger.append(
                tx, user_id, amount, "grant", now, operator_id=operator_id, reason=reason
            )
            return await ledger.balance(tx, user_id)

    async def take(self, user_id: int, amount: int, *, operator_id: int, reason: str = "") -> int:
        """An operator removes credits (never below zero); returns the new balance."""
        if amount <= 0:
            raise InvalidAmount("The amount must be a positive whole number.")
        async with self.db.write(keep_on=(StoreError,)) as tx:
            now = self.clock()
            await ledger.touch(tx, user_id, self.policy, now)
            current = await ledger.balance(tx, user_id)
            if amount > current:
                raise InvalidAmount(
                    f"That member has only {current} credit{'' if current == 1 else 's'}; "
                    f"take at most {current}."
                )
            await ledger.append(
                tx, user_id, -amount, "take", now, operator_id=operator_id, reason=reason
            )
            return current - amount

    async def history(self, user_id: int, limit: int = 10) -> list[LedgerEntry]:
        """The member's most recent ledger rows, newest first."""
        async with self.db.read() as tx:
            rows = await tx.fetchall(
                "SELECT * FROM ledger WHERE user_id = ? ORDER BY id DESC LIMIT ?", user_id, limit
            )
        return [LedgerEntry.from_row(row) for row in rows]

    # ---- job creation ----------------------------------------------------------------------

    async def create_job(
        self,
        *,
        user_id: int,
        model: str,
        cost: int,
        image: bytes,
        params: dict[str, Any] | None = None,
        end_image: bytes | None = None,
        idempotency_key: str | None = None,
        action: str = "animate",
        parent_id: int | None = None,
        delivery: dict[str, Any] | None = None,
        max_queued_per_user: int | None = None,
        max_queue: int | None = None,
    ) -> Job:
        """Price check, debit and enqueue in one transaction.

        The same idempotency key (Discord's interaction id) returns the job it created before,
        charged once. Raises InsufficientCredits, TooManyQueued or QueueFull, charging nothing.
        """
        if cost < 0:
            raise InvalidAmount("A job cannot cost less than nothing.")
        # Refusals keep the welcome grant or refill that touch() applied before them.
        async with self.db.write(keep_on=(StoreError,)) as tx:
            if idempotency_key is not None:
                existing = await tx.fetchone(
                    "SELECT * FROM jobs WHERE idempotency_key = ?", idempotency_key
                )
                if existing is not None:
                    return Job.from_row(existing)
            now = self.clock()
            await ledger.touch(tx, user_id, self.policy, now)
            if max_queued_per_user is not None:
                mine = await Database.scalar(
                    tx,
                    "SELECT COUNT(*) FROM jobs WHERE user_id = ? AND status IN ('queued', 'running')",
                    user_id,
                )
                if mine >= max_queued_per_user:
                    raise TooManyQueued(max_queued_per_user)
            if max_queue is not None:
                waiting = await Database.scalar(
                    tx, "SELECT COUNT(*) FROM jobs WHERE status = 'queued'"
                )
                if waiting >= max_queue:
                    raise QueueFull(max_queue)
            current = await ledger.balance(tx, user_id)
            if current < cost:
                account = await ledger.account(tx, user_id, self.policy)
                raise InsufficientCredits(current, cost, account.next_refill_at)
            cursor = await tx.execute(
                "INSERT INTO jobs (user_id, idempotency_key, status, action, parent_id, model, cost,"
                " params, delivery, created_at) VALUES (?, ?, 'queued', ?, ?, ?, ?, ?, ?, ?)",
                (
                    user_id,
                    idempotency_key,
                    action,
                    parent_id,
                    model,
                    cost,
                    json.dumps(params or {}),
                    json.dumps(delivery or {}),
                    now,
                ),
            )
            job_id = cursor.lastrowid
            await tx.execute(
                "INSERT INTO job_inputs (job_id, image, end_image) VALUES (?, ?, ?)",
                (job_id, image, end_image),
            )
            await ledger.append(tx, user_id, -cost, "debit", now, job_id=job_id, reason=action)
            return await self._job(tx, job_id)

    # ---- lifecycle ---------------------------------------------------------------------------

    async def claim_next(self, worker: str, models: Collection[str] | None = None) -> Job | None:
        """Take the first job in fair order (optionally only of these models) → running."""
        model_filter = ""
        args: list[Any] = []
        if models is not None:
            if not models:
                return None
            model_filter = f"AND j.model IN ({', '.join('?' * len(models))})"
            args = list(models)
        async with self.db.write() as tx:
            row = await tx.fetchone(
                _FAIR_ORDER.format(model_filter=model_filter) + " LIMIT 1", *args
            )
            if row is None:
                return None
            return await self._start(tx, row["id"], worker)

    async def claim(self, job_id: int, worker: str) -> Job | None:
        """Take one particular queued job → running (None if it is no longer queued)."""
        async with self.db.write() as tx:
            return await self._start(tx, job_id, worker)

    async def _start(self, tx: _Tx, job_id: int, worker: str) -> Job | None:
        cursor = await tx.execute(
            "UPDATE jobs SET status = 'running', worker = ?, started_at = ?,"
            " attempts = attempts + 1 WHERE id = ? AND status = 'queued'",
            (worker, self.clock(), job_id),
        )
        return await self._job(tx, job_id) if cursor.rowcount else None

    async def finish(
        self, job_id: int, *, result_path: str, result: dict[str, Any] | None = None
    ) -> Job | None:
        """running → done. None when the job was not running (e.g. cancelled meanwhile)."""
        async with self.db.write() as tx:
            cursor = await tx.execute(
                "UPDATE jobs SET status = 'done', result_path = ?, result = ?, finished_at = ?,"
                " error = NULL WHERE id = ? AND status = 'running'",
                (result_path, json.dumps(result or {}), self.clock(), job_id),
            )
            return await self._job(tx, job_id) if cursor.rowcount else None

    async def mark_delivered(self, job_id: int, delivery: dict[str, Any] | None = None) -> bool:
        """done → delivered, exactly once: False means someone already delivered it."""
        async with self.db.write() as tx:
            cursor = await tx.execute(
                "UPDATE jobs SET status = 'delivered', delivered_at = ?,"
                " delivery = COALESCE(?, delivery) WHERE id = ? AND status = 'done'",
                (self.clock(), json.dumps(delivery) if delivery is not None else None, job_id),
            )
            return bool(cursor.rowcount)

    async def fail(self, job_id: int, reason: str) -> Job | None:
        """queued/running → failed with its refund; None when it had already ended."""
        return await self._end(job_id, "failed", ACTIVE, reason)

    async def cancel(
        self, job_id: int, reason: str = "cancelled", *, running: bool = False
    ) -> Job | None:
        """queued → cancelled with its refund; None when it is no longer waiting.

        running=True also ends a running job (the dispatcher stops its worker): the member
        cancelled it, so it is refunded and it is never finished after this.
        """
        allowed: tuple[JobStatus, ...] = ACTIVE if running else ("queued",)
        return await self._end(job_id, "cancelled", allowed, reason)

    async def _end(
        self, job_id: int, status: JobStatus, allowed: Sequence[JobStatus], reason: str
    ) -> Job | None:
        async with self.db.write() as tx:
            return await self._end_in(tx, job_id, status, allowed, reason)

    async def _end_in(
        self, tx: _Tx, job_id: int, status: JobStatus, allowed: Sequence[JobStatus], reason: str
    ) -> Job | None:
        now = self.clock()
        cursor = await tx.execute(
            f"UPDATE jobs SET status = ?, error = ?, finished_at = ?"
            f" WHERE id = ? AND status IN ({', '.join('?' * len(allowed))})",
            (status, reason, now, job_id, *allowed),
        )
        if not cursor.rowcount:
            return None
        job = await self._job(tx, job_id)
        # The unique index (job_id, kind) makes a second refund impossible even if the status
        # guard above were ever bypassed.
        await ledger.append(
            tx, job.user_id, job.cost, "refund", now, job_id=job_id, reason=status
        )
        return job

    async def requeue(
        self, job_id: int, *, low_memory: bool = False, reason: str = "", count_attempt: bool = True
    ) -> Job | None:
        """running → queued, for a retry on a fresh worker (optionally in low-memory mode).

        `count_attempt=False` gives the attempt back: the job did nothing wrong (the bot was
        shut down under it), so it should not move closer to failing.
        """
        async with self.db.write() as tx:
            cursor = await tx.execute(
                "UPDATE jobs SET status = 'queued', worker = NULL, started_at = NULL,"
                " low_memory = MAX(low_memory, ?), error = ?,"
                " attempts = CASE WHEN ? THEN attempts ELSE MAX(attempts - 1, 0) END"
                " WHERE id = ? AND status = 'running'",
                (int(low_memory), reason or None, int(count_attempt), job_id),
            )
            return await self._job(tx, job_id) if cursor.rowcount else None

    async def recover(self, max_attempts: int) -> Recovery:
        """At start-up: put back what a dead process left running, report undelivered clips.

        A job that already used its attempts fails with its refund instead of looping forever.
        """
        requeued: list[Job] = []
        failed: list[Job] = []
        async with self.db.write() as tx:
            rows = await tx.fetchall("SELECT id, attempts FROM jobs WHERE status = 'running'")
            for row in rows:
                if row["attempts"] >= max_attempts:
                    job = await self._end_in(
                        tx,
                        row["id"],
                        "failed",
                        ("running",),
                        "The renderer stopped while making this video and retries ran out.",
                    )
                    if job is not None:
                        failed.append(job)
                else:
                    await tx.execute(
                        "UPDATE jobs SET status = 'queued', worker = NULL, started_at = NULL"
                        " WHERE id = ?",
                        (row["id"],),
                    )
                    requeued.append(await self._job(tx, row["id"]))
            undelivered = [
                Job.from_row(row)
                for row in await tx.fetchall("SELECT * FROM jobs WHERE status = 'done' ORDER BY id")
            ]
        return Recovery(requeued=requeued, failed=failed, undelivered=undelivered)

    async def set_delivery(self, job_id: int, **fields: Any) -> Job:
        """Merge fields (message ids, channel) into the job's delivery record."""
        async with self.db.write() as tx:
            job = await self._job(tx, job_id)
            merged = {**job.delivery, **fields}
            await tx.execute(
                "UPDATE jobs SET delivery = ? WHERE id = ?", (json.dumps(merged), job_id)
            )
            return await self._job(tx, job_id)

    # ---- queries ---------------------------------------------------------------------------

    async def get_job(self, job_id: int) -> Job:
        async with self.db.read() as tx:
            return await self._job(tx, job_id)

    async def job_inputs(self, job_id: int) -> tuple[bytes, bytes | None]:
        """The photo (and optional end image) the job was created with."""
        async with self.db.read() as tx:
            row = await tx.fetchone(
                "SELECT image, end_image FROM job_inputs WHERE job_id = ?", job_id
            )
        if row is None:
            raise UnknownJob(job_id)
        return bytes(row["image"]), bytes(row["end_image"]) if row["end_image"] else None

    async def jobs(
        self, *, user_id: int | None = None, statuses: Collection[JobStatus] = ACTIVE
    ) -> list[Job]:
        where = [f"status IN ({', '.join('?' * len(statuses))})"]
        args: list[Any] = list(statuses)
        if user_id is not None:
            where.append("user_id = ?")
            args.append(user_id)
        async with self.db.read() as tx:
            rows = await tx.fetchall(
                f"SELECT * FROM jobs WHERE {' AND '.join(where)} ORDER BY id", *args
            )
        return [Job.from_row(row) for row in rows]

    async def queue_order(self) -> list[int]:
        """Ids of waiting jobs in the order workers will take them."""
        async with self.db.read() as tx:
            rows = await tx.fetchall(_FAIR_ORDER.format(model_filter=""))
        return [row["id"] for row in rows]

    async def queue_position(self, job_id: int) -> int | None:
        """1 for the next job to run; None when the job is not waiting."""
        order = await self.queue_order()
        return order.index(job_id) + 1 if job_id in order else None

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

    async def _job(self, tx: _Tx, job_id: int) -> Job:
        row = await tx.fetchone("SELECT * FROM jobs WHERE id = ?", job_id)
        if row is None:
            raise UnknownJob(job_id)
        return Job.from_row(row)
