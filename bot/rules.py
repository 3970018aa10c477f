"""Where /animate may be used and which prompts are refused, as plain functions of settings.

Each refusal is a sentence for the member that says why and, where it can, what to do.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from bot.settings import Settings


def place_refusal(
    settings: Settings,
    *,
    guild_id: int | None,
    channel_ids: Iterable[int],
    nsfw: bool,
) -> str | None:
    """None when the bot may work here. `channel_ids`: the channel and, for a thread, its parent."""
    if guild_id is None:
        if not settings.allow_dms:
            return "I don't make videos in direct messages here; please use a server channel."
        return None
    if settings.allowed_guild_ids and guild_id not in settings.allowed_guild_ids:
        return "I'm not set up to make videos in this server."
    channels = set(channel_ids)
    if settings.allowed_channel_ids and not channels & set(settings.allowed_channel_ids):
        allowed = ", ".join(f"<#{c}>" for c in settings.allowed_channel_ids[:5])
        return f"I only make videos in {allowed}."
    if settings.nsfw_channels_only and not nsfw:
        return "I only make videos in age-restricted channels here."
    return None


def prompt_refusal(settings: Settings, *texts: str | None) -> str | None:
    """None when no blocked word or phrase appears (whole words, any case)."""
    words = settings.blocked_words
    if not words:
        return None
    joined = " ".join(t for t in texts if t).lower()
    for word in words:
        if re.search(rf"(?<!\w){re.escape(word)}(?!\w)", joined):
            return (
                f"Your prompt contains “{word}”, which isn't allowed here; "
                "please rephrase it. Nothing was charged."
            )
    return None
