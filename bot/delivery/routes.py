"""The roads to a member, in order of preference, and the one way to edit a job's message.

1. the job's message, edited through the interaction's webhook token (15 minutes); a new
   follow-up when that message was deleted (10008);
2. after the token expired (or 50027): a new channel message that mentions the member and
   replies to the job's message (an edit would not notify them) — never for a private
   result, nor where the bot is not in the channel (the member's own install of the app);
3. the channel is gone, closed to the bot or not allowed: a DM to the member.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import discord

from bot import card
from bot.delivery.record import DeliveryRecord, Via
from jobs import Job, Store

log = logging.getLogger("bot.delivery")

TOKEN_LIFETIME = 15 * 60.0
TOKEN_MARGIN = 30.0
"""Stop using a token this long before Discord expires it, so an upload in flight finishes."""
UNKNOWN_CHANNEL = 10003
UNKNOWN_MESSAGE = 10008
INVALID_TOKEN = 50027
GONE = (UNKNOWN_MESSAGE, UNKNOWN_CHANNEL)


@dataclass(frozen=True)
class Posted:
    """Where a message about a job landed."""

    via: Via
    message_id: int
    url: str | None = None


Build = Callable[[str | None], discord.ui.LayoutView]
"""A job's card for one road: given the line above it (the member's mention; none in their
DM or where they alone see it). Built anew for each try: a view's items belong to one view."""


@dataclass(frozen=True)
class Outgoing:
    """One message about a job: its card, and the files the card shows."""

    card: Build
    files: tuple[discord.File, ...] = ()

    def rewound(self) -> Outgoing:
        for file in self.files:
            file.reset()
        return self


def only_the_member(job: Job) -> discord.AllowedMentions:
    """A new message about a job pings its member and nobody else: a prompt, a negative
    prompt or a failure reason on the card may name anyone."""
    return discord.AllowedMentions(everyone=False, roles=False, users=[discord.Object(job.user_id)])


class Routes:
    def __init__(
        self, client: discord.Client, store: Store, *, clock: Callable[[], float] = time.time
    ) -> None:
        self.client = client
        self.store = store
        self.clock = clock

    async def note(self, job: Job, **changes: Any) -> tuple[Job, DeliveryRecord]:
        """Record a change of where the job's messages are; returns the job and its record."""
        record = DeliveryRecord.of(job).replace(**changes)
        job = await self.store.set_delivery(job.id, record.to_dict())
        return job, record

    def token_valid(self, record: DeliveryRecord) -> bool:
        if not record.token or record.token_expired:
            return False
        return self.clock() - record.token_at < TOKEN_LIFETIME - TOKEN_MARGIN

    def _webhook(self, record: DeliveryRecord) -> discord.Webhook:
        assert record.application_id is not None and record.token is not None
        webhook = discord.Webhook.partial(record.application_id, record.token, client=self.client)
        # The interaction's webhook is an application webhook (what interaction.followup is):
        # discord.py sends ephemeral follow-ups only through one of those.
        webhook.type = discord.WebhookType.application
        return webhook

    def lead(self, job: Job, record: DeliveryRecord) -> str | None:
        """The line above the card on the job's own message: the member's mention, except
        where they alone see it."""
        return None if record.private else card.mention(job)

    async def edit(self, job: Job, view: discord.ui.LayoutView, **kwargs: Any) -> bool:
        """Replace the job's card: by webhook while the token lives (True), else as the bot
        (False: the member cannot be reached through the interaction any more). Raises
        NotFound when the message or channel is gone."""
        record = DeliveryRecord.of(job)
        if not record.message_id:
            return False
        kwargs["view"] = view
        upgrade: dict[str, Any] = {}
        if not record.card:
            # Posted before the cards (an embed): the message becomes a card by an edit that
            # clears its content, embeds and files (the caller's card names none of the old
            # ones); it stays a card from then on.
            kwargs.update(content=None, embed=None)
            kwargs.setdefault("attachments", [])
            upgrade = {"card": True, "picture": None} if not kwargs["attachments"] else {"card": True}
        if self.token_valid(record):
            try:
                await self._webhook(record).edit_message(record.message_id, **kwargs)
                if upgrade:
                    await self.note(job, **upgrade)
                return True
            except discord.HTTPException as exc:
                if exc.code != INVALID_TOKEN:
                    raise
                job, record = await self.note(job, token_expired=True)
        if not record.channel_allowed:
            return False  # an ephemeral message, or a channel the bot is not in
        assert record.channel_id is not None
        channel = self.client.get_partial_messageable(record.channel_id)
        kwargs.pop("allowed_mentions", None)
        try:
            await channel.get_partial_message(record.message_id).edit(**kwargs)
            if upgrade:
                await self.note(job, **upgrade)
        except discord.Forbidden:
            log.info("job %d: cannot edit its message without the token", job.id)
        return False

    async def send(self, job: Job, out: Outgoing) -> Posted | None:
        """The job's message while the token lives (a new follow-up if that message is
        gone), else a channel message, else a DM. None: no road reached the member."""
        record = DeliveryRecord.of(job)
        if self.token_valid(record):
            mentions = only_the_member(job)
            lead = self.lead(job, record)
            try:
                if record.has_message:
                    assert record.message_id is not None
                    legacy: dict[str, Any] = {} if record.card else {"content": None, "embed": None}
                    await self._webhook(record).edit_message(
                        record.message_id, view=out.card(lead), attachments=list(out.files),
                        allowed_mentions=mentions, **legacy,
                    )
                    return Posted("interaction", record.message_id)
                message = await self._webhook(record).send(
                    view=out.card(lead), files=list(out.files), wait=True,
                    allowed_mentions=mentions,
                    ephemeral=record.private,  # a private result stays private
                )
                return Posted("interaction", message.id)
            except discord.HTTPException as exc:
                if exc.code == UNKNOWN_MESSAGE:
                    job, _ = await self.note(job, progress_gone=True)
                    return await self.send(job, out.rewound())
                if exc.code != INVALID_TOKEN:
                    raise
                log.info("job %d: interaction token expired; delivering through the channel", job.id)
                job, record = await self.note(job, token_expired=True)
                out = out.rewound()
        return await self._to_channel(job, record, out)

    async def _to_channel(self, job: Job, record: DeliveryRecord, out: Outgoing) -> Posted | None:
        extra: dict[str, Any] = {}
        if record.channel_id and record.channel_allowed:
            channel = self.client.get_partial_messageable(record.channel_id, guild_id=record.guild_id)
            if record.has_message:
                extra["reference"] = discord.MessageReference(
                    message_id=record.message_id,  # type: ignore[arg-type]
                    channel_id=record.channel_id,
                    fail_if_not_exists=False,
                )
            try:
                message = await channel.send(
                    view=out.card(card.mention(job)), files=list(out.files),
                    allowed_mentions=only_the_member(job), **extra,
                )
                return Posted("channel", message.id, message.jump_url)
            except (discord.Forbidden, discord.NotFound):
                log.info("job %d: channel %s is gone or closed; sending a DM", job.id, record.channel_id)
                out.rewound()
        try:
            user = self.client.get_user(job.user_id) or await self.client.fetch_user(job.user_id)
            message = await user.send(
                view=out.card(None), files=list(out.files), allowed_mentions=only_the_member(job)
            )
            return Posted("dm", message.id)
        except discord.HTTPException:
            log.error("job %d: could not reach the member anywhere (channel and DM refused)", job.id)
            return None
