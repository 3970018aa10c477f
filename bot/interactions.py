"""What the bot reads off an interaction before it asks the job layer for anything."""

from __future__ import annotations

import discord

from bot.delivery.record import DeliveryRecord
from bot.errors import Refusal
from bot.rules import place_refusal
from bot.settings import Settings
from jobs import Origin, Store


def origin_of(interaction: discord.Interaction, *, private: bool | None = None) -> Origin:
    """The presser, the interaction as the job's idempotency key, where to show the job (and
    whether the bot may post there at all), and how large a file this channel takes.
    `private` None: a job made from a private clip (a button on an ephemeral message) is
    private too, any other is public."""
    if private is None:
        message = getattr(interaction, "message", None)
        private = bool(message is not None and message.flags.ephemeral)
    record = DeliveryRecord(
        application_id=interaction.application_id,
        token=interaction.token,
        token_at=interaction.created_at.timestamp(),
        channel_id=interaction.channel_id,
        guild_id=interaction.guild_id,
        private=private,
        channel_open=bot_is_there(interaction),
    )
    return Origin(
        user_id=interaction.user.id,
        key=str(interaction.id),
        delivery=record.to_dict(),
        max_bytes=interaction.filesize_limit,
    )


def bot_is_there(interaction: discord.Interaction) -> bool:
    """Whether the bot itself can post where the interaction happened: a guild that installed
    the app (so the bot is a member), or the bot's own DM. A member's own install of the app
    also works in guilds without the bot and in group DMs, where only the interaction's
    webhook (and then a DM) reach them."""
    return interaction.is_guild_integration() or interaction.context.dm_channel


def check_place(interaction: discord.Interaction, settings: Settings) -> None:
    """Raise Refusal where the bot must not make videos (guild, channel, DMs, NSFW rule) or
    for a member without one of ALLOWED_ROLE_IDS. Roles come with the interaction, so a role
    an admin takes away counts at the next click."""
    channel = interaction.channel
    channel_ids = [interaction.channel_id] if interaction.channel_id else []
    parent_id = getattr(channel, "parent_id", None)
    if parent_id:
        channel_ids.append(parent_id)
    nsfw = bool(getattr(channel, "is_nsfw", lambda: False)())
    roles = [role.id for role in getattr(interaction.user, "roles", ())]
    if refusal := place_refusal(
        settings, guild_id=interaction.guild_id, channel_ids=channel_ids, nsfw=nsfw,
        role_ids=roles,
    ):
        raise Refusal(refusal)


async def check_member(interaction: discord.Interaction, settings: Settings, store: Store) -> None:
    """Where (see :func:`check_place`) and who: a member an operator blocked makes nothing,
    through any command, button or form, and is told so privately; nothing is charged."""
    check_place(interaction, settings)
    block = await store.block_of(interaction.user.id)
    if block is not None:
        why = f" ({block.reason})" if block.reason else ""
        raise Refusal(
            f"An operator of this bot has blocked you from making videos{why}. Nothing was charged."
        )
