"""What members can do with jobs, for every surface that asks (a command, a button, a modal).

One method per action, each returning the job or raising a typed refusal (jobs.refusals) or
InputError; nothing is charged when one is raised. The rules live here, once: which models
and lengths are offered, that the member who presses a button pays for the new job, that
only a finished clip can be extended. It also keeps the output folder to the operator's
retention period (KEEP_OUTPUTS_DAYS): a sweep at start and then hourly.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from contract import (
    MAX_UPSCALED_SIDE,
    SEED_MAX,
    Effect,
    JobSpec,
    ModelCard,
    WorkerInfo,
    card_for,
    identical_takes,
    random_seed,
)
from jobs.config import JobsConfig
from jobs.dispatcher import Dispatcher
from jobs.records import Job, Recovery
from jobs.refusals import (
    CannotFinish,
    DurationNotOffered,
    ModelUnavailable,
    NotFinished,
    NotSupported,
    Refused,
    UnknownJob,
)
from jobs.status import FINISHED, JobAction
from jobs.store import Store

log = logging.getLogger("jobs.service")

RETENTION_BATCH = 100
RETENTION_SINCE_KEY = "retention_since"
"""Meta key: when retention first ran here (clips older than that count from then)."""
"""Clips the retention sweep forgets per transaction (each batch holds the write lock briefly)."""
FINISHES = ("smooth", "upscale")
"""The finishing buttons on a delivered clip: Smooth and Upscale 2×, in the order shown."""
SMOOTH_UP_TO = 48
"""Smooth on a delivered clip doubles its frames while that stays within this rate (24 → 48,
16 → 32 fps), else brings it to this rate; a clip already this smooth is refused."""


@dataclass(frozen=True)
class Origin:
    """Who asked and where to answer: the presser pays; `key` makes a repeated click one job."""

    user_id: int
    key: str | None = None
    """Idempotency key (Discord's interaction id)."""
    delivery: Mapping[str, Any] | None = None
    """The surface's own record of where to show the job (opaque here)."""
    max_bytes: int | None = None
    """The largest file the surface can post (Discord's per-file upload limit)."""


class JobService:
    def __init__(self, store: Store, dispatcher: Dispatcher, config: JobsConfig) -> None:
        self.store = store
        self.dispatcher = dispatcher
        self.config = config
        self._retention: asyncio.Task[None] | None = None

    # ---- lifecycle -----------------------------------------------------------------------

    async def start(self) -> Recovery:
        """Recover what a previous run left in flight, then start the workers. The
        Recovery's ``undelivered`` jobs are done but were never delivered: deliver them."""
        recovery = await self.recover()
        await self.dispatcher.start()
        if self._retention is None or self._retention.done():
            self._retention = asyncio.create_task(self._keep_outputs(), name="retention")
        return recovery

    async def recover(self) -> Recovery:
        """Put back the jobs a stopped process left rendering (or end them, refunded, when
        their attempts ran out); report finished clips that were never delivered."""
        recovery = await self.store.recover(self.config.max_attempts)
        for job in recovery.requeued:
            log.info("job %d was in flight when the bot stopped; queued again", job.id)
        for job in recovery.failed:
            log.info("job %d was in flight when the bot stopped; out of attempts, refunded", job.id)
        return recovery

    async def stop(self) -> None:
        if self._retention is not None:
            self._retention.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._retention
            self._retention = None
        await self.dispatcher.stop()

    # ---- retention -----------------------------------------------------------------------

    async def _keep_outputs(self) -> None:
        """The retention sweep at start, then every `retention_interval_seconds`; a sweep
        that fails (the database read-only, the disk gone) is logged and tried next time."""
        while True:
            try:
                await self.expire_outputs()
            except Exception as exc:  # noqa: BLE001 - never let the sweep end the task
                log.warning("retention sweep failed, trying again later: %s", exc)
            await asyncio.sleep(self.config.retention_interval_seconds)

    async def expire_outputs(self) -> int:
        """Forget delivered clips older than the retention period (KEEP_OUTPUTS_DAYS;
        favourites KEEP_FAVOURITES_DAYS) as a member's Delete does, MP4 included. Returns
        how many were forgotten."""
        config = self.config
        keep, keep_favourites = config.kept_seconds(favourite=False), config.kept_seconds(favourite=True)
        if keep is None and keep_favourites is None:
            return 0
        now = self.store.clock()
        # The retention clock starts when retention first runs on this database: clips made
        # before the library existed get their full period to be marked as favourites.
        since = await self.store.get_meta(RETENTION_SINCE_KEY)
        if since is None:
            await self.store.set_meta(RETENTION_SINCE_KEY, repr(now))
            since = repr(now)
        started = float(since)

        def cutoff(kept: float | None) -> float | None:
            return None if kept is None or started > now - kept else now - kept

        forgotten = 0
        while True:
            jobs = await self.store.forget_expired(
                delivered_before=cutoff(keep),
                favourites_before=cutoff(keep_favourites),
                limit=RETENTION_BATCH,
            )
            await asyncio.to_thread(_remove, [job.result_path for job in jobs if job.result_path])
            forgotten += len(jobs)
            if len(jobs) < RETENTION_BATCH:
                break
        if forgotten:
            favourites = "forever" if keep_favourites is None else f"{keep_favourites / 86_400:g} days"
            log.info(
                "retention: removed %d videos delivered more than %g days ago (favourites: %s)",
                forgotten, (keep or 0) / 86_400, favourites,
            )
        return forgotten

    # ---- the catalogue -------------------------------------------------------------------

    def models(self) -> list[str]:
        """Models members can pick: what the workers loaded, else the configured ones."""
        return self.dispatcher.models or list(self.config.models)

    def cost(self, model: str, duration: float) -> int:
        return self.config.pricing.cost(model, duration)

    def card(self, model: str) -> ModelCard:
        """`model`'s card: a preset's own, or for a directory or repo id the card of the preset
        its workers say it follows (WorkerInfo.cards), so the lengths offered, checked and
        charged are the ones it makes; a plain card until a worker has said."""
        like = next((w.cards[model] for w in self.dispatcher.workers if model in w.cards), None)
        return card_for(model, like)

    def cost_of(self, spec: JobSpec) -> int:
        """What a job costs: one clip's price, and its finishes' (Smooth, Upscale 2×), for
        each take."""
        pricing = self.config.pricing
        single = self.cost(spec.model, spec.duration) + pricing.finish_cost(spec.finishes, spec.duration)
        return single * spec.variations

    def choose_model(self, model: str | None) -> str:
        enabled = self.models()
        if model is None:
            return enabled[0]
        if model not in enabled and model not in self.dispatcher.known_models():
            raise ModelUnavailable(model, enabled)
        return model

    def check_finishes(self, spec: JobSpec, *, clip: bool = False) -> None:
        """Refuse Smooth or Upscale 2× when no worker serving the model can do it (its
        sentence says why: weights not downloaded, a CPU too slow), before anything is
        charged. While no worker has answered yet, the job is let through: the worker then
        refuses it before rendering, refunded. A render is judged by what its model can do
        there (an LTX preset may upscale inside the render without Real-ESRGAN); `clip`: a
        delivered clip's MP4 is finished (the buttons), which only the frame finishers can."""
        if not spec.finishes:
            return
        workers = self._finishers(spec.model)
        for name in spec.finishes:
            answers = [
                (w.finishing if clip else w.finishing_for(spec.model)).get(name, "") for w in workers
            ]
            if answers and None not in answers:
                reason = next((a for a in answers if a), None) or "No renderer here can do it."
                what = "Smoothing" if name == "smooth" else "Upscaling"
                raise NotSupported(f"{what} isn't available here: {reason}")

    def _finishers(self, model: str) -> list[WorkerInfo]:
        """The workers a job for `model` that asks for a finish would go to (all of them when
        none serves it: they answer for the machine, and the job is refused there)."""
        return [w for w in self.dispatcher.workers if w.serves(model)] or self.dispatcher.workers

    def effects(self, model: str) -> tuple[Effect, ...]:
        """The effects members may pick for `model`."""
        return self.config.backend.effects_for(model)

    def choose_effect(self, model: str, effect: str | None) -> str | None:
        if effect is None:
            return None
        offered = self.effects(model)
        if not any(e.name == effect for e in offered):
            if not offered:
                raise NotSupported(f"`{model}` has no effects; leave out effect or pick another model.")
            names = ", ".join(f"{e.name} ({e.label})" for e in offered)
            raise NotSupported(f"`{model}` has no effect called “{effect}”; it offers {names}.")
        return effect

    def choose_duration(self, model: str, duration: float | None) -> float:
        card = self.card(model)
        if duration is None:
            return card.default_duration
        if not card.allows_duration(duration):
            raise DurationNotOffered(model, card.durations)
        return float(duration)

    def spec(
        self,
        *,
        model: str | None = None,
        duration: float | None = None,
        end_image: bool = False,
        effect: str | None = None,
        **fields: Any,
    ) -> JobSpec:
        """The one validation of what a member asked for: model, length and effect offered
        here, end image supported, every field in range (InputError or a refusal otherwise)."""
        chosen = self.choose_model(model)
        card = self.card(self._served_as(chosen))
        if end_image and not card.supports_end_image:
            raise NotSupported(
                f"The model `{chosen}` can't end on a chosen image; leave out end_image or "
                "pick another model."
            )
        spec = JobSpec(
            model=chosen,
            duration=self.choose_duration(chosen, duration),
            effect=self.choose_effect(chosen, effect),
            **fields,
        )
        if spec.variations > 1 and not card.uses_seed:
            raise NotSupported(identical_takes(card.name, is_ai=card.is_ai))
        self.check_finishes(spec)
        return spec

    def _served_as(self, model: str) -> str:
        """What the workers serve under `model` ("auto" → "camera" on machines without a
        GPU), so its card is the one read; `model` itself when no worker says, or when they
        differ (a GPU worker's "auto" is a preset, a CPU worker's the camera: the job may go
        to either, so no one worker's card may refuse it)."""
        served = {w.aliases[model] for w in self.dispatcher.workers if model in w.aliases}
        return served.pop() if len(served) == 1 else model

    async def check_room(self, user_id: int, spec: JobSpec) -> None:
        """Refuse before the expensive part (downloading and decoding the photo) what submit
        would refuse: too few credits, too many videos waiting or made today. Charges nothing."""
        await self.store.check_room(
            user_id,
            self.cost_of(spec),
            max_queued_per_user=self.config.max_queued_per_user,
            max_queue=self.config.max_queue,
            max_per_day=self.config.max_jobs_per_day,
        )

    # ---- actions -------------------------------------------------------------------------

    async def submit(
        self,
        spec: JobSpec,
        origin: Origin,
        *,
        image: bytes,
        end_image: bytes | None = None,
        action: JobAction = JobAction.ANIMATE,
        parent_id: int | None = None,
        cost: int | None = None,
    ) -> Job:
        """Debit and queue in one transaction, then wake the scheduler. The clip is made to
        fit what the asking surface can post (`origin.max_bytes`); with variations the takes
        share one message, so each gets an equal part of it. `cost`: a price other than
        the spec's (a finish of a delivered clip pays for the finish only)."""
        if origin.max_bytes is not None:
            spec = spec.replace(max_bytes=origin.max_bytes // spec.variations)
        job = await self.store.create_job(
            user_id=origin.user_id,
            spec=spec,
            cost=self.cost_of(spec) if cost is None else cost,
            image=image,
            end_image=end_image,
            idempotency_key=origin.key,
            action=action,
            parent_id=parent_id,
            delivery=origin.delivery,
            max_queued_per_user=self.config.max_queued_per_user,
            max_queue=self.config.max_queue,
            max_per_day=self.config.max_jobs_per_day,
        )
        self.dispatcher.wake()
        return job

    async def reroll(self, job_id: int, origin: Origin) -> Job:
        """The same photo and settings with a new seed, paid by the presser."""
        job = await self.store.get_job(job_id)
        spec = self._carry_over(job).replace(seed=random_seed(SEED_MAX))
        image, end_image = await self.store.job_inputs(job.id)
        return await self.submit(
            spec, origin, image=image, end_image=end_image, action=JobAction.REROLL,
            parent_id=job.id,
        )

    async def edit(
        self,
        job_id: int,
        origin: Origin,
        *,
        image: bytes | None = None,
        end_image: bytes | None = None,
        **changes: Any,
    ) -> Job:
        """The job again with changed settings (prompt, camera, motion, length, model ...) and
        a new seed, on its photo or `image`, ending on its end frame or `end_image`. A changed
        model or length is checked as /animate checks them; an effect the new model lacks is
        dropped."""
        job = await self.store.get_job(job_id)
        spec = self._carry_over(job)
        model = self.choose_model(changes.pop("model", None) or spec.model)
        duration = self.choose_duration(model, changes.pop("duration", None) or spec.duration)
        effect = spec.effect if any(e.name == spec.effect for e in self.effects(model)) else None
        card = self.card(model)
        if end_image is not None and not card.supports_end_image:
            raise NotSupported(
                f"The model `{model}` can't end on a chosen image; leave out the end frame or "
                "pick another model."
            )
        old_image, old_end = await self.store.job_inputs(job.id)
        if end_image is None and card.supports_end_image:
            end_image = old_end
        spec = spec.replace(model=model, duration=duration, effect=effect, seed=None, **changes)
        return await self.submit(
            spec, origin, image=image or old_image, end_image=end_image, action=JobAction.EDIT,
            parent_id=job.id,
        )

    async def check_extend(self, job_id: int) -> Job:
        """Refuse now what extend would refuse (not finished, a model that can't, the chain
        at its limit), before the member fills in the form. Returns the job."""
        job = await self.store.get_job(job_id)
        model = job.model if job.model in self.models() else self.choose_model(None)
        if not self.card(model).supports_extend:
            raise NotSupported(f"`{model}` can't extend videos.")
        if job.status not in FINISHED or not job.result_path:
            raise NotFinished()
        limit = self.config.max_extensions
        if limit == 0:
            raise NotSupported("Extending videos is turned off here.")
        if await self._extensions_before(job) >= limit:
            times = "once" if limit == 1 else f"{limit} times"
            raise NotSupported(
                f"This video has been extended {times}, the most allowed here; start a new one "
                "from a photo instead."
            )
        return job

    async def extend(self, job_id: int, origin: Origin, *, prompt: str | None = None) -> Job:
        """A new clip that continues a finished one from its last frame, optionally with a new
        prompt; the delivered clip is the whole chain, and the member pays for the new seconds."""
        job = await self.check_extend(job_id)
        # The new part takes the clip's rate and size as they are: nothing smooths or
        # upscales it again, so nothing of that is charged.
        spec = self._carry_over(job).replace(seed=None, interpolate=1, fps_out=None, upscale=1)
        if prompt is not None:
            spec = spec.replace(prompt=prompt)
        image, _ = await self.store.job_inputs(job.id)
        return await self.submit(
            spec, origin, image=image, action=JobAction.EXTEND, parent_id=job.id
        )

    async def _extensions_before(self, job: Job) -> int:
        """How many extensions `job`'s clip already holds (itself included when it is one)."""
        count = 0
        while job.action is JobAction.EXTEND and job.parent_id is not None:
            count += 1
            if count > self.config.max_extensions:
                break
            try:
                job = await self.store.get_job(job.parent_id)
            except UnknownJob:  # the start of the chain was deleted; its clip lives on here
                break
        return count

    # ---- Smooth and Upscale 2× on a delivered clip --------------------------------------

    def finish_spec(self, job: Job, finish: str) -> JobSpec:
        """What a Smooth ("smooth") or Upscale 2× ("upscale") press on `job`'s clip asks for:
        the clip's settings and seed, and this one finish. Smooth doubles the frames while
        that stays within SMOOTH_UP_TO fps, else reaches that rate. Raises CannotFinish when
        the clip is not made yet, already plays that smoothly, or twice its size would pass
        MAX_UPSCALED_SIDE."""
        if finish not in FINISHES:
            raise ValueError(f"no finish called {finish!r}")
        clip = job.clip
        if clip is None:
            raise CannotFinish(finish, "unfinished")
        # Its model while offered (the job goes to a worker serving it), as one clip.
        model = job.model if job.model in self.models() else self.choose_model(None)
        spec = job.spec.replace(
            model=model, seed=clip.seed, variations=1, interpolate=1, fps_out=None, upscale=1,
            max_bytes=None,
        )
        if finish == "upscale":
            if max(clip.width, clip.height) * 2 > MAX_UPSCALED_SIDE:
                raise CannotFinish(
                    finish, "at_most", width=clip.width, height=clip.height, most=MAX_UPSCALED_SIDE
                )
            return spec.replace(upscale=2)
        if clip.fps * 2 <= SMOOTH_UP_TO + 1e-6:
            return spec.replace(interpolate=2)
        if clip.fps < SMOOTH_UP_TO - 1e-6:
            return spec.replace(fps_out=SMOOTH_UP_TO)
        raise CannotFinish(finish, "at_most", fps=clip.fps)

    def finish_cost(self, job: Job, finish: str) -> int:
        """What finishing `job`'s clip costs: SMOOTH_/UPSCALE_COST_PER_SECOND × the clip's
        length, rounded up; one clip. The length is read from the clip, from its first frame
        to its last (an extended chain is longer than its spec says; a model's 8k+1 frames
        at 24 fps, 121 for "5 s", come to 5 s as they do in /animate's price)."""
        clip = job.clip
        if clip is None or not clip.fps:
            seconds = job.spec.duration
        else:
            seconds = max(clip.frames - 1, 1) / clip.fps
        return self.config.pricing.finish_cost((finish,), seconds)

    def finishes_offered(self, job: Job) -> tuple[str, ...]:
        """The finishing buttons to show on `job`'s delivered clip, of "smooth" and "upscale":
        those a connected worker says it can do (its WorkerInfo.finishing) and the clip can
        still take. For whoever draws the clip's buttons; no I/O."""
        offered = []
        for name in FINISHES:
            try:
                spec = self.finish_spec(job, name)
            except Refused:
                continue
            if any(w.finishing.get(name, "") is None for w in self._finishers(spec.model)):
                offered.append(name)
        return tuple(offered)

    async def check_finish(self, job_id: int, finish: str) -> tuple[Job, JobSpec]:
        """Refuse now, charging nothing, what a Smooth or Upscale 2× press cannot get: a clip
        not made yet, its MP4 no longer kept, one already at the most, or no worker that can
        (its own sentence). Returns the clip's job and the finish job's spec."""
        job = await self.store.get_job(job_id)
        if job.status not in FINISHED or job.clip is None:
            raise CannotFinish(finish, "unfinished")
        path = job.result_path
        if not path or not await asyncio.to_thread(Path(path).is_file):
            raise CannotFinish(finish, "gone")
        spec = self.finish_spec(job, finish)
        self.check_finishes(spec, clip=True)
        return job, spec

    async def finish(self, job_id: int, finish: str, origin: Origin) -> Job:
        """The clip of `job_id` smoothed ("smooth") or upscaled 2× ("upscale") by a worker,
        without a new render: a new clip of its own, paid by the presser for the finish of
        the clip's length only (see :meth:`finish_cost`)."""
        job, spec = await self.check_finish(job_id, finish)
        image, _ = await self.store.job_inputs(job.id)  # the library shows the photo
        return await self.submit(
            spec, origin, image=image, action=JobAction.FINISH, parent_id=job.id,
            cost=self.finish_cost(job, finish),
        )

    async def cancel(self, job_id: int, reason: str = "Cancelled by request.") -> tuple[bool, Job]:
        """Stop a waiting or rendering job (refunded). Returns whether this call cancelled it,
        and the job as it is now (its status says why not)."""
        cancelled = await self.dispatcher.cancel(job_id, reason)
        return cancelled, await self.store.get_job(job_id)

    async def delete(self, job_id: int, *, takes: bool = False) -> None:
        """The member deleted the video: stop it if it is still in the queue or rendering
        (refunded), then forget its photo, prompts, token and MP4. `takes`: the message of a
        job with variations was deleted, so its other takes go too."""
        await self.dispatcher.cancel(job_id, "Deleted by request.")
        doomed = await self.store.takes_of(job_id) if takes else [await self.store.get_job(job_id)]
        for each in doomed:
            job = await self.store.forget(each.id)
            if job.result_path:
                await asyncio.to_thread(Path(job.result_path).unlink, missing_ok=True)

    async def kept_beside(self, job: Job) -> list[Job]:
        """The other takes of `job`'s variations (the same message) whose MP4 is still kept."""
        if job.action is not JobAction.TAKE and job.spec.variations == 1:
            return []
        return [
            take for take in await self.store.takes_of(job.group_id)
            if take.id != job.id and take.result_path
        ]

    async def favourite(self, job_id: int, favourite: bool) -> Job:
        """Mark (or unmark) a kept clip as a favourite: kept for KEEP_FAVOURITES_DAYS instead."""
        return await self.store.set_favourite(job_id, favourite)

    async def settings_for_new_photo(self, job_id: int) -> JobSpec:
        """A kept clip's settings for a new photo (the library's New photo): its model while
        offered (else the default), its length, prompts, camera, motion, loop, effect while
        offered, and the seed it was made with; no end image. UnknownJob when the clip is no
        longer kept."""
        job = await self.store.get_job(job_id)
        if not job.result_path:
            raise UnknownJob(job_id)
        spec = self._carry_over(job)
        return spec.replace(seed=job.clip.seed if job.clip else spec.seed, max_bytes=None)

    async def position(self, job_id: int) -> int | None:
        return await self.store.queue_position(job_id)

    def _carry_over(self, job: Job) -> JobSpec:
        """A job's settings for a follow-up: its model if still offered (else the default),
        a length that model offers."""
        model = job.model if job.model in self.models() else self.choose_model(None)
        duration = self.choose_duration(model, job.spec.duration)
        # An effect the operator has since removed (or that the new model lacks) is dropped.
        effect = job.spec.effect if any(e.name == job.spec.effect for e in self.effects(model)) else None
        # One take: a follow-up of one take of a job with variations is a single clip.
        return job.spec.replace(model=model, duration=duration, effect=effect, variations=1)


def _remove(paths: Iterable[str]) -> None:
    for path in paths:
        Path(path).unlink(missing_ok=True)
