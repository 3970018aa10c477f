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
  ``cancelled`` and refunded; ``reason`` is the sentence to show the member, refund included).

A job's ``job`` argument is the row as of that event (final events: after the store update).
A slow listener delays only that job's stream; a listener that raises is logged and ignored.
Everything in flight can be rebuilt from SQLite: ``JobService.start()`` recovers it before
the dispatcher starts.
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
from jobs.ray_runtime import connect_ray
from jobs.records import Job
from jobs.refusals import UnknownJob
from jobs.retry import refund_note
from jobs.runner import Runner
from jobs.scheduler import Positions, fill
from jobs.status import JobStatus
from jobs.store import Store

log = logging.getLogger("jobs.dispatcher")

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
    ) -> None:
        self.config = config
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
            config, store, self.pool, emit=self.emit, wake=self.wake, stop_grace=stop_grace
        )
        self._listeners: list[Listener] = []
        self._positions = Positions()
        self._wake = asyncio.Event()
        self._loop_task: asyncio.Task[None] | None = None
        self._owns_ray = False
        self._started = False

    # ---- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        """Start or join Ray, start the workers and the scheduler loop (recover first: see
        :meth:`jobs.service.JobService.start`). Raises RayUnavailable (one line).
        Workers load their models in the background; :attr:`models` fills in as they do.
        """
        if self._started:
            raise RuntimeError("the dispatcher is already started")
        self._owns_ray = await connect_ray(
            self.config.ray_address, cpu_workers=self.config.cpu_workers
        )
        try:
            await self.pool.scale()
        except BaseException:
            await self._shutdown_ray()
            raise
        self._started = True
        self._loop_task = asyncio.create_task(self._loop(), name="dispatcher")

    async def stop(self, *, release: bool = True) -> None:
        """Stop scheduling, drop the streams and the workers; shut Ray down if we started it.

        release=True (a shutdown): jobs still rendering go back to the queue without using up
        one of their attempts. release=False leaves them ``running``, exactly as if the bot
        had died: the next ``start()`` recovers them. Nothing is delivered after this returns.
        """
        if not self._started:
            return
        self._started = False
        if self._loop_task is not None:
            self._loop_task.cancel()
            await asyncio.gather(self._loop_task, return_exceptions=True)
        interrupted = await self.runner.close()
        await self.pool.close()
        if release:
            for job_id in interrupted:
                await self.store.requeue(job_id, reason="The bot restarted.", count_attempt=False)
        await self._shutdown_ray()

    async def _shutdown_ray(self) -> None:
        if self._owns_ray:
            import ray

            self._owns_ray = False
            await asyncio.to_thread(ray.shutdown)

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

    @property
    def workers(self) -> list[WorkerInfo]:
        """What each ready worker said about itself (model, device, node, pid)."""
        return [w.info for w in self.pool.ready() if w.info is not None]

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
        return await ready[0].handle.fit_upload.remote(video, max_bytes)

    # ---- the scheduler loop --------------------------------------------------------------

    async def _loop(self) -> None:
        next_scale = time.monotonic() + self.scale_interval
        while True:
            self._wake.clear()
            try:
                await fill(self.store, self.pool, self.runner)
                if self._listeners:
                    await self._positions.publish(self.store, self.emit)
                else:
                    self._positions.forget()
                self.pool.reap(self.runner.busy_workers())
                if time.monotonic() >= next_scale:
                    next_scale = time.monotonic() + self.scale_interval
                    await self.pool.scale()
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - one bad pass must not stop the scheduler
                log.exception("scheduler pass failed")
            await self._idle()

    async def _idle(self) -> None:
        """Wait for wake() or the next tick (asyncio.wait: cancelling the loop never hangs)."""
        waiter = asyncio.ensure_future(self._wake.wait())
        try:
            await asyncio.wait({waiter}, timeout=self.tick)
        finally:
            waiter.cancel()
