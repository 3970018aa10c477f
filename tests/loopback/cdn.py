"""The loopback CDN: attachment bytes behind signed, expiring URLs, as Discord serves them.

Discord attachment URLs carry `ex` (expiry, hex epoch seconds), `is` (issue time) and `hm`
(a signature). A bot that stores a URL and downloads it later gets refused, so the bot must
read the photo during the interaction. Here expiry is judged by the loopback clock, and a
bad signature or an expired URL is answered 403 (discord.py raises `Forbidden`).
"""

from __future__ import annotations

import hashlib
import hmac
import mimetypes
import secrets
import struct
import zlib
from urllib.parse import quote

from aiohttp import web

from .clock import Clock
from .state import Attachment, DiscordState

DEFAULT_TTL_S = 24 * 3600.0


def _tiny_png() -> bytes:
    """A valid 1x1 PNG, served for avatars so asset reads never leave the loopback."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    header = struct.pack(">IIBBBBB", 1, 1, 8, 6, 0, 0, 0)
    pixels = zlib.compress(b"\x00\x80\x80\x80\xff")
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    )


TINY_PNG = _tiny_png()


class Cdn:
    """Signs attachment URLs and serves their bytes."""

    def __init__(self, state: DiscordState, clock: Clock, *, ttl: float = DEFAULT_TTL_S) -> None:
        self._state = state
        self._clock = clock
        self._secret = secrets.token_bytes(32)
        self.ttl = ttl
        self.base_url = ""
        """Set once the server knows its port, e.g. `http://127.0.0.1:PORT`."""

    def _sign(self, attachment_id: int, expires: int, issued: int) -> str:
        message = f"{attachment_id}:{expires:x}:{issued:x}".encode()
        return hmac.new(self._secret, message, hashlib.sha256).hexdigest()

    def url(self, attachment: Attachment, *, proxy: bool = False) -> str:
        """The signed URL Discord would put in the attachment's `url` (or `proxy_url`)."""
        issued = int(attachment.issued_at)
        expires = int(attachment.issued_at + self.ttl)
        folder = "ephemeral-attachments" if attachment.ephemeral else "attachments"
        prefix = "/media" if proxy else ""
        name = quote(attachment.filename)
        path = f"{prefix}/{folder}/{attachment.channel_id}/{attachment.id}/{name}"
        query = f"ex={expires:x}&is={issued:x}&hm={self._sign(attachment.id, expires, issued)}"
        return f"{self.base_url}{path}?{query}"

    def routes(self) -> list[web.RouteDef]:
        serve = self.serve_attachment
        return [
            web.get("/attachments/{channel_id}/{attachment_id}/{filename}", serve),
            web.get("/ephemeral-attachments/{channel_id}/{attachment_id}/{filename}", serve),
            web.get("/media/attachments/{channel_id}/{attachment_id}/{filename}", serve),
            web.get("/media/ephemeral-attachments/{channel_id}/{attachment_id}/{filename}", serve),
            web.get("/avatars/{user_id}/{name}", self.serve_avatar),
            web.get("/embed/avatars/{name}", self.serve_avatar),
        ]

    async def serve_attachment(self, request: web.Request) -> web.Response:
        attachment = self._state.attachments.get(_int(request.match_info["attachment_id"]))
        if attachment is None or attachment.filename != request.match_info["filename"]:
            return web.Response(status=404, text="Not Found")
        try:
            expires = int(request.query["ex"], 16)
            issued = int(request.query["is"], 16)
            signature = request.query["hm"]
        except (KeyError, ValueError):
            return web.Response(status=403, text="This content is no longer available.")
        if not hmac.compare_digest(signature, self._sign(attachment.id, expires, issued)):
            return web.Response(status=403, text="This content is no longer available.")
        if self._clock.time() > expires:
            return web.Response(status=403, text="This content is no longer available.")
        content_type = attachment.content_type or mimetypes.guess_type(attachment.filename)[0]
        return web.Response(
            body=attachment.data,
            headers={"Content-Type": content_type or "application/octet-stream"},
        )

    async def serve_avatar(self, request: web.Request) -> web.Response:
        return web.Response(body=TINY_PNG, headers={"Content-Type": "image/png"})


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        return -1
