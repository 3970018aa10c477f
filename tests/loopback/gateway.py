"""Gateway v10 over a real websocket: HELLO, heartbeats, IDENTIFY → READY + GUILD_CREATE,
RESUME with replay of missed events, dispatch with sequence numbers, and the failures a
bot must survive (server close codes, dropped TCP, invalid sessions, RECONNECT).

discord.py connects with `?v=10&encoding=json&compress=zlib-stream`; with zlib-stream every
frame is one deflate stream flushed with Z_SYNC_FLUSH, as Discord sends it. Sessions
outlive connections: events dispatched while the bot is disconnected are buffered and
replayed when it resumes, which is how a test proves RESUME works (not a new IDENTIFY).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import zlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

from . import payloads
from .cdn import Cdn
from .ids import session_id as new_session_id
from .state import DiscordState, GatewayFrame

DISPATCH, HEARTBEAT, IDENTIFY, PRESENCE_UPDATE, VOICE_STATE_UPDATE = 0, 1, 2, 3, 4
RESUME, RECONNECT, REQUEST_GUILD_MEMBERS, INVALID_SESSION, HELLO, HEARTBEAT_ACK = 6, 7, 8, 9, 10, 11

GUILDS = 1 << 0
GUILD_MEMBERS = 1 << 1
GUILD_PRESENCES = 1 << 8
GUILD_MESSAGES = 1 << 9
GUILD_MESSAGE_REACTIONS = 1 << 10
DIRECT_MESSAGES = 1 << 12
DIRECT_MESSAGE_REACTIONS = 1 << 13
MESSAGE_CONTENT = 1 << 15
PRIVILEGED_INTENTS = GUILD_MEMBERS | GUILD_PRESENCES | MESSAGE_CONTENT

_GUILD_EVENTS = ("GUILD_UPDATE", "GUILD_DELETE", "GUILD_ROLE_", "CHANNEL_", "THREAD_")
_MESSAGE_EVENTS = ("MESSAGE_CREATE", "MESSAGE_UPDATE", "MESSAGE_DELETE")


@dataclass(eq=False)
class Connection:
    """One websocket; `session` is set once it has identified or resumed."""

    ws: web.WebSocketResponse
    transport: Any
    compress: str | None
    path: str
    session: Session | None = None
    server_closed: bool = False
    """The server ended it (so a 1000 close code is not the client ending its session)."""
    _zlib: Any = None

    def __post_init__(self) -> None:
        if self.compress == "zlib-stream":
            self._zlib = zlib.compressobj()

    @property
    def live(self) -> bool:
        return not self.ws.closed

    async def send(self, payload: dict[str, Any]) -> None:
        text = json.dumps(payload, separators=(",", ":"))
        if self._zlib is not None:
            await self.ws.send_bytes(
                self._zlib.compress(text.encode()) + self._zlib.flush(zlib.Z_SYNC_FLUSH)
            )
        else:
            await self.ws.send_str(text)

    async def close(self, code: int, *, drop: bool = False) -> None:
        if drop:
            if self.transport is not None:
                self.transport.abort()
            return
        with contextlib.suppress(ConnectionError, RuntimeError, asyncio.TimeoutError):
            await asyncio.wait_for(self.ws.close(code=code, message=b"loopback"), 2.0)


@dataclass(eq=False)
class Session:
    id: str
    intents: int
    shard: tuple[int, int] | None
    seq: int = 0
    sent_seq: int = 0
    buffer: list[dict[str, Any]] = field(default_factory=list)
    connection: Connection | None = None
    invalid: bool = False
    ready: bool = False
    """READY and every GUILD_CREATE have been sent."""
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def owns(self, guild_id: int | None) -> bool:
        if self.shard is None:
            return True
        shard_id, count = self.shard
        if guild_id is None:
            return shard_id == 0
        return (guild_id >> 22) % count == shard_id

    def enqueue(self, event: str, data: Any) -> None:
        """Number the event and keep it for sending and replay (order = call order)."""
        self.seq += 1
        self.buffer.append({"op": DISPATCH, "t": event, "s": self.seq, "d": data})

    async def flush(self) -> None:
        """Send what the attached connection has not seen yet, in sequence order."""
        async with self.lock:
            await self._send_pending()

    async def emit(self, event: str, data: Any) -> None:
        self.enqueue(event, data)
        await self.flush()

    async def _send_pending(self) -> None:
        connection = self.connection
        if connection is None or not connection.live:
            return
        for frame in self.buffer[self._first_unsent() :]:
            try:
                await connection.send(frame)
            except (ConnectionError, RuntimeError):
                if self.connection is connection:
                    self.connection = None
                return
            self.sent_seq = frame["s"]

    def _first_unsent(self) -> int:
        # Frames are buffered in increasing `s`: find the first one after `sent_seq`.
        for index in range(len(self.buffer) - 1, -1, -1):
            if self.buffer[index]["s"] <= self.sent_seq:
                return index + 1
        return 0


class Gateway:
    """The gateway endpoint and its sessions. Reach it as `discord.gateway`."""

    def __init__(
        self,
        state: DiscordState,
        cdn: Cdn,
        *,
        heartbeat_interval_ms: int = 41250,
        privileged_intents: int = PRIVILEGED_INTENTS,
        shard_count: int = 1,
    ) -> None:
        self._state = state
        self._cdn = cdn
        self.heartbeat_interval_ms = heartbeat_interval_ms
        self.privileged_intents = privileged_intents
        """Privileged intents the application is approved for; asking for others closes 4014."""
        self.shard_count = shard_count
        self.url = ""
        self.resume_url = ""
        self.sessions: dict[str, Session] = {}
        self.connections: set[Connection] = set()
        self.identify_count = 0
        self.resume_count = 0
        self.connects: list[tuple[str, dict[str, str]]] = []
        """(path, query) of every websocket connection: `/gateway` or `/gateway/resume`."""
        self._open = asyncio.Event()
        self._open.set()
        self._handlers: set[asyncio.Task[Any]] = set()
        self._flushes: set[asyncio.Task[None]] = set()

    # ---- the websocket endpoint -----------------------------------------------------

    def routes(self) -> list[web.RouteDef]:
        return [web.get("/gateway", self.handle), web.get("/gateway/resume", self.handle)]

    async def handle(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(max_msg_size=0, autoping=True)
        await ws.prepare(request)
        connection = Connection(ws, request.transport, request.query.get("compress"), request.path)
        self.connects.append((request.path, dict(request.query)))
        self.connections.add(connection)
        task = asyncio.current_task()
        if task is not None:
            self._handlers.add(task)
        try:
            if request.query.get("v") != "10":
                await connection.close(4012)
                return ws
            if request.query.get("encoding", "json") != "json":
                await connection.close(4002)
                return ws
            await connection.send(
                {
                    "op": HELLO,
                    "s": None,
                    "t": None,
                    "d": {"heartbeat_interval": self.heartbeat_interval_ms, "_trace": ["loopback"]},
                }
            )
            async for msg in ws:
                if msg.type is not WSMsgType.TEXT:
                    continue
                try:
                    frame = json.loads(msg.data)
                except ValueError:
                    await connection.close(4002)
                    break
                await self._on_frame(connection, frame)
        finally:
            self.connections.discard(connection)
            session = connection.session
            if session is not None and session.connection is connection:
                session.connection = None
                if ws.close_code == 1000 and not connection.server_closed:
                    session.invalid = True  # a client's clean close ends the session
            if task is not None:
                self._handlers.discard(task)
            self._state.touch()
        return ws

    async def _on_frame(self, connection: Connection, frame: dict[str, Any]) -> None:
        op, data = frame.get("op", -1), frame.get("d")
        session_id = connection.session.id if connection.session else None
        if op != HEARTBEAT:
            self._state.gateway_frames.append(
                GatewayFrame(
                    op=op, data=_redact(data), session_id=session_id, at=self._state.clock.time()
                )
            )
            self._state.touch()
        if op == HEARTBEAT:
            await connection.send({"op": HEARTBEAT_ACK, "s": None, "t": None, "d": None})
        elif op == IDENTIFY:
            await self._identify(connection, data or {})
        elif op == RESUME:
            await self._resume(connection, data or {})
        elif connection.session is None:
            await connection.close(4003)
        elif op == REQUEST_GUILD_MEMBERS:
            await self._request_members(connection.session, data or {})
        elif op in (PRESENCE_UPDATE, VOICE_STATE_UPDATE):
            pass
        else:
            await connection.close(4001)

    async def _identify(self, connection: Connection, data: dict[str, Any]) -> None:
        await self._open.wait()
        if connection.session is not None:
            await connection.close(4005)
            return
        if data.get("token") != self._state.token:
            await connection.close(4004)
            return
        intents = data.get("intents")
        if not isinstance(intents, int):
            await connection.close(4013)
            return
        if intents & PRIVILEGED_INTENTS & ~self.privileged_intents:
            await connection.close(4014)
            return
        shard = data.get("shard")
        if shard is not None:
            shard_id, count = int(shard[0]), int(shard[1])
            if not 0 <= shard_id < count:
                await connection.close(4010)
                return
            shard = (shard_id, count)
        elif self.shard_count > 1:
            await connection.close(4011)
            return
        for old in self.sessions.values():
            if old.shard == shard:
                old.invalid = True  # a new IDENTIFY replaces the shard's previous session
        session = Session(id=new_session_id(), intents=intents, shard=shard)
        self.sessions[session.id] = session
        connection.session = session
        session.connection = connection
        self.identify_count += 1
        guilds = [g for g in self._state.bot_guilds() if session.owns(g.id)]
        ready: dict[str, Any] = {
            "v": 10,
            "user": {
                **payloads.user(self._state.bot),
                "verified": True,
                "mfa_enabled": False,
                "email": None,
            },
            "user_settings": {},
            "session_type": "normal",
            "session_id": session.id,
            "resume_gateway_url": self.resume_url,
            "relationships": [],
            "private_channels": [],
            "presences": [],
            "guilds": [{"id": str(g.id), "unavailable": True} for g in guilds],
            "guild_join_requests": [],
            "geo_ordered_rtc_regions": [],
            "auth": {},
            "application": {
                "id": str(self._state.application.id),
                "flags": self._state.application.flags,
            },
            "_trace": ["loopback"],
        }
        if shard is not None:
            ready["shard"] = list(shard)
        await session.emit("READY", ready)
        for guild in guilds:
            await session.emit("GUILD_CREATE", payloads.guild_create(self._state, guild))
        session.ready = True
        self._state.touch()

    async def _resume(self, connection: Connection, data: dict[str, Any]) -> None:
        await self._open.wait()
        session = self.sessions.get(str(data.get("session_id")))
        if session is None or session.invalid or data.get("token") != self._state.token:
            await connection.send({"op": INVALID_SESSION, "s": None, "t": None, "d": False})
            return
        old = session.connection
        if old is not None and old is not connection and old.live:
            old.server_closed = True
            await old.close(4000)
        async with session.lock:
            connection.session = session
            session.connection = connection
            session.sent_seq = int(data.get("seq") or 0)
            await session._send_pending()
            session.seq += 1
            resumed = {
                "op": DISPATCH,
                "t": "RESUMED",
                "s": session.seq,
                "d": {"_trace": ["loopback"]},
            }
            session.buffer.append(resumed)
            await session._send_pending()
        self.resume_count += 1
        self._state.touch()

    async def _request_members(self, session: Session, data: dict[str, Any]) -> None:
        guild = self._state.guilds.get(int(data.get("guild_id", 0)))
        if guild is None:
            return
        wanted = {int(u) for u in data.get("user_ids") or []}
        query = (data.get("query") or "").lower()
        members = [
            m
            for m in guild.members.values()
            if (not wanted or m.id in wanted) and m.user.username.lower().startswith(query)
        ]
        chunk: dict[str, Any] = {
            "guild_id": str(guild.id),
            "members": [payloads.member(self._state, m) for m in members],
            "chunk_index": 0,
            "chunk_count": 1,
            "not_found": [str(u) for u in wanted - {m.id for m in members}],
        }
        if data.get("nonce") is not None:
            chunk["nonce"] = data["nonce"]
        await session.emit("GUILD_MEMBERS_CHUNK", chunk)

    # ---- what tests and REST handlers do --------------------------------------------

    async def dispatch(
        self,
        event: str,
        data: Any,
        *,
        guild_id: int | None = None,
        shape: Callable[[Session, Any], Any] | None = None,
    ) -> int:
        """Send `event` to every session that would receive it; returns how many did.

        Intents are honoured as Discord does (no GUILD_MESSAGES, no guild MESSAGE_CREATE;
        no MESSAGE_CONTENT, empty content in others' guild messages). Sessions without a
        connection buffer the event for replay on RESUME.
        """
        targets = self._enqueue(event, data, guild_id, shape)
        for session in targets:
            await session.flush()
        return len(targets)

    def dispatch_soon(
        self,
        event: str,
        data: Any,
        *,
        guild_id: int | None = None,
        shape: Callable[[Session, Any], Any] | None = None,
    ) -> int:
        """`dispatch` for synchronous callers: numbered now (so ordering follows the calls),
        sent by a task the server awaits before it stops."""
        targets = self._enqueue(event, data, guild_id, shape)
        for session in targets:
            task = asyncio.get_running_loop().create_task(session.flush())
            self._flushes.add(task)
            task.add_done_callback(self._flushes.discard)
        return len(targets)

    def _enqueue(
        self,
        event: str,
        data: Any,
        guild_id: int | None,
        shape: Callable[[Session, Any], Any] | None,
    ) -> list[Session]:
        targets = []
        for session in list(self.sessions.values()):
            if session.invalid or not session.owns(guild_id):
                continue
            shaped = shape(session, data) if shape is not None else data
            if shaped is None or not _wants(session.intents, event, guild_id):
                continue
            session.enqueue(event, shaped)
            targets.append(session)
        return targets

    def live_sessions(self) -> list[Session]:
        return [
            s
            for s in self.sessions.values()
            if s.ready and not s.invalid and s.connection is not None and s.connection.live
        ]

    async def disconnect(self, code: int = 4000, *, drop: bool = False) -> None:
        """Close every connection (close `code`, or `drop=True`: cut TCP without a close frame).

        Sessions survive, so the client resumes; close codes discord.py treats as fatal
        (4004, 4010-4014) end the client instead.
        """
        for connection in list(self.connections):
            session = connection.session
            if session is not None and session.connection is connection:
                session.connection = None
            connection.server_closed = True
            await connection.close(code, drop=drop)
        self._state.touch()

    @contextlib.asynccontextmanager
    async def outage(self, code: int = 4000, *, drop: bool = False) -> AsyncIterator[None]:
        """Disconnect and hold every IDENTIFY/RESUME until the block ends.

        Events dispatched inside the block are buffered; leaving it lets the client resume
        and receive them. Use this to prove "an event sent while disconnected arrives".
        """
        self._open.clear()
        try:
            await self.disconnect(code, drop=drop)
            yield
        finally:
            self._open.set()

    async def invalidate_session(self, *, resumable: bool = False) -> None:
        """Send op 9 INVALID_SESSION; `resumable=False` forces a fresh IDENTIFY."""
        for session in list(self.sessions.values()):
            connection = session.connection
            if not resumable:
                session.invalid = True
            if connection is not None and connection.live:
                await connection.send({"op": INVALID_SESSION, "s": None, "t": None, "d": resumable})

    async def request_reconnect(self) -> None:
        """Send op 7 RECONNECT: the client closes and resumes on `resume_gateway_url`."""
        for session in list(self.sessions.values()):
            connection = session.connection
            if connection is not None and connection.live:
                connection.server_closed = True
                await connection.send({"op": RECONNECT, "s": None, "t": None, "d": None})

    async def close(self) -> None:
        """Server shutdown: close every websocket (1001 Going Away) and let handlers finish."""
        self._open.set()
        if self._flushes:
            await asyncio.wait(list(self._flushes), timeout=2.0)
        for connection in list(self.connections):
            connection.server_closed = True
            await connection.close(1001)
        if self._handlers:
            await asyncio.wait(list(self._handlers), timeout=2.0)


def _wants(intents: int, event: str, guild_id: int | None) -> bool:
    if event.startswith(_MESSAGE_EVENTS):
        return bool(intents & (GUILD_MESSAGES if guild_id is not None else DIRECT_MESSAGES))
    if event.startswith("MESSAGE_REACTION"):
        return bool(
            intents
            & (GUILD_MESSAGE_REACTIONS if guild_id is not None else DIRECT_MESSAGE_REACTIONS)
        )
    if event.startswith("GUILD_MEMBER_") and event != "GUILD_MEMBERS_CHUNK":
        return bool(intents & GUILD_MEMBERS)
    if event.startswith("PRESENCE_UPDATE"):
        return bool(intents & GUILD_PRESENCES)
    if event.startswith(_GUILD_EVENTS):
        return bool(intents & GUILDS)
    return True


def _redact(data: Any) -> Any:
    if isinstance(data, dict) and "token" in data:
        return {**data, "token": "<redacted>"}
    return data
