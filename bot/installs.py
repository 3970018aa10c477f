"""Where members' commands work: installed to a guild or to a member's own account, and used
in guilds, the bot's DM and private channels (group DMs, DMs between users).

A member's own install reaches guilds and group DMs the bot is not in; there the bot cannot
post in the channel, so delivery keeps to the interaction and then a DM
(:attr:`bot.delivery.record.DeliveryRecord.channel_open`). Operators' commands stay guild
installs. User installs need global commands (GUILD_IDS empty).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from discord import app_commands

T = TypeVar("T")

INSTALLS = app_commands.AppInstallationType(guild=True, user=True)
CONTEXTS = app_commands.AppCommandContext(guild=True, dm_channel=True, private_channel=True)


def anywhere(command: T) -> T:
    """A member's command: guild and user installs, every context."""
    installs: Callable[[T], T] = app_commands.allowed_installs(guilds=True, users=True)
    contexts: Callable[[T], T] = app_commands.allowed_contexts(guilds=True, dms=True, private_channels=True)
    return installs(contexts(command))
