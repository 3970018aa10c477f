"""Everything the loopback Discord knows and everything it saw, for serving and asserting.

One `DiscordState` per server: the world (application, bot user, guilds, channels, members,
roles, DM channels), what the bot created (synced commands, messages with every version and
the bytes of every file) and what happened (every REST request, every interaction with each
callback attempt and its timing, gateway frames). Every change bumps a generation and wakes
waiters, so tests `await state.wait_for(predicate)` instead of sleeping.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from . import components as comp
from .clock import Clock
from .ids import Snowflakes, bot_token

T = TypeVar("T")

MiB = 1024 * 1024

# Permission bits (https://discord.com/developers/docs/topics/permissions).
ADMINISTRATOR = 1 << 3
ALL_PERMISSIONS = 8866461766385663
DEFAULT_EVERYONE_PERMISSIONS = (
    (1 << 0)  # create instant invite
    | (1 << 6)  # add reactions
    | (1 << 10)  # view channel
    | (1 << 11)  # send messages
    | (1 << 14)  # embed links
    | (1 << 15)  # attach files
    | (1 << 16)  # read message history
    | (1 << 18)  # use external emojis
    | (1 << 20)  # connect
    | (1 << 21)  # speak
    | (1 << 26)  # change nickname
    | (1 << 31)  # use application commands
    | (1 << 35)  # create public threads
    | (1 << 38)  # send messages in threads
)

# Message flags.
EPHEMERAL = 1 << 6
LOADING = 1 << 7
COMPONENTS_V2 = 1 << 15

# Channel types.
GUILD_TEXT = 0
DM = 1
GROUP_DM = 3

# Interaction types.
PING = 1
APPLICATION_COMMAND = 2
MESSAGE_COMPONENT = 3
AUTOCOMPLETE = 4
MODAL_SUBMIT = 5

# Interaction callback types.
CHANNEL_MESSAGE = 4
DEFERRED_CHANNEL_MESSAGE = 5
DEFERRED_UPDATE_MESSAGE = 6
UPDATE_MESSAGE = 7
AUTOCOMPLETE_RESULT = 8
MODAL = 9

ACK_WINDOW_S = 3.0
TOKEN_LIFETIME_S = 15 * 60.0


def upload_limit_for_tier(premium_tier: int) -> int:
    """Per-file upload limit a guild's boost tier gives (what `attachment_size_limit` says)."""
    return {2: 50 * MiB, 3: 100 * MiB}.get(premium_tier, 10 * MiB)


@dataclass(eq=False)
class User:
    id: int
    username: str
    global_name: str | None = None
    bot: bool = False
    avatar: str | None = None
    locale: str = "en-US"
    accepts_dms: bool = True
    """False: sending to this user's DM channel fails with 50007, as with closed DMs."""

    @property
    def mention(self) -> str:
        return f"<@{self.id}>"


@dataclass(eq=False)
class Role:
    id: int
    guild_id: int
    name: str
    permissions: int = 0
    position: int = 0
    managed: bool = False
    bot_id: int | None = None


@dataclass(eq=False)
class Member:
    user: User
    guild_id: int
    roles: list[int] = field(default_factory=list)
    nick: str | None = None
    joined_at: float = 0.0

    @property
    def id(self) -> int:
        return self.user.id

    @property
    def mention(self) -> str:
        return self.user.mention


@dataclass(eq=False)
class Channel:
    id: int
    type: int
    name: str | None = None
    guild_id: int | None = None
    nsfw: bool = False
    position: int = 0
    topic: str | None = None
    recipients: list[User] = field(default_factory=list)
    bot_can_send: bool = True
    """False: the bot lacks Send Messages here; posts fail with 50013 Missing Permissions."""
    last_message_id: int | None = None

    @property
    def is_dm(self) -> bool:
        return self.type == DM

    @property
    def mention(self) -> str:
        return f"<#{self.id}>"


@dataclass(eq=False)
class Guild:
    id: int
    name: str
    owner_id: int
    roles: dict[int, Role] = field(default_factory=dict)
    members: dict[int, Member] = field(default_factory=dict)
    channels: dict[int, Channel] = field(default_factory=dict)
    premium_tier: int = 0
    preferred_locale: str = "en-US"
    upload_limit: int | None = None
    """Overrides the tier's upload limit (bytes) when set."""
    features: list[str] = field(default_factory=list)

    @property
    def attachment_size_limit(self) -> int:
        return (
            self.upload_limit
            if self.upload_limit is not None
            else upload_limit_for_tier(self.premium_tier)
        )

    @property
    def everyone(self) -> Role:
        return self.roles[self.id]

    def permissions_of(self, user_id: int) -> int:
        """Guild-level permissions: owner and administrators get everything."""
        if user_id == self.owner_id:
            return ALL_PERMISSIONS
        member = self.members.get(user_id)
        value = self.everyone.permissions
        if member is not None:
            for role_id in member.roles:
                role = self.roles.get(role_id)
                if role is not None:
                    value |= role.permissions
        return ALL_PERMISSIONS if value & ADMINISTRATOR else value


@dataclass(eq=False)
class Application:
    id: int
    name: str
    owner: User
    team_members: list[User] = field(default_factory=list)
    """Non-empty: the application belongs to a team (owner is then the team's owner)."""
    flags: int = 0
    description: str = ""
    team_id: int | None = None


@dataclass(eq=False)
class Attachment:
    """A file on the loopback CDN: uploaded by a test (a member's photo) or by the bot."""

    id: int
    filename: str
    data: bytes
    channel_id: int
    issued_at: float
    content_type: str | None = None
    width: int | None = None
    height: int | None = None
    description: str | None = None
    ephemeral: bool = False
    title: str | None = None
    declared_size: int | None = None
    """What the payload claims (a forged interaction may lie); None: the true size."""

    @property
    def size(self) -> int:
        return len(self.data) if self.declared_size is None else self.declared_size


def shown_files(
    components: list[dict[str, Any]], attachments: list[Attachment], kind: int | None = None
) -> list[str]:
    """Filenames of the attachments a card shows (a V2 message shows no other), in order;
    `kind`: only those in a Thumbnail (11), MediaGallery (12) or File (13)."""
    by_id = {str(a.id): a.filename for a in attachments}
    return [
        by_id[str(media.get("attachment_id"))]
        for c, media in comp.media(components)
        if (kind is None or c.get("type") == kind) and str(media.get("attachment_id")) in by_id
    ]


@dataclass(frozen=True)
class MessageVersion:
    """One state of a message; `Message.history` keeps them all, oldest first."""

    content: str
    embeds: list[dict[str, Any]]
    components: list[dict[str, Any]]
    attachments: list[Attachment]
    flags: int
    at: float
    via: str

    def shown(self, kind: int | None = None) -> list[str]:
        return shown_files(self.components, self.attachments, kind)

    def texts(self) -> list[str]:
        return comp.texts(self.components)


@dataclass(eq=False)
class Message:
    id: int
    channel_id: int
    guild_id: int | None
    author: User
    content: str = ""
    embeds: list[dict[str, Any]] = field(default_factory=list)
    components: list[dict[str, Any]] = field(default_factory=list)
    attachments: list[Attachment] = field(default_factory=list)
    flags: int = 0
    type: int = 0
    tts: bool = False
    created_at: float = 0.0
    edited_at: float | None = None
    interaction_id: int | None = None
    """The interaction whose response or follow-up this is."""
    webhook_id: int | None = None
    application_id: int | None = None
    message_reference: dict[str, Any] | None = None
    mentions: list[int] = field(default_factory=list)
    via: str = "channel"
    """How it was created: 'channel' (bot REST), 'callback', 'followup', 'user' (test)."""
    deleted: bool = False
    deleted_at: float | None = None
    history: list[MessageVersion] = field(default_factory=list)

    @property
    def ephemeral(self) -> bool:
        return bool(self.flags & EPHEMERAL)

    @property
    def loading(self) -> bool:
        """A deferred response still showing "Bot is thinking…"."""
        return bool(self.flags & LOADING)

    @property
    def edits(self) -> list[MessageVersion]:
        """Earlier versions (every version except the current one)."""
        return self.history[:-1]

    def snapshot(self, at: float, via: str) -> None:
        self.history.append(
            MessageVersion(
                content=self.content,
                embeds=[dict(e) for e in self.embeds],
                components=list(self.components),
                attachments=list(self.attachments),
                flags=self.flags,
                at=at,
                via=via,
            )
        )

    def buttons(self) -> list[dict[str, Any]]:
        return comp.buttons(self.components)

    def button_labels(self) -> list[str]:
        return [b.get("label") or "" for b in self.buttons()]

    @property
    def card(self) -> bool:
        """Sent (or edited) as a Components V2 card."""
        return bool(self.flags & COMPONENTS_V2)

    def shown(self, kind: int | None = None) -> list[str]:
        return shown_files(self.components, self.attachments, kind)

    def texts(self) -> list[str]:
        """A card's text displays, in order."""
        return comp.texts(self.components)

    def file(self, filename: str | None = None) -> bytes:
        """Bytes of the attachment called `filename` (or the only one)."""
        if filename is None:
            if len(self.attachments) != 1:
                raise AssertionError(
                    f"message {self.id} has {len(self.attachments)} attachments, name one"
                )
            return self.attachments[0].data
        for attachment in self.attachments:
            if attachment.filename == filename:
                return attachment.data
        names = [a.filename for a in self.attachments]
        raise AssertionError(f"message {self.id} has no attachment {filename!r} (has {names})")

    def text(self) -> str:
        """Content plus embed titles/descriptions/fields: everything a reader sees as text."""
        parts = [self.content]
        for embed in self.embeds:
            parts += [str(embed.get(k, "")) for k in ("title", "description")]
            for f in embed.get("fields", []):
                parts += [str(f.get("name", "")), str(f.get("value", ""))]
            parts.append(str((embed.get("footer") or {}).get("text", "")))
        for c in comp.walk(self.components):
            if c.get("type") == 10:  # V2 text display
                parts.append(str(c.get("content", "")))
        return "\n".join(p for p in parts if p)


@dataclass(frozen=True)
class UploadedFile:
    """A file part of a multipart request, as the bot sent it."""

    field: str
    filename: str
    data: bytes
    content_type: str | None


@dataclass(eq=False)
class Callback:
    """One POST to /interactions/{id}/{token}/callback, accepted or not."""

    type: int
    data: dict[str, Any]
    files: list[UploadedFile]
    at: float
    """Loopback-clock time it arrived."""
    latency: float
    """Real seconds between dispatching the interaction and this callback arriving."""
    status: int = 0
    error_code: int | None = None

    @property
    def accepted(self) -> bool:
        return 200 <= self.status < 300


@dataclass(eq=False)
class Interaction:
    id: int
    token: str
    type: int
    payload: dict[str, Any]
    user: User
    guild_id: int | None
    channel_id: int
    created_at: float
    attachment_size_limit: int
    dispatched_monotonic: float = 0.0
    callbacks: list[Callback] = field(default_factory=list)
    response: Callback | None = None
    """The accepted acknowledgement."""
    original_message_id: int | None = None
    followup_ids: list[int] = field(default_factory=list)
    expired: bool = False
    """Missed the 3 s window: every later callback gets 10062."""

    @property
    def acknowledged(self) -> bool:
        return self.response is not None

    @property
    def response_type(self) -> int | None:
        return None if self.response is None else self.response.type

    @property
    def modal(self) -> dict[str, Any] | None:
        """The modal the bot answered with (callback type 9), if any."""
        if self.response is not None and self.response.type == MODAL:
            return self.response.data
        return None

    @property
    def choices(self) -> list[dict[str, Any]] | None:
        if self.response is not None and self.response.type == AUTOCOMPLETE_RESULT:
            return list(self.response.data.get("choices", []))
        return None

    @property
    def component_message_id(self) -> int | None:
        message = self.payload.get("message")
        return int(message["id"]) if message else None


@dataclass(eq=False)
class RecordedRequest:
    method: str
    path: str
    """Path below the API base, e.g. `/channels/1/messages`; CDN paths are absolute."""
    route: str
    """Route template, e.g. `POST /channels/{channel_id}/messages`."""
    query: dict[str, str]
    headers: dict[str, str]
    json: Any = None
    files: list[UploadedFile] = field(default_factory=list)
    status: int = 0
    response: Any = None
    at: float = 0.0
    monotonic: float = 0.0
    fault: str | None = None
    """Set when an injected fault answered instead of the handler."""


@dataclass(eq=False)
class GatewayFrame:
    """A frame the client sent over the gateway (op and data), with its session, if any."""

    op: int
    data: Any
    session_id: str | None
    at: float


class DiscordState:
    """The world and the record of what happened. Mutate only through the methods."""

    def __init__(
        self,
        clock: Clock,
        *,
        bot_name: str = "animate-bot",
        guild_name: str = "Loopback Guild",
        team: bool = False,
    ) -> None:
        self.clock = clock
        self.ids = Snowflakes(clock)
        self.users: dict[int, User] = {}
        self.guilds: dict[int, Guild] = {}
        self.channels: dict[int, Channel] = {}
        self.messages: dict[int, Message] = {}
        self.attachments: dict[int, Attachment] = {}
        self.interactions: dict[int, Interaction] = {}
        self.interactions_by_token: dict[str, Interaction] = {}
        self.commands: dict[int | None, list[dict[str, Any]]] = {None: []}
        """Synced application commands by guild id (None: global), as Discord stores them."""
        self.command_syncs: list[tuple[int | None, list[dict[str, Any]]]] = []
        self.requests: list[RecordedRequest] = []
        self.gateway_frames: list[GatewayFrame] = []
        self.reactions: list[tuple[int, int, str]] = []
        self._generation = 0
        self._changed = asyncio.Event()
        self.client_failure: BaseException | None = None
        """Set by whoever runs the client when it dies, so waits fail fast."""

        self.bot = self.add_user(bot_name, bot=True)
        self.token = bot_token(self.bot.id)
        self.app_owner = self.add_user("app-owner")
        team_members = [self.app_owner, self.add_user("app-developer")] if team else []
        self.application = Application(
            id=self.bot.id,
            name=bot_name,
            owner=self.app_owner,
            team_members=team_members,
            team_id=self.ids.next() if team else None,
            flags=(1 << 19) | (1 << 23),  # gateway message content (limited), app commands badge
        )
        self.guild = self.add_guild(guild_name)

    # ---- change notification -------------------------------------------------------

    def touch(self) -> None:
        """Record that something changed and wake every waiter."""
        self._generation += 1
        self._changed.set()
        self._changed = asyncio.Event()

    async def wait_for(
        self,
        predicate: Callable[[], T | None],
        timeout: float = 5.0,
        *,
        what: str = "condition",
    ) -> T:
        """Wait until `predicate()` is truthy and return its value; re-checked on every change."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            if self.client_failure is not None:
                raise AssertionError(
                    f"the Discord client died while waiting for {what}"
                ) from self.client_failure
            value = predicate()
            if value:
                return value
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError(
                    f"timed out after {timeout:g}s waiting for {what}\n{self.describe()}"
                )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)

    def describe(self, last: int = 8) -> str:
        """A short account of recent activity, appended to timeout errors."""
        lines = ["recent requests:"]
        for r in self.requests[-last:]:
            lines.append(f"  {r.status} {r.method} {r.path}" + (f" [{r.fault}]" if r.fault else ""))
        lines.append("recent messages:")
        for m in list(self.messages.values())[-last:]:
            state = " (deleted)" if m.deleted else ""
            files = [a.filename for a in m.attachments]
            text = m.text().replace("\n", " ")
            lines.append(f"  {m.id} via {m.via}{state}: {text[:100]!r} files={files}")
        lines.append("recent interactions:")
        for i in list(self.interactions.values())[-last:]:
            cbs = [(c.type, c.status, c.error_code) for c in i.callbacks]
            lines.append(f"  {i.id} type={i.type} callbacks={cbs}")
        return "\n".join(lines)

    # ---- world ---------------------------------------------------------------------

    def add_user(
        self, username: str, *, bot: bool = False, locale: str = "en-US", accepts_dms: bool = True
    ) -> User:
        user = User(
            id=self.ids.next(),
            username=username,
            global_name=None if bot else username.title(),
            bot=bot,
            locale=locale,
            accepts_dms=accepts_dms,
        )
        self.users[user.id] = user
        self.touch()
        return user

    def add_guild(
        self, name: str, *, owner: User | None = None, premium_tier: int = 0, with_bot: bool = True
    ) -> Guild:
        """A guild; `with_bot=False`: the bot is not in it (members may still use the app
        they installed to their account there: user-install interactions)."""
        guild_id = self.ids.next()
        owner = owner or self.add_user(f"{name.split()[0].lower()}-owner")
        guild = Guild(id=guild_id, name=name, owner_id=owner.id, premium_tier=premium_tier)
        guild.roles[guild_id] = Role(
            id=guild_id,
            guild_id=guild_id,
            name="@everyone",
            permissions=DEFAULT_EVERYONE_PERMISSIONS,
        )
        bot_role = Role(
            id=self.ids.next(),
            guild_id=guild_id,
            name=self.bot.username,
            position=1,
            permissions=DEFAULT_EVERYONE_PERMISSIONS | (1 << 13),
            managed=True,
            bot_id=self.bot.id,
        )
        guild.roles[bot_role.id] = bot_role
        self.guilds[guild_id] = guild
        self._add_member(guild, owner)
        if with_bot:
            self._add_member(guild, self.bot, roles=[bot_role.id])
        self.add_channel(guild, "general")
        return guild

    def _add_member(
        self, guild: Guild, user: User, roles: list[int] | None = None, nick: str | None = None
    ) -> Member:
        member = Member(
            user=user,
            guild_id=guild.id,
            roles=list(roles or []),
            nick=nick,
            joined_at=self.clock.time(),
        )
        guild.members[user.id] = member
        self.touch()
        return member

    def add_role(self, guild: Guild, name: str, permissions: int = 0) -> Role:
        role = Role(
            id=self.ids.next(),
            guild_id=guild.id,
            name=name,
            permissions=permissions,
            position=len(guild.roles),
        )
        guild.roles[role.id] = role
        self.touch()
        return role

    def add_member(
        self, guild: Guild, user: User, roles: list[Role] | None = None, nick: str | None = None
    ) -> Member:
        return self._add_member(guild, user, [r.id for r in roles or []], nick)

    def add_channel(
        self, guild: Guild, name: str, *, nsfw: bool = False, topic: str | None = None
    ) -> Channel:
        channel = Channel(
            id=self.ids.next(),
            type=GUILD_TEXT,
            name=name,
            guild_id=guild.id,
            nsfw=nsfw,
            position=len(guild.channels),
            topic=topic,
        )
        guild.channels[channel.id] = channel
        self.channels[channel.id] = channel
        self.touch()
        return channel

    def dm_channel(self, user: User) -> Channel:
        """The bot's DM channel with `user`, created on first use (as Discord does)."""
        for channel in self.channels.values():
            if channel.is_dm and channel.recipients and channel.recipients[0].id == user.id:
                return channel
        channel = Channel(id=self.ids.next(), type=DM, recipients=[user])
        self.channels[channel.id] = channel
        self.touch()
        return channel

    def group_dm(self, users: list[User]) -> Channel:
        """A group DM between users (the bot is not in it): only a user-installed app is there."""
        channel = Channel(id=self.ids.next(), type=GROUP_DM, recipients=list(users))
        self.channels[channel.id] = channel
        self.touch()
        return channel

    def bot_in(self, channel: Channel) -> bool:
        """Whether the bot is in the channel: its guild has the bot, or it is the bot's DM."""
        if channel.guild_id is not None:
            return self.bot.id in self.guilds[channel.guild_id].members
        return channel.type == DM

    def bot_guilds(self) -> list[Guild]:
        return [g for g in self.guilds.values() if self.bot.id in g.members]

    def guild_of(self, channel: Channel) -> Guild | None:
        return None if channel.guild_id is None else self.guilds[channel.guild_id]

    # ---- files and messages ---------------------------------------------------------

    def add_attachment(
        self,
        data: bytes,
        filename: str,
        *,
        channel_id: int,
        content_type: str | None = None,
        width: int | None = None,
        height: int | None = None,
        description: str | None = None,
        ephemeral: bool = False,
        declared_size: int | None = None,
    ) -> Attachment:
        attachment = Attachment(
            id=self.ids.next(),
            filename=filename,
            data=bytes(data),
            channel_id=channel_id,
            issued_at=self.clock.time(),
            content_type=content_type,
            width=width,
            height=height,
            description=description,
            ephemeral=ephemeral,
            declared_size=declared_size,
        )
        self.attachments[attachment.id] = attachment
        self.touch()
        return attachment

    def add_message(self, message: Message) -> Message:
        message.snapshot(message.created_at, message.via)
        self.messages[message.id] = message
        channel = self.channels.get(message.channel_id)
        if channel is not None:
            channel.last_message_id = message.id
        self.touch()
        return message

    def live_message(self, message_id: int) -> Message | None:
        message = self.messages.get(message_id)
        return None if message is None or message.deleted else message

    def find_messages(
        self, predicate: Callable[[Message], bool] | None = None, *, include_deleted: bool = False
    ) -> list[Message]:
        return [
            m
            for m in self.messages.values()
            if (include_deleted or not m.deleted) and (predicate is None or predicate(m))
        ]

    # ---- interactions and commands --------------------------------------------------

    def add_interaction(self, interaction: Interaction) -> Interaction:
        interaction.dispatched_monotonic = time.monotonic()
        self.interactions[interaction.id] = interaction
        self.interactions_by_token[interaction.token] = interaction
        self.touch()
        return interaction

    def all_commands(self) -> list[dict[str, Any]]:
        return [c for cmds in self.commands.values() for c in cmds]

    def record(self, request: RecordedRequest) -> None:
        self.requests.append(request)
        self.touch()
