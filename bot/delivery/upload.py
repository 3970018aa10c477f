"""Posting a finished clip, exactly once, with its buttons.

Delivery is recorded only after the upload succeeded, and ``mark_delivered`` is guarded by
status, so a delivered job is never delivered again. An upload that may have landed without
being recorded (the bot stopped, or lost the answer) is looked for in the channel before the
clip is posted again. On 40005 (the guild's limit dropped since the job was priced, e.g. a
lost boost) a worker re-encodes the clip under Discord's guaranteed limit, then smaller.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Collection
from pathlib import Path

import discord

from bot import card
from bot.buttons import action_rows, result_actions, take_rows
from bot.delivery.record import DeliveryRecord
from bot.delivery.routes import Build, Outgoing, Posted, Routes
from contract import ModelCard, card_for
from jobs import Job, JobStatus

log = logging.getLogger("bot.delivery")

TOO_LARGE = 40005
MAX_SHRINKS = 3
GUARANTEED_UPLOAD_BYTES = 10 * 2**20 - 64 * 1024
"""Discord's per-file limit without boosts, less room for the multipart envelope."""

Fit = Callable[[bytes, int], Awaitable[bytes]]
"""Re-encodes a clip under a byte limit (on a worker: the bot process never decodes video)."""


def video_name(job: Job) -> str:
    return f"animate-{job.id}.mp4"


class ClipUploads:
    def __init__(
        self,
        routes: Routes,
        fit: Fit,
        finishes: Callable[[Job], Collection[str]] = lambda job: (),
        card: Callable[[str], ModelCard] = card_for,
    ) -> None:
        self.routes = routes
        self.fit = fit
        self.finishes = finishes
        """Which of Smooth and Upscale 2× a clip's card offers (a worker can do them)."""
        self.card = card
        self.delivered: Counter[str] = Counter()
        """Clips delivered since start, by route (interaction, channel, dm): for /metrics."""
        self.shrinks = 0
        """Re-encodes after Discord found a clip too large (40005), since start."""

    async def deliver(self, job: Job) -> bool:
        """Upload a finished job's MP4 once. False when it was already delivered or is missing."""
        if job.status is not JobStatus.DONE:
            return False
        if not job.result_path or not Path(job.result_path).is_file():
            log.error("job %d is done but its video %s is missing", job.id, job.result_path)
            return False
        can_extend = self.card(job.model).supports_extend
        if job.spec.variations > 1:
            # Every take in this one message, each with its own row of buttons.
            takes = [
                take for take in await self.routes.store.takes_of(job.id)
                if take.result_path and Path(take.result_path).is_file()
            ]
            clips = [
                (video_name(take), await asyncio.to_thread(Path(str(take.result_path)).read_bytes))
                for take in takes
            ]
            numbered = [
                (take.clip.take if take.clip and take.clip.take else n, take.id)
                for n, take in enumerate(takes, 1)
            ]
            names = [name for name, _ in clips]

            def build(lead: str | None) -> discord.ui.LayoutView:
                return card.finished_takes(
                    job, list(zip(takes, names)), lead=lead,
                    rows=take_rows(job.id, numbered, can_extend=can_extend),
                )
        else:
            clips = [(video_name(job), await asyncio.to_thread(Path(job.result_path).read_bytes))]
            finishes = self.finishes(job)

            def build(lead: str | None) -> discord.ui.LayoutView:
                return card.finished(
                    job, video_name(job), lead=lead,
                    rows=action_rows(job.id, result_actions(can_extend=can_extend, finishes=finishes)),
                )

        posted: Posted | None = None
        if DeliveryRecord.of(job).upload_started:
            # An earlier upload may have landed without being recorded: look first.
            found = await self._find_posted(job)
            if found is not None:
                log.info("job %d: its clip was already posted (message %d)", job.id, found.id)
                posted = Posted("found", found.id, found.jump_url)
        else:
            job, _ = await self.routes.note(job, upload_started=True)
        if posted is None:
            posted = await self._upload(job, clips, build)
        if posted is None:
            return False
        job = await self.routes.store.get_job(job.id)  # as the upload's roads left it
        if _moved(job, posted):
            # Settle the old progress message first: once the job reads "delivered", nothing
            # about it still says "95 % · Cancel" (a crash in between settles it on the retry).
            await self._retire_progress(job, posted)
            job = await self.routes.store.get_job(job.id)
        record = DeliveryRecord.of(job).replace(
            delivered_via=posted.via, result_message_id=posted.message_id, result_url=posted.url
        )
        if not await self.routes.store.mark_delivered(job.id, record.to_dict()):
            log.warning("job %d was delivered by someone else meanwhile", job.id)
        log.info("job %d delivered via %s", job.id, posted.via)
        self.delivered[posted.via] += 1
        return True

    async def _upload(self, job: Job, clips: list[tuple[str, bytes]], build: Build) -> Posted | None:
        """Post the clips (one, or a job's takes) in one message; on 40005 re-encode each,
        the takes sharing the guaranteed limit equally."""
        shrinks = 0
        while True:
            files = [discord.File(io.BytesIO(data), filename=name) for name, data in clips]
            try:
                return await self.routes.send(job, Outgoing(build, tuple(files)))
            except discord.HTTPException as exc:
                if exc.code != TOO_LARGE or shrinks >= MAX_SHRINKS:
                    raise
                shrunk = []
                for name, data in clips:
                    target = int(len(data) * 0.75)
                    if shrinks == 0:
                        target = min(target, GUARANTEED_UPLOAD_BYTES // len(clips))
                    shrunk.append((name, await self.fit(data, target)))
                clips = shrunk
                shrinks += 1
                self.shrinks += 1
                log.info(
                    "job %d: upload too large, re-encoded to %s bytes", job.id,
                    " + ".join(str(len(data)) for _, data in clips),
                )
                job = await self.routes.store.get_job(job.id)

    async def _find_posted(self, job: Job) -> discord.Message | None:
        """The bot's message in the job's channel that carries this job's MP4, if any: the
        progress message itself (edited) or a later one (a follow-up or channel reply)."""
        record = DeliveryRecord.of(job)
        me = self.routes.client.user
        if not record.channel_id or me is None:
            return None
        channel = self.routes.client.get_partial_messageable(
            record.channel_id, guild_id=record.guild_id
        )
        name = video_name(job)

        def carries(message: discord.Message) -> bool:
            return message.author.id == me.id and any(a.filename == name for a in message.attachments)

        try:
            if record.has_message:
                assert record.message_id is not None
                with contextlib.suppress(discord.NotFound):
                    if carries(message := await channel.fetch_message(record.message_id)):
                        return message
            after = discord.Object(id=record.message_id) if record.message_id else None
            async for message in channel.history(limit=100, after=after):
                if carries(message):
                    return message
        except discord.HTTPException as exc:  # no history access, channel gone: post again
            log.info("job %d: could not look for an earlier upload: %s", job.id, exc)
        return None

    async def _retire_progress(self, job: Job, posted: Posted) -> None:
        """The clip went to a new message (channel reply or DM): the progress message must not
        stay at "95 % · Cancel" forever. Point it at the clip instead; best effort."""
        try:
            record = DeliveryRecord.of(job)
            await self.routes.edit(
                job, card.moved(job, posted, lead=self.routes.lead(job, record)), attachments=[]
            )
        except discord.HTTPException as exc:
            log.info("job %d: could not update its old progress message: %s", job.id, exc)


def _moved(job: Job, posted: Posted) -> bool:
    """The clip landed in a new message while the job's own message still exists."""
    record = DeliveryRecord.of(job)
    return record.has_message and posted.message_id != record.message_id
