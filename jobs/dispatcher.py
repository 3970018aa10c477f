"""The job layer's engine: Ray workers render what the SQLite queue of record holds.

Use::

    dispatcher = Dispatcher(config, store, spawn=create_worker)
    await dispatcher.start()                      # Ray up, workers starting
    unsubscribe = dispatcher.subscribe(on_event)  # async def on_event(job, event): ...
    dispatcher.wake()                             # a job was queued
    await dispatcher.cancel(job.id)
    await dispatcher.stop()

Listeners ``callback(job, event)`` (a coroutine function or a plain function) are called, in
order, for each job's events:

- ``Progress("queued", step=position, total=queue length)`` whenever a waiting job's queue
  position changes (also when it is queued again for a retry);
- the worker's ``Progress`` events (intake, load, denoise steps, decode with one small JPEG
  ``preview``, encode) while it runs;
- exactly one final event: ``AnimateResult`` (its MP4 is already at ``result.path`` in
  OUTPUT_DIR and the job is ``done``), or ``Failed`` (the job is ``failed`` or
  ``cancelled`` and refunded; ``reason`` is the sentence to show the member, refund included),
  or for a job with variations that made at least one take ``Takes`` (each made take's MP4
  in OUTPUT_DIR, the job ``done``, its takes rows of their own, the failed ones refunded).

A job's ``job`` argument is the row as of that event (final events: after the store update).
A slow listener delays only that job's stream; a listener that raises is logged and ignored.
Everything in flight can be rebuilt from SQLite: ``JobService.start()`` recovers it before
the dispatcher starts.

When the Ray runtime the dispatcher started or joined dies (its raylet or GCS killed, the
cluster head gone), the jobs in flight go back to the queue without using an attempt, Ray
is brought back with backoff, and waiting members see "waiting for a GPU worker". A job
that finds no worker at all for JOB_TIMEOUT_SECONDS is refunded.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from contract import Event, Failed, WorkerInfo
from jobs.config import JobsConfig
from jobs.pool import Spawner, WorkerPool
from jobs.ray_runtime import RayRuntime, RayUnavailable
from jobs.records import Job
from jobs.refusals import UnknownJob
from jobs.retry import duration_text, refund_note
from jobs.runner import Runner, Unrecorded
from jobs.scheduler import Positions, fill
from jobs.status import JobStatus
from jobs.store import Store

log = logging.getLogger("jobs.dispatcher")

FIT_TIMEOUT = 300.0
"""Longest wait for a worker to re-encode a clip that Discord found too large."""
REFRESH_TIMEOUT = 2.0
"""Longest wait for a worker to say how it is now (/queue)."""

Listener = Callable[[Job, Event], Awaitable[None] | None]


class Dispatcher:
    """Hands queued jobs to Ray workers and turns their event streams into store updates.

    Args:
        config: models, workers, limits, timeout, attempts, output directory.
        store: the open store (queue of record and ledger).
        spawn: creates one worker actor (``pipeline.worker.create_worker``).
        backend_factory: ``(model, options) -> Backend`` run inside the workers instead of
            the pipeline's loader (test doubles; must pickle).
        tick: seconds between scheduler passes when nothing wakes it.
        scale_interval: seconds between looks at the cluster for new GPUs.
        stop_grace: seconds a cancelled or timed-out job may take to stop before its worker
            is killed and restarted.
        watch_interval: seconds between health probes of the Ray runtime (two misses in a
            row mean it is gone).
    """

    def __init__(
        self,
        config: JobsConfig,
        store: Store,
        *,
        spawn: Spawner,
        backend_factory: Any = None,
        tick: float = 2.0,
        scale_interval: float = 30.0,
        stop_grace: float = 30.0,
        watch_interval: float = 1.0,
    ) -> None:
        self.config = config
        self.watch_interval = watch_interval
        self.runtime = RayRuntime(config.ray_address, cpu_workers=config.cpu_workers)
        self.store = store
        self.tick = tick
        self.scale_interval = scale_interval
        self.pool = WorkerPool(
            list(config.models),
            config.backend,
            cpu_workers=config.cpu_workers,
            spawn=spawn,
            backend_factory=backend_factory,
            on_change=self.wake,
        )
        self.runner = Runner(
            config, store, self.pool, emit=self.emit, wake=self.wake, stop_grace=stop_grace,
            infrastructure_ok=self._infrastructure_ok,
        )
        self._listeners: list[Listener] = []
        self._positions = Positions()
        self._wake = asyncio.Event()
        self._loop_task: asyncio.Task[None] | None = None
        self._watch_task: asyncio.Task[None] | None = None
        self._runtime_lost = asyncio.Event()
        """Set when the Ray runtime dies: calls to its actors will never be answered."""
        self._unserved_since: float | None = None
        """Wall-clock time since which no worker has been ready (None: one is)."""
        self._started = False

    # ---- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        """Start or join Ray, start the workers and the scheduler loop (recover first: see
        :meth:`jobs.service.JobService.start`). Raises RayUnavailable (one line).
        Workers load their models in the background; :attr:`models` fills in as they do.
        """
        if self._started:
            raise RuntimeError("the dispatcher is already started")
        await self.runtime.start()
        try:
            await self.pool.scale()
        except BaseException:
            await self.runtime.stop()
            raise
        self._started = True
        self._unserved_since = self.store.clock()
        self._loop_task = asyncio.create_task(self._loop(), name="dispatcher")
        if self.runtime.owned:
            self._watch_task = asyncio.create_task(self._watch(), name="ray-watch")

    async def stop(self, *, release: bool = True) -> None:
        """Stop scheduling, drop the streams and the workers; shut Ray down if we started it.

        release=True (a shutdown): jobs still rendering go back to the queue without using up
        one of their attempts. release=False leaves them ``running``, exactly as if the bot
        had died: the next ``start()`` recovers them. Nothing is delivered after this returns.
        """
        if not self._started:
            return
        self._started = False
        for task in (self._watch_task, self._loop_task):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        interrupted = await self.runner.close()
        await self.pool.close()
        if release:
            for job_id in interrupted:
                await self.store.requeue(job_id, reason="The bot restarted.", count_attempt=False)
        await self.runtime.stop()

    # ---- the Ray runtime dying under us --------------------------------------------------

    async def _watch(self) -> None:
        try:
            await self._watch_forever()
        except asyncio.CancelledError:
            raise
        except BaseException:
            log.critical("the Ray watch stopped; a dead runtime will not be noticed", exc_info=True)
            raise

    async def _watch_forever(self) -> None:
        misses = 0
        while True:
            await asyncio.sleep(self.watch_interval)
            if await self.runtime.alive():
                misses = 0
                continue
            misses += 1
            if misses >= 2:
                misses = 0
                await self._bring_ray_back("its GCS or raylet stopped accepting connections")

    async def _infrastructure_ok(self) -> bool:
        """Whether a worker's death was its own (False: Ray itself is going down with it, and
        the job should not lose an attempt for that)."""
        return not self.runtime.owned or (self.runtime.up and await self.runtime.alive())

    async def _bring_ray_back(self, why: str) -> None:
        """Every actor died with the runtime: requeue what was rendering (no attempt used),
        start or join Ray again with backoff, then new workers."""
        self.runtime.lost(why)
        lost, self._runtime_lost = self._runtime_lost, asyncio.Event()
        lost.set()
        self.pool.forget()
        interrupted = await self.runner.close()
        for job_id in interrupted:
            try:
                await self.runner.persist(
                    self.store.requeue, job_id, reason="The GPU runtime restarted.",
                    count_attempt=False,
                )
            except Unrecorded:
                log.error("job %d could not be queued again; the next start will", job_id)
        if interrupted:
            log.warning("queued again after the runtime died: %s", interrupted)
        self.wake()
        while True:
            try:
                await self.runtime.reconnect()
                break
            except RayUnavailable as exc:
                pause = self.runtime.backoff()
                log.error("cannot bring Ray back (%s); next try in %.0f s", exc, pause)
                await asyncio.sleep(pause)
        try:
            await self.pool.scale()
        except Exception:  # noqa: BLE001 - the scheduler's next scale tries again
            log.exception("starting workers after the runtime came back failed")
        self.wake()

    # ---- what the service and the bot read -----------------------------------------------

    @property
    def models(self) -> list[str]:
        """Models the ready workers serve, in MODEL order ("auto" as what it resolved to).

        Empty until the first worker has loaded its model (callers then fall back to MODEL).
        """
        order = {name: i for i, name in enumerate(self.config.models)}
        found: dict[str, int] = {}
        for info in self.workers:
            for model in info.models:
                aliases = [a for a, m in info.aliases.items() if m == model]
                rank = min((order.get(a, len(order)) for a in aliases), default=len(order))
                found[model] = min(found.get(model, rank), rank)
        return sorted(found, key=lambda m: (found[m], m))

    def describe_runtime(self) -> str:
        """One line for operators: Ray's state and the workers ready."""
        ready, alive = len(self.pool.ready()), len(self.pool.alive())
        return f"{self.runtime.status.describe()} · {ready} of {alive} workers ready"

    @property
    def workers(self) -> list[WorkerInfo]:
        """What each ready worker said about itself (model, device, node, pid)."""
        return [w.info for w in self.pool.ready() if w.info is not None]

    async def refresh_workers(self, timeout: float = REFRESH_TIMEOUT) -> list[WorkerInfo]:
        """:attr:`workers`, each asked again now (the pool only asks when a worker comes up):
        for operators' views of what changes later, a model's download and its failure. A
        worker that does not answer within `timeout` seconds keeps its last answer."""
        ready = self.pool.ready()
        answers = await asyncio.gather(
            *(self._answer(w.handle.info.remote(), timeout) for w in ready),
            return_exceptions=True,
        )
        for worker, answer in zip(ready, answers):
            if isinstance(answer, WorkerInfo) and worker.ready:
                worker.info = answer
            elif isinstance(answer, BaseException):
                log.debug("worker %s did not say how it is: %s", worker.name, answer)
        return self.workers

    def known_models(self) -> set[str]:
        """Every name a job may carry: configured, served, and the workers' aliases."""
        known = set(self.config.models) | set(self.models)
        for info in self.workers:
            known |= info.claim_models()
        return known

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call `listener(job, event)` for every job event; returns the unsubscribe function."""
        self._listeners.append(listener)

        def unsubscribe() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)

        return unsubscribe

    async def emit(self, job: Job, event: Event) -> None:
        for listener in list(self._listeners):
            try:
                result = listener(job, event)
                if inspect.isawaitable(result):
                    await result
            except Exception:  # noqa: BLE001 - a listener's bug must not stop the job
                log.exception("listener failed on job %d", job.id)

    def wake(self) -> None:
        """Run a scheduler pass now (a job was queued, a worker became free or ready)."""
        self._wake.set()

    async def position(self, job_id: int) -> int | None:
        return await self.store.queue_position(job_id)

    async def cancel(self, job_id: int, reason: str = "Cancelled.") -> bool:
        """Cancel a waiting job (refunded, never runs) or stop a running one (refunded).

        False when the job had already ended (finished, failed or cancelled).
        """
        job = await self.store.cancel(job_id, reason)
        if job is not None:
            self.wake()
            await self.emit(job, Failed(reason + refund_note(job.cost), kind="cancelled"))
            return True
        if (running := self.runner.running.get(job_id)) is not None:
            return await self.runner.abandon(running, "cancelled", reason)
        try:
            current = await self.store.get_job(job_id)
        except UnknownJob:
            return False
        if (running := self.runner.running.get(job_id)) is not None:  # launched meanwhile
            return await self.runner.abandon(running, "cancelled", reason)
        if current.status is JobStatus.RUNNING:
            # Claimed a moment ago and not yet launched: stop it as soon as it is.
            self.runner.pending_cancels.add(job_id)
            return True
        return False

    async def fit_upload(self, video: bytes, max_bytes: int) -> bytes:
        """Re-encode a finished clip under `max_bytes` on a worker (the bot process never
        decodes video); raises LookupError when no worker is ready."""
        ready = sorted(self.pool.ready(), key=lambda w: (len(self.runner.on(w)), w.name))
        if not ready:
            raise LookupError("no worker is ready to re-encode the clip")
        return await self._answer(ready[0].handle.fit_upload.remote(video, max_bytes), FIT_TIMEOUT)

    async def _answer(self, ref: Any, timeout: float) -> Any:
        """A worker's answer, or LookupError when its runtime died first (a reference from a
        dead Ray session is never resolved) or it took longer than `timeout` seconds."""
        call = asyncio.ensure_future(ref)
        lost = asyncio.ensure_future(self._runtime_lost.wait())
        try:
            done, _ = await asyncio.wait(
                {call, lost}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            lost.cancel()
            if not call.done():
                call.cancel()
        if call in done:
            return call.result()
        raise LookupError(
            "the worker's Ray runtime died" if lost in done else "the worker did not answer in time"
        )

    # ---- the scheduler loop --------------------------------------------------------------

    async def _loop(self) -> None:
        next_scale = time.monotonic() + self.scale_interval
        while True:
            self._wake.clear()
            try:
                await fill(self.store, self.pool, self.runner)
                await self._refund_unserved()
                if self._listeners:
                    note = "" if self.pool.ready() else "waiting for a GPU worker"
                    await self._positions.publish(self.store, self.emit, note=note)
                else:
                    self._positions.forget()
                self.pool.reap(self.runner.busy_workers())
                if self.runtime.up and time.monotonic() >= next_scale:
                    next_scale = time.monotonic() + self.scale_interval
                    await self.pool.scale()
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - one bad pass must not stop the scheduler
                log.exception("scheduler pass failed")
            await self._idle()

    async def _refund_unserved(self) -> None:
        """Refund the jobs that have waited JOB_TIMEOUT_SECONDS with no worker ready at all
        (Ray down, a cluster without GPU machines): a queue of record, not a black hole."""
        now = self.store.clock()
        if self.pool.ready():
            self._unserved_since = None
            return
        if self._unserved_since is None:
            self._unserved_since = now
        limit = self.config.job_timeout_seconds
        if now - self._unserved_since < limit:
            return
        for job in await self.store.jobs(statuses=(JobStatus.QUEUED,)):
            if now - max(job.created_at, self._unserved_since) < limit:
                continue
            reason = (
                f"No GPU worker was available for {duration_text(limit)}, so this video "
                "could not be made." + refund_note(job.cost)
            )
            if (ended := await self.store.fail(job.id, reason, kind="timeout")) is not None:
                log.warning("job %d refunded: no worker for %s", job.id, duration_text(limit))
                await self.emit(ended, Failed(reason, kind="timeout"))

    async def _idle(self) -> None:
        """Wait for wake() or the next tick (asyncio.wait: cancelling the loop never hangs)."""
        waiter = asyncio.ensure_future(self._wake.wait())
        try:
            await asyncio.wait({waiter}, timeout=self.tick)
        finally:
            waiter.cancel()
