"""One aiosqlite connection per process, with serialised transactions and migrations.

Several processes may open the same file (the bot, a maintenance CLI, tests): WAL lets readers
proceed beside one writer, `BEGIN IMMEDIATE` takes the write lock up front so a transaction
never fails half-way on a lock upgrade, and SQLite's busy timeout plus a bounded retry keep
`database is locked` from reaching callers.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiosqlite
from tenacity import (
    AsyncRetrying,
    retry_if_exception,
    stop_after_delay,
    wait_random_exponential,
)

from jobs.store.schema import MIGRATIONS, SCHEMA_VERSION

log = logging.getLogger("jobs.store")

BUSY_TIMEOUT_MS = 10_000
LOCK_RETRY_SECONDS = 120.0


def _is_locked(exc: BaseException) -> bool:
    return isinstance(exc, sqlite3.OperationalError) and (
        "locked" in str(exc) or "busy" in str(exc)
    )


class Database:
    """An open SQLite file. Use :meth:`write` / :meth:`read` for every statement."""

    def __init__(self, conn: aiosqlite.Connection, path: Path) -> None:
        self._conn = conn
        self.path = path
        # One connection serves many coroutines: without this lock their statements would
        # interleave inside each other's transactions.
        self._lock = asyncio.Lock()

    @classmethod
    async def open(cls, path: str | Path) -> Database:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = await aiosqlite.connect(path, isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000)
        conn.row_factory = aiosqlite.Row
        db = cls(conn, path)
        try:
            await db._configure()
            await db._migrate()
        except BaseException:
            await conn.close()
            raise
        return db

    async def close(self) -> None:
        async with self._lock:
            await self._conn.close()

    async def _configure(self) -> None:
        await self._conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        async for attempt in self._retrying():
            with attempt:
                await self._conn.execute("PRAGMA journal_mode = WAL")
        await self._conn.execute("PRAGMA synchronous = NORMAL")
        await self._conn.execute("PRAGMA foreign_keys = ON")

    async def _migrate(self) -> None:
        async with self.write() as conn:
            version = await self.scalar(conn, "PRAGMA user_version")
            if version > SCHEMA_VERSION:
                raise RuntimeError(
                    f"{self.path} has schema version {version}, newer than this bot's "
                    f"{SCHEMA_VERSION}: upgrade the bot or restore a matching database."
                )
            for number in range(version + 1, SCHEMA_VERSION + 1):
                await conn.executescript_in_tx(MIGRATIONS[number - 1])  # type: ignore[attr-defined]
                await conn.execute(f"PRAGMA user_version = {number}")
                log.info("database %s migrated to schema version %d", self.path, number)

    @staticmethod
    def _retrying() -> AsyncRetrying:
        return AsyncRetrying(
            retry=retry_if_exception(_is_locked),
            wait=wait_random_exponential(multiplier=0.01, max=0.5),
            stop=stop_after_delay(LOCK_RETRY_SECONDS),
            reraise=True,
        )

    @asynccontextmanager
    async def write(
        self, keep_on: tuple[type[BaseException], ...] = ()
    ) -> AsyncIterator[_Tx]:
        """A write transaction holding SQLite's write lock from its first statement.

        An exception rolls it back, except the types in `keep_on`: refusals that are raised
        after bookkeeping worth keeping (a welcome grant) and before any write of their own.
        """
        async with self._lock:
            await self._begin("BEGIN IMMEDIATE")
            tx = _Tx(self._conn)
            try:
                yield tx
            except keep_on:
                await self._commit()
                raise
            except BaseException:
                await self._conn.execute("ROLLBACK")
                raise
            else:
                await self._commit()

    async def _begin(self, statement: str) -> None:
        """Start a transaction; if the caller is cancelled meanwhile, end it again.

        aiosqlite runs the statement in its thread even when the awaiting task is cancelled,
        so without the rollback the connection would stay inside a transaction nobody owns.
        """
        try:
            async for attempt in self._retrying():
                with attempt:
                    await self._conn.execute(statement)
        except BaseException:
            try:
                await self._conn.execute("ROLLBACK")
            except sqlite3.OperationalError:
                pass  # the BEGIN itself had failed: there is nothing to roll back
            raise

    async def _commit(self) -> None:
        async for attempt in self._retrying():
            with attempt:
                await self._conn.execute("COMMIT")

    @asynccontextmanager
    async def read(self) -> AsyncIterator[_Tx]:
        """A read transaction: one consistent snapshot for several statements."""
        async with self._lock:
            await self._begin("BEGIN DEFERRED")
            try:
                yield _Tx(self._conn)
            finally:
                await self._conn.execute("ROLLBACK")

    @staticmethod
    async def scalar(conn: _Tx | aiosqlite.Connection, sql: str, *args: object) -> int:
        async with conn.execute(sql, args) as cursor:
            row = await cursor.fetchone()
        return 0 if row is None or row[0] is None else row[0]


class _Tx:
    """The connection as seen inside a transaction (no commit/rollback of its own)."""

    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn

    def execute(self, sql: str, args: tuple | list | dict = ()) -> aiosqlite.context.Result:
        return self._conn.execute(sql, args)

    async def fetchone(self, sql: str, *args: object) -> aiosqlite.Row | None:
        async with self._conn.execute(sql, args) as cursor:
            return await cursor.fetchone()

    async def fetchall(self, sql: str, *args: object) -> list[aiosqlite.Row]:
        async with self._conn.execute(sql, args) as cursor:
            return list(await cursor.fetchall())

    async def executescript_in_tx(self, script: str) -> None:
        # executescript() would COMMIT first; run the statements one by one instead.
        for statement in _split_sql(script):
            await self._conn.execute(statement)


def _split_sql(script: str) -> list[str]:
    """Split a migration into statements, keeping trigger bodies whole."""
    statements: list[str] = []
    buffer = ""
    for line in script.splitlines(keepends=True):
        if line.strip().startswith("--"):
            continue
        buffer += line
        if sqlite3.complete_statement(buffer):
            if buffer.strip():
                statements.append(buffer.strip())
            buffer = ""
    if buffer.strip():
        statements.append(buffer.strip())
    return statements
