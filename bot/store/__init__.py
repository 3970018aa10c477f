"""The SQLite file that holds credits and the job queue of record."""

from bot.store.models import (
    Account,
    CreditPolicy,
    InsufficientCredits,
    InvalidAmount,
    Job,
    LedgerEntry,
    QueueFull,
    Recovery,
    StoreError,
    TooManyQueued,
    UnknownJob,
)
from bot.store.store import Store

__all__ = [
    "Account",
    "CreditPolicy",
    "InsufficientCredits",
    "InvalidAmount",
    "Job",
    "LedgerEntry",
    "QueueFull",
    "Recovery",
    "Store",
    "StoreError",
    "TooManyQueued",
    "UnknownJob",
]
