"""A job's status, its named sets, and the one table of allowed transitions.

Every status change in the store goes through :func:`sources` (see
``jobs.store.queue.JobQueue._transition``): the UPDATE is guarded by the statuses this table
allows, so two processes racing to end the same job cannot both succeed, and a transition the
table does not list cannot be written at all.
"""

from __future__ import annotations

from enum import StrEnum


class JobStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    """Rendered; the MP4 is on disk, not yet posted to Discord."""
    DELIVERED = "delivered"
    FAILED = "failed"
    CANCELLED = "cancelled"


class JobAction(StrEnum):
    """Why a job exists: a new /animate, or one of the buttons on a finished clip."""

    ANIMATE = "animate"
    REROLL = "reroll"
    EDIT = "edit"
    EXTEND = "extend"
    TAKE = "take"
    """Take 2, 3 or 4 of a job with variations (its parent): made and charged with the
    parent, a clip of its own with its own buttons and library entry; never queued."""
    FINISH = "finish"
    """Smooth or Upscale 2× pressed on a delivered clip (its parent): the parent's MP4
    finished again by a worker, no model render; a clip of its own."""


ACTIVE: frozenset[JobStatus] = frozenset({JobStatus.QUEUED, JobStatus.RUNNING})
"""Waiting or rendering: counts against a member's queue limit, can be cancelled."""
FINISHED: frozenset[JobStatus] = frozenset({JobStatus.DONE, JobStatus.DELIVERED})
"""Has a clip: can be extended."""
REFUNDED: frozenset[JobStatus] = frozenset({JobStatus.FAILED, JobStatus.CANCELLED})
"""Ended without a clip; its debit was refunded in the same transaction."""
ALL: tuple[JobStatus, ...] = tuple(JobStatus)

TRANSITIONS: dict[JobStatus, frozenset[JobStatus]] = {
    JobStatus.QUEUED: frozenset({JobStatus.RUNNING, JobStatus.FAILED, JobStatus.CANCELLED}),
    JobStatus.RUNNING: frozenset(
        {JobStatus.DONE, JobStatus.QUEUED, JobStatus.FAILED, JobStatus.CANCELLED}
    ),
    JobStatus.DONE: frozenset({JobStatus.DELIVERED}),
    JobStatus.DELIVERED: frozenset(),
    JobStatus.FAILED: frozenset(),
    JobStatus.CANCELLED: frozenset(),
}
"""Status → the statuses it may become. Ended jobs never change again."""


def sources(target: JobStatus, only: frozenset[JobStatus] | None = None) -> tuple[JobStatus, ...]:
    """The statuses a job may be in to become `target` (narrowed to `only` when given).

    Raises ValueError for a transition the table does not allow: a programming error, never
    a race (races are settled by the guarded UPDATE).
    """
    allowed = {s for s, targets in TRANSITIONS.items() if target in targets}
    if only is not None:
        illegal = only - allowed
        if illegal:
            names = ", ".join(sorted(illegal))
            raise ValueError(f"a job cannot go from {names} to {target}")
        allowed &= only
    return tuple(sorted(allowed))
