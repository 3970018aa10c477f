"""The job layer: credits ledger, queue of record (SQLite), scheduling, retries, workers.

No discord, no torch, no pipeline: it talks to the workers through Ray handles and the plain
data in :mod:`contract`. The bot calls :class:`JobService`; the dispatcher does the rest.
"""

from jobs.config import JobsConfig, Pricing
from jobs.dispatcher import Dispatcher, Listener
from jobs.ray_runtime import RayUnavailable
from jobs.records import (
    OUTCOMES,
    Account,
    Activity,
    Block,
    ClipSummary,
    CreditPolicy,
    Job,
    LedgerEntry,
    LibraryPage,
    Recovery,
    TakeClip,
    Tallies,
)
from jobs.refusals import (
    CannotFinish,
    DailyLimit,
    DurationNotOffered,
    InsufficientCredits,
    InvalidAmount,
    ModelUnavailable,
    NotFinished,
    NotSupported,
    QueueFull,
    Refused,
    TooManyQueued,
    UnknownJob,
)
from jobs.service import JobService, Origin
from jobs.status import ACTIVE, ALL, FINISHED, REFUNDED, JobAction, JobStatus
from jobs.storage import StorageUnusable, check_storage, is_storage_fault
from jobs.store import DatabaseInUse, ProcessLock, Store

__all__ = [
    "ACTIVE",
    "OUTCOMES",
    "ALL",
    "FINISHED",
    "REFUNDED",
    "Account",
    "Block",
    "CannotFinish",
    "ClipSummary",
    "CreditPolicy",
    "DailyLimit",
    "DatabaseInUse",
    "Dispatcher",
    "DurationNotOffered",
    "InsufficientCredits",
    "InvalidAmount",
    "Job",
    "Activity",
    "JobAction",
    "JobService",
    "JobStatus",
    "JobsConfig",
    "LedgerEntry",
    "LibraryPage",
    "TakeClip",
    "Listener",
    "ModelUnavailable",
    "NotFinished",
    "NotSupported",
    "Origin",
    "Pricing",
    "ProcessLock",
    "QueueFull",
    "RayUnavailable",
    "Recovery",
    "Refused",
    "StorageUnusable",
    "Tallies",
    "Store",
    "TooManyQueued",
    "UnknownJob",
    "check_storage",
    "is_storage_fault",
]
