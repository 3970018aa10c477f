"""From worker events to the member's message: progress edits, the MP4, failures.

Where the clip goes, in order of preference:
1. the job's progress message, edited through the interaction's webhook token (15 minutes);
   a new follow-up when that message was deleted (10008);
2. after the token expired (or 50027): a new channel message that mentions the member and
   replies to the progress message (an edit would not notify them);
3. the channel is gone or closed to the bot: a DM to the member.
When the clip lands in a new message, the old progress message is edited to point at it, so
it never stays at "95 % · Cancel". A failure is told the same way: on the job's message while
the token lives, else in a new message that mentions the member.

Delivery is recorded in the store only after the upload succeeded, and `mark_delivered` is
guarded by status, so a delivered job is never delivered again. An upload that may have
landed without being recorded (the bot stopped, or lost the answer) is looked for in the
channel before the clip is posted again. An upload Discord refuses is tried again later.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import discord

from bot import embeds
from bot.catalog import supports_extend
from bot.progress import Tracker
from bot.store import Job
from bot.views import job_view, result_actions
from contract import AnimateResult, Event, Failed, Progress

if TYPE_CHECKING:
    from bot.app import AnimateBot

log = logging.getLogger("bot.delivery")

TOKEN_LIFETIME = 15 * 60.0
TOKEN_MARGIN = 30.0
"""Stop using a token this long before Discord expires it, so an upload in flight finishes."""
UNKNOWN_CHANNEL = 10003
UNKNOWN_MESSAGE = 10008
INVALID_TOKEN = 50027
TOO_LARGE = 40005
MAX_SHRINKS = 3
GUARANTEED_UPLOAD_BYTES = 10 * 2**20 - 64 * 1024
"""Discord's per-file limit without boosts, less room for the multipart envelope."""
GONE = (UNKNOWN_MESSAGE, UNKNOWN_CHANNEL)
RETRY_DELAYS = (10.0, 60.0, 300.0, 900.0)


def video_name(job: Job) -> str:
    return f"animate-{job.id}.mp4"


class Delivery:
    """Subscribed to the dispatcher; owns every message the bot writes about a job."""

    def __init__(self, bot: AnimateBot, *, clock: Callable[[], float] = time.time) -> None:
        self.bot = bot
        self.clock = clock
        self.retry_delays: tuple[float, ...] = RETRY_DELAYS
        """Seconds before each new try of an upload Discord refused (a ban, an outage)."""
        self._trackers: dict[int, Tracker] = {}
        self._previews: set[int] = set()
        self._locks: dict[int, asyncio.Lock] = {}
        self._retries: dict[int, asyncio.TimerHandle] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    # ---- routing -------------------------------------------------------------------------

    def holding(self, job_id: int) -> asyncio.Lock:
        """The job's lock: events wait on it while the cog posts the job's first message."""
        return self._locks.setdefault(job_id, asyncio.Lock())

    async def on_event(self, job: Job, event: Event) -> None:
        if isinstance(event, AnimateResult):
            await self.deliver_soon(job.id)
            self._forget(job.id)
            return
        async with self.holding(job.id):
            try:
                if isinstance(event, Progress):
                    await self._progress(job, event)
                elif isinstance(event, Failed):
                    await self._failed(await self.bot.store.get_job(job.id), event)
            except Exception:  # noqa: BLE001 - one job's message must not stop the stream
                log.exception("could not update the message of job %d", job.id)
        if not isinstance(event, Progress):
            self._forget(job.id)

    async def deliver_soon(self, job_id: int, attempt: int = 0) -> None:
        """Deliver a finished job now; when Discord refuses (a ban, an outage, no channel or
        DM open), try again later rather than leave the clip waiting for the next restart."""
        self._retries.pop(job_id, None)
        async with self.holding(job_id):
            try:
                if await self.deliver(await self.bot.store.get_job(job_id)):
                    return
                if (await self.bot.store.get_job(job_id)).status != "done":
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
        self._trackers.pop(job_id, None)
        self._previews.discard(job_id)
        self._locks.pop(job_id, None)

    # ---- progress ------------------------------------------------------------------------

    async def _progress(self, job: Job, event: Progress) -> None:
        tracker = self._trackers.setdefault(job.id, Tracker())
        now = self.clock()
        stage_changed = tracker._stage != event.stage
        tracker.observe(event, now)
        new_preview = event.preview is not None and job.id not in self._previews
        if not tracker.should_edit(now, force=stage_changed or new_preview):
            return
        job = await self.bot.store.get_job(job.id)  # the row as the cog left it (message id)
        if job.delivery.get("progress_gone"):
            return
        files: list[discord.File] = []
        picture = job.delivery.get("picture")  # what the message shows: thumbnail or preview
        if new_preview:
            assert event.preview is not None
            picture = f"preview-{job.id}.jpg"
            files.append(discord.File(io.BytesIO(event.preview), filename=picture))
            self._previews.add(job.id)
        embed = embeds.progress(job, event, tracker.eta(event), picture=picture)
        kwargs: dict[str, Any] = {"embed": embed}
        if files:
            kwargs["attachments"] = files  # the preview replaces the thumbnail
        if event.stage != "queued":
            kwargs["view"] = job_view(job.id, ("cancel",))
        try:
            await self._edit(job, **kwargs)
            if files:
                await self.bot.store.set_delivery(job.id, picture=picture)
        except discord.NotFound as exc:
            if exc.code not in GONE:
                raise
            # Someone deleted the progress message (or its channel): stop editing, deliver
            # as a new message.
            await self.bot.store.set_delivery(job.id, progress_gone=True)
            log.info("progress message of job %d is gone (%d); no more edits", job.id, exc.code)

    # ---- the clip ------------------------------------------------------------------------

    async def deliver(self, job: Job) -> bool:
        """Upload a finished job's MP4 once. False when it was already delivered or is missing."""
        if job.status != "done":
            return False
        if not job.result_path or not Path(job.result_path).is_file():
            log.error("job %d is done but its video %s is missing", job.id, job.result_path)
            return False
        data = Path(job.result_path).read_bytes()
        started = job.started_at or job.created_at
        seconds = (job.finished_at - started) if job.finished_at else None
        embed = embeds.finished(job, seconds=seconds)
        view = job_view(job.id, result_actions(can_extend=supports_extend(job.model)))
        content = f"<@{job.user_id}>"
        where: dict[str, Any] | None = None
        if job.delivery.get("upload_started"):
            # An earlier upload may have landed without being recorded (the bot stopped or
            # lost the answer): look before posting the clip a second time.
            found = await self._find_posted(job)
            if found is not None:
                log.info("job %d: its clip was already posted (message %d)", job.id, found.id)
                where = {
                    "delivered_via": "found", "result_message_id": found.id,
                    "result_url": found.jump_url,
                }
        else:
            job = await self.bot.store.set_delivery(job.id, upload_started=True)
        if where is None:
            where = await self._upload(job, data, content=content, embed=embed, view=view)
        if where is None:
            return False
        if not await self.bot.store.mark_delivered(job.id, {**job.delivery, **where}):
            log.warning("job %d was delivered by someone else meanwhile", job.id)
        log.info("job %d delivered via %s", job.id, where["delivered_via"])
        await self._retire_progress(await self.bot.store.get_job(job.id), where)
        return True

    async def _find_posted(self, job: Job) -> discord.Message | None:
        """The bot's message in the job's channel that carries this job's MP4, if any: the
        progress message itself (edited) or a later one (a follow-up or channel reply)."""
        d = job.delivery
        channel_id = d.get("channel_id")
        if not channel_id or self.bot.user is None:
            return None
        channel = self.bot.get_partial_messageable(channel_id, guild_id=d.get("guild_id"))
        name = video_name(job)
        me = self.bot.user.id

        def carries(message: discord.Message) -> bool:
            return message.author.id == me and any(a.filename == name for a in message.attachments)

        try:
            message_id = d.get("message_id")
            if message_id and not d.get("progress_gone"):
                with contextlib.suppress(discord.NotFound):
                    if carries(message := await channel.fetch_message(message_id)):
                        return message
            after = discord.Object(id=message_id) if message_id else None
            async for message in channel.history(limit=100, after=after):
                if carries(message):
                    return message
        except discord.HTTPException as exc:  # no history access, channel gone: post again
            log.info("job %d: could not look for an earlier upload: %s", job.id, exc)
        return None

    async def _retire_progress(self, job: Job, where: dict[str, Any]) -> None:
        """The clip went to a new message (channel reply or DM): the progress message must not
        stay at "95 % · Cancel" forever. Point it at the clip instead; best effort."""
        message_id = job.delivery.get("message_id")
        if not message_id or job.delivery.get("progress_gone"):
            return
        if where.get("result_message_id") == message_id:
            return
        try:
            await self._edit(
                job, content=f"<@{job.user_id}>", embed=embeds.moved(job, where), view=None,
                attachments=[],
            )
        except discord.HTTPException as exc:
            log.info("job %d: could not update its old progress message: %s", job.id, exc)

    async def _upload(
        self, job: Job, data: bytes, *, content: str, embed: discord.Embed, view: discord.ui.View
    ) -> dict[str, Any] | None:
        """Try the original message, then a channel message, then a DM.

        On 40005 (the guild's limit dropped since the job was priced, e.g. a lost boost) the
        clip is re-encoded under Discord's guaranteed limit, then smaller, up to MAX_SHRINKS.
        """
        shrinks = 0
        while True:
            file = discord.File(io.BytesIO(data), filename=video_name(job))
            try:
                return await self._send_somewhere(job, content=content, embed=embed, view=view, file=file)
            except discord.HTTPException as exc:
                if exc.code == TOO_LARGE and shrinks < MAX_SHRINKS:
                    target = int(len(data) * 0.75)
                    if shrinks == 0:
                        target = min(target, GUARANTEED_UPLOAD_BYTES)
                    data = await asyncio.to_thread(_shrink, data, target)
                    shrinks += 1
                    log.info("job %d: upload too large, re-encoded to %d bytes", job.id, len(data))
                    continue
                raise

    async def _send_somewhere(
        self,
        job: Job,
        *,
        content: str,
        embed: discord.Embed,
        view: discord.ui.View | None,
        file: discord.File | None,
        ready: bool = True,
    ) -> dict[str, Any] | None:
        """The job's message while the token lives (a new follow-up if that message is
        gone), else a channel message, else a DM. `ready`: this is the clip (not a failure)."""
        d = job.delivery
        message_id = d.get("message_id")
        extra: dict[str, Any] = {}
        if view is not None:
            extra["view"] = view
        if self._token_valid(job):
            try:
                if message_id and not d.get("progress_gone"):
                    await self._webhook(job).edit_message(
                        message_id, content=content, embed=embed,
                        attachments=[file] if file is not None else [],
                        view=view, allowed_mentions=discord.AllowedMentions(users=True),
                    )
                    return {"delivered_via": "interaction", "result_message_id": message_id}
                if file is not None:
                    extra["file"] = file
                message = await self._webhook(job).send(
                    content=content, embed=embed, wait=True,
                    allowed_mentions=discord.AllowedMentions(users=True), **extra,
                )
                return {"delivered_via": "interaction", "result_message_id": message.id}
            except discord.HTTPException as exc:
                if exc.code == UNKNOWN_MESSAGE:
                    job = await self.bot.store.set_delivery(job.id, progress_gone=True)
                    _rewind(file)
                    return await self._send_somewhere(
                        job, content=content, embed=embed, view=view, file=file, ready=ready
                    )
                if exc.code != INVALID_TOKEN:
                    raise
                log.info("job %d: interaction token expired; delivering through the channel", job.id)
                job = await self.bot.store.set_delivery(job.id, token_expired=True)
                _rewind(file)
        return await self._send_to_channel(
            job, content=content, embed=embed, view=view, file=file, ready=ready
        )

    async def _send_to_channel(
        self,
        job: Job,
        *,
        content: str,
        embed: discord.Embed,
        view: discord.ui.View | None,
        file: discord.File | None,
        ready: bool = True,
    ) -> dict[str, Any] | None:
        d = job.delivery
        channel_id = d.get("channel_id")
        extra: dict[str, Any] = {}
        if view is not None:
            extra["view"] = view
        if file is not None:
            extra["file"] = file
        if channel_id:
            channel = self.bot.get_partial_messageable(channel_id, guild_id=d.get("guild_id"))
            if d.get("message_id") and not d.get("progress_gone"):
                extra["reference"] = discord.MessageReference(
                    message_id=d["message_id"], channel_id=channel_id, fail_if_not_exists=False
                )
            try:
                message = await channel.send(
                    content=f"{content} your video is ready." if ready else content, embed=embed,
                    allowed_mentions=discord.AllowedMentions(users=True), **extra,
                )
                return {
                    "delivered_via": "channel", "result_message_id": message.id,
                    "result_url": message.jump_url,
                }
            except (discord.Forbidden, discord.NotFound):
                log.info("job %d: channel %s is gone or closed; sending a DM", job.id, channel_id)
                extra.pop("reference", None)
                _rewind(file)
        try:
            user = self.bot.get_user(job.user_id) or await self.bot.fetch_user(job.user_id)
            message = await user.send(
                content="Your video is ready." if ready else None, embed=embed, **extra
            )
            return {"delivered_via": "dm", "result_message_id": message.id}
        except discord.HTTPException:
            log.error("job %d: could not reach the member anywhere (channel and DM refused)", job.id)
            return None

    # ---- failures ------------------------------------------------------------------------

    async def _failed(self, job: Job, event: Failed) -> None:
        """Tell the member why (the reason says the credits were refunded): on the job's
        message while its token lives, else in a new message that mentions them (an edit
        never notifies, and a job that outlived the token has usually lost their attention);
        the old message is then settled so it never stays at "Rendering · Cancel"."""
        embed = embeds.failed(job, event.reason)
        content = f"<@{job.user_id}>"
        if job.delivery.get("message_id") and not job.delivery.get("progress_gone"):
            try:
                if await self._edit(job, content=content, embed=embed, view=None, attachments=[]):
                    return
                job = await self.bot.store.get_job(job.id)  # _edit may have marked the token expired
            except discord.NotFound as exc:
                if exc.code not in GONE:
                    raise
                job = await self.bot.store.set_delivery(job.id, progress_gone=True)
        if not job.delivery.get("channel_id") and not job.delivery.get("token"):
            return  # never had a message (e.g. refused before posting): nothing to tell
        await self._send_somewhere(
            job, content=content, embed=embed, view=None, file=None, ready=False
        )

    # ---- plumbing ------------------------------------------------------------------------

    def _token_valid(self, job: Job) -> bool:
        d = job.delivery
        if not d.get("token") or d.get("token_expired"):
            return False
        return self.clock() - float(d.get("token_at", 0)) < TOKEN_LIFETIME - TOKEN_MARGIN

    def _webhook(self, job: Job) -> discord.Webhook:
        return discord.Webhook.partial(
            int(job.delivery["application_id"]), job.delivery["token"], client=self.bot
        )

    async def _edit(self, job: Job, **kwargs: Any) -> bool:
        """Edit the progress message: by webhook while the token lives (True), else as the bot
        (False: the member cannot be reached through the interaction any more)."""
        message_id = job.delivery.get("message_id")
        if not message_id:
            return False
        if self._token_valid(job):
            try:
                await self._webhook(job).edit_message(message_id, **kwargs)
                return True
            except discord.HTTPException as exc:
                if exc.code != INVALID_TOKEN:
                    raise
                await self.bot.store.set_delivery(job.id, token_expired=True)
        channel = self.bot.get_partial_messageable(job.delivery["channel_id"])
        kwargs.pop("allowed_mentions", None)
        try:
            await channel.get_partial_message(message_id).edit(**kwargs)
        except discord.Forbidden:
            log.info("job %d: cannot edit its message without the token", job.id)
        return False


def _rewind(file: discord.File | None) -> None:
    if file is not None:
        file.reset()


def _shrink(data: bytes, max_bytes: int) -> bytes:
    """Re-encode a clip under `max_bytes` (after Discord said 40005)."""
    from pipeline.encode import decode_frames, encode_mp4

    frames, fps = decode_frames(data)
    return encode_mp4(frames, fps, max_bytes=max_bytes).data
