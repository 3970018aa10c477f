"""The one request type and the one event stream shared by the bot and the pipeline.

Everything here is plain, picklable data (bytes, numbers, strings, tuples): it crosses Ray's
process boundary and is stored in SQLite, so it must never hold torch, PIL or discord types.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal, Union

CAMERA_MOVES: tuple[str, ...] = (
    "static",
    "zoom_in",
    "zoom_out",
    "pan_left",
    "pan_right",
    "tilt_up",
    "tilt_down",
    "orbit",
)
"""Camera presets a member can pick; `static` means a barely perceptible push-in."""

Stage = Literal["queued", "intake", "load", "denoise", "decode", "encode", "upload"]


@dataclass(frozen=True)
class AnimateRequest:
    """What to render. Unset optional fields mean "the model's default"."""

    image: bytes
    prompt: str = ""
    negative_prompt: str = ""
    seed: int | None = None
    camera: str = "static"
    motion: int = 5
    """Motion strength, 1 (barely moves) to 10 (a lot)."""
    duration: float = 3.0
    """Seconds of new video; the backend rounds to its frame-count rule."""
    fps: int | None = None
    model: str = "auto"
    width: int | None = None
    height: int | None = None
    steps: int | None = None
    loop: bool = False
    """Ping-pong the clip so it loops seamlessly."""
    end_image: bytes | None = None
    """Optional last frame (first→last frame interpolation where the model supports it)."""
    previous_clip: bytes | None = None
    """An MP4 to extend: the new clip starts from its last frame and is appended to it."""
    max_bytes: int | None = None
    """The MP4 is never larger than this (Discord's per-file upload limit)."""
    job_id: str | None = None
    """Set by the bot for logs and output names; the pipeline does not need it."""

    def __post_init__(self) -> None:
        if self.camera not in CAMERA_MOVES:
            raise InputError(
                f"Unknown camera move {self.camera!r}; choose one of: {', '.join(CAMERA_MOVES)}."
            )
        if not 1 <= int(self.motion) <= 10:
            raise InputError("Motion strength must be between 1 and 10.")
        if not 0 < float(self.duration) <= 60:
            raise InputError("Duration must be more than 0 and at most 60 seconds.")
        if self.fps is not None and not 1 <= self.fps <= 60:
            raise InputError("Frame rate must be between 1 and 60 fps.")
        if self.steps is not None and not 1 <= self.steps <= 200:
            raise InputError("Steps must be between 1 and 200.")
        for name in ("width", "height"):
            value = getattr(self, name)
            if value is not None and not 16 <= value <= 4096:
                raise InputError(f"{name.capitalize()} must be between 16 and 4096 pixels.")
        if self.max_bytes is not None and self.max_bytes < 16 * 1024:
            raise InputError("The output byte limit must be at least 16 KiB.")

    def replace(self, **changes: Any) -> AnimateRequest:
        return dataclasses.replace(self, **changes)

    def params(self) -> dict[str, Any]:
        """Everything but the binary inputs: what a job row stores and the Info button shows."""
        return {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if f.name not in ("image", "end_image", "previous_clip")
        }


@dataclass(frozen=True)
class Progress:
    """One step of work. `total` is 0 when a stage has no meaningful count."""

    stage: Stage
    step: int = 0
    total: int = 0
    preview: bytes | None = None
    """A small JPEG of the first decoded frame, when the backend has one."""
    message: str = ""


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

    @property
    def duration(self) -> float:
        return self.frames / self.fps if self.fps else 0.0


FailureKind = Literal["bad_input", "model", "oom", "crash", "cancelled", "timeout", "internal"]


@dataclass(frozen=True)
class Failed:
    """The job did not produce a clip. `reason` is written for the member, not a traceback."""

    reason: str
    kind: FailureKind = "internal"
    retryable: bool = False


Event = Union[Progress, AnimateResult, Failed]
"""The event stream: any number of Progress, then exactly one AnimateResult or Failed."""


class PipelineError(Exception):
    """An error whose message is safe and useful to show to the member or CLI user as is."""

    kind: FailureKind = "internal"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def to_event(self) -> Failed:
        return Failed(reason=self.message, kind=self.kind, retryable=self.kind in ("oom", "crash"))


class InputError(PipelineError):
    """The member's input cannot be used (not an image, too small, bad option)."""

    kind = "bad_input"


class ModelError(PipelineError):
    """The model cannot be loaded or cannot do what was asked."""

    kind = "model"


class Cancelled(PipelineError):
    """The job was cancelled while it ran."""

    kind = "cancelled"

    def __init__(self, message: str = "The job was cancelled.") -> None:
        super().__init__(message)
