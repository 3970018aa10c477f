"""Credit bookkeeping inside an open transaction.

The balance is never stored: it is the sum of the member's ledger rows, read inside the same
write transaction that appends to it, so it cannot drift and cannot be overdrawn.
"""

from __future__ import annotations

import math

from jobs.records import Account, CreditPolicy, LedgerKind
from jobs.store.db import Database, _Tx


async def balance(tx: _Tx, user_id: int) -> int:
    return await Database.scalar(tx, "SELECT SUM(delta) FROM ledger WHERE user_id = ?", user_id)


async def append(
    tx: _Tx,
    user_id: int,
    delta: int,
    kind: LedgerKind,
    now: float,
    *,
    job_id: int | None = None,
    operator_id: int | None = None,
    reason: str = "",
) -> None:
    await tx.execute(
        "INSERT INTO ledger (user_id, delta, kind, job_id, operator_id, reason, created_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)",
        (user_id, delta, kind, job_id, operator_id, reason, now),
    )


async def touch(tx: _Tx, user_id: int, policy: CreditPolicy, now: float) -> None:
    """First use → welcome grant (once, ever); later uses → any refill that fell due."""
    row = await tx.fetchone("SELECT refilled_at FROM users WHERE user_id = ?", user_id)
    if row is None:
        await tx.execute(
            "INSERT INTO users (user_id, created_at, refilled_at) VALUES (?, ?, ?)",
            (user_id, now, now),
        )
        await append(tx, user_id, policy.welcome, "welcome", now, reason="welcome grant")
        return
    if not policy.refills:
        return
    periods = math.floor((now - row["refilled_at"]) / policy.refill_period)
    if periods <= 0:
        return
    current = await balance(tx, user_id)
    top_up = min(periods * policy.refill_amount, policy.refill_cap - current)
    if top_up > 0:
        await append(tx, user_id, top_up, "refill", now, reason="free refill")
    await tx.execute(
        "UPDATE users SET refilled_at = ? WHERE user_id = ?",
        (row["refilled_at"] + periods * policy.refill_period, user_id),
    )


async def account(tx: _Tx, user_id: int, policy: CreditPolicy) -> Account:
    current = await balance(tx, user_id)
    next_refill_at = None
    if policy.refills and current < policy.refill_cap:
        refilled_at = await Database.scalar(
            tx, "SELECT refilled_at FROM users WHERE user_id = ?", user_id
        )
        next_refill_at = refilled_at + policy.refill_period
    return Account(user_id=user_id, balance=current, next_refill_at=next_refill_at)
