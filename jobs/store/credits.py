"""The credits half of the store: balances, operator grants and takes, history.

The balance is never stored: it is the sum of the member's ledger rows (see
:mod:`jobs.store.ledger`), read inside the same transaction that appends to it.
"""

from __future__ import annotations

from collections.abc import Callable

from jobs.records import Account, CreditPolicy, LedgerEntry
from jobs.refusals import InvalidAmount, Refused
from jobs.store import ledger
from jobs.store.db import Database


class Credits:
    db: Database
    policy: CreditPolicy
    clock: Callable[[], float]

    async def account(self, user_id: int) -> Account:
        """Balance and next refill; the first call for a member grants the welcome credits."""
        async with self.db.write() as tx:
            await ledger.touch(tx, user_id, self.policy, self.clock())
            return await ledger.account(tx, user_id, self.policy)

    async def balance(self, user_id: int) -> int:
        return (await self.account(user_id)).balance

    async def grant(self, user_id: int, amount: int, *, operator_id: int, reason: str = "") -> int:
        """An operator adds credits; returns the new balance."""
        if amount <= 0:
            raise InvalidAmount("The amount must be a positive whole number.")
        async with self.db.write() as tx:
            now = self.clock()
            await ledger.touch(tx, user_id, self.policy, now)
            await ledger.append(
                tx, user_id, amount, "grant", now, operator_id=operator_id, reason=reason
            )
            return await ledger.balance(tx, user_id)

    async def take(self, user_id: int, amount: int, *, operator_id: int, reason: str = "") -> int:
        """An operator removes credits (never below zero); returns the new balance."""
        if amount <= 0:
            raise InvalidAmount("The amount must be a positive whole number.")
        async with self.db.write(keep_on=(Refused,)) as tx:
            now = self.clock()
            await ledger.touch(tx, user_id, self.policy, now)
            current = await ledger.balance(tx, user_id)
            if amount > current:
                raise InvalidAmount(
                    f"That member has only {current} credit{'' if current == 1 else 's'}; "
                    f"take at most {current}."
                )
            await ledger.append(
                tx, user_id, -amount, "take", now, operator_id=operator_id, reason=reason
            )
            return current - amount

    async def history(self, user_id: int, limit: int = 10) -> list[LedgerEntry]:
        """The member's most recent ledger rows, newest first."""
        async with self.db.read() as tx:
            rows = await tx.fetchall(
                "SELECT * FROM ledger WHERE user_id = ? ORDER BY id DESC LIMIT ?", user_id, limit
            )
        return [LedgerEntry.from_row(row) for row in rows]
