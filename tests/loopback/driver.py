"""The test-side API: a loopback Discord a test starts, fills with members and channels,
points a real discord.py client at, and then acts on as Discord's users would.

    async with LoopbackDiscord() as discord_:
        async with discord_.running(bot):                  # real login, sync, gateway
            alice = discord_.add_member("alice")
            run = await discord_.slash("animate", {"image": photo, "prompt": "waves"}, user=alice)
            await run.original()                             # waits until it stops "thinking"
            clip = await run.message(lambda m: bool(m.attachments))
            assert clip.file("clip.mp4") == expected_bytes
            redo = await discord_.click(clip, "Reroll", user=alice)
            await redo.acknowledged()

Everything waits on the server's record of what happened, woken by each change (no
sleeping): `wait_for`, `wait_for_message` and the `InteractionHandle` methods. Timeouts
raise `TimeoutError` with an account of recent requests, messages and interactions; if the
client dies, waits fail at once with its exception.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import weakref
from collections.abc import AsyncIterator, Callable, Mapping
from types import TracebackType
from typing import Any, TypeVar

from . import components as comp
from . import payloads
from .invocations import (
    CommandUnavailable,
    Upload,
    build_options,
    check_available,
    find_command,
    interaction_payload,
    modal_submission,
    modal_uploads,
    store_upload,
)
from .server import LoopbackServer, RateLimitPolicy
from .state import (
    ADMINISTRATOR,
    APPLICATION_COMMAND,
    AUTOCOMPLETE,
    MESSAGE_COMPONENT,
    MODAL,
    MODAL_SUBMIT,
    Attachment,
    Callback,
    Channel,
    Guild,
    Interaction,
    Member,
    Message,
    RecordedRequest,
    Role,
    User,
)

T = TypeVar("T")

_RUNNING: weakref.WeakSet[LoopbackDiscord] = weakref.WeakSet()
"""Instances with a client running: discord.py's endpoints are process-wide, so one at a time."""

__all__ = [
    "CommandUnavailable",
    "InteractionHandle",
    "LoopbackDiscord",
    "RateLimitPolicy",
    "Upload",
]


class InteractionHandle:
    """One interaction a test started, and what the bot did with it."""

    def __init__(self, discord: LoopbackDiscord, record: Interaction) -> None:
        self.discord = discord
        self.record = record

    def __repr__(self) -> str:
        record = self.record
        return (
            f"<InteractionHandle id={self.id} type={record.type} response={record.response_type}>"
        )

    @property
    def id(self) -> int:
        return self.record.id

    @property
    def token(self) -> str:
        return self.record.token

    @property
    def payload(self) -> dict[str, Any]:
        """Exactly what was dispatched in INTERACTION_CREATE."""
        return self.record.payload

    @property
    def user(self) -> User:
        return self.record.user

    @property
    def callbacks(self) -> list[Callback]:
        """Every callback attempt, accepted or refused (e.g. 40060 on a second one)."""
        return self.record.callbacks

    @property
    def response(self) -> Callback | None:
        return self.record.response

    @property
    def messages(self) -> list[Message]:
        """The original response (if any) and follow-ups, in order, deleted ones excluded."""
        ids = (
            [self.record.original_message_id] if self.record.original_message_id else []
        ) + self.record.followup_ids
        found = [self.discord.state.messages.get(i) for i in ids]
        return [m for m in found if m is not None and not m.deleted]

    async def acknowledged(self, timeout: float = 5.0) -> Callback:
        """Wait for the accepted acknowledgement (any callback type)."""
        return await self.discord.wait_for(
            lambda: self.record.response, timeout, what=f"a response to interaction {self.id}"
        )

    async def original(self, timeout: float = 5.0, *, loaded: bool = True) -> Message:
        """The original response message; with `loaded`, only once it stopped "thinking"."""

        def ready() -> Message | None:
            message = self.discord.state.messages.get(self.record.original_message_id or 0)
            if message is None or message.deleted or (loaded and message.loading):
                return None
            return message

        return await self.discord.wait_for(
            ready, timeout, what=f"the original response of interaction {self.id}"
        )

    async def followup(self, index: int = 0, timeout: float = 5.0) -> Message:
        """The `index`-th follow-up that created a new message."""

        def ready() -> Message | None:
            if len(self.record.followup_ids) > index:
                return self.discord.state.messages[self.record.followup_ids[index]]
            return None

        return await self.discord.wait_for(
            ready, timeout, what=f"follow-up #{index} of interaction {self.id}"
        )

    async def message(
        self, predicate: Callable[[Message], bool] | None = None, timeout: float = 5.0
    ) -> Message:
        """First live, loaded message of this interaction (original or follow-up) matching
        `predicate`, re-checked after every edit: e.g. `lambda m: m.attachments`."""

        def ready() -> Message | None:
            for message in self.messages:
                if not message.loading and (predicate is None or predicate(message)):
                    return message
            return None

        return await self.discord.wait_for(
            ready, timeout, what=f"a matching message of interaction {self.id}"
        )

    async def modal(self, timeout: float = 5.0) -> dict[str, Any]:
        """The modal the bot opened (callback type 9)."""
        callback = await self.acknowledged(timeout)
        if callback.type != MODAL:
            raise AssertionError(
                f"interaction {self.id} was answered with type {callback.type}, not a modal"
            )
        return callback.data

    async def choices(self, timeout: float = 5.0) -> list[dict[str, Any]]:
        """Autocomplete choices the bot offered (callback type 8)."""
        await self.acknowledged(timeout)
        choices = self.record.choices
        if choices is None:
            raise AssertionError(
                f"interaction {self.id} was not answered with autocomplete choices"
            )
        return choices


class LoopbackDiscord:
    """A loopback Discord server plus the API tests use to drive it.

    `async with LoopbackDiscord(...) as discord:` starts it on its own port and stops it
    (and any client started with `running`) on exit. With `strict=True` (default) the
    exit fails the test if the bot called a REST route the loopback does not implement.
    """

    def __init__(
        self,
        *,
        bot_name: str = "animate-bot",
        guild_name: str = "Loopback Guild",
        team: bool = False,
        strict: bool = True,
        heartbeat_interval_ms: int = 41250,
        privileged_intents: int | None = None,
        shard_count: int = 1,
        cdn_ttl_s: float = 24 * 3600.0,
        rate_limits: RateLimitPolicy | None = None,
    ) -> None:
        options: dict[str, Any] = {}
        if privileged_intents is not None:
            options["privileged_intents"] = privileged_intents
        self.server = LoopbackServer(
            bot_name=bot_name,
            guild_name=guild_name,
            team=team,
            heartbeat_interval_ms=heartbeat_interval_ms,
            shard_count=shard_count,
            cdn_ttl_s=cdn_ttl_s,
            rate_limits=rate_limits,
            **options,
        )
        self.state = self.server.state
        self.clock = self.server.clock
        """Advance it to cross Discord's deadlines: `discord.clock.advance(16 * 60)`."""
        self.faults = self.server.faults
        """Inject 429s, 5xx, latency, expired interactions: see `faults.Faults`."""
        self.gateway = self.server.gateway
        """Disconnect, outage, invalidate_session, request_reconnect; session counters."""
        self.strict = strict
        self._saved_endpoints: tuple[Any, Any, Any] | None = None
        self._clients: list[tuple[Any, asyncio.Task[None]]] = []
        self.member = self.add_member("alice")
        """A plain member of the default guild, the default user for interactions."""

    # ---- lifecycle ---------------------------------------------------------------------

    async def __aenter__(self) -> LoopbackDiscord:
        await self.server.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            for client, task in reversed(self._clients):
                await self._stop_client(client, task)
            self._clients.clear()
            _RUNNING.discard(self)
            await self.server.stop()
        finally:
            self.restore_endpoints()
        if exc_type is None and self.strict and self.unhandled_requests:
            routes = sorted({r.route for r in self.unhandled_requests})
            raise AssertionError(
                f"the bot called REST routes the loopback does not implement: {routes}"
            )

    @property
    def token(self) -> str:
        return self.state.token

    @property
    def api_base(self) -> str:
        return self.server.api_base

    @property
    def gateway_url(self) -> str:
        return self.server.gateway_url

    @property
    def cdn_base(self) -> str:
        return self.server.base_url

    def env(self) -> dict[str, str]:
        """Environment for starting the bot application itself against this server."""
        return {
            "DISCORD_TOKEN": self.token,
            "DISCORD_API_BASE": self.api_base,
            "DISCORD_GATEWAY_URL": self.gateway_url,
        }

    def apply_endpoints(self) -> None:
        """Point discord.py (process-wide globals) here via `bot.endpoints`; undone on exit."""
        import discord
        import discord.asset

        from bot.endpoints import apply_endpoints

        if self._saved_endpoints is None:
            self._saved_endpoints = (
                discord.http.Route.BASE,
                discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY,
                discord.asset.Asset.BASE,
            )
        apply_endpoints(self.api_base, self.gateway_url, cdn_base=self.cdn_base)

    def restore_endpoints(self) -> None:
        if self._saved_endpoints is None:
            return
        import discord
        import discord.asset

        (
            discord.http.Route.BASE,
            discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY,
            discord.asset.Asset.BASE,
        ) = self._saved_endpoints
        self._saved_endpoints = None

    @contextlib.asynccontextmanager
    async def running(
        self, client: Any, *, timeout: float = 10.0, wait_ready: bool = False
    ) -> AsyncIterator[Any]:
        """Start a discord.py client against this server for the block; close it after.

        Returns once the gateway session is up (READY and GUILD_CREATE sent; `setup_hook`,
        where bots sync commands, has run by then). `wait_ready=True` also waits for the
        client's own `on_ready`, which discord.py delays by `guild_ready_timeout` (2 s).
        If the client dies, pending waits fail at once with its exception.
        """
        busy = [other for other in _RUNNING if other is not self]
        if busy:
            raise RuntimeError(
                "another LoopbackDiscord has a client running in this process: discord.py keeps "
                "its endpoints in process-wide globals, so run one at a time (xdist runs "
                "separate processes)"
            )
        self.apply_endpoints()
        task = asyncio.create_task(client.start(self.token), name="loopback-discord-client")
        task.add_done_callback(self._client_done)
        self._clients.append((client, task))
        _RUNNING.add(self)
        try:
            await self.wait_until_connected(timeout)
            if wait_ready:
                await asyncio.wait_for(client.wait_until_ready(), timeout)
            yield client
        finally:
            if (client, task) in self._clients:
                self._clients.remove((client, task))
                await self._stop_client(client, task)
            if not self._clients:
                _RUNNING.discard(self)

    def _client_done(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            self.state.client_failure = task.exception()
            self.state.touch()

    async def _stop_client(self, client: Any, task: asyncio.Task[None]) -> None:
        await client.close()
        try:
            await asyncio.wait_for(asyncio.shield(task), 5.0)
        except TimeoutError:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        except Exception:
            pass  # already reported through state.client_failure

    async def wait_until_connected(self, timeout: float = 10.0) -> None:
        """Wait for a live gateway session that has received READY and GUILD_CREATE."""
        await self.wait_for(
            lambda: self.gateway.live_sessions(),
            timeout,
            what="a gateway session (is the bot running?)",
        )

    # ---- the world ----------------------------------------------------------------------

    @property
    def guild(self) -> Guild:
        """The default guild (the bot is in it; so are `member`, the owner and app owner)."""
        return self.state.guild

    @property
    def general(self) -> Channel:
        """#general of the default guild: where interactions happen unless told otherwise."""
        return next(iter(self.state.guild.channels.values()))

    @property
    def bot_user(self) -> User:
        return self.state.bot

    @property
    def app_owner(self) -> User:
        """The application's owner (a bot operator by design.md), not a guild member by default."""
        return self.state.app_owner

    @property
    def guild_owner(self) -> Member:
        return self.guild.members[self.guild.owner_id]

    def add_user(self, username: str, *, locale: str = "en-US", accepts_dms: bool = True) -> User:
        """A Discord user outside any guild (for DMs); `accepts_dms=False` → 50007 on DM."""
        return self.state.add_user(username, locale=locale, accepts_dms=accepts_dms)

    def add_role(
        self, name: str, *, permissions: int = 0, admin: bool = False, guild: Guild | None = None
    ) -> Role:
        guild = guild or self.guild
        role = self.state.add_role(guild, name, permissions | (ADMINISTRATOR if admin else 0))
        self._announce(
            "GUILD_ROLE_CREATE", {"guild_id": str(guild.id), "role": payloads.role(role)}, guild.id
        )
        return role

    def add_member(
        self,
        name: str | User,
        *,
        roles: list[Role] | None = None,
        admin: bool = False,
        owner: bool = False,
        nick: str | None = None,
        guild: Guild | None = None,
        locale: str = "en-US",
    ) -> Member:
        """A guild member; `admin=True` gives an Administrator role, `owner=True` the guild."""
        guild = guild or self.guild
        user = name if isinstance(name, User) else self.state.add_user(name, locale=locale)
        roles = list(roles or [])
        if admin:
            roles.append(self.add_role(f"{user.username}-admin", admin=True, guild=guild))
        member = self.state.add_member(guild, user, roles, nick)
        if owner:
            guild.owner_id = user.id
        payload = {**payloads.member(self.state, member), "guild_id": str(guild.id)}
        self._announce("GUILD_MEMBER_ADD", payload, guild.id)
        return member

    def add_channel(
        self, name: str, *, nsfw: bool = False, topic: str | None = None, guild: Guild | None = None
    ) -> Channel:
        guild = guild or self.guild
        channel = self.state.add_channel(guild, name, nsfw=nsfw, topic=topic)
        self._announce("CHANNEL_CREATE", payloads.channel(channel), guild.id)
        return channel

    def add_guild(
        self, name: str, *, premium_tier: int = 0, owner: User | None = None, with_bot: bool = True
    ) -> Guild:
        """Another guild the bot is in (GUILD_CREATE is dispatched if the bot is connected);
        `with_bot=False`: one it is not in, where members use the app they installed
        themselves (their interactions there are user-install ones)."""
        guild = self.state.add_guild(name, owner=owner, premium_tier=premium_tier, with_bot=with_bot)
        if with_bot:
            self._announce(
                "GUILD_CREATE", payloads.guild_create(self.state, guild, join=True), guild.id
            )
        return guild

    def group_dm(self, *users: User | Member) -> Channel:
        """A group DM of these users; the bot is not in it."""
        return self.state.group_dm([u.user if isinstance(u, Member) else u for u in users])

    def dm_channel(self, user: User | Member) -> Channel:
        return self.state.dm_channel(user.user if isinstance(user, Member) else user)

    def upload(
        self, data: bytes | Upload, filename: str | None = None, *, channel: Channel | None = None
    ) -> Attachment:
        """Put a file on the CDN as a user's attachment; pass the result as an option value."""
        value = Upload(bytes(data), filename) if isinstance(data, (bytes, bytearray)) else data
        return store_upload(self.state, value, channel_id=(channel or self.general).id)

    def _announce(self, event: str, data: dict[str, Any], guild_id: int) -> None:
        """Dispatch a world change made from sync code, ordered before anything sent after it
        (never about a guild the bot is not in: Discord does not tell it)."""
        guild = self.state.guilds.get(guild_id)
        if guild is not None and self.state.bot.id not in guild.members:
            return
        if self.gateway.sessions:
            self.gateway.dispatch_soon(event, data, guild_id=guild_id)

    async def dispatch(self, event: str, data: Any, *, guild_id: int | None = None) -> int:
        """Send any gateway event to the bot; returns how many sessions got it (or buffered it)."""
        return await self.gateway.dispatch(event, data, guild_id=guild_id)

    # ---- commands -------------------------------------------------------------------------

    def commands(self, guild: Guild | None = None) -> list[dict[str, Any]]:
        """Commands the bot synced: global ones, or those synced to `guild`."""
        return list(self.state.commands.get(guild.id if guild else None, []))

    async def wait_for_commands(
        self, *names: str, timeout: float = 10.0, guild: Guild | None = None
    ) -> list[dict[str, Any]]:
        """Wait until the named commands are synced (globally, or to `guild`)."""
        scope = guild.id if guild else None

        def synced() -> list[dict[str, Any]] | None:
            have = {c["name"]: c for c in self.state.commands.get(scope, [])}
            return [have[n] for n in names] if all(n in have for n in names) else None

        return await self.wait_for(synced, timeout, what=f"commands {names} to be synced")

    # ---- acting as users --------------------------------------------------------------------

    async def slash(
        self,
        command: str,
        options: Mapping[str, Any] | None = None,
        *,
        user: User | Member | None = None,
        channel: Channel | None = None,
        locale: str | None = None,
        attachment_size_limit: int | None = None,
        timeout: float = 10.0,
    ) -> InteractionHandle:
        """Type a slash command: `await discord.slash("credits grant", {"user": bob, "amount": 5})`.

        `command` is the name, plus subcommand group/subcommand separated by spaces (a
        leading "/" is fine). Options are checked against what the bot synced; attachment
        options take bytes, an `Upload` or an `Attachment` from `upload()`; user options a
        User or Member. Guild channels send `member`, DM channels `user`.
        """
        record = await self._prepare_slash(
            command, options, user=user, channel=channel, locale=locale,
            attachment_size_limit=attachment_size_limit, timeout=timeout,
        )
        return await self._deliver(record)

    async def slash_burst(
        self,
        command: str,
        calls: list[tuple[User | Member, Mapping[str, Any]]],
        *,
        channel: Channel | None = None,
        timeout: float = 10.0,
    ) -> list[InteractionHandle]:
        """Many users type `command` at the same moment (benchmarks of acknowledgement).

        Every payload is built first and then all are dispatched back to back, so a measured
        latency is the bot's and not the time the driver spent preparing later interactions.
        """
        records = [
            await self._prepare_slash(command, options, user=who, channel=channel, timeout=timeout)
            for who, options in calls
        ]
        return [await self._deliver(record) for record in records]

    async def _prepare_slash(
        self,
        command: str,
        options: Mapping[str, Any] | None,
        *,
        user: User | Member | None = None,
        channel: Channel | None = None,
        locale: str | None = None,
        attachment_size_limit: int | None = None,
        timeout: float = 10.0,
    ) -> Interaction:
        name, *path = command.lstrip("/").split()
        target_user, target_channel = self._who_where(user, channel)
        await self.wait_until_connected(timeout)
        record = await self._command(name, 1, target_user, target_channel, timeout)
        options_list, resolved = build_options(
            self.state, self.server.cdn, record, path, options or {}, target_channel
        )
        data: dict[str, Any] = {"id": record["id"], "name": record["name"], "type": 1}
        if options_list:
            data["options"] = options_list
        if resolved:
            data["resolved"] = resolved
        if record.get("guild_id"):
            data["guild_id"] = record["guild_id"]
        return self._build(
            APPLICATION_COMMAND,
            data,
            target_user,
            target_channel,
            locale=locale,
            attachment_size_limit=attachment_size_limit,
        )

    async def autocomplete(
        self,
        command: str,
        focused: str,
        options: Mapping[str, Any],
        *,
        user: User | Member | None = None,
        channel: Channel | None = None,
        timeout: float = 10.0,
    ) -> list[dict[str, Any]]:
        """Type into an autocomplete option; returns the choices the bot offered.

        `options` holds what is typed so far, including the partial text of `focused`.
        """
        name, *path = command.lstrip("/").split()
        target_user, target_channel = self._who_where(user, channel)
        await self.wait_until_connected(timeout)
        record = await self._command(name, 1, target_user, target_channel, timeout)
        options_list, resolved = build_options(
            self.state, self.server.cdn, record, path, options, target_channel, focused=focused
        )
        data: dict[str, Any] = {
            "id": record["id"],
            "name": record["name"],
            "type": 1,
            "options": options_list,
        }
        if resolved:
            data["resolved"] = resolved
        if record.get("guild_id"):
            data["guild_id"] = record["guild_id"]
        handle = await self._send(AUTOCOMPLETE, data, target_user, target_channel)
        return await handle.choices(timeout)

    async def user_command(
        self,
        name: str,
        target: User | Member,
        *,
        user: User | Member | None = None,
        channel: Channel | None = None,
        timeout: float = 10.0,
    ) -> InteractionHandle:
        """Run a user context-menu command on `target`."""
        target_user = target.user if isinstance(target, Member) else target
        actor, where = self._who_where(user, channel)
        await self.wait_until_connected(timeout)
        record = await self._command(name, 2, actor, where, timeout)
        resolved = {"users": {str(target_user.id): payloads.user(target_user)}}
        guild = self.state.guild_of(where)
        if guild is not None and target_user.id in guild.members:
            resolved["members"] = {
                str(target_user.id): payloads.member(
                    self.state, guild.members[target_user.id], with_user=False
                )
            }
        data = {
            "id": record["id"],
            "name": name,
            "type": 2,
            "target_id": str(target_user.id),
            "resolved": resolved,
        }
        return await self._send(APPLICATION_COMMAND, data, actor, where)

    async def message_command(
        self,
        name: str,
        target: Message,
        *,
        user: User | Member | None = None,
        timeout: float = 10.0,
    ) -> InteractionHandle:
        """Run a message context-menu command on `target` (in the message's channel)."""
        actor, where = self._who_where(user, self.state.channels[target.channel_id])
        await self.wait_until_connected(timeout)
        record = await self._command(name, 3, actor, where, timeout)
        resolved = {
            "messages": {str(target.id): payloads.message(self.state, self.server.cdn, target)}
        }
        data = {
            "id": record["id"],
            "name": name,
            "type": 3,
            "target_id": str(target.id),
            "resolved": resolved,
        }
        return await self._send(APPLICATION_COMMAND, data, actor, where)

    async def click(
        self,
        message: Message | int,
        label: str | None = None,
        *,
        custom_id: str | None = None,
        user: User | Member | None = None,
    ) -> InteractionHandle:
        """Click a button on `message`, found by its visible `label` (or by `custom_id`).

        Disabled and link buttons cannot be clicked, as in the Discord client. The clicking
        user defaults to whoever can see the message (the invoker, for ephemeral ones).
        """
        target = self._message(message)
        found = [
            b
            for b in target.buttons()
            if (label is None or b.get("label") == label)
            and (custom_id is None or b.get("custom_id") == custom_id)
        ]
        if len(found) != 1:
            wanted = f"label={label!r} custom_id={custom_id!r}"
            raise AssertionError(
                f"{len(found)} buttons match {wanted} on message {target.id}; "
                f"labels: {target.button_labels()}"
            )
        button = found[0]
        if button.get("disabled"):
            raise AssertionError(f"button {button.get('label')!r} is disabled")
        if button.get("style") in (comp.LINK_STYLE, comp.PREMIUM_STYLE):
            kind = "a link/premium button"
            raise AssertionError(f"{button.get('label')!r} is {kind}: Discord sends no interaction")
        data = {"custom_id": button["custom_id"], "component_type": comp.BUTTON}
        if button.get("id") is not None:
            data["id"] = button["id"]
        return await self._component(target, data, user)

    async def select(
        self,
        message: Message | int,
        values: list[Any],
        *,
        custom_id: str | None = None,
        placeholder: str | None = None,
        user: User | Member | None = None,
    ) -> InteractionHandle:
        """Pick `values` in a select menu on `message` (the only one, or by id/placeholder)."""
        target = self._message(message)
        found = [
            s
            for s in comp.selects(target.components)
            if (custom_id is None or s.get("custom_id") == custom_id)
            and (placeholder is None or s.get("placeholder") == placeholder)
        ]
        if len(found) != 1:
            raise AssertionError(f"{len(found)} selects match on message {target.id}")
        menu = found[0]
        if menu.get("disabled"):
            raise AssertionError(f"select {menu.get('custom_id')!r} is disabled")
        low, high = menu.get("min_values", 1), menu.get("max_values", 1)
        if not low <= len(values) <= high:
            raise AssertionError(f"select {menu.get('custom_id')!r} takes {low}..{high} values")
        data: dict[str, Any] = {"custom_id": menu["custom_id"], "component_type": menu["type"]}
        if menu["type"] == comp.STRING_SELECT:
            allowed = [o["value"] for o in menu.get("options") or []]
            if any(v not in allowed for v in values):
                raise AssertionError(f"select {menu['custom_id']!r} offers {allowed}, not {values}")
            data["values"] = list(values)
        else:
            data["values"] = [str(getattr(v, "id", v)) for v in values]
            users = [
                v.user if isinstance(v, Member) else v
                for v in values
                if isinstance(v, (User, Member))
            ]
            if users:
                data["resolved"] = {"users": {str(u.id): payloads.user(u) for u in users}}
        return await self._component(target, data, user)

    async def submit_modal(
        self,
        source: InteractionHandle,
        values: Mapping[str, Any],
        *,
        user: User | Member | None = None,
        timeout: float = 5.0,
    ) -> InteractionHandle:
        """Fill in and submit the modal the bot opened in answer to `source`.

        `values` is keyed by field label or custom_id; required fields and lengths are
        checked as the Discord client does. A file-upload field takes an `Upload` (or bytes,
        or a list of them): uploaded as Discord does, resolved in the submission.
        """
        modal = await source.modal(timeout)
        channel = self.state.channels[source.record.channel_id]
        values, resolved = modal_uploads(self.state, self.server.cdn, modal, values, channel)
        data = {"custom_id": modal["custom_id"], "components": modal_submission(modal, values)}
        if resolved:
            data["resolved"] = resolved
        actor = self._user(user) if user is not None else source.user
        message = self.state.live_message(source.record.component_message_id or 0)
        return await self._send(MODAL_SUBMIT, data, actor, channel, message=message)

    async def post_message(
        self,
        channel: Channel,
        content: str = "",
        *,
        author: User | Member | None = None,
        files: list[bytes | Upload] | None = None,
    ) -> Message:
        """A user writes a message (MESSAGE_CREATE reaches the bot per its intents)."""
        writer = self._user(author) if author is not None else self.member.user
        attachments = [
            store_upload(self.state, f, channel_id=channel.id, ephemeral=False) for f in files or []
        ]
        message = Message(
            id=self.state.ids.next(),
            channel_id=channel.id,
            guild_id=channel.guild_id,
            author=writer,
            content=content,
            attachments=attachments,
            created_at=self.clock.time(),
            via="user",
        )
        self.state.add_message(message)
        await self.server.messaging.announce("MESSAGE_CREATE", message)
        return message

    async def delete_message(self, message: Message | int) -> None:
        """A moderator deletes a message (the bot's later edits of it get 10008)."""
        await self.server.messaging.delete(self._message(message))

    # ---- observing ------------------------------------------------------------------------

    async def wait_for(
        self, predicate: Callable[[], T | None], timeout: float = 5.0, *, what: str = "condition"
    ) -> T:
        """Wait until `predicate()` returns something truthy (re-checked on every change)."""
        return await self.state.wait_for(predicate, timeout, what=what)

    def messages(
        self, channel: Channel | None = None, *, include_deleted: bool = False
    ) -> list[Message]:
        """Messages in creation order (bot's and users'), optionally of one channel."""
        return self.state.find_messages(
            lambda m: channel is None or m.channel_id == channel.id, include_deleted=include_deleted
        )

    async def wait_for_message(
        self,
        predicate: Callable[[Message], bool] | None = None,
        *,
        channel: Channel | None = None,
        timeout: float = 5.0,
    ) -> Message:
        """First live, loaded bot message (optionally in `channel`) matching `predicate`."""

        def found() -> Message | None:
            for message in self.messages(channel):
                if (
                    message.author.id == self.state.bot.id
                    and not message.loading
                    and (predicate is None or predicate(message))
                ):
                    return message
            return None

        return await self.wait_for(found, timeout, what="a matching bot message")

    def requests(self, pattern: str = "*") -> list[RecordedRequest]:
        """Recorded requests whose `"METHOD /path"` or route template matches the glob."""
        glob = pattern if not pattern.startswith("/") else f"* {pattern}"
        return [
            r
            for r in self.state.requests
            if fnmatch.fnmatchcase(f"{r.method} {r.path}", glob)
            or fnmatch.fnmatchcase(r.route, glob)
        ]

    @property
    def unhandled_requests(self) -> list[RecordedRequest]:
        return [r for r in self.state.requests if r.fault == "unhandled"]

    @property
    def interactions(self) -> list[Interaction]:
        return list(self.state.interactions.values())

    # ---- internals -------------------------------------------------------------------------

    def _user(self, who: User | Member) -> User:
        return who.user if isinstance(who, Member) else who

    def _who_where(
        self, user: User | Member | None, channel: Channel | None
    ) -> tuple[User, Channel]:
        return (self._user(user) if user is not None else self.member.user), (
            channel or self.general
        )

    def _message(self, message: Message | int) -> Message:
        target = self.state.messages.get(message if isinstance(message, int) else message.id)
        if target is None or target.deleted:
            raise AssertionError(
                f"message {getattr(message, 'id', message)} does not exist (deleted?)"
            )
        return target

    async def _command(
        self, name: str, kind: int, user: User, channel: Channel, timeout: float
    ) -> dict[str, Any]:
        guild_id = channel.guild_id

        def synced() -> dict[str, Any] | None:
            try:
                return find_command(self.state, name, guild_id=guild_id, kind=kind)
            except CommandUnavailable:
                return None

        if self.state.command_syncs:  # the bot has synced: what is missing now is missing
            record = find_command(self.state, name, guild_id=guild_id, kind=kind)
        else:
            try:
                record = await self.wait_for(synced, timeout, what=f"command {name!r} to be synced")
            except TimeoutError:
                find_command(
                    self.state, name, guild_id=guild_id, kind=kind
                )  # raises CommandUnavailable with details
                raise
        check_available(self.state, record, user, channel)
        return record

    async def _component(
        self, target: Message, data: dict[str, Any], user: User | Member | None
    ) -> InteractionHandle:
        if user is not None:
            actor = self._user(user)
        elif target.ephemeral and target.interaction_id in self.state.interactions:
            actor = self.state.interactions[target.interaction_id].user
        else:
            actor = self.member.user
        if target.ephemeral and target.interaction_id in self.state.interactions:
            owner = self.state.interactions[target.interaction_id].user
            if actor.id != owner.id:
                raise AssertionError(
                    f"{actor.username} cannot see an ephemeral message shown to {owner.username}"
                )
        return await self._send(
            MESSAGE_COMPONENT, data, actor, self.state.channels[target.channel_id], message=target
        )

    async def _send(
        self,
        kind: int,
        data: dict[str, Any],
        user: User,
        channel: Channel,
        *,
        message: Message | None = None,
        locale: str | None = None,
        attachment_size_limit: int | None = None,
    ) -> InteractionHandle:
        record = self._build(
            kind, data, user, channel, message=message, locale=locale,
            attachment_size_limit=attachment_size_limit,
        )
        return await self._deliver(record)

    def _build(
        self,
        kind: int,
        data: dict[str, Any],
        user: User,
        channel: Channel,
        *,
        message: Message | None = None,
        locale: str | None = None,
        attachment_size_limit: int | None = None,
    ) -> Interaction:
        return interaction_payload(
            self.state,
            self.server.cdn,
            kind=kind,
            data=data,
            user=user,
            channel=channel,
            message=message,
            locale=locale,
            attachment_size_limit=attachment_size_limit,
        )

    async def _deliver(self, record: Interaction) -> InteractionHandle:
        self.state.add_interaction(record)
        delivered = await self.gateway.dispatch(
            "INTERACTION_CREATE", record.payload, guild_id=record.guild_id
        )
        if not delivered:
            raise AssertionError("no gateway session took the interaction: is the bot connected?")
        return InteractionHandle(self, record)
