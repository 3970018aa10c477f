"""`GET /healthz` and `GET /metrics` on METRICS_HOST:METRICS_PORT.

`/metrics` is Prometheus' text format (see :mod:`bot.metrics`). `/healthz` says whether this
bot can do its job right now.

A container whose gateway dropped, whose database refuses writes or whose renderers are all
gone still runs. 200 with ``{"ok": true}`` when the gateway is connected and ready, the
database takes a write and at least one worker is alive (loading counts); otherwise 503 with
the reasons. Docker's health check reads it (``docker ps`` shows "unhealthy"), but Docker
itself restarts only containers that exit; so :class:`HealthWatchdog` asks the same question
and, after UNHEALTHY_EXIT_MINUTES of "no" in a row, ends the bot with EXIT_UNHEALTHY for the
restart policy (Docker's, systemd's) to start it afresh.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

if TYPE_CHECKING:
    from bot.app import AnimateBot

log = logging.getLogger("bot.health")

EXIT_UNHEALTHY = 3
"""The exit code of a bot that stopped itself because it stayed unhealthy."""
WRITE_TIMEOUT = 5.0
"""A database that takes longer than this for one tiny write counts as not taking writes."""


async def problems(bot: AnimateBot) -> list[str]:
    """What stops the bot from serving members now; empty when nothing does."""
    found = []
    ws = bot.ws
    if bot.is_closed() or not bot.gateway_session or ws is None or not ws.open:
        found.append("the Discord gateway is not connected")
    try:
        await asyncio.wait_for(bot.store.set_meta("health_check", f"{time.time():.0f}"), WRITE_TIMEOUT)
    except Exception as exc:  # noqa: BLE001 - any failure is the answer
        found.append(f"the database does not take writes ({type(exc).__name__}: {exc})")
    if not bot.jobs.dispatcher.pool.alive():
        found.append("no render worker is alive")
    return found


class HealthServer:
    """The bot's small HTTP endpoint for operators, on 127.0.0.1 unless told otherwise."""

    def __init__(self, bot: AnimateBot, host: str, port: int) -> None:
        self.bot = bot
        self.host = host
        self.port = port
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/metrics", self._metrics)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, self.host, self.port).start()
        log.info("health check on http://%s:%d/healthz", self.host, self.port)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _metrics(self, request: web.Request) -> web.Response:
        body = await self.bot.metrics.render()
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _healthz(self, request: web.Request) -> web.Response:
        found = await problems(self.bot)
        if found:
            return web.json_response({"ok": False, "problems": found}, status=503)
        return web.json_response({"ok": True})


class HealthWatchdog:
    """Ends the bot once it has been unhealthy (see :func:`problems`) for `window` seconds
    in a row: a restart is the one cure left for a process that cannot reconnect by itself."""

    def __init__(self, bot: AnimateBot, window: float, *, every: float | None = None) -> None:
        self.bot = bot
        self.window = window
        self.every = every if every is not None else min(30.0, window / 4)
        self.unhealthy_since: float | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._watch(), name="health-watchdog")

    async def stop(self) -> None:
        if self._task is not None and self._task is not asyncio.current_task():
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _watch(self) -> None:
        await self.bot.wait_until_ready()
        while not self.bot.is_closed():
            await asyncio.sleep(self.every)
            found = await problems(self.bot)
            now = time.monotonic()
            if not found:
                if self.unhealthy_since is not None:
                    log.info("healthy again after %.0f s", now - self.unhealthy_since)
                self.unhealthy_since = None
                continue
            if self.unhealthy_since is None:
                self.unhealthy_since = now
                log.warning("unhealthy: %s", "; ".join(found))
            elif now - self.unhealthy_since >= self.window:
                log.error(
                    "unhealthy for %.0f s (%s); stopping so that the supervisor restarts the bot",
                    now - self.unhealthy_since, "; ".join(found),
                )
                self.bot.exit_code = EXIT_UNHEALTHY
                # Shielded: close() stops this watchdog too, and cancelling the task that
                # awaits discord.py's closing task would cancel the close itself.
                await asyncio.shield(self.bot.close())
                return
