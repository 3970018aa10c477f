"""From job events to the member's messages: the job's card, its progress, the MP4, failures.

:class:`Delivery` is subscribed to the dispatcher and owns every message the bot writes about
a job. Each job's messages are serialised by one lock, held from the first public message
(:meth:`Delivery.announce`) on, so an event never edits a message that is not posted yet.
"""

from __future__ import annotations

import asyncio
import io
import logging
import time
from collections.abc import Callable

import discord

from bot import embeds
from bot.buttons import job_view
from bot.delivery.progress import ProgressMessages
from bot.delivery.routes import Routes
from bot.delivery.upload import ClipUploads, Fit
from bot.formatting import credits
from contract import AnimateResult, Event, Failed, Progress
from jobs import Job, Store

log = logging.getLogger("bot.delivery")

RETRY_DELAYS = (10.0, 60.0, 300.0, 900.0)

__all__ = ["Delivery"]


class Delivery:
    def __init__(
        self,
        client: discord.Client,
        store: Store,
        *,
        fit: Fit,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.routes = Routes(client, store, clock=clock)
        self.progress = ProgressMessages(self.routes, clock=clock)
        self.clips = ClipUploads(self.routes, fit)
        self.retry_delays: tuple[float, ...] = RETRY_DELAYS
        """Seconds before each new try of an upload Discord refused (a ban, an outage)."""
        self._locks: dict[int, asyncio.Lock] = {}
        self._retries: dict[int, asyncio.TimerHandle] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def _lock(self, job_id: int) -> asyncio.Lock:
        return self._locks.setdefault(job_id, asyncio.Lock())

    # ---- a new job's card ----------------------------------------------------------------

    async def announce(
        self,
        interaction: discord.Interaction,
        job: Job,
        *,
        balance: int,
        thumbnail: bytes | None = None,
        notes: list[str] | tuple[str, ...] = (),
    ) -> None:
        """Answer the member privately (charged, balance, warnings), then post the job's
        public message, the one that shows progress and usually the clip."""
        ack = f"Queued as job {job.id} for {credits(job.cost, bold=True)}; you have **{balance}** left."
        if notes:
            ack += "\n" + "\n".join(f"⚠️ {note}" for note in notes)
        # Resolve the ephemeral "thinking" first: the follow-up below is then a new, public message.
        await interaction.edit_original_response(content=ack)
        async with self._lock(job.id):
            position = await self.store.queue_position(job.id)
            files = []
            picture = None
            if thumbnail is not None:
                picture = f"photo-{job.id}.jpg"
                files.append(discord.File(io.BytesIO(thumbnail), filename=picture))
            message = await interaction.followup.send(
                content=f"<@{interaction.user.id}>",
                embed=embeds.queued(job, position, thumbnail=picture),
                files=files,
                view=job_view(job.id, ("cancel",)),
                wait=True,
                allowed_mentions=discord.AllowedMentions.none(),
            )
            await self.routes.note(
                await self.store.get_job(job.id), message_id=message.id, picture=picture
            )

    # ---- events --------------------------------------------------------------------------

    async def on_event(self, job: Job, event: Event) -> None:
        if isinstance(event, AnimateResult):
            await self.deliver_soon(job.id)
            self._forget(job.id)
            return
        async with self._lock(job.id):
            try:
                if isinstance(event, Progress):
                    await self.progress.show(job, event)
                elif isinstance(event, Failed):
                    await self.progress.failed(await self.store.get_job(job.id), event)
            except Exception:  # noqa: BLE001 - one job's message must not stop the stream
                log.exception("could not update the message of job %d", job.id)
        if not isinstance(event, Progress):
            self._forget(job.id)

    async def deliver_soon(self, job_id: int, attempt: int = 0) -> None:
        """Deliver a finished job now; when Discord refuses (a ban, an outage, no channel or
        DM open), try again later rather than leave the clip waiting for the next restart."""
        self._retries.pop(job_id, None)
        async with self._lock(job_id):
            try:
                if await self.clips.deliver(await self.store.get_job(job_id)):
                    return
                if (await self.store.get_job(job_id)).status != "done":
                    return  # delivered meanwhile, or nothing to deliver
            except Exception:  # noqa: BLE001 - logged; tried again below
                log.exception("could not deliver job %d", job_id)
        if attempt >= len(self.retry_delays):
            log.error("job %d: giving up on delivery until the next start", job_id)
            return
        delay = self.retry_delays[attempt]
        log.warning("job %d: delivery failed; trying again in %g s", job_id, delay)
        self._retries[job_id] = asyncio.get_running_loop().call_later(
            delay, self._spawn, job_id, attempt + 1
        )

    def _spawn(self, job_id: int, attempt: int) -> None:
        task = asyncio.create_task(self.deliver_soon(job_id, attempt), name=f"deliver-{job_id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        """Stop pending delivery retries (the next start delivers what is left)."""
        for handle in self._retries.values():
            handle.cancel()
        self._retries.clear()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def _forget(self, job_id: int) -> None:
        self.progress.forget(job_id)
        self._locks.pop(job_id, None)
