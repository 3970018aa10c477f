"""The Discord application: a `commands.Bot` handed its dependencies, one cog per file."""

from __future__ import annotations

import gc
import hashlib
import json
import logging
from typing import Any

import aiohttp
import discord
from discord.ext import commands

from bot.attachments import PhotoGate
from bot.buttons import BUTTONS
from bot.delivery.events import Delivery
from bot.endpoints import apply_endpoints
from bot.errors import answer_error
from bot.health import HealthServer, HealthWatchdog
from bot.i18n import Translator
from bot.i18n import digest as locales_digest
from bot.loop_watch import LoopWatch
from bot.metrics import BotMetrics
from bot.settings import Settings
from contract import Failed, one_line
from jobs import (
    DatabaseInUse,
    Dispatcher,
    JobService,
    ProcessLock,
    RayUnavailable,
    Recovery,
    StorageUnusable,
    Store,
    check_storage,
)
from jobs.retry import refund_note

log = logging.getLogger("bot")

EXTENSIONS: tuple[str, ...] = (
    "bot.cogs.animate",
    "bot.cogs.animate_message",
    "bot.cogs.balance",
    "bot.cogs.credits",
    "bot.cogs.history",
    "bot.cogs.mod",
    "bot.cogs.queue",
    "bot.cogs.stats",
)
SYNC_META_KEY = "command_sync"


class StartupError(Exception):
    """Start-up cannot go on; the message is one line for the operator."""


class AnimateBot(commands.Bot):
    """Holds what every cog needs; knows nothing about models or GPUs itself."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        jobs: JobService,
        *,
        recovery: Recovery | None = None,
        **options: Any,
    ) -> None:
        # Slash commands and components need no privileged intents.
        super().__init__(
            command_prefix=commands.when_mentioned,
            intents=discord.Intents.default(),
            help_command=None,
            allowed_mentions=discord.AllowedMentions(users=True, everyone=False, roles=False),
            **options,
        )
        self.settings = settings
        self.store = store
        self.jobs = jobs
        self.delivery = Delivery(
            self, store, fit=jobs.dispatcher.fit_upload, finishes=jobs.finishes_offered, card=jobs.card
        )
        self._recovery = recovery
        self.photos = PhotoGate()
        self.loop_watch = LoopWatch()
        self.health: HealthServer | None = None
        self.watchdog: HealthWatchdog | None = None
        self.exit_code = 0
        self.gateway_session = False
        """True between READY/RESUMED and the next disconnect (see on_disconnect)."""
        """What `python -m bot` exits with; the watchdog sets EXIT_UNHEALTHY."""
        self.metrics = BotMetrics(self)
        self.downloads: aiohttp.ClientSession
        """Members' attachments are read through this, in bounded chunks."""

    async def setup_hook(self) -> None:
        self.loop_watch.start()
        if self.settings.metrics_port is not None:
            self.health = HealthServer(self, self.settings.metrics_host, self.settings.metrics_port)
            await self.health.start()
        if self.settings.unhealthy_exit_minutes > 0:
            self.watchdog = HealthWatchdog(self, self.settings.unhealthy_exit_minutes * 60)
            self.watchdog.start()
        self.downloads = aiohttp.ClientSession()
        self.tree.on_error = answer_error  # every command error becomes one sentence here
        await self.tree.set_translator(Translator())
        self.add_dynamic_items(*BUTTONS)
        for extension in EXTENSIONS:
            await self.load_extension(extension)
        self.jobs.dispatcher.subscribe(self.delivery.on_event)
        self.delivery.start()
        self.jobs.dispatcher.subscribe(self.metrics.on_event)
        await self.sync_commands()
        if self._recovery is not None:
            self.deliver_recovered(self._recovery)

    def deliver_recovered(self, recovery: Recovery) -> None:
        """What the last stop left unsaid, once the gateway is up (call after login): clips
        finished but never delivered, and jobs that ran out of attempts in the crash."""
        self._recovery = None
        if recovery.undelivered or recovery.failed:
            self.loop.create_task(self._deliver_recovered(recovery), name="deliver-recovered")

    async def _deliver_recovered(self, recovery: Recovery) -> None:
        await self.wait_until_ready()
        for job in recovery.undelivered:
            self.delivery.deliver_soon(job.id)  # logs and retries; never raises
        for job in recovery.failed:
            reason = (job.error or "The renderer stopped.") + refund_note(job.cost)
            await self.delivery.on_event(job, Failed(reason, kind="crash"))

    async def close(self) -> None:
        if self.watchdog is not None:
            await self.watchdog.stop()
        if self.health is not None:
            await self.health.stop()
        await self.delivery.close()
        if hasattr(self, "downloads"):
            await self.downloads.close()
        await self.loop_watch.stop()
        await super().close()

    async def is_operator(self, user: discord.abc.User) -> bool:
        """Bot operators: ADMIN_USER_IDS plus the application's owner or team.

        A guild administrator is not an operator: credits are global across guilds.
        """
        return user.id in self.settings.admin_user_ids or await self.is_owner(user)

    async def sync_commands(self) -> None:
        """Sync only when the command definitions changed (Discord rate-limits creates)."""
        guilds = [discord.Object(id=g) for g in self.settings.guild_ids]
        for guild in guilds:
            self.tree.copy_global_to(guild=guild)
        definitions = [c.to_dict(self.tree) for c in self.tree.get_commands()]
        digest = hashlib.sha256(
            json.dumps(
                {"guilds": self.settings.guild_ids, "commands": definitions, "locales": locales_digest()},
                sort_keys=True,
            ).encode()
        ).hexdigest()
        if await self.store.get_meta(SYNC_META_KEY) == digest:
            log.info("commands unchanged since the last sync; not syncing")
            return
        if guilds:
            for guild in guilds:
                await self.tree.sync(guild=guild)
            log.info("synced %d commands to guilds %s", len(definitions), self.settings.guild_ids)
        else:
            await self.tree.sync()
            log.info("synced %d commands globally (may take a while to show)", len(definitions))
        await self.store.set_meta(SYNC_META_KEY, digest)

    async def on_ready(self) -> None:
        log.info("logged in as %s (%s) in %d guilds", self.user, self.user.id if self.user else "?", len(self.guilds))

    # "Connected" for the health check means a session, not a socket: the socket reopens at
    # once while Discord may hold the RESUME, and events flow only after READY or RESUMED.
    # Read off the raw event types, which are dispatched in the order they arrive, in step
    # with on_disconnect (on_ready comes later, after the guilds load, maybe after a drop).
    async def on_socket_event_type(self, event_type: str) -> None:
        if event_type in ("READY", "RESUMED"):
            self.gateway_session = True

    async def on_disconnect(self) -> None:
        self.gateway_session = False


async def run(settings: Settings, token: str) -> int:
    """Open the store, log in, start the workers (recovering what a previous run left in
    flight), and serve until stopped; returns the exit code (see ``AnimateBot.exit_code``).

    The token is checked (login) before Ray and the workers start, so a wrong token is
    refused in about a second rather than after the renderers came up.
    """
    apply_endpoints(settings.discord_api_base, settings.discord_gateway_url)
    lock = ProcessLock(settings.database_path)
    try:
        lock.acquire()  # one bot per database: a second one would render jobs twice
    except (DatabaseInUse, OSError) as exc:
        raise StartupError(str(exc)) from None
    try:
        check_storage(settings.database_path, settings.output_dir)
    except StorageUnusable as exc:
        lock.release()
        raise StartupError(str(exc)) from None
    try:
        return await _run(settings, token)
    finally:
        lock.release()


async def _run(settings: Settings, token: str) -> int:
    try:
        store = await Store.open(settings.database_path, settings.credit_policy())
    except Exception as exc:  # noqa: BLE001 - any failure here is a start-up failure
        raise StartupError(f"Cannot open the database at {settings.database_path}: {exc}") from None
    from pipeline.worker import (
        create_worker,  # the one place the bot reaches the workers' code
    )

    config = settings.jobs_config()
    dispatcher = Dispatcher(config, store, spawn=create_worker)
    jobs = JobService(store, dispatcher, config)
    try:
        bot = AnimateBot(settings, store, jobs)
        async with bot:
            try:
                await bot.login(token)  # also runs setup_hook: cogs, buttons, command sync
            except discord.LoginFailure:
                raise StartupError(
                    "Discord rejected DISCORD_TOKEN: reset the token on the Bot page of the "
                    "developer portal and put the new one in .env."
                ) from None
            except (aiohttp.ClientError, OSError) as exc:
                where = settings.discord_api_base or "Discord"
                raise StartupError(
                    f"Cannot reach {where} ({one_line(exc, 200)}); check the network"
                    + (" and DISCORD_API_BASE." if settings.discord_api_base else ".")
                ) from None
            try:
                recovery = await jobs.start()
            except RayUnavailable as exc:
                raise StartupError(str(exc)) from None
            if recovery.requeued or recovery.failed or recovery.undelivered:
                log.info(
                    "recovered: %d requeued, %d failed and refunded, %d awaiting delivery",
                    len(recovery.requeued), len(recovery.failed), len(recovery.undelivered),
                )
            bot.deliver_recovered(recovery)
            # What start-up built (modules, Ray, discord.py's caches) is never garbage: out
            # of the collector's reach, a full collection no longer stalls the event loop.
            gc.collect()
            gc.freeze()
            try:
                await bot.connect()
            except discord.PrivilegedIntentsRequired:
                raise StartupError("The bot asked for a privileged intent it is not allowed.") from None
        return bot.exit_code
    finally:
        await jobs.stop()
        await store.close()
