"""Rows as frozen dataclasses: a job with its typed spec and clip, ledger rows, accounts.

``Job.from_row`` and ``ClipSummary.to_dict/from_dict`` are the only code that knows the JSON
column layouts; everything else reads attributes.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from contract import AnimateResult, JobSpec
from jobs.status import JobAction, JobStatus

LedgerKind = Literal["welcome", "grant", "take", "debit", "refund", "refill"]


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
class ClipSummary:
    """What a finished job made, as stored with it (the MP4 itself is a file)."""

    width: int
    height: int
    frames: int
    fps: float
    seed: int
    model: str
    bytes: int = 0
    timings: dict[str, float] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()
    loop: str | None = None
    """How the clip loops ("end frame", "crossfade"), for Info."""
    prompt: str | None = None
    """The prompt the model read (Info shows it when it is not the member's own words)."""
    audio: bool = False
    """The MP4 has a sound track."""
    steps: int | None = None
    """Denoising steps the model ran; None for the camera move (and clips made before this
    was kept)."""

    take: int = 0
    """Which take of a job with variations this clip is (1-based); 0: the job's only clip."""
    takes: int = 0
    """How many takes that job rendered; 0: a single clip."""
    failed_takes: tuple[str, ...] = ()
    """On take 1's job (the one charged): why each failed take failed ("Take 3: ...")."""

    @property
    def duration(self) -> float:
        return self.frames / self.fps if self.fps else 0.0

    @classmethod
    def of(cls, result: AnimateResult) -> ClipSummary:
        return cls(
            width=result.width,
            height=result.height,
            frames=result.frames,
            fps=result.fps,
            seed=result.seed,
            model=result.model,
            bytes=len(result.video),
            timings=dict(result.timings),
            warnings=tuple(result.warnings),
            loop=result.loop,
            prompt=result.prompt,
            audio=result.audio,
            steps=result.steps,
        )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ClipSummary:
        """Read a stored summary; keys this version does not know are ignored."""
        names = {f.name for f in dataclasses.fields(cls)}
        known = {k: v for k, v in data.items() if k in names}
        return cls(
            **{
                **known,
                "warnings": tuple(known.get("warnings") or ()),
                "failed_takes": tuple(known.get("failed_takes") or ()),
            }
        )


@dataclass(frozen=True)
class TakeClip:
    """One made take of a job with variations, as the runner kept it (see ``Store.finish``)."""

    take: int
    result_path: str
    clip: ClipSummary


@dataclass(frozen=True)
class Job:
    id: int
    user_id: int
    status: JobStatus
    action: JobAction
    spec: JobSpec
    cost: int
    delivery: Mapping[str, Any]
    """Where the bot shows this job; opaque here (the bot's DeliveryRecord reads it)."""
    attempts: int
    low_memory: bool
    created_at: float
    idempotency_key: str | None = None
    parent_id: int | None = None
    worker: str | None = None
    error: str | None = None
    result_path: str | None = None
    clip: ClipSummary | None = None
    started_at: float | None = None
    finished_at: float | None = None
    delivered_at: float | None = None
    favourite: bool = False
    """Marked in the member's library (/history); kept longer by the retention sweep."""

    @property
    def model(self) -> str:
        return self.spec.model

    @property
    def group_id(self) -> int:
        """The job that was charged for this clip: its parent for a take, else itself."""
        return self.parent_id if self.action is JobAction.TAKE and self.parent_id else self.id

    @property
    def seconds_to_make(self) -> float | None:
        """From the start of its (last) render to the finished clip."""
        if self.finished_at is None:
            return None
        return self.finished_at - (self.started_at or self.created_at)

    @classmethod
    def from_row(cls, row: Any) -> Job:
        spec = JobSpec.from_dict({**json.loads(row["params"]), "model": row["model"]})
        result = json.loads(row["result"]) if row["result"] else None
        return cls(
            id=row["id"],
            user_id=row["user_id"],
            status=JobStatus(row["status"]),
            action=JobAction(row["action"]),
            spec=spec,
            cost=row["cost"],
            delivery=json.loads(row["delivery"]),
            attempts=row["attempts"],
            low_memory=bool(row["low_memory"]),
            created_at=row["created_at"],
            idempotency_key=row["idempotency_key"],
            parent_id=row["parent_id"],
            worker=row["worker"],
            error=row["error"],
            result_path=row["result_path"],
            clip=ClipSummary.from_dict(result) if result else None,
            started_at=row["started_at"],
            finished_at=row["finished_at"],
            delivered_at=row["delivered_at"],
            favourite=bool(row["favourite"]),
        )


@dataclass(frozen=True)
class LibraryPage:
    """One page of a member's library: delivered clips whose MP4 is still kept, newest first
    (see ``Store.library``)."""

    jobs: list[Job]
    total: int
    """Entries in the whole library (or in its favourites, for a favourites page)."""
    offset: int
    """How many newer entries come before this page."""

    @property
    def has_older(self) -> bool:
        return self.offset + len(self.jobs) < self.total


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


@dataclass(frozen=True)
class Tallies:
    """Counts from the queue of record (see ``Store.tallies``)."""

    jobs: dict[tuple[str, str], int]
    """(model, status) -> jobs."""
    credits: dict[str, int]
    """Ledger kind (welcome, grant, take, debit, refund, refill) -> credits moved."""
    failures: dict[tuple[str, str], int] = field(default_factory=dict)
    """(model, failure kind: oom, crash, timeout, model, bad_input, internal) -> failed jobs."""


OUTCOMES = ("delivered", "failed", "cancelled")
"""How a job ended, as operators' charts group it (a made clip not yet posted is delivered)."""


@dataclass(frozen=True)
class Activity:
    """What happened over a window, by hour, for operators' charts (see ``Store.activity``)."""

    since: float
    until: float
    bucket_seconds: float
    ended: dict[str, list[int]]
    """Outcome (OUTCOMES) -> jobs that ended in each bucket."""
    render_seconds: dict[str, list[float]]
    """Model -> the render time (start to finish) of each job that made a clip."""
    credits_spent: list[int]
    """Credits members spent in each bucket: debits less refunds."""

    @property
    def buckets(self) -> int:
        return len(self.credits_spent)

    @property
    def total_ended(self) -> int:
        return sum(sum(counts) for counts in self.ended.values())


@dataclass(frozen=True)
class Block:
    """A member an operator blocked from making videos."""

    user_id: int
    reason: str
    operator_id: int
    created_at: float
