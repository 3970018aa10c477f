"""Failures a test can make the loopback Discord produce, the way Discord produces them.

Route patterns are shell-style globs over `"METHOD /path"`, matched against both the route
template and the concrete path, so all of these work:
`"POST /channels/{channel_id}/messages"`, `"POST /channels/*/messages"`, `"/webhooks/*"`,
`"*"`. Paths are below the API base (`/api/v10`).

Rules fire in the order they were added and each fires `count` times (None: until cleared).
Deadline faults (3 s acknowledgement, 15 min token, CDN expiry) come from the clock instead
(`discord.clock.advance(...)`), or `expire_interactions()` for the 3 s window.
"""

from __future__ import annotations

import fnmatch
import math
from dataclasses import dataclass

from aiohttp import web

from .clock import Clock
from .responses import json_response


@dataclass(eq=False)
class FaultRule:
    kind: str
    pattern: str
    remaining: int | None
    retry_after: float = 0.0
    is_global: bool = False
    scope: str = "user"
    via: bool = True
    status: int = 500
    seconds: float = 0.0
    hits: int = 0
    """How many requests this rule has answered (or delayed) so far."""

    def matches(self, method: str, path: str, route: str) -> bool:
        pattern = self.pattern if not self.pattern.startswith("/") else f"* {self.pattern}"
        return fnmatch.fnmatchcase(f"{method} {route}", pattern) or fnmatch.fnmatchcase(
            f"{method} {path}", pattern
        )

    @property
    def exhausted(self) -> bool:
        return self.remaining is not None and self.remaining <= 0


class Faults:
    """Injectable failures; reach it as `discord.faults`."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self.rules: list[FaultRule] = []
        self.expired_interactions_pending = 0

    def rate_limit(
        self,
        route: str = "*",
        *,
        count: int | None = 1,
        retry_after: float = 0.25,
        is_global: bool = False,
        scope: str | None = None,
        via: bool = True,
    ) -> FaultRule:
        """Answer the next `count` matching requests 429 with Discord's headers and body.

        `is_global=True` is a global limit (`X-RateLimit-Global`, body `global: true`).
        `via=False` leaves out the `Via` header: discord.py then takes it for a Cloudflare
        ban and raises instead of retrying.
        """
        scope = scope or ("global" if is_global else "user")
        return self._add(
            FaultRule(
                "rate_limit",
                route,
                count,
                retry_after=retry_after,
                is_global=is_global,
                scope=scope,
                via=via,
            )
        )

    def server_error(
        self, route: str = "*", *, status: int = 500, count: int | None = 1
    ) -> FaultRule:
        """Answer the next `count` matching requests with a 5xx.

        discord.py retries 5xx after 1 s, then 3 s, ...: each one costs a test a second.
        """
        return self._add(FaultRule("server_error", route, count, status=status))

    def latency(self, route: str = "*", *, seconds: float, count: int | None = None) -> FaultRule:
        """Delay matching requests by `seconds` real time before handling them."""
        return self._add(FaultRule("latency", route, count, seconds=seconds))

    def expire_interactions(self, count: int = 1) -> None:
        """The next `count` interaction callbacks arrive "after 3 s": 10062 Unknown interaction."""
        self.expired_interactions_pending += count

    def take_expired_interaction(self) -> bool:
        if self.expired_interactions_pending > 0:
            self.expired_interactions_pending -= 1
            return True
        return False

    def clear(self) -> None:
        self.rules.clear()
        self.expired_interactions_pending = 0

    def _add(self, rule: FaultRule) -> FaultRule:
        self.rules.append(rule)
        return rule

    def match(self, kind: str, method: str, path: str, route: str) -> FaultRule | None:
        """The first live rule of `kind` for this request; consumes one use of it."""
        for rule in self.rules:
            if rule.kind == kind and not rule.exhausted and rule.matches(method, path, route):
                rule.hits += 1
                if rule.remaining is not None:
                    rule.remaining -= 1
                return rule
        return None

    def response(self, rule: FaultRule, bucket: str) -> web.Response:
        if rule.kind == "server_error":
            body = (
                {"message": "500: Internal Server Error", "code": 0} if rule.status == 500 else None
            )
            if body is None:  # 502/504 come from the edge as HTML, like Cloudflare's
                return web.Response(
                    status=rule.status,
                    text="<html><body>Bad Gateway</body></html>",
                    content_type="text/html",
                )
            return json_response(body, status=rule.status)
        reset = self._clock.time() + rule.retry_after
        headers = {
            "Retry-After": str(max(1, math.ceil(rule.retry_after))),
            "X-RateLimit-Scope": rule.scope,
        }
        if rule.via:
            headers["Via"] = "1.1 google"
        if rule.is_global:
            headers["X-RateLimit-Global"] = "true"
        else:
            headers.update(
                {
                    "X-RateLimit-Limit": "5",
                    "X-RateLimit-Remaining": "0",
                    "X-RateLimit-Reset": f"{reset:.3f}",
                    "X-RateLimit-Reset-After": f"{rule.retry_after:.3f}",
                    "X-RateLimit-Bucket": bucket,
                }
            )
        if not rule.via:
            return web.Response(
                status=429,
                text="<html><body>Error 1015: You are being rate limited.</body></html>",
                content_type="text/html",
                headers=headers,
            )
        body = {
            "message": "You are being rate limited.",
            "retry_after": rule.retry_after,
            "global": rule.is_global,
            "code": 0,
        }
        return json_response(body, status=429, headers=headers)
