"""Rows as frozen dataclasses, and the typed refusals the store raises."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

JobStatus = Literal["queued", "running", "done", "delivered", "failed", "cancelled"]
LedgerKind = Literal["welcome", "grant", "take", "debit", "refund", "refill"]
ACTIVE: tuple[JobStatus, ...] = ("queued", "running")


@dataclass(frozen=True)
class CreditPolicy:
    """Welcome grant and the optional lazy refill (no scheduler: computed on access)."""

    welcome: int = 20
    refill_amount: int = 0
    refill_period: float = 86_400.0
    refill_cap: int = 20

    @property
    def refills(self) -> bool:
        return self.refill_amount > 0 and self.refill_period > 0


@dataclass(frozen=True)
class Job:
    id: int
    user_id: int
    status: JobStatus
    action: str
    model: str
    cost: int
    params: dict[str, Any]
    delivery: dict[str, Any]
    attempts: int
    low_memory: bool
    created_at: float
    idempotency_key: str | None = None
    parent_id: int | None = None
    worker: str | None = None
    error: str | None = None
    result_path: str | None = None
    result: dict[str, Any] | None = None
    started_at: float | None = None
    finished_at: float | None = None
    delivered_at: float | None = None

    @classmethod
    def from_row(cls, row: Any) -> Job:
        return cls(
            id=row["id"],
            user_id=row["user_id"],
            status=row["status"],
            action=row["action"],
            model=row["model"],
            cost=row["cost"],
            params=json.loads(row["params"]),
            delivery=json.loads(row["delivery"]),
            attempts=row["attempts"],
            low_memory=bool(row["low_memory"]),
            created_at=row["created_at"],
            idempotency_key=row["idempotency_key"],
            parent_id=row["parent_id"],
            worker=row["worker"],
            error=row["error"],
            result_path=row["result_path"],
            result=json.loads(row["result"]) if row["result"] else None,
            started_at=row["started_at"],
            finished_at=row["finished_at"],
            delivered_at=row["delivered_at"],
        )


@dataclass(frozen=True)
class LedgerEntry:
    id: int
    user_id: int
    delta: int
    kind: LedgerKind
    created_at: float
    job_id: int | None = None
    operator_id: int | None = None
    reason: str = ""

    @classmethod
    def from_row(cls, row: Any) -> LedgerEntry:
        return cls(
            id=row["id"],
            user_id=row["user_id"],
            delta=row["delta"],
            kind=row["kind"],
            created_at=row["created_at"],
            job_id=row["job_id"],
            operator_id=row["operator_id"],
            reason=row["reason"],
        )


@dataclass(frozen=True)
class Account:
    """A member's credits as /balance shows them."""

    user_id: int
    balance: int
    next_refill_at: float | None
    """When the next free refill lands (None: refills off or balance at the cap)."""


@dataclass(frozen=True)
class Recovery:
    """What start-up recovery did with jobs a previous process left in flight."""

    requeued: list[Job]
    failed: list[Job]
    undelivered: list[Job]


class StoreError(Exception):
    """A refusal with a message fit for the member."""


class InsufficientCredits(StoreError):
    def __init__(self, balance: int, cost: int, next_refill_at: float | None) -> None:
        super().__init__(f"This costs {cost} credits and you have {balance}.")
        self.balance = balance
        self.cost = cost
        self.next_refill_at = next_refill_at


class TooManyQueued(StoreError):
    def __init__(self, limit: int) -> None:
        super().__init__(
            f"You already have {limit} videos waiting or rendering; wait for one to finish."
        )
        self.limit = limit


class QueueFull(StoreError):
    def __init__(self, limit: int) -> None:
        super().__init__(f"The queue is full ({limit} videos waiting); please try again later.")
        self.limit = limit


class UnknownJob(StoreError):
    def __init__(self, job_id: int) -> None:
        super().__init__(f"There is no job #{job_id}.")
        self.job_id = job_id


class InvalidAmount(StoreError):
    pass
