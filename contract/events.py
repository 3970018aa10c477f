"""The event stream of one job: any number of Progress, then one AnimateResult or Failed.

Plain, picklable data: it crosses Ray's process boundary.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Union

from contract.errors import FailureKind

Stage = Literal[
    "queued", "download", "intake", "load", "denoise", "decode", "finish", "encode", "saving",
    "upload",
]
""""download": the job waits for its model's weights to finish downloading on the worker
(step and total in MiB, the percentage in `message`); "saving": the clip is made, but the
bot's storage refuses it for now (read-only, full); "finish": smoothing or upscaling the
rendered frames (step and total in frames)."""


@dataclass(frozen=True)
class Progress:
    """One step of work. `total` is 0 when a stage has no meaningful count."""

    stage: Stage
    step: int = 0
    total: int = 0
    preview: bytes | None = None
    """A small JPEG of the first decoded frame, when the backend has one."""
    message: str = ""
    take: int = 0
    """Which take of a job with variations this event is about (1-based); 0: the only one."""
    takes: int = 0
    """How many takes the job renders; 0 (or 1): a single clip."""
    leaving_model: bool = False
    """Set by the worker once the job is in its last denoise step or past it: the model will
    be free soon, so the scheduler may hand this worker its next job now (its intake then
    overlaps this job's decode and encode). The scheduler reads only this flag, never the
    stage semantics."""


@dataclass(frozen=True)
class AnimateResult:
    """A finished clip. `video` holds the MP4 bytes; `path` is set when it was written to disk."""

    video: bytes
    width: int
    height: int
    frames: int
    fps: float
    seed: int
    model: str
    timings: dict[str, float] = field(default_factory=dict)
    """Seconds per stage (intake, load, denoise, decode, encode, total)."""
    warnings: tuple[str, ...] = ()
    """Sentences for the member, e.g. "Your photo is small (451×300); expect a soft video."."""
    path: str | None = None
    loop: str | None = None
    """How the clip loops ("end frame", "crossfade"); None when it does not."""
    prompt: str | None = None
    """The prompt the model read: the member's words with the camera move and motion put
    into words, or one built from them when the member wrote none; None without a prompt."""
    audio: bool = False
    """The MP4 has a sound track (a model with audio made one, or the extended clip had one)."""
    steps: int | None = None
    """Denoising steps the model ran (Info shows them); None for the camera move."""

    @property
    def duration(self) -> float:
        return self.frames / self.fps if self.fps else 0.0


@dataclass(frozen=True)
class Failed:
    """The job did not produce a clip. `reason` is written for the member, not a traceback."""

    reason: str
    kind: FailureKind = "internal"
    retryable: bool = False


@dataclass(frozen=True)
class Takes:
    """The end of a job with variations that made at least one clip: every take in order
    (take 1 first), each its AnimateResult or the Failed that ended it. A job whose takes all
    failed ends with one Failed instead, so retries and refunds work as for a single clip;
    here only the failed takes are refunded."""

    takes: tuple[AnimateResult | Failed, ...]

    @property
    def made(self) -> list[tuple[int, AnimateResult]]:
        """(take number, clip) for each take that made a clip."""
        return [(n, t) for n, t in enumerate(self.takes, 1) if isinstance(t, AnimateResult)]

    @property
    def failed(self) -> list[tuple[int, Failed]]:
        """(take number, why) for each take that failed."""
        return [(n, t) for n, t in enumerate(self.takes, 1) if isinstance(t, Failed)]


Event = Union[Progress, AnimateResult, Failed, Takes]
"""The event stream: any number of Progress, then exactly one AnimateResult, Takes or Failed."""
