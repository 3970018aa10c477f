"""The job's message while it waits and renders, and when it fails.

Edits are throttled (:class:`~bot.progress_bar.Tracker`) so a fast model cannot run the
bot into Discord's rate limits; a stage change or the first preview frame always shows.
"""

from __future__ import annotations

import io
import logging
import time
from collections.abc import Callable
from typing import Any

import discord

from bot import card
from bot.buttons import action_rows
from bot.delivery.record import DeliveryRecord
from bot.delivery.routes import GONE, TOKEN_LIFETIME, Outgoing, Routes
from bot.progress_bar import Tracker
from contract import Failed, Progress
from jobs import Job

log = logging.getLogger("bot.delivery")

DM_NOTICE_BEFORE = 3 * 60.0
"""How long before the interaction token ends a private or user-install job says it will
come by DM (Discord lets the bot answer an interaction for 15 minutes)."""
DM_NOTICE = (
    "This is taking longer than Discord lets me answer here: the video will come to you by "
    "DM when it is ready (open DMs from this app if you have closed them)."
)


class ProgressMessages:
    def __init__(self, routes: Routes, *, clock: Callable[[], float] = time.time) -> None:
        self.routes = routes
        self.clock = clock
        self._trackers: dict[int, Tracker] = {}
        self._previews: set[int] = set()
        self._last: dict[int, Progress] = {}
        """Each job's latest event: the card drawn again for a notice shows where it stands."""

    def forget(self, job_id: int) -> None:
        self._trackers.pop(job_id, None)
        self._previews.discard(job_id)
        self._last.pop(job_id, None)

    def current_card(self, job: Job, record: DeliveryRecord, *, picture: str | None) -> card.Card:
        """The job's card as it stands: its latest progress, the DM notice once given."""
        event = self._last.get(job.id)
        tracker = self._trackers.get(job.id)
        return card.progress(
            job, event, tracker.eta(event) if tracker and event else None, picture=picture,
            rows=action_rows(job.id, ("cancel",)), lead=self.routes.lead(job, record),
            notice=DM_NOTICE if record.told_dm else None,
        )

    async def show(self, job: Job, event: Progress) -> None:
        tracker = self._trackers.setdefault(job.id, Tracker())
        now = self.clock()
        news = tracker.news(event)
        tracker.observe(event, now)
        self._last[job.id] = event
        new_preview = event.preview is not None and job.id not in self._previews
        if not tracker.should_edit(now, force=news or new_preview):
            return
        job = await self.routes.store.get_job(job.id)  # as announce() left it (message id)
        record = DeliveryRecord.of(job)
        if record.progress_gone:
            return
        files: list[discord.File] = []
        picture = self.picture(record)  # what the card shows: the photo's thumbnail, then the preview
        if new_preview:
            assert event.preview is not None
            picture = f"preview-{job.id}.jpg"
            files.append(discord.File(io.BytesIO(event.preview), filename=picture))
            self._previews.add(job.id)
        kwargs: dict[str, Any] = {}
        if files:
            kwargs["attachments"] = files  # the preview replaces the thumbnail
        try:
            await self.routes.edit(job, self.current_card(job, record, picture=picture), **kwargs)
            if files:
                await self.routes.note(await self.routes.store.get_job(job.id), picture=picture)
        except discord.NotFound as exc:
            if exc.code not in GONE:
                raise
            # Someone deleted the message (or its channel): stop editing, deliver anew.
            await self.routes.note(job, progress_gone=True)
            log.info("progress message of job %d is gone (%d); no more edits", job.id, exc.code)

    def outlives_token(self, record: DeliveryRecord) -> bool:
        """A job whose only road after the token is a DM (a private result, or a channel the
        bot is not in) and whose token nears its end while it still works."""
        if record.channel_allowed or record.told_dm or not record.has_message:
            return False
        if not self.routes.token_valid(record):
            return False
        return self.clock() - record.token_at >= TOKEN_LIFETIME - DM_NOTICE_BEFORE

    async def tell_dm(self, job: Job) -> None:
        """Tell the member once, while the message can still be edited, that the clip will
        come by DM."""
        record = DeliveryRecord.of(job)
        told = self.current_card(job, record.replace(told_dm=True), picture=self.picture(record))
        try:
            await self.routes.edit(job, told)
        except discord.NotFound:
            pass  # the card is gone; the clip still comes by DM
        # Noted once shown (or moot): a failed edit is tried again at the watch's next round.
        await self.routes.note(await self.routes.store.get_job(job.id), told_dm=True)

    @staticmethod
    def picture(record: DeliveryRecord) -> str | None:
        """The file the card may show: none on an embed message from before the cards, whose
        files its upgrade clears (Routes.edit: content, embeds and attachments all go)."""
        return record.picture if record.card else None

    async def failed(self, job: Job, event: Failed) -> None:
        """Tell the member why (the reason says the credits were refunded): on the job's
        message while its token lives, else in a new message that mentions them (an edit
        never notifies, and a job that outlived the token has usually lost their attention);
        the old message is then settled so it never stays at "Rendering · Cancel"."""
        record = DeliveryRecord.of(job)
        if record.has_message:
            try:
                failure = card.failed(job, event.reason, lead=self.routes.lead(job, record))
                if await self.routes.edit(job, failure, attachments=[]):
                    return
                job = await self.routes.store.get_job(job.id)  # edit() may have noted the token
                record = DeliveryRecord.of(job)
            except discord.NotFound as exc:
                if exc.code not in GONE:
                    raise
                job, record = await self.routes.note(job, progress_gone=True)
        if not record.channel_id and not record.token:
            return  # never had a message (e.g. refused before posting): nothing to tell
        await self.routes.send(job, Outgoing(lambda lead: card.failed(job, event.reason, lead=lead)))
