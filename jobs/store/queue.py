"""The job half of the store: the queue of record and every status change.

A job is created together with its debit, and a job that fails or is cancelled gets its
refund in the same transaction that ends it. Every status change goes through
:meth:`JobQueue._transition`, which guards the UPDATE with the statuses that
:data:`jobs.status.TRANSITIONS` allows, so two processes racing to finish or refund the same
job cannot both succeed.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any

from contract import FailureKind, JobSpec
from jobs.records import ClipSummary, CreditPolicy, Job, Recovery, TakeClip
from jobs.refusals import (
    DailyLimit,
    InsufficientCredits,
    InvalidAmount,
    QueueFull,
    Refused,
    TooManyQueued,
    UnknownJob,
)
from jobs.status import ACTIVE, REFUNDED, JobAction, JobStatus, sources
from jobs.store import ledger
from jobs.store.db import Database, _Tx

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
DAY = 86_400.0
RETRIES_RAN_OUT = "The renderer stopped while making this video and retries ran out."
"""Why recovery ended a job; the bot adds the refund when it tells the member."""


class JobQueue:
    db: Database
    policy: CreditPolicy
    clock: Callable[[], float]

    # ---- creation ------------------------------------------------------------------------

    async def create_job(
        self,
        *,
        user_id: int,
        spec: JobSpec,
        cost: int,
        image: bytes,
        end_image: bytes | None = None,
        idempotency_key: str | None = None,
        action: JobAction = JobAction.ANIMATE,
        parent_id: int | None = None,
        delivery: Mapping[str, Any] | None = None,
        max_queued_per_user: int | None = None,
        max_queue: int | None = None,
        max_per_day: int | None = None,
    ) -> Job:
        """Price check, debit and enqueue in one transaction.

        The same idempotency key (Discord's interaction id) returns the job it created before,
        charged once. Raises InsufficientCredits, TooManyQueued, QueueFull or DailyLimit,
        charging nothing.
        """
        if cost < 0:
            raise InvalidAmount("A job cannot cost less than nothing.")
        # Refusals keep the welcome grant or refill that touch() applied before them.
        async with self.db.write(keep_on=(Refused,)) as tx:
            if idempotency_key is not None:
                existing = await tx.fetchone(
                    "SELECT * FROM jobs WHERE idempotency_key = ?", idempotency_key
                )
                if existing is not None:
                    return Job.from_row(existing)
            now = self.clock()
            await self._refuse_without_room(
                tx, user_id, cost, max_queued_per_user, max_queue, max_per_day, now
            )
            params = spec.to_dict()
            del params["model"]  # its own column
            cursor = await tx.execute(
                "INSERT INTO jobs (user_id, idempotency_key, status, action, parent_id, model, cost,"
                " params, delivery, created_at) VALUES (?, ?, 'queued', ?, ?, ?, ?, ?, ?, ?)",
                (
                    user_id,
                    idempotency_key,
                    str(action),
                    parent_id,
                    spec.model,
                    cost,
                    json.dumps(params),
                    json.dumps(dict(delivery or {})),
                    now,
                ),
            )
            job_id = cursor.lastrowid
            await tx.execute(
                "INSERT INTO job_inputs (job_id, image, end_image) VALUES (?, ?, ?)",
                (job_id, image, end_image),
            )
            await ledger.append(tx, user_id, -cost, "debit", now, job_id=job_id, reason=str(action))
            return await self._job(tx, job_id)

    async def check_room(
        self,
        user_id: int,
        cost: int,
        *,
        max_queued_per_user: int | None = None,
        max_queue: int | None = None,
        max_per_day: int | None = None,
    ) -> None:
        """Raise now what create_job would refuse (credits, queue limits), charging nothing:
        so a refusal comes before a photo is downloaded and decoded. create_job checks again
        in its own transaction, which is what counts."""
        async with self.db.write(keep_on=(Refused,)) as tx:
            await self._refuse_without_room(
                tx, user_id, cost, max_queued_per_user, max_queue, max_per_day, self.clock()
            )

    async def _refuse_without_room(
        self,
        tx: _Tx,
        user_id: int,
        cost: int,
        max_queued_per_user: int | None,
        max_queue: int | None,
        max_per_day: int | None,
        now: float,
    ) -> None:
        await ledger.touch(tx, user_id, self.policy, now)
        if max_per_day is not None:
            # A rolling 24 hours. Jobs that failed or were cancelled were refunded and made
            # nothing, so they do not count.
            made = await tx.fetchall(
                "SELECT created_at FROM jobs WHERE user_id = ? AND created_at > ?"
                " AND status NOT IN ('failed', 'cancelled') AND action != 'take'"
                " ORDER BY created_at DESC",
                user_id, now - DAY,
            )
            if len(made) >= max_per_day:
                # The next one may start when the job that must age out for it is a day old.
                raise DailyLimit(max_per_day, made[max_per_day - 1]["created_at"] + DAY)
        if max_queued_per_user is not None:
            mine = await Database.scalar(
                tx,
                "SELECT COUNT(*) FROM jobs WHERE user_id = ? AND status IN ('queued', 'running')",
                user_id,
            )
            if mine >= max_queued_per_user:
                raise TooManyQueued(max_queued_per_user)
        if max_queue is not None:
            waiting = await Database.scalar(tx, "SELECT COUNT(*) FROM jobs WHERE status = 'queued'")
            if waiting >= max_queue:
                raise QueueFull(max_queue)
        current = await ledger.balance(tx, user_id)
        if current < cost:
            account = await ledger.account(tx, user_id, self.policy)
            raise InsufficientCredits(current, cost, account.next_refill_at)

    # ---- the one place a status changes ----------------------------------------------------

    async def _transition(
        self,
        tx: _Tx,
        job_id: int,
        target: JobStatus,
        *,
        only_from: Collection[JobStatus] | None = None,
        sets: Mapping[str, Any] | None = None,
        reason: str | None = None,
    ) -> Job | None:
        """Move a job to `target` if its status allows it (per TRANSITIONS, narrowed by
        `only_from`), setting the columns in `sets`. Ending a job without a clip refunds it
        in this transaction. None when the job was not in an allowed status."""
        allowed = sources(target, frozenset(only_from) if only_from is not None else None)
        columns = {"status": str(target), **(sets or {})}
        if target in REFUNDED:
            columns.update(error=reason, finished_at=self.clock())
        assignments: list[str] = []
        values: list[Any] = []
        for name, value in columns.items():
            if isinstance(value, _Sql):
                assignments.append(f"{name} = {value.sql}")
                values += [] if value.arg is _NONE else [value.arg]
            else:
                assignments.append(f"{name} = ?")
                values.append(value)
        cursor = await tx.execute(
            f"UPDATE jobs SET {', '.join(assignments)}"
            f" WHERE id = ? AND status IN ({', '.join('?' * len(allowed))})",
            (*values, job_id, *map(str, allowed)),
        )
        if not cursor.rowcount:
            return None
        job = await self._job(tx, job_id)
        if target in REFUNDED:
            # The unique index (job_id, kind) makes a second refund impossible even if the
            # status guard above were ever bypassed.
            await ledger.append(
                tx, job.user_id, job.cost, "refund", self.clock(), job_id=job_id, reason=str(target)
            )
        return job

    # ---- lifecycle -----------------------------------------------------------------------

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
        return await self._transition(
            tx,
            job_id,
            JobStatus.RUNNING,
            sets={"worker": worker, "started_at": self.clock(), "attempts": _Sql("attempts + 1")},
        )

    async def finish(
        self,
        job_id: int,
        *,
        result_path: str,
        clip: ClipSummary | None = None,
        takes: Sequence[TakeClip] = (),
        failed_takes: int = 0,
    ) -> Job | None:
        """running → done. None when the job was not running (e.g. cancelled meanwhile).

        A job with variations: `result_path`/`clip` are its first made take, `takes` the
        other made ones (each becomes a row of its own, action 'take', with a copy of the
        photo: its own buttons and library entry), and `failed_takes` of its takes made
        nothing: their share of the cost is refunded here, in the transaction that ends the
        job, so it happens exactly once (the job never ends again, and the ledger takes one
        refund per job)."""
        async with self.db.write() as tx:
            job = await self._transition(
                tx,
                job_id,
                JobStatus.DONE,
                sets={
                    "result_path": result_path,
                    "result": json.dumps(clip.to_dict() if clip else {}),
                    "finished_at": self.clock(),
                    "error": None,
                },
            )
            if job is None:
                return None
            for take in takes:
                await self._add_take(tx, job, take)
            variations = max(1, job.spec.variations)
            refund = job.cost * min(failed_takes, variations) // variations
            if refund > 0:
                await ledger.append(
                    tx, job.user_id, refund, "refund", self.clock(), job_id=job.id,
                    reason=f"{failed_takes} of {variations} takes failed",
                )
            return job

    async def _add_take(self, tx: _Tx, job: Job, take: TakeClip) -> None:
        """A made take of `job` as a finished job of its own: no cost (the parent was
        charged), its own seed, one take; delivered with the parent."""
        params = job.spec.replace(seed=take.clip.seed, variations=1).to_dict()
        del params["model"]
        cursor = await tx.execute(
            "INSERT INTO jobs (user_id, status, action, parent_id, model, cost, params, delivery,"
            " attempts, low_memory, worker, result_path, result, created_at, started_at,"
            " finished_at) VALUES (?, 'done', ?, ?, ?, 0, ?, '{}', ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                job.user_id,
                str(JobAction.TAKE),
                job.id,
                job.model,
                json.dumps(params),
                job.attempts,
                int(job.low_memory),
                job.worker,
                take.result_path,
                json.dumps(take.clip.to_dict()),
                job.created_at,
                job.started_at,
                job.finished_at,
            ),
        )
        await tx.execute(
            "INSERT INTO job_inputs (job_id, image, end_image)"
            " SELECT ?, image, end_image FROM job_inputs WHERE job_id = ?",
            (cursor.lastrowid, job.id),
        )

    async def takes_of(self, job_id: int) -> list[Job]:
        """A job and its takes (a job with variations), take order; just the job otherwise."""
        async with self.db.read() as tx:
            rows = await tx.fetchall(
                "SELECT * FROM jobs WHERE id = ? OR (parent_id = ? AND action = 'take') ORDER BY id",
                job_id, job_id,
            )
        if not rows:
            raise UnknownJob(job_id)
        return [Job.from_row(row) for row in rows]

    async def mark_delivered(self, job_id: int, delivery: Mapping[str, Any] | None = None) -> bool:
        """done → delivered, exactly once: False means someone already delivered it."""
        sets: dict[str, Any] = {"delivered_at": self.clock()}
        if delivery is not None:
            sets["delivery"] = json.dumps(dict(delivery))
        async with self.db.write() as tx:
            if await self._transition(tx, job_id, JobStatus.DELIVERED, sets=sets) is None:
                return False
            # A job's takes were posted in the same message: delivered with it.
            await tx.execute(
                "UPDATE jobs SET status = 'delivered', delivered_at = ?,"
                " delivery = (SELECT delivery FROM jobs WHERE id = ?)"
                " WHERE parent_id = ? AND action = 'take' AND status = 'done'",
                (sets["delivered_at"], job_id, job_id),
            )
            return True

    async def fail(self, job_id: int, reason: str, *, kind: FailureKind = "internal") -> Job | None:
        """queued/running → failed with its refund; None when it had already ended. `kind`
        (oom, crash, timeout ...) is kept for operators' metrics and charts."""
        async with self.db.write() as tx:
            return await self._transition(
                tx, job_id, JobStatus.FAILED, reason=reason, sets={"failure_kind": kind}
            )

    async def cancel(
        self, job_id: int, reason: str = "cancelled", *, running: bool = False
    ) -> Job | None:
        """queued → cancelled with its refund; None when it is no longer waiting.

        running=True also ends a running job (the dispatcher stops its worker): the member
        cancelled it, so it is refunded and it is never finished after this.
        """
        only = ACTIVE if running else frozenset({JobStatus.QUEUED})
        async with self.db.write() as tx:
            return await self._transition(
                tx, job_id, JobStatus.CANCELLED, only_from=only, reason=reason
            )

    async def requeue(
        self, job_id: int, *, low_memory: bool = False, reason: str = "", count_attempt: bool = True
    ) -> Job | None:
        """running → queued, for a retry on a fresh worker (optionally in low-memory mode).

        `count_attempt=False` gives the attempt back: the job did nothing wrong (the bot was
        shut down under it), so it should not move closer to failing.
        """
        sets: dict[str, Any] = {
            "worker": None,
            "started_at": None,
            "low_memory": _Sql("MAX(low_memory, ?)", int(low_memory)),
            "error": reason or None,
        }
        if not count_attempt:
            sets["attempts"] = _Sql("MAX(attempts - 1, 0)")
        async with self.db.write() as tx:
            return await self._transition(tx, job_id, JobStatus.QUEUED, sets=sets)

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
                    job = await self._transition(
                        tx, row["id"], JobStatus.FAILED, reason=RETRIES_RAN_OUT,
                        sets={"failure_kind": "crash"},
                    )
                    if job is not None:
                        failed.append(job)
                else:
                    job = await self._transition(
                        tx, row["id"], JobStatus.QUEUED, sets={"worker": None, "started_at": None}
                    )
                    if job is not None:
                        requeued.append(job)
            undelivered = [
                Job.from_row(row)
                for row in await tx.fetchall(
                    # A job's takes are delivered with it, never alone.
                    "SELECT * FROM jobs WHERE status = 'done' AND action != 'take' ORDER BY id"
                )
            ]
        return Recovery(requeued=requeued, failed=failed, undelivered=undelivered)

    async def set_delivery(self, job_id: int, delivery: Mapping[str, Any]) -> Job:
        """Replace the job's delivery record (the bot's: message ids, channel, token)."""
        async with self.db.write() as tx:
            await tx.execute(
                "UPDATE jobs SET delivery = ? WHERE id = ?", (json.dumps(dict(delivery)), job_id)
            )
            return await self._job(tx, job_id)

    async def forget(self, job_id: int) -> Job:
        """Drop what a member deleted: the photo, the prompts and the interaction token; the
        job row stays (its debit and refund rows point at it). The caller removes the MP4 at
        the returned job's old ``result_path``. Only for jobs that have ended."""
        async with self.db.write() as tx:
            job = await self._job(tx, job_id)
            if job.status in ACTIVE:
                raise ValueError(f"job {job_id} is still {job.status}; cancel it first")
            await forget_in(tx, job)
            return job

    # ---- queries -------------------------------------------------------------------------

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
        self, *, user_id: int | None = None, statuses: Collection[JobStatus | str] = ACTIVE
    ) -> list[Job]:
        where = [f"status IN ({', '.join('?' * len(statuses))})"]
        args: list[Any] = [str(s) for s in statuses]
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

    async def _job(self, tx: _Tx, job_id: int) -> Job:
        row = await tx.fetchone("SELECT * FROM jobs WHERE id = ?", job_id)
        if row is None:
            raise UnknownJob(job_id)
        return Job.from_row(row)


async def forget_in(tx: _Tx, job: Job) -> None:
    """Within `tx`: drop an ended job's photo, prompts, delivery record (the interaction token)
    and its MP4's path; the row stays for the ledger. The caller removes the file."""
    params = job.spec.replace(prompt="", negative_prompt="").to_dict()
    del params["model"]
    await tx.execute("DELETE FROM job_inputs WHERE job_id = ?", (job.id,))
    await tx.execute(
        "UPDATE jobs SET params = ?, delivery = '{}', result_path = NULL, favourite = 0"
        " WHERE id = ?",
        (json.dumps(params), job.id),
    )


_NONE = object()


class _Sql:
    """A column value written as SQL (``attempts + 1``), with at most one bound argument."""

    def __init__(self, sql: str, arg: Any = _NONE) -> None:
        self.sql = sql
        self.arg = arg
