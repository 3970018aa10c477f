"""The job dispatcher: SQLite is the queue of record, Ray workers do the rendering.

A job leaves the queue (``Store.claim_next``, in the store's fair order) only when a worker
has room for it: an idle worker takes one job, and a worker whose job is in its last denoise
step takes a second one of the same model so that photo's intake overlaps the last decode
and encode (see :mod:`pipeline.worker`). Everything in flight can be rebuilt from SQLite:
``start()`` runs the store's recovery before the first claim.

Use::

    dispatcher = Dispatcher(settings, store)
    recovery = await dispatcher.start()           # Ray up, workers starting, jobs recovered
    unsubscribe = dispatcher.subscribe(on_event)  # async def on_event(job, event): ...
    job = await dispatcher.submit(user_id=..., image=..., cost=..., params=request.params())
    await dispatcher.cancel(job.id)
    await dispatcher.stop()

Listeners: ``callback(job: Job, event: Event)`` (a coroutine function or a plain function)
is called, in order, for each job's events:

- ``Progress("queued", step=position, total=queue length)`` whenever a waiting job's queue
  position changes (also when it is queued again for a retry);
- the worker's ``Progress`` events (intake, load, denoise steps, decode with one small JPEG
  ``preview``, encode) while it runs;
- exactly one final event: ``AnimateResult`` (its MP4 is already at ``result.path`` in
  OUTPUT_DIR and the job is ``done``), or ``Failed`` (the job is ``failed`` or
  ``cancelled`` and refunded; ``reason`` is the sentence to show the member, refund included).

A job's ``job`` argument is the row as of that event (final events: after the store update).
A slow listener delays only that job's stream; a listener that raises is logged and ignored.
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import logging
import os
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ray.exceptions import OutOfMemoryError as RayOutOfMemoryError
from ray.exceptions import RayActorError, WorkerCrashedError

from bot.settings import Settings
from bot.store import Job, Recovery, Store, UnknownJob
from bot.workers import RayUnavailable, Worker, WorkerPool, connect_ray
from contract import BackendOptions
from contract import (
    AnimateRequest,
    AnimateResult,
    Event,
    Failed,
    InputError,
    PipelineError,
    Progress,
)
from contract import WorkerInfo
from pipeline.worker import BackendFactory

log = logging.getLogger("bot.dispatch")

Listener = Callable[[Job, Event], Awaitable[None] | None]

__all__ = ["Dispatcher", "Listener", "RayUnavailable"]

_REQUEST_FIELDS = frozenset(f.name for f in dataclasses.fields(AnimateRequest)) - {
    "image",
    "end_image",
    "previous_clip",
    "model",
    "job_id",
}
_PARAM_EXTRAS = frozenset({"model", "job_id", "extend", "parent_id"})
"""Params keys that are not request options: AnimateRequest.params() includes the first two
(the job row's own model and id win), an extension may carry the last two."""
_CRASH = (RayActorError, WorkerCrashedError, RayOutOfMemoryError)


@dataclass(eq=False)
class _Running:
    """One job on one worker, as long as its stream is open."""

    job: Job
    worker: Worker
    started: float = field(default_factory=time.monotonic)
    leaving_model: bool = False
    """In its last denoise step or past it: the worker may take its next job."""
    in_model: bool = False
    """Has reached the model stage (a denoise or decode event), not only intake."""
    bystander: bool = False
    """Was waiting for the model when its worker died under another job's render."""
    abandoned: bool = False
    """Cancelled or timed out: already ended in the store, the worker was told to stop."""
    task: asyncio.Task[None] | None = None
    timers: list[asyncio.TimerHandle] = field(default_factory=list)


class Dispatcher:
    """Hands queued jobs to Ray workers and turns their event streams into store updates.

    Args:
        settings: RAY_ADDRESS, CPU_WORKERS, MODEL, OUTPUT_DIR, limits, timeout, attempts.
        store: the open store (queue of record and ledger).
        backend_factory: ``(model, options) -> Backend`` run inside the workers instead of
            :func:`pipeline.backends.load_backend` (test doubles; must pickle).
        tick: seconds between scheduler passes when nothing wakes it.
        scale_interval: seconds between looks at the cluster for new GPUs.
        stop_grace: seconds a cancelled or timed-out job may take to stop before its worker
            is killed and restarted.
    """

    def __init__(
        self,
        settings: Settings,
        store: Store,
        *,
        backend_factory: BackendFactory | None = None,
        tick: float = 2.0,
        scale_interval: float = 30.0,
        stop_grace: float = 30.0,
    ) -> None:
        self.settings = settings
        self.store = store
        self.tick = tick
        self.scale_interval = scale_interval
        self.stop_grace = stop_grace
        self.output_dir = Path(settings.output_dir)
        options = BackendOptions(
            offload=settings.offload,
            compile=settings.compile,
            cache=settings.cache,
            attention=settings.attention_backend,
        )
        self.pool = WorkerPool(
            settings.models,
            options,
            cpu_workers=settings.cpu_workers,
            backend_factory=backend_factory,
            on_change=self.wake,
        )
        self._listeners: list[Listener] = []
        self._running: dict[int, _Running] = {}
        self._pending_cancels: set[int] = set()
        self._positions: dict[int, int] = {}
        self._wake = asyncio.Event()
        self._loop_task: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[Any]] = set()
        self._owns_ray = False
        self._started = False

    # ---- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> Recovery:
        """Start or join Ray, recover what a previous process left in flight, start workers.

        Returns the store's Recovery (its ``undelivered`` jobs are done but were never
        delivered: the bot should deliver them). Raises RayUnavailable (one line).
        Workers load their models in the background; :attr:`models` fills in as they do.
        """
        if self._started:
            raise RuntimeError("the dispatcher is already started")
        self._owns_ray = await connect_ray(
            self.settings.ray_address, cpu_workers=self.settings.cpu_workers
        )
        try:
            recovery = await self.store.recover(self.settings.max_attempts)
            for job in recovery.requeued:
                log.info("job %d was in flight when the bot stopped; queued again", job.id)
            await self.pool.scale()
        except BaseException:
            await self._shutdown_ray()
            raise
        self._started = True
        self._loop_task = asyncio.create_task(self._loop(), name="dispatcher")
        return recovery

    async def stop(self, *, release: bool = True) -> None:
        """Stop scheduling, drop the streams and the workers; shut Ray down if we started it.

        release=True (a shutdown): jobs still rendering go back to the queue without using up
        one of their attempts. release=False leaves them ``running``, exactly as if the bot
        had died: the next ``start()`` recovers them. Nothing is delivered after this returns.
        """
        if not self._started:
            return
        self._started = False
        interrupted = [job_id for job_id, r in self._running.items() if not r.abandoned]
        tasks = [r.task for r in self._running.values() if r.task is not None]
        tasks += self._background
        if self._loop_task is not None:
            tasks.append(self._loop_task)
        for running in self._running.values():
            for timer in running.timers:
                timer.cancel()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._running.clear()
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

    # ---- the bot's API -----------------------------------------------------------------------

    @property
    def models(self) -> list[str]:
        """Models the ready workers serve, in MODEL order ("auto" as what it resolved to).

        Empty until the first worker has loaded its model (the bot then falls back to MODEL).
        """
        order = {name: i for i, name in enumerate(self.settings.models)}
        found: dict[str, int] = {}
        for worker in self.pool.ready():
            assert worker.info is not None
            for model in worker.info.models:
                aliases = [a for a, m in worker.info.aliases.items() if m == model]
                rank = min((order.get(a, len(order)) for a in aliases), default=len(order))
                found[model] = min(found.get(model, rank), rank)
        return sorted(found, key=lambda m: (found[m], m))

    @property
    def workers(self) -> list[WorkerInfo]:
        """What each ready worker said about itself (model, device, node, pid)."""
        return [w.info for w in self.pool.ready() if w.info is not None]

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call `listener(job, event)` for every job event; returns the unsubscribe function."""
        self._listeners.append(listener)

        def unsubscribe() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)

        return unsubscribe

    async def submit(
        self,
        *,
        user_id: int,
        image: bytes,
        cost: int,
        model: str | None = None,
        params: dict[str, Any] | None = None,
        end_image: bytes | None = None,
        idempotency_key: str | None = None,
        action: str = "animate",
        parent_id: int | None = None,
        delivery: dict[str, Any] | None = None,
    ) -> Job:
        """Debit and queue a job in one transaction, then wake the scheduler.

        params: ``AnimateRequest.params()`` (prompt, camera, motion, duration, max_bytes ...).
        An extension is ``action="extend"`` with the parent job's id (or params
        ``{"extend": True, "parent_id": ...}``): it renders on from the parent's MP4.
        Raises InputError (bad parameters or model; nothing charged) or the store's refusals
        (InsufficientCredits, TooManyQueued, QueueFull), charging nothing.
        """
        params = dict(params or {})
        model = model or params.get("model") or self._default_model()
        self._check(model, image, params, end_image)
        if _is_extension(action, params) and (parent_id or params.get("parent_id")) is None:
            raise InputError("Choose the video to extend.")
        job = await self.store.create_job(
            user_id=user_id,
            model=model,
            cost=cost,
            image=image,
            params=params,
            end_image=end_image,
            idempotency_key=idempotency_key,
            action=action,
            parent_id=parent_id,
            delivery=delivery,
            max_queued_per_user=self.settings.max_queued_per_user,
            max_queue=self.settings.max_queue,
        )
        self.wake()
        return job

    async def cancel(self, job_id: int, reason: str = "Cancelled.") -> bool:
        """Cancel a waiting job (refunded, never runs) or stop a running one (refunded).

        False when the job had already ended (finished, failed or cancelled).
        """
        job = await self.store.cancel(job_id, reason)
        if job is not None:
            self.wake()
            await self._emit(job, Failed(reason + self._refund_note(job), kind="cancelled"))
            return True
        running = self._running.get(job_id)
        if running is not None:
            return await self._abandon(running, "cancelled", reason)
        try:
            current = await self.store.get_job(job_id)
        except UnknownJob:
            return False
        running = self._running.get(job_id)
        if running is not None:
            return await self._abandon(running, "cancelled", reason)
        if current.status == "running":
            # Claimed a moment ago and not yet launched: stop it as soon as it is.
            self._pending_cancels.add(job_id)
            return True
        return False

    async def position(self, job_id: int) -> int | None:
        return await self.store.queue_position(job_id)

    def wake(self) -> None:
        """Run a scheduler pass now (a job was queued, a worker became free or ready)."""
        self._wake.set()

    # ---- scheduling --------------------------------------------------------------------------

    async def _loop(self) -> None:
        next_scale = time.monotonic() + self.scale_interval
        while True:
            self._wake.clear()
            try:
                await self._fill()
                await self._publish_positions()
                if time.monotonic() >= next_scale:
                    next_scale = time.monotonic() + self.scale_interval
                    await self.pool.scale()
                self.pool.reap()
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

    async def _fill(self) -> None:
        """Claim jobs, in the store's fair order, for every worker with room for one."""
        if not await self.store.queue_order():
            return
        while True:
            # Idle workers first, so two idle workers run two jobs rather than one worker
            # taking both; then workers whose job is leaving the model stage.
            candidates = sorted(self.pool.ready(), key=lambda w: (len(w.jobs), w.name))
            for worker in candidates:
                models = self._room(worker)
                if not models:
                    continue
                job = await self.store.claim_next(worker.name, models)
                if job is not None:
                    self._launch(job, worker)
                    break
            else:
                return

    def _room(self, worker: Worker) -> set[str]:
        """Models the worker can take a job for right now (empty: none)."""
        if not worker.ready or worker.full:
            return set()
        if not worker.jobs:
            return worker.claim_models()
        current = list(worker.jobs.values())
        if len(current) != 1 or not current[0].leaving_model or current[0].abandoned:
            return set()
        # The overlap slot takes only the model already loaded: no model switch mid-stream.
        return worker.same_model(current[0].job.model)

    def _launch(self, job: Job, worker: Worker) -> None:
        running = _Running(job, worker)
        worker.jobs[job.id] = running
        self._running[job.id] = running
        loop = asyncio.get_running_loop()
        timeout = self.settings.job_timeout_seconds
        running.timers.append(loop.call_later(timeout, self._on_timeout, running))
        running.task = asyncio.create_task(self._run(running), name=f"job-{job.id}")
        log.info("job %d (%s, attempt %d) → %s", job.id, job.model, job.attempts, worker.name)
        if job.id in self._pending_cancels:
            self._pending_cancels.discard(job.id)
            self._spawn(self._abandon(running, "cancelled", "Cancelled."))

    async def _run(self, running: _Running) -> None:
        job, worker = running.job, running.worker
        try:
            try:
                request = await self._request_for(job)
            except PipelineError as exc:
                await self._end(running, exc.to_event())
                return
            final: Event | None = None
            stream = worker.handle.run.remote(str(job.id), request, job.low_memory)
            async for ref in stream:
                event = await ref
                if isinstance(event, Progress):
                    await self._progress(running, event)
                else:
                    final = event
            if final is None:
                final = Failed("The renderer stopped without a result.", kind="crash", retryable=True)
            await self._end(running, final)
        except _CRASH as exc:
            oom = isinstance(exc, RayOutOfMemoryError)
            bystander = self._bystander(running)
            log.warning(
                "job %d: worker %s died: %s%s",
                job.id, worker.name, type(exc).__name__,
                " while it waited for the model (attempt not counted)" if bystander else "",
            )
            self.pool.crashed(worker)
            kind = "oom" if oom else "crash"
            await self._end(
                running,
                Failed("The renderer stopped.", kind=kind, retryable=True),
                count_attempt=not bystander,
            )
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - e.g. a request Ray could not deliver
            log.exception("job %d failed in the dispatcher", job.id)
            await self._end(running, Failed("Something went wrong on our side.", kind="internal"))
        finally:
            for timer in running.timers:
                timer.cancel()
            worker.jobs.pop(job.id, None)
            if self._running.get(job.id) is running:
                del self._running[job.id]
            self.wake()

    @staticmethod
    def _bystander(running: _Running) -> bool:
        """Whether a job on a dead worker had only done intake while another job was in the
        model: the second slot's job did not cause the crash, so it keeps its attempt.

        The jobs on one worker see the death in any order, so the one in the model marks the
        waiting ones, and a waiting one also checks for a job in the model itself.
        """
        others = [r for r in running.worker.jobs.values() if r is not running]
        if running.in_model:
            for other in others:
                other.bystander = other.bystander or not other.in_model
            return False
        return running.bystander or any(other.in_model for other in others)

    async def _progress(self, running: _Running, event: Progress) -> None:
        if event.stage in ("denoise", "decode"):
            running.in_model = True
        if not running.leaving_model and event.leaving_model:
            running.leaving_model = True
            self.wake()
        if not running.abandoned:
            await self._emit(running.job, event)

    async def _end(self, running: _Running, final: Event, *, count_attempt: bool = True) -> None:
        """Record a job's outcome. The store arbitrates races (cancel vs finish): only the
        transition that succeeds is announced, so listeners get exactly one final event."""
        job = running.job
        if isinstance(final, AnimateResult):
            await self._deliver(job, final)
            return
        assert isinstance(final, Failed)
        if final.retryable and (job.attempts < self.settings.max_attempts or not count_attempt):
            back = await self.store.requeue(
                job.id,
                low_memory=final.kind == "oom" and count_attempt,
                reason=final.reason,
                count_attempt=count_attempt,
            )
            if back is not None:
                log.warning(
                    "job %d: %s on attempt %d; queued again%s",
                    job.id, final.kind, job.attempts, " in low-memory mode" if back.low_memory else "",
                )
            return
        reason = self._final_reason(job, final)
        if final.kind == "cancelled":
            ended = await self.store.cancel(job.id, reason, running=True)
        else:
            ended = await self.store.fail(job.id, reason)
        if ended is not None:
            log.info("job %d failed (%s): %s", job.id, final.kind, reason)
            await self._emit(ended, Failed(reason, kind=final.kind))

    async def _deliver(self, job: Job, result: AnimateResult) -> None:
        """Write the MP4 atomically, then mark the job done (a crash in between reruns it)."""
        path = self.output_dir / f"{job.id}.mp4"
        await asyncio.to_thread(_write_atomic, path, result.video)
        done = await self.store.finish(job.id, result_path=str(path), result=_summary(result))
        if done is None:  # cancelled or timed out while it finished: not the member's clip
            log.info("job %d finished after it was stopped; discarding the clip", job.id)
            await asyncio.to_thread(_unlink, path)
            return
        log.info(
            "job %d done: %dx%d, %d frames, %.1f s total",
            job.id, result.width, result.height, result.frames, result.timings.get("total", 0.0),
        )
        await self._emit(done, dataclasses.replace(result, path=str(path)))

    # ---- stopping jobs -------------------------------------------------------------------

    def _on_timeout(self, running: _Running) -> None:
        limit = _duration(self.settings.job_timeout_seconds)
        reason = f"This video took longer than {limit} to make, so it was stopped."
        self._spawn(self._abandon(running, "timeout", reason))

    async def _abandon(self, running: _Running, kind: str, reason: str) -> bool:
        """End a running job now (refunded), tell its worker to stop, and restart the worker
        if the job does not stop within stop_grace seconds (a backend that cannot stop)."""
        if running.abandoned:
            return False
        running.abandoned = True
        job = running.job
        full = reason + self._refund_note(job)
        if kind == "cancelled":
            ended = await self.store.cancel(job.id, full, running=True)
        else:
            ended = await self.store.fail(job.id, full)
        if ended is None:
            return False
        log.info("job %d stopped (%s)", job.id, kind)
        await self._emit(ended, Failed(full, kind=kind))  # type: ignore[arg-type]
        loop = asyncio.get_running_loop()
        running.timers.append(loop.call_later(self.stop_grace, self._force_stop, running))
        asked = asyncio.ensure_future(running.worker.handle.cancel.remote(str(job.id)))
        done, _ = await asyncio.wait({asked}, timeout=5.0)
        if not done or asked.exception() is not None:  # a dead worker: the timer covers it
            asked.cancel()
            log.debug("job %d: %s did not take the stop request", job.id, running.worker.name)
        return True

    def _force_stop(self, running: _Running) -> None:
        if running.task is not None and not running.task.done():
            self.pool.restart(running.worker)

    # ---- helpers ---------------------------------------------------------------------------

    def _spawn(self, coro: Awaitable[Any]) -> None:
        """A background task that stop() cancels and the garbage collector cannot drop."""
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _emit(self, job: Job, event: Event) -> None:
        for listener in list(self._listeners):
            try:
                result = listener(job, event)
                if inspect.isawaitable(result):
                    await result
            except Exception:  # noqa: BLE001 - a listener's bug must not stop the job
                log.exception("listener failed on job %d", job.id)

    async def _publish_positions(self) -> None:
        """Tell listeners about waiting jobs whose queue position changed."""
        if not self._listeners:
            self._positions = {}
            return
        order = await self.store.queue_order()
        positions = {job_id: i for i, job_id in enumerate(order, 1)}
        changed = [j for j, p in positions.items() if self._positions.get(j) != p]
        self._positions = positions
        if not changed:
            return
        jobs = {j.id: j for j in await self.store.jobs(statuses=("queued",))}
        for job_id in changed:
            job = jobs.get(job_id)
            if job is None:
                continue
            position = positions[job_id]
            await self._emit(
                job,
                Progress("queued", position, len(order), message=f"Waiting: #{position} in the queue"),
            )

    async def _request_for(self, job: Job) -> AnimateRequest:
        """The request a worker gets: the stored inputs and params, plus the parent's clip
        for an extension."""
        image, end_image = await self.store.job_inputs(job.id)
        previous: bytes | None = None
        if _is_extension(job.action, job.params):
            parent_id = job.parent_id or job.params.get("parent_id")
            previous = await self._parent_clip(int(parent_id) if parent_id is not None else None)
        params = {k: v for k, v in job.params.items() if k in _REQUEST_FIELDS}
        return AnimateRequest(
            image=image,
            end_image=end_image,
            previous_clip=previous,
            model=job.model,
            job_id=str(job.id),
            **params,
        )

    async def _parent_clip(self, parent_id: int | None) -> bytes:
        gone = InputError("The video to extend is no longer available.")
        if parent_id is None:
            raise gone
        try:
            parent = await self.store.get_job(parent_id)
        except UnknownJob:
            raise gone from None
        if not parent.result_path:
            raise gone
        try:
            return await asyncio.to_thread(Path(parent.result_path).read_bytes)
        except OSError:
            raise gone from None

    def _check(
        self, model: str, image: bytes, params: dict[str, Any], end_image: bytes | None
    ) -> None:
        """Refuse a bad request before anything is charged (InputError, member-readable)."""
        known = set(self.settings.models) | set(self.models)
        for worker in self.pool.ready():
            known |= worker.claim_models()
        if model not in known:
            choices = ", ".join(self.models or self.settings.models)
            raise InputError(f"The model {model!r} is not available here; choose one of: {choices}.")
        unknown = [k for k in params if k not in _REQUEST_FIELDS and k not in _PARAM_EXTRAS]
        if unknown:
            raise InputError(f"Unknown option(s): {', '.join(sorted(unknown))}.")
        fields = {k: v for k, v in params.items() if k in _REQUEST_FIELDS}
        AnimateRequest(image=image, end_image=end_image, model=model, **fields)

    def _default_model(self) -> str:
        return (self.models or self.settings.models)[0]

    def _final_reason(self, job: Job, failed: Failed) -> str:
        times = {1: "", 2: " twice"}.get(job.attempts, f" {job.attempts} times")
        if failed.kind == "oom":
            memory = "GPU memory" if self._on_gpu(job) else "memory"
            text = f"The renderer ran out of {memory}{times}"
        elif failed.kind == "crash":
            text = f"The renderer stopped unexpectedly{times} while making this video"
        else:
            return failed.reason + self._refund_note(job)
        return text + ("; your credits were refunded." if job.cost > 0 else ".")

    def _on_gpu(self, job: Job) -> bool:
        running = self._running.get(job.id)
        return running is not None and running.worker.gpu

    @staticmethod
    def _refund_note(job: Job) -> str:
        return " Your credits were refunded." if job.cost > 0 else ""


def _duration(seconds: float) -> str:
    """900 → "15 minutes", 90 → "1.5 minutes", 1 → "1 second"."""
    if seconds >= 60:
        minutes = seconds / 60
        return f"{minutes:g} minute{'' if minutes == 1 else 's'}" if minutes == int(minutes) else f"{minutes:.1f} minutes"
    return f"{seconds:g} second{'' if seconds == 1 else 's'}"


def _is_extension(action: str, params: dict[str, Any]) -> bool:
    return action == "extend" or bool(params.get("extend"))


def _summary(result: AnimateResult) -> dict[str, Any]:
    return {
        "width": result.width,
        "height": result.height,
        "frames": result.frames,
        "fps": result.fps,
        "seed": result.seed,
        "model": result.model,
        "bytes": len(result.video),
        "timings": result.timings,
        "warnings": list(result.warnings),
    }


def _write_atomic(path: Path, data: bytes) -> None:
    """Readers see the whole file or none: write a temporary name, fsync, rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.part")
    try:
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        _unlink(tmp)
        raise


def _unlink(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass
