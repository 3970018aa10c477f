"""Where discord.py sends its traffic: Discord itself by default, or operator-chosen URLs.

Operators put a rate-limit proxy in front of the REST API (`DISCORD_API_BASE`) or a gateway
proxy in front of the websocket (`DISCORD_GATEWAY_URL`); the test suite points both at a
loopback Discord. discord.py keeps these as process-wide class attributes, so they are set
once, before login:

- REST: `discord.http.Route.BASE` (str). Interaction callbacks and follow-ups go through the
  webhook adapter, which builds its URLs from the same `Route`, so they follow it too.
- Gateway: `discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY` (yarl.URL). A plain `Client`
  connects there; after READY it resumes on the `resume_gateway_url` the gateway sent. An
  `AutoShardedClient` asks `GET /gateway/bot` (through the REST base) for its URL instead.
- CDN (optional): `discord.asset.Asset.BASE` (str), used for avatar and icon URLs that
  `Asset.read()` downloads. Attachment URLs come from the API payloads, so they need nothing.

Nothing else in discord.py reaches discord.com on its own: the remaining literal URLs
(`jump_url`, `Webhook.url`, invite links) are strings for humans, never requested.
"""

from __future__ import annotations

import discord.asset
import discord.gateway
import discord.http
import yarl


def apply_endpoints(
    api_base: str | None, gateway_url: str | None, *, cdn_base: str | None = None
) -> None:
    """Point discord.py at alternative REST / gateway / CDN URLs; None leaves one as it is.

    Call before the client logs in. Raises ValueError for a URL of the wrong scheme, so a
    typo in the settings fails at start-up rather than as a connection error later.
    """
    if api_base is not None:
        discord.http.Route.BASE = _http_url(api_base, "DISCORD_API_BASE")
    if gateway_url is not None:
        url = yarl.URL(gateway_url)
        if url.scheme not in ("ws", "wss") or not url.host:
            raise ValueError(
                f"DISCORD_GATEWAY_URL must be a ws:// or wss:// URL, got {gateway_url!r}"
            )
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = url
    if cdn_base is not None:
        discord.asset.Asset.BASE = _http_url(cdn_base, "DISCORD_CDN_BASE")


def _http_url(value: str, name: str) -> str:
    url = yarl.URL(value)
    if url.scheme not in ("http", "https") or not url.host:
        raise ValueError(f"{name} must be an http:// or https:// URL, got {value!r}")
    return value.rstrip("/")
