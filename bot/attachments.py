"""Fetch a member's attachment during the interaction and judge its bytes.

Discord's attachment URLs are signed and expire, so the bytes are read at once with the full
URL (query included). Only Discord's CDN, or the host of DISCORD_API_BASE when it is set, is
ever fetched: the URL comes from the interaction payload and must not become a way to make
the bot fetch arbitrary addresses.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import discord

from bot.errors import Refusal
from contract import InputError
from pipeline.intake import Photo, jpeg_thumbnail, load_photo

DISCORD_CDN_HOSTS = frozenset({"cdn.discordapp.com", "media.discordapp.net"})
THUMBNAIL_SIDE = 320


class AttachmentRefused(Refusal):
    """The attachment cannot be used; the message is for the member."""


def allowed_hosts(api_base: str | None) -> frozenset[str]:
    if api_base:
        host = urlsplit(api_base).hostname
        if host:
            return DISCORD_CDN_HOSTS | {host}
    return DISCORD_CDN_HOSTS


def _size(n: int, digits: int = 1) -> str:
    if n >= 2**20:
        return f"{n / 2**20:.{digits}f} MiB"
    if n >= 1024:
        return f"{n / 1024:.{digits - 1}f} KiB"
    return f"{n} bytes"


def _too_big(what: str, size: int, limit: int) -> str:
    """Both sizes, with enough digits that they never read the same ("25.0 MiB; at most 25.0")."""
    digits = 1
    while _size(size, digits) == _size(limit, digits) and digits < 4:
        digits += 1
    return f"{what} is {_size(size, digits)}; photos can be at most {_size(limit, digits)}."


async def fetch(attachment: discord.Attachment, *, max_bytes: int, api_base: str | None) -> bytes:
    """The attachment's bytes, refusing oversized files and foreign hosts before downloading."""
    if attachment.size > max_bytes:
        raise AttachmentRefused(_too_big(f"“{attachment.filename}”", attachment.size, max_bytes))
    host = urlsplit(attachment.url).hostname
    if host not in allowed_hosts(api_base):
        raise AttachmentRefused("That attachment isn't hosted by Discord; please upload the photo directly.")
    try:
        data = await attachment.read()
    except (discord.Forbidden, discord.NotFound):
        raise AttachmentRefused(
            "Discord's link to your photo has expired; please run the command again with the photo."
        ) from None
    except discord.HTTPException:
        raise AttachmentRefused("I couldn't download your photo from Discord; please try again.") from None
    if len(data) > max_bytes:
        raise AttachmentRefused(_too_big("The photo", len(data), max_bytes))
    return data


def check_photo(data: bytes, *, max_bytes: int) -> Photo:
    """Judge the bytes (not the name or declared type) exactly as the pipeline will."""
    try:
        return load_photo(data, max_bytes=max_bytes)
    except InputError as refusal:
        raise AttachmentRefused(refusal.message) from None


def thumbnail(photo: Photo, side: int = THUMBNAIL_SIDE) -> bytes:
    """A small JPEG of the (upright) photo for the queued message."""
    return jpeg_thumbnail(photo.image, side, quality=85)
