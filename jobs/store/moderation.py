"""The moderation half of the store: members blocked by an operator, and who did what.

A block lives in SQLite, so it holds across restarts and every process; each block and
unblock is appended to ``moderation_log`` (append-only, like the ledger) with the operator.
"""

from __future__ import annotations

from jobs.records import Block
from jobs.store.db import Database


class Moderation:
    db: Database

    async def block(self, user_id: int, *, operator_id: int, reason: str = "") -> bool:
        """Block a member; False when they already were (the reason is not changed)."""
        now = self.clock()  # type: ignore[attr-defined]
        async with self.db.write() as tx:
            cursor = await tx.execute(
                "INSERT OR IGNORE INTO blocks (user_id, reason, operator_id, created_at) VALUES (?, ?, ?, ?)",
                (user_id, reason, operator_id, now),
            )
            if cursor.rowcount == 0:
                return False
            await tx.execute(
                "INSERT INTO moderation_log (user_id, action, reason, operator_id, created_at)"
                " VALUES (?, 'block', ?, ?, ?)",
                (user_id, reason, operator_id, now),
            )
        return True

    async def unblock(self, user_id: int, *, operator_id: int) -> bool:
        """Lift a block; False when the member was not blocked."""
        now = self.clock()  # type: ignore[attr-defined]
        async with self.db.write() as tx:
            cursor = await tx.execute("DELETE FROM blocks WHERE user_id = ?", (user_id,))
            if cursor.rowcount == 0:
                return False
            await tx.execute(
                "INSERT INTO moderation_log (user_id, action, operator_id, created_at)"
                " VALUES (?, 'unblock', ?, ?)",
                (user_id, operator_id, now),
            )
        return True

    async def block_of(self, user_id: int) -> Block | None:
        async with self.db.read() as tx:
            row = await tx.fetchone("SELECT * FROM blocks WHERE user_id = ?", user_id)
        return None if row is None else Block(**dict(row))

    async def blocks(self) -> list[Block]:
        async with self.db.read() as tx:
            rows = await tx.fetchall("SELECT * FROM blocks ORDER BY created_at")
        return [Block(**dict(row)) for row in rows]
