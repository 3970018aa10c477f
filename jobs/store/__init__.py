"""The SQLite file that holds credits and the job queue of record."""

from jobs.store.lock import DatabaseInUse, ProcessLock
from jobs.store.store import Store

__all__ = ["DatabaseInUse", "ProcessLock", "Store"]
