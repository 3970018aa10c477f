"""Running one job on one worker: stream its events, end it once, stop it when asked.

The runner turns a worker's event stream into store updates. The store arbitrates races
(a cancel against a finish): only the transition that succeeds is announced, so listeners
see exactly one final event per job. A worker that dies under a job is attributed here: the
job that was in the model caused it; a job that had only done intake beside it keeps its
attempt (a bystander).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import secrets
import sqlite3
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from ray.exceptions import OutOfMemoryError as RayOutOfMemoryError
from ray.exceptions import RayActorError, WorkerCrashedError
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    RetryError,
    retry_if_exception_type,
    stop_after_delay,
    wait_exponential,
)

from contract import (
    AnimateRequest,
    AnimateResult,
    Event,
    Failed,
    InputError,
    PipelineError,
    Progress,
    Takes,
    one_line,
)
from jobs.config import JobsConfig
from jobs.pool import Worker, WorkerPool
from jobs.records import ClipSummary, Job, TakeClip
from jobs.refusals import UnknownJob
from jobs.retry import GiveUp, decide, refund_note, timeout_reason
from jobs.status import JobAction
from jobs.store import Store
from jobs.usage import BusyClock

log = logging.getLogger("jobs.runner")

_CRASH = (RayActorError, WorkerCrashedError, RayOutOfMemoryError)
T = TypeVar("T")


class Unrecorded(Exception):
    """A job's final write kept failing: it stays as it was in the database."""
Emit = Callable[[Job, Event], Awaitable[None]]


@dataclass(eq=False)
class Running:
    """One job on one worker, as long as its stream is open."""

    job: Job
    worker: Worker
    started: float = field(default_factory=time.monotonic)
    leaving_model: bool = False
    """The worker said the job is leaving the model: it may take its next job."""
    in_model: bool = False
    """Has reached the model stage (a denoise or decode event), not only intake."""
    bystander: bool = False
    """Was waiting for the model when its worker died under another job's render."""
    abandoned: bool = False
    """Cancelled or timed out: already ended in the store, the worker was told to stop."""
    task: asyncio.Task[None] | None = None
    timers: list[asyncio.TimerHandle] = field(default_factory=list)
    timeout: asyncio.TimerHandle | None = None
    """The JOB_TIMEOUT_SECONDS timer; paused while the job waits for its model's download."""


class Runner:
    """Owns the jobs in flight. `emit(job, event)` announces; `wake()` asks for a scheduler pass."""

    def __init__(
        self,
        config: JobsConfig,
        store: Store,
        pool: WorkerPool,
        *,
        emit: Emit,
        wake: Callable[[], None],
        stop_grace: float,
        infrastructure_ok: Callable[[], Awaitable[bool]] | None = None,
    ) -> None:
        self.config = config
        self.infrastructure_ok = infrastructure_ok
        self.store = store
        self.pool = pool
        self.emit = emit
        self.wake = wake
        self.stop_grace = stop_grace
        self.running: dict[int, Running] = {}
        self.busy = BusyClock()
        self.pending_cancels: set[int] = set()
        self._background: set[asyncio.Task[Any]] = set()

    def on(self, worker: Worker) -> list[Running]:
        return [r for r in self.running.values() if r.worker is worker]

    def busy_workers(self) -> set[Worker]:
        return {r.worker for r in self.running.values()}

    def launch(self, job: Job, worker: Worker) -> None:
        running = Running(job, worker)
        self.running[job.id] = running
        self.busy.start(worker.name, "gpu" if worker.gpu else "cpu")
        self._arm_timeout(running)
        running.task = asyncio.create_task(self._run(running), name=f"job-{job.id}")
        log.info("job %d (%s, attempt %d) → %s", job.id, job.model, job.attempts, worker.name)
        if job.id in self.pending_cancels:
            self.pending_cancels.discard(job.id)
            self.spawn(self.abandon(running, "cancelled", "Cancelled."))

    async def close(self) -> list[int]:
        """Drop every stream; returns the ids of jobs that were still rendering."""
        interrupted = [job_id for job_id, r in self.running.items() if not r.abandoned]
        tasks = [r.task for r in self.running.values() if r.task is not None]
        tasks += self._background
        for running in self.running.values():
            for timer in running.timers:
                timer.cancel()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self.running.clear()
        return interrupted

    # ---- one job's stream ----------------------------------------------------------------

    async def _run(self, running: Running) -> None:
        job, worker = running.job, running.worker
        try:
            try:
                request = await self._request_for(job)
            except PipelineError as exc:
                await self._end(running, exc.to_event())
                return
            if not await self._answers(running):
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
            bystander = self._bystander(running)
            if not bystander and self.infrastructure_ok is not None:
                bystander = not await self.infrastructure_ok()  # Ray died, not the job
            log.warning(
                "job %d: worker %s died: %s%s",
                job.id, worker.name, type(exc).__name__,
                " (attempt not counted)" if bystander else "",
            )
            self.pool.crashed(worker)
            kind = "oom" if isinstance(exc, RayOutOfMemoryError) else "crash"
            await self._end(
                running,
                Failed("The renderer stopped.", kind=kind, retryable=True),
                count_attempt=not bystander,
            )
        except asyncio.CancelledError:
            raise
        except Unrecorded as exc:
            # Still "running" in the database: the next start requeues it and it ends once.
            log.error(
                "job %d: its end could not be recorded for %g s (%s); the next start of the "
                "bot will finish it", job.id, self.config.write_patience_seconds, exc,
            )
        except Exception:  # noqa: BLE001 - e.g. a request Ray could not deliver
            log.exception("job %d failed in the runner", job.id)
            await self._end(running, Failed("Something went wrong on our side.", kind="internal"))
        finally:
            for timer in running.timers:
                timer.cancel()
            if self.running.get(job.id) is running:
                del self.running[job.id]
            self.busy.stop(worker.name)
            self.wake()

    async def _answers(self, running: Running) -> bool:
        """Whether the worker is alive before the job goes to it. One that died idle still
        looks ready until someone calls it; that is not the job's fault, so the job goes back
        to the queue without using an attempt (and nothing was rendered)."""
        try:
            await running.worker.handle.info.remote()
            return True
        except _CRASH as exc:
            log.warning(
                "job %d: worker %s was found dead (%s); queued again, attempt not counted",
                running.job.id, running.worker.name, type(exc).__name__,
            )
            self.pool.crashed(running.worker)
            await self.persist(
                self.store.requeue, running.job.id, reason="The renderer had stopped.",
                count_attempt=False,
            )
            return False

    def _bystander(self, running: Running) -> bool:
        """Whether a job on a dead worker had only done intake while another job was in the
        model: the second slot's job did not cause the crash, so it keeps its attempt.

        The jobs on one worker see the death in any order, so the one in the model marks the
        waiting ones, and a waiting one also checks for a job in the model itself.
        """
        others = [r for r in self.on(running.worker) if r is not running]
        if running.in_model:
            for other in others:
                other.bystander = other.bystander or not other.in_model
            return False
        return running.bystander or any(other.in_model for other in others)

    async def _progress(self, running: Running, event: Progress) -> None:
        if event.stage in ("denoise", "decode"):
            running.in_model = True
        # Waiting for the worker to download the model (once, maybe for many minutes) is not
        # making this video: the timeout stops meanwhile and starts afresh after it. The
        # download itself ends (done, or failed: the job fails) or the member cancels.
        if event.stage == "download":
            if running.timeout is not None:
                running.timeout.cancel()
                running.timers.remove(running.timeout)
                running.timeout = None
        elif running.timeout is None and not running.abandoned:
            self._arm_timeout(running)
        if event.leaving_model and not running.leaving_model:
            running.leaving_model = True
            self.wake()
        if not running.abandoned:
            await self.emit(running.job, event)

    async def _end(self, running: Running, final: Event, *, count_attempt: bool = True) -> None:
        job = running.job
        if isinstance(final, AnimateResult):
            await self._keep(job, final)
            return
        if isinstance(final, Takes):
            await self._keep_takes(job, final)
            return
        assert isinstance(final, Failed)
        verdict = decide(
            final,
            attempts=job.attempts,
            max_attempts=self.config.max_attempts,
            cost=job.cost,
            count_attempt=count_attempt,
            on_gpu=running.worker.gpu,
        )
        if not isinstance(verdict, GiveUp):
            back = await self.persist(
                self.store.requeue,
                job.id,
                low_memory=verdict.low_memory,
                reason=final.reason,
                count_attempt=verdict.count_attempt,
            )
            if back is not None:
                log.warning(
                    "job %d: %s on attempt %d; queued again%s",
                    job.id, final.kind, job.attempts, " in low-memory mode" if back.low_memory else "",
                )
            return
        if verdict.cancelled:
            ended = await self.persist(
                self.store.cancel, job.id, verdict.reason, running=True, telling=job
            )
        else:
            ended = await self.persist(
                self.store.fail, job.id, verdict.reason, kind=final.kind, telling=job
            )
        if ended is not None:
            log.info("job %d failed (%s): %s", job.id, final.kind, verdict.reason)
            await self.emit(ended, Failed(verdict.reason, kind=final.kind))

    async def _keep(self, job: Job, result: AnimateResult) -> None:
        """Write the MP4 atomically, then mark the job done (a crash in between reruns it)."""
        path = Path(self.config.output_dir) / f"{job.id}.mp4"
        try:
            await self.persist(asyncio.to_thread, _write_atomic, path, result.video, telling=job)
        except Unrecorded as exc:  # the disk stayed full: end the job, refunded, if we can
            log.error("job %d: its video could not be saved: %s", job.id, exc)
            reason = "The video was made, but the bot could not save it." + refund_note(job.cost)
            ended = await self.persist(self.store.fail, job.id, reason, kind="internal", telling=job)
            if ended is not None:
                await self.emit(ended, Failed(reason, kind="internal"))
            return
        done = await self.persist(
            self.store.finish, job.id, result_path=str(path),
            clip=await self._made_from(job, ClipSummary.of(result)), telling=job,
        )
        if done is None:  # cancelled or timed out while it finished: not the member's clip
            log.info("job %d finished after it was stopped; discarding the clip", job.id)
            await asyncio.to_thread(path.unlink, missing_ok=True)
            return
        log.info(
            "job %d done: %dx%d, %d frames, %.1f s total",
            job.id, result.width, result.height, result.frames, result.timings.get("total", 0.0),
        )
        await self.emit(done, dataclasses.replace(result, path=str(path)))

    async def _made_from(self, job: Job, clip: ClipSummary) -> ClipSummary:
        """A finish (Smooth, Upscale 2×) keeps what its parent's clip was: how it loops and
        the prompt its model read (Info shows them); best effort."""
        if job.action is not JobAction.FINISH or job.parent_id is None:
            return clip
        try:
            parent = await self.store.get_job(job.parent_id)
        except (UnknownJob, sqlite3.Error):
            return clip
        if parent.clip is None:
            return clip
        return dataclasses.replace(clip, loop=parent.clip.loop, prompt=parent.clip.prompt)

    async def _keep_takes(self, job: Job, takes: Takes) -> None:
        """A job with variations: write each made take's MP4 (``<job>.mp4`` for the first,
        ``<job>-<take>.mp4`` for the others), then end the job with all of them in one
        transaction that also refunds the failed takes' share (see ``Store.finish``)."""
        made = takes.made
        count = len(takes.takes)
        kept: list[tuple[Path, TakeClip]] = []
        try:
            for index, (number, result) in enumerate(made):
                name = f"{job.id}.mp4" if index == 0 else f"{job.id}-{number}.mp4"
                path = Path(self.config.output_dir) / name
                await self.persist(asyncio.to_thread, _write_atomic, path, result.video, telling=job)
                clip = dataclasses.replace(ClipSummary.of(result), take=number, takes=count)
                kept.append((path, TakeClip(number, str(path), clip)))
        except Unrecorded as exc:  # the disk stayed full: end the job, refunded, if we can
            log.error("job %d: its videos could not be saved: %s", job.id, exc)
            await asyncio.to_thread(_remove, [path for path, _ in kept])
            reason = "The videos were made, but the bot could not save them." + refund_note(job.cost)
            ended = await self.persist(self.store.fail, job.id, reason, kind="internal", telling=job)
            if ended is not None:
                await self.emit(ended, Failed(reason, kind="internal"))
            return
        failed = tuple(f"Take {number}: {why.reason}" for number, why in takes.failed)
        first = dataclasses.replace(kept[0][1].clip, failed_takes=failed)
        done = await self.persist(
            self.store.finish, job.id, result_path=kept[0][1].result_path, clip=first,
            takes=[take for _, take in kept[1:]], failed_takes=len(failed), telling=job,
        )
        if done is None:  # cancelled or timed out while it finished: not the member's clips
            log.info("job %d finished after it was stopped; discarding its takes", job.id)
            await asyncio.to_thread(_remove, [path for path, _ in kept])
            return
        log.info(
            "job %d done: %d of %d takes made%s", job.id, len(kept), count,
            f" ({len(failed)} refunded)" if failed else "",
        )
        await self.emit(done, takes)

    # ---- stopping jobs -------------------------------------------------------------------

    def _timeout_for(self, job: Job) -> float:
        """JOB_TIMEOUT_SECONDS per take: a job with variations renders them one after another."""
        return self.config.job_timeout_seconds * max(1, job.spec.variations)

    def _arm_timeout(self, running: Running) -> None:
        loop = asyncio.get_running_loop()
        running.timeout = loop.call_later(
            self._timeout_for(running.job), self._on_timeout, running
        )
        running.timers.append(running.timeout)

    def _on_timeout(self, running: Running) -> None:
        self.spawn(
            self.abandon(running, "timeout", timeout_reason(self._timeout_for(running.job)))
        )

    async def abandon(self, running: Running, kind: str, reason: str) -> bool:
        """End a running job now (refunded), tell its worker to stop, and restart the worker
        if the job does not stop within stop_grace seconds (a backend that cannot stop)."""
        if running.abandoned:
            return False
        running.abandoned = True
        job = running.job
        full = reason + refund_note(job.cost)
        if kind == "cancelled":
            ended = await self.store.cancel(job.id, full, running=True)
        else:
            ended = await self.store.fail(job.id, full, kind=kind)  # type: ignore[arg-type]
        if ended is None:
            return False
        log.info("job %d stopped (%s)", job.id, kind)
        await self.emit(ended, Failed(full, kind=kind))  # type: ignore[arg-type]
        loop = asyncio.get_running_loop()
        running.timers.append(loop.call_later(self.stop_grace, self._force_stop, running))
        asked = asyncio.ensure_future(running.worker.handle.cancel.remote(str(job.id)))
        done, _ = await asyncio.wait({asked}, timeout=5.0)
        if not done or asked.exception() is not None:  # a dead worker: the timer covers it
            asked.cancel()
            log.debug("job %d: %s did not take the stop request", job.id, running.worker.name)
        return True

    def _force_stop(self, running: Running) -> None:
        if running.task is not None and not running.task.done():
            self.pool.restart(running.worker)

    async def persist(
        self,
        write: Callable[..., Awaitable[T]],
        *args: Any,
        telling: Job | None = None,
        **kwargs: Any,
    ) -> T:
        """A job's final write, tried again while the database or the disk refuses it (read
        only, full, an I/O error): the member's video must end exactly once, delivered or
        refunded, not stay half-recorded. Raises Unrecorded when it never went through.
        `telling`: the job whose member hears, at the first refusal, that saving is delayed."""
        patience = self.config.write_patience_seconds

        def waiting(state: RetryCallState) -> None:
            if state.attempt_number == 1:
                log.warning("job write failed (%s); trying again for up to %g s",
                            state.outcome.exception() if state.outcome else "?", patience)
                if telling is not None:
                    self.spawn(self.emit(telling, Progress("saving", message="storage unavailable")))

        retrying = AsyncRetrying(
            retry=retry_if_exception_type((sqlite3.OperationalError, OSError)),
            wait=wait_exponential(multiplier=0.25, max=5.0),
            stop=stop_after_delay(patience),
            before_sleep=waiting,
        )
        try:
            return await retrying(write, *args, **kwargs)
        except RetryError as exc:
            cause = exc.last_attempt.exception()
            raise Unrecorded(one_line(cause) if cause else "unknown") from cause

    def spawn(self, coro: Awaitable[Any]) -> None:
        """A background task that close() cancels and the garbage collector cannot drop."""
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # ---- the request a worker gets -------------------------------------------------------

    async def _request_for(self, job: Job) -> AnimateRequest:
        """The stored spec and inputs, plus the parent's clip for an extension; a finish
        (Smooth, Upscale 2× on a delivered clip) gets only the parent's clip."""
        if job.action is JobAction.FINISH:
            clip = await self._parent_clip(job.parent_id, "finish")
            return AnimateRequest.of(job.spec, image=b"", finish_clip=clip, job_id=str(job.id))
        image, end_image = await self.store.job_inputs(job.id)
        previous: bytes | None = None
        if job.action is JobAction.EXTEND:
            previous = await self._parent_clip(job.parent_id)
        return AnimateRequest.of(
            job.spec, image=image, end_image=end_image, previous_clip=previous, job_id=str(job.id)
        )

    async def _parent_clip(self, parent_id: int | None, verb: str = "extend") -> bytes:
        gone = InputError(f"The video to {verb} is no longer available.")
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


def _remove(paths: list[Path]) -> None:
    for path in paths:
        path.unlink(missing_ok=True)


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
        tmp.unlink(missing_ok=True)
        raise
