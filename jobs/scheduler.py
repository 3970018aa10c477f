"""Which worker takes which queued job, and when: the slot policy and the claim pass.

A job leaves the queue (``Store.claim_next``, in the store's fair order) only when a worker
has room for it: an idle worker takes one job, and a worker whose job is leaving the model
takes a second one of the same model, so that photo's intake overlaps the last decode and
encode (see :mod:`pipeline.worker`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from contract import SLOTS, Event, Progress
from jobs.pool import Worker, WorkerPool
from jobs.records import Job
from jobs.runner import Runner, Running
from jobs.status import JobStatus
from jobs.store import Store


def room(worker: Worker, on_worker: list[Running]) -> set[str]:
    """Models `worker` can take a job for right now (empty: none)."""
    if not worker.ready or worker.info is None or len(on_worker) >= SLOTS:
        return set()
    if not on_worker:
        return worker.info.claim_models()
    current = on_worker[0]
    if len(on_worker) != 1 or not current.leaving_model or current.abandoned:
        return set()
    # The overlap slot takes only the model already loaded: no model switch mid-stream.
    return worker.info.same_model(current.job.model)


async def fill(store: Store, pool: WorkerPool, runner: Runner) -> None:
    """Claim jobs, in the store's fair order, for every worker with room for one."""
    if not await store.queue_order():
        return
    while True:
        # Idle workers first, so two idle workers run two jobs rather than one worker
        # taking both; then workers whose job is leaving the model stage.
        candidates = sorted(pool.ready(), key=lambda w: (len(runner.on(w)), w.name))
        for worker in candidates:
            models = room(worker, runner.on(worker))
            if not models:
                continue
            job = await store.claim_next(worker.name, models)
            if job is not None:
                runner.launch(job, worker)
                break
        else:
            return


class Positions:
    """Tells listeners about waiting jobs whose queue position changed."""

    def __init__(self) -> None:
        self._last: dict[int, int] = {}
        self._note = ""

    def forget(self) -> None:
        self._last = {}

    async def publish(
        self, store: Store, emit: Callable[[Job, Event], Awaitable[None]], *, note: str = ""
    ) -> None:
        """`note`: said after every position (e.g. "waiting for a GPU worker"); when it
        changes, every waiting job hears it."""
        order = await store.queue_order()
        positions = {job_id: i for i, job_id in enumerate(order, 1)}
        if note != self._note:
            self._last, self._note = {}, note
        changed = [j for j, p in positions.items() if self._last.get(j) != p]
        self._last = positions
        if not changed:
            return
        jobs = {j.id: j for j in await store.jobs(statuses=(JobStatus.QUEUED,))}
        for job_id in changed:
            job = jobs.get(job_id)
            if job is None:
                continue
            position = positions[job_id]
            text = f"#{position} in the queue" + (f" · {note}" if note else "")
            await emit(job, Progress("queued", position, len(order), message=text))
