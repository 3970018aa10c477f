"""The loopback Discord as one aiohttp application on 127.0.0.1 and an OS-assigned port:
gateway (`/gateway`), REST (`/api/v10/...`) and CDN (`/attachments/...`) side by side.

The middleware is where Discord's cross-cutting behaviour lives: it records every request
(method, path, query, JSON, files with their bytes), injects faults, checks the bot token,
turns `DiscordError` into Discord's JSON errors, and adds `X-RateLimit-*` headers per route
bucket the way Discord does (discord.py reads them to pace itself).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web

from . import errors
from .bodies import BODY_KEY, read_body
from .cdn import DEFAULT_TTL_S, Cdn
from .clock import Clock
from .faults import Faults
from .gateway import PRIVILEGED_INTENTS, Gateway
from .messaging import Messaging
from .responses import error_response
from .rest import PUBLIC_PREFIXES, RestApi
from .state import DiscordState, RecordedRequest

API_PREFIX = "/api/v10"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class RateLimitPolicy:
    """Bucket size Discord advertises in X-RateLimit-* headers (per route and major id).

    discord.py waits on its own when `Remaining` reaches 0, so a tighter policy (Discord's
    webhooks allow 5 per 2 s) shows whether a bot's progress edits would be throttled.
    """

    limit: int = 50
    window_s: float = 1.0


class _Buckets:
    def __init__(self, clock: Clock, policy: RateLimitPolicy) -> None:
        self._clock = clock
        self._policy = policy
        self._windows: dict[str, tuple[float, int]] = {}

    @staticmethod
    def bucket_hash(route: str) -> str:
        return hashlib.sha1(route.encode()).hexdigest()[:32]

    def headers(self, route: str, major: str) -> dict[str, str]:
        bucket = self.bucket_hash(route)
        key = f"{bucket}:{major}"
        now = self._clock.time()
        reset, used = self._windows.get(key, (0.0, 0))
        if now >= reset:
            reset, used = now + self._policy.window_s, 0
        used += 1
        self._windows[key] = (reset, used)
        return {
            "X-RateLimit-Limit": str(self._policy.limit),
            "X-RateLimit-Remaining": str(max(self._policy.limit - used, 0)),
            "X-RateLimit-Reset": f"{reset:.3f}",
            "X-RateLimit-Reset-After": f"{max(reset - now, 0.0):.3f}",
            "X-RateLimit-Bucket": bucket,
            "X-RateLimit-Scope": "user",
        }


def _major(request: web.Request) -> str:
    info = request.match_info
    return "+".join(
        info[k]
        for k in ("channel_id", "guild_id", "webhook_id", "webhook_token", "interaction_id")
        if k in info
    )


class LoopbackServer:
    """Owns the aiohttp app, its socket and the parts; `LoopbackDiscord` drives it."""

    def __init__(
        self,
        *,
        bot_name: str = "animate-bot",
        guild_name: str = "Loopback Guild",
        team: bool = False,
        heartbeat_interval_ms: int = 41250,
        privileged_intents: int = PRIVILEGED_INTENTS,
        shard_count: int = 1,
        cdn_ttl_s: float = DEFAULT_TTL_S,
        rate_limits: RateLimitPolicy | None = None,
    ) -> None:
        self.clock = Clock()
        self.state = DiscordState(self.clock, bot_name=bot_name, guild_name=guild_name, team=team)
        self.cdn = Cdn(self.state, self.clock, ttl=cdn_ttl_s)
        self.faults = Faults(self.clock)
        self.gateway = Gateway(
            self.state,
            self.cdn,
            heartbeat_interval_ms=heartbeat_interval_ms,
            privileged_intents=privileged_intents,
            shard_count=shard_count,
        )
        self.messaging = Messaging(self.state, self.cdn, self.gateway)
        self.rest = RestApi(self.state, self.cdn, self.gateway, self.messaging, self.faults)
        self._buckets = _Buckets(self.clock, rate_limits or RateLimitPolicy())
        self.app = web.Application(middlewares=[self._middleware], client_max_size=1024**3)
        self.app.add_routes(
            self.gateway.routes() + self.rest.routes(API_PREFIX) + self.cdn.routes()
        )
        self._runner: web.AppRunner | None = None
        self.base_url = ""

    @property
    def api_base(self) -> str:
        """What `DISCORD_API_BASE` / `Route.BASE` should be."""
        return self.base_url + API_PREFIX

    @property
    def gateway_url(self) -> str:
        """What `DISCORD_GATEWAY_URL` should be."""
        return self.gateway.url

    async def start(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        self._runner = web.AppRunner(
            self.app, handle_signals=False, access_log=None, shutdown_timeout=0.5
        )
        await self._runner.setup()
        await web.SockSite(self._runner, sock).start()
        self.base_url = f"http://127.0.0.1:{port}"
        self.cdn.base_url = self.base_url
        self.gateway.url = f"ws://127.0.0.1:{port}/gateway"
        self.gateway.resume_url = f"ws://127.0.0.1:{port}/gateway/resume"

    async def stop(self) -> None:
        await self.gateway.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path.startswith("/gateway"):
            return await handler(request)
        is_api = request.path.startswith(API_PREFIX + "/")
        path = request.path[len(API_PREFIX) :] if is_api else request.path
        resource = request.match_info.route.resource
        template = resource.canonical if resource is not None else request.path
        if is_api and template.startswith(API_PREFIX):
            template = template[len(API_PREFIX) :]
        record = RecordedRequest(
            method=request.method,
            path=path,
            route=f"{request.method} {template}",
            query=dict(request.query),
            headers={k: v for k, v in request.headers.items() if k.lower() != "authorization"},
            at=self.clock.time(),
            monotonic=time.monotonic(),
        )
        response: web.StreamResponse
        try:
            if is_api:
                body = await read_body(request)
                request[BODY_KEY] = body
                record.json, record.files = body.json, body.files
                response = await self._api(request, handler, record, path, template)
            else:
                response = await handler(request)
        except errors.DiscordError as exc:
            response = error_response(exc)
        except web.HTTPMethodNotAllowed:
            record.fault = "unhandled"
            response = error_response(errors.DiscordError(405, 0, "405: Method Not Allowed"))
        except web.HTTPNotFound:
            record.fault = "unhandled"
            response = error_response(errors.not_found())
        if (
            is_api
            and response.status != 429
            and not request.path.startswith(API_PREFIX + "/interactions/")
        ):
            response.headers.update(self._buckets.headers(record.route, _major(request)))
        record.status = response.status
        if (
            isinstance(response, web.Response)
            and response.content_type == "application/json"
            and response.body
        ):
            record.response = json.loads(bytes(response.body))  # type: ignore[arg-type]
        self.state.record(record)
        return response

    async def _api(
        self,
        request: web.Request,
        handler: Handler,
        record: RecordedRequest,
        path: str,
        template: str,
    ) -> web.StreamResponse:
        method = request.method
        delay = self.faults.match("latency", method, path, template)
        if delay is not None:
            await asyncio.sleep(delay.seconds)
        rule = self.faults.match("server_error", method, path, template) or self.faults.match(
            "rate_limit", method, path, template
        )
        if rule is not None:
            record.fault = rule.kind
            return self.faults.response(rule, self._buckets.bucket_hash(record.route))
        public = path.startswith(PUBLIC_PREFIXES) or (method == "GET" and path == "/gateway")
        if not public and request.headers.get("Authorization") != f"Bot {self.state.token}":
            raise errors.unauthorized()
        return await handler(request)
