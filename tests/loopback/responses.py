"""HTTP responses shaped the way discord.py needs them to be."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from .errors import DiscordError


def json_response(
    data: Any, *, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    """JSON with Content-Type exactly `application/json`: discord.py compares the header
    verbatim, so aiohttp's `application/json; charset=utf-8` would reach the bot as a str."""
    all_headers = {"Content-Type": "application/json"}
    all_headers.update(headers or {})
    return web.Response(body=json.dumps(data).encode(), status=status, headers=all_headers)


def error_response(error: DiscordError) -> web.Response:
    return json_response(error.body(), status=error.status)


def no_content() -> web.Response:
    return web.Response(status=204)
