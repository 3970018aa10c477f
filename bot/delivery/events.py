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
from collections.abc import Callable, Collection

import discord
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_result,
    stop_after_attempt,
    wait_chain,
    wait_fixed,
)

from bot import card
from bot.buttons import action_rows
from bot.delivery.progress import ProgressMessages
from bot.delivery.record import DeliveryRecord
from bot.delivery.routes import Routes
from bot.delivery.upload import ClipUploads, Fit
from bot.embeds import price
from bot.i18n import tr
from contract import AnimateResult, Event, Failed, ModelCard, Progress, Takes, card_for
from jobs import ACTIVE, Job, Store

log = logging.getLogger("bot.delivery")

RETRY_DELAYS = (10.0, 60.0, 300.0, 900.0)
TOKEN_WATCH_INTERVAL = 30.0
"""Seconds between two looks at which jobs are about to outlive their interaction token."""

__all__ = ["Delivery"]


class Delivery:
    def __init__(
        self,
        client: discord.Client,
        store: Store,
        *,
        fit: Fit,
        finishes: Callable[[Job], Collection[str]] = lambda job: (),
        card: Callable[[str], ModelCard] = card_for,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """`finishes`: which of Smooth and Upscale 2× a finished clip's card offers; `card`: a
        model's card (JobService.card, which knows what a model directory is)."""
        self.store = store
        self.routes = Routes(client, store, clock=clock)
        self.progress = ProgressMessages(self.routes, clock=clock)
        self.clips = ClipUploads(self.routes, fit, finishes, card)
        self.retry_delays: tuple[float, ...] = RETRY_DELAYS
        """Seconds before each new try of an upload Discord refused (a ban, an outage)."""
        self._locks: dict[int, asyncio.Lock] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.token_watch_interval = TOKEN_WATCH_INTERVAL
        self._watch: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Watch the interaction tokens of jobs that only the interaction or a DM can reach."""
        self._watch = asyncio.create_task(self._watch_tokens(), name="watch-tokens")

    async def _watch_tokens(self) -> None:
        """A job that outlives its token where the bot cannot post (a private result, the
        member's own install) is told, before the token ends, that the clip comes by DM:
        nothing else would tell it while it waits in the queue or renders."""
        while True:
            await asyncio.sleep(self.token_watch_interval)
            try:
                for listed in await self.store.jobs():
                    if not self.progress.outlives_token(DeliveryRecord.of(listed)):
                        continue
                    async with self._lock(listed.id):
                        # Read again under the lock: the clip may have been delivered since.
                        job = await self.store.get_job(listed.id)
                        if job.status in ACTIVE and self.progress.outlives_token(DeliveryRecord.of(job)):
                            await self.progress.tell_dm(job)
            except Exception:  # noqa: BLE001 - the next round tries again
                log.exception("could not tell members about their tokens")

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
        tip: str | None = None,
    ) -> None:
        """Answer the member privately (charged, balance, warnings, a prompt tip), then post
        the job's card, the one message that shows its progress and usually the clip."""
        locale = interaction.locale
        # With variations, the price of each take too, before anything renders.
        ack = tr(
            locale, "Queued as job {job} for {cost}; you have {balance} left.",
            job=job.id, cost=price(job, locale, bold=True), balance=f"**{balance}**",
        )
        if notes:
            ack += "\n" + "\n".join(f"⚠️ {note}" for note in notes)
        if tip:
            ack += f"\n💡 {tip}"
        # Resolve the ephemeral "thinking" first: the follow-up below is then a new, public message.
        await interaction.edit_original_response(content=ack)
        async with self._lock(job.id):
            position = await self.store.queue_position(job.id)
            files = []
            picture = None
            if thumbnail is not None:
                picture = f"photo-{job.id}.jpg"
                files.append(discord.File(io.BytesIO(thumbnail), filename=picture))
            private = DeliveryRecord.of(job).private
            queued = card.queued(
                job, position, picture=picture, rows=action_rows(job.id, ("cancel",)),
                lead=None if private else card.mention(job),
                balance=balance if private else None,
            )
            message = await interaction.followup.send(
                view=queued,
                files=files,
                wait=True,
                ephemeral=private,
                allowed_mentions=discord.AllowedMentions.none(),
            )
            await self.routes.note(
                await self.store.get_job(job.id), message_id=message.id, picture=picture, card=True
            )

    # ---- events --------------------------------------------------------------------------

    async def on_event(self, job: Job, event: Event) -> None:
        if isinstance(event, (AnimateResult, Takes)):
            self.deliver_soon(job.id)
            self.progress.forget(job.id)
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

    def deliver_soon(self, job_id: int) -> None:
        """Deliver a finished job now, in the background; when Discord refuses (a ban, an
        outage, no channel or DM open), try again after each of `retry_delays` rather than
        leave the clip waiting for the next restart."""
        task = asyncio.create_task(self._deliver(job_id), name=f"deliver-{job_id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _deliver(self, job_id: int) -> None:
        def again(state: RetryCallState) -> None:
            delay = state.next_action.sleep if state.next_action else 0.0
            log.warning("job %d: delivery failed; trying again in %g s", job_id, delay)

        def give_up(state: RetryCallState) -> None:
            log.error("job %d: giving up on delivery until the next start", job_id)

        retrying = AsyncRetrying(
            retry=retry_if_result(lambda settled: not settled),
            wait=wait_chain(*(wait_fixed(delay) for delay in self.retry_delays)),
            stop=stop_after_attempt(len(self.retry_delays) + 1),
            before_sleep=again,
            retry_error_callback=give_up,
        )
        try:
            await retrying(self._deliver_once, job_id)
        finally:
            self._locks.pop(job_id, None)

    async def _deliver_once(self, job_id: int) -> bool:
        """True when the job is settled: delivered now, by someone else, or nothing to do."""
        async with self._lock(job_id):
            try:
                if await self.clips.deliver(await self.store.get_job(job_id)):
                    return True
                return (await self.store.get_job(job_id)).status != "done"
            except Exception:  # noqa: BLE001 - logged; tried again
                log.exception("could not deliver job %d", job_id)
                return False

    async def close(self) -> None:
        """Stop pending deliveries and their retries (the next start delivers what is left)."""
        if self._watch is not None:
            self._watch.cancel()
            await asyncio.gather(self._watch, return_exceptions=True)
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def _forget(self, job_id: int) -> None:
        self.progress.forget(job_id)
        self._locks.pop(job_id, None)
