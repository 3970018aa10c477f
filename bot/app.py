"""The Discord application: a `commands.Bot` handed its dependencies, one cog per file."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import discord
from discord import app_commands
from discord.ext import commands

from bot.delivery import Delivery
from bot.dispatch import Dispatcher, RayUnavailable
from bot.endpoints import apply_endpoints
from bot.settings import Settings
from bot.store import CreditPolicy, Job, Store
from bot.views import JobButton

log = logging.getLogger("bot")

EXTENSIONS: tuple[str, ...] = (
    "bot.cogs.animate",
    "bot.cogs.balance",
    "bot.cogs.credits",
    "bot.cogs.queue",
)
SYNC_META_KEY = "command_sync"


class StartupError(Exception):
    """Start-up cannot go on; the message is one line for the operator."""


def credit_policy(settings: Settings) -> CreditPolicy:
    return CreditPolicy(
        welcome=settings.welcome_credits,
        refill_amount=settings.refill_amount,
        refill_period=settings.refill_period_seconds,
        refill_cap=settings.refill_cap,
    )


class AnimateBot(commands.Bot):
    """Holds what every cog needs; knows nothing about models or GPUs itself."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        *,
        dispatcher: Dispatcher | None = None,
        undelivered: list[Job] | None = None,
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
        self.dispatcher = dispatcher
        self.delivery = Delivery(self)
        self.job_button_handler: Callable[[discord.Interaction, str, int], Awaitable[None]] | None = None
        self._undelivered = list(undelivered or [])

    async def setup_hook(self) -> None:
        self.tree.on_error = self.on_app_command_error
        self.add_dynamic_items(JobButton)
        for extension in EXTENSIONS:
            await self.load_extension(extension)
        if self.dispatcher is not None:
            self.dispatcher.subscribe(self.delivery.on_event)
        await self.sync_commands()
        if self._undelivered:
            self.deliver_recovered(self._undelivered)

    def deliver_recovered(self, jobs: list[Job]) -> None:
        """Clips finished before the last stop but never delivered: deliver them once the
        gateway is up (call after login)."""
        self._undelivered = []
        if jobs:
            self.loop.create_task(self._deliver_recovered(list(jobs)), name="deliver-recovered")

    async def _deliver_recovered(self, jobs: list[Job]) -> None:
        await self.wait_until_ready()
        for job in jobs:
            await self.delivery.deliver_soon(job.id)  # logs and retries; never raises

    async def close(self) -> None:
        await self.delivery.close()
        await super().close()

    def enabled_models(self) -> list[str]:
        """Models members can pick: what the workers actually loaded, else the settings."""
        loaded = getattr(self.dispatcher, "models", None)
        return list(loaded) if loaded else self.settings.models

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
                {"guilds": self.settings.guild_ids, "commands": definitions}, sort_keys=True
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

    async def on_app_command_error(
        self, interaction: discord.Interaction, error: app_commands.AppCommandError
    ) -> None:
        """One place that turns any command error into a clear, private answer."""
        original = getattr(error, "original", error)
        if isinstance(error, app_commands.CheckFailure):
            message = str(error) or "You can't use this command here."
        else:
            log.error("command %s failed", interaction.command and interaction.command.qualified_name, exc_info=original)
            message = "Something went wrong on our side; nothing was charged. Please try again."
        await reply_private(interaction, message)


async def reply_private(interaction: discord.Interaction, message: str, **kwargs: Any) -> None:
    """Answer ephemerally whether or not the interaction was already acknowledged."""
    try:
        if interaction.response.is_done():
            await interaction.followup.send(message, ephemeral=True, **kwargs)
        else:
            await interaction.response.send_message(message, ephemeral=True, **kwargs)
    except discord.HTTPException:
        log.warning("could not deliver an error message for interaction %s", interaction.id)


async def run(settings: Settings, token: str) -> None:
    """Open the store, log in, start the workers (recovering what a previous run left in
    flight), and serve until stopped.

    The token is checked (login) before Ray and the workers start, so a wrong token is
    refused in about a second rather than after the renderers came up.
    """
    apply_endpoints(settings.discord_api_base, settings.discord_gateway_url)
    try:
        store = await Store.open(settings.database_path, credit_policy(settings))
    except Exception as exc:  # noqa: BLE001 - any failure here is a start-up failure
        raise StartupError(f"Cannot open the database at {settings.database_path}: {exc}") from None
    dispatcher = Dispatcher(settings, store)
    try:
        bot = AnimateBot(settings, store, dispatcher=dispatcher)
        async with bot:
            try:
                await bot.login(token)  # also runs setup_hook: cogs, buttons, command sync
            except discord.LoginFailure:
                raise StartupError(
                    "Discord rejected DISCORD_TOKEN: reset the token on the Bot page of the "
                    "developer portal and put the new one in .env."
                ) from None
            try:
                recovery = await dispatcher.start()
            except RayUnavailable as exc:
                raise StartupError(str(exc)) from None
            if recovery.requeued or recovery.failed or recovery.undelivered:
                log.info(
                    "recovered: %d requeued, %d failed and refunded, %d awaiting delivery",
                    len(recovery.requeued), len(recovery.failed), len(recovery.undelivered),
                )
            bot.deliver_recovered(recovery.undelivered)
            try:
                await bot.connect()
            except discord.PrivilegedIntentsRequired:
                raise StartupError("The bot asked for a privileged intent it is not allowed.") from None
    finally:
        await dispatcher.stop()
        await store.close()
