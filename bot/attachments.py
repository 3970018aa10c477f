"""Fetch a member's attachment during the interaction and judge its bytes.

Discord's attachment URLs are signed and expire, so the bytes are read at once with the full
URL (query included). Only Discord's CDN, or DISCORD_API_BASE's own host and port when it is
set, is ever fetched: the URL comes from the interaction payload and must not become a way to
make the bot fetch arbitrary addresses. The download stops at the size limit, whatever the
payload declared.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import aiohttp
import discord

from bot.errors import Refusal
from contract import InputError
from pipeline.intake import Photo, jpeg_thumbnail, load_photo

DISCORD_CDN_HOSTS = frozenset({"cdn.discordapp.com", "media.discordapp.net"})
THUMBNAIL_SIDE = 320
DOWNLOAD_TIMEOUT = aiohttp.ClientTimeout(total=60, sock_read=20)
DOWNLOAD_FAILED = "I couldn't download your photo from Discord; please try again."


class AttachmentRefused(Refusal):
    """The attachment cannot be used; the message is for the member."""


def is_discord_url(url: str, api_base: str | None) -> bool:
    """Whether `url` is on Discord's CDN (https, its own port), or on the configured API
    proxy's exact scheme, host and port: nothing else on those hosts is ever fetched."""
    try:
        target = urlsplit(url)
        port = target.port or (443 if target.scheme == "https" else 80)
    except ValueError:
        return False
    if target.scheme == "https" and target.hostname in DISCORD_CDN_HOSTS and port == 443:
        return True
    if api_base:
        proxy = urlsplit(api_base)
        proxy_port = proxy.port or (443 if proxy.scheme == "https" else 80)
        return (target.scheme, target.hostname, port) == (proxy.scheme, proxy.hostname, proxy_port)
    return False


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


async def fetch(
    attachment: discord.Attachment,
    *,
    session: aiohttp.ClientSession,
    max_bytes: int,
    api_base: str | None,
) -> bytes:
    """The attachment's bytes, refusing foreign hosts and oversized files before downloading,
    and stopping a download the moment it passes `max_bytes` (the declared size may lie)."""
    if attachment.size > max_bytes:
        raise AttachmentRefused(_too_big(f"“{attachment.filename}”", attachment.size, max_bytes))
    if not is_discord_url(attachment.url, api_base):
        raise AttachmentRefused("That attachment isn't hosted by Discord; please upload the photo directly.")
    data = bytearray()
    try:
        async with session.get(attachment.url, timeout=DOWNLOAD_TIMEOUT) as response:
            if response.status in (403, 404):
                raise AttachmentRefused(
                    "Discord's link to your photo has expired; please run the command again "
                    "with the photo."
                )
            if response.status >= 400:
                raise AttachmentRefused(DOWNLOAD_FAILED)
            async for chunk in response.content.iter_chunked(64 * 1024):
                data += chunk
                if len(data) > max_bytes:
                    shown = max(len(data), response.content_length or 0)
                    raise AttachmentRefused(_too_big("The photo", shown, max_bytes))
    except (aiohttp.ClientError, TimeoutError):
        raise AttachmentRefused(DOWNLOAD_FAILED) from None
    return bytes(data)


class PhotoGate:
    """One photo per member at a time (downloaded and decoded), and at most `decodes` full
    decodes at once in the bot process: a 50-megapixel photo takes about 150 MB to decode,
    so a burst of /animate from one member must not hold several of them in memory."""

    def __init__(self, decodes: int = 2) -> None:
        self._decodes = asyncio.Semaphore(decodes)
        self._members: set[int] = set()

    @contextlib.asynccontextmanager
    async def turn(self, user_id: int) -> AsyncIterator[None]:
        """The member's turn to have a photo read; refused while their previous one is."""
        if user_id in self._members:
            raise AttachmentRefused(
                "I'm still reading the photo you sent a moment ago; one at a time, please: "
                "send this one again once that video is queued."
            )
        self._members.add(user_id)
        try:
            yield
        finally:
            self._members.discard(user_id)

    async def judge(self, data: bytes, *, max_bytes: int) -> Photo:
        """check_photo off the event loop, within the bound on concurrent decodes."""
        async with self._decodes:
            return await asyncio.to_thread(check_photo, data, max_bytes=max_bytes)


def check_photo(data: bytes, *, max_bytes: int) -> Photo:
    """Judge the bytes (not the name or declared type) exactly as the pipeline will."""
    try:
        return load_photo(data, max_bytes=max_bytes)
    except InputError as refusal:
        raise AttachmentRefused(refusal.message) from None


def thumbnail(photo: Photo, side: int = THUMBNAIL_SIDE) -> bytes:
    """A small JPEG of the (upright) photo for the queued message."""
    return jpeg_thumbnail(photo.image, side, quality=85)
