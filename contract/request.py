"""What a member asks for: a typed, validated :class:`JobSpec`, and the request a worker gets.

A JobSpec is validated once, where it is made (the cog, the CLI, a button): every later
holder (the job row, the scheduler, the worker) receives the validated object. It is plain
data so the bot stores it in SQLite and Ray pickles it to the workers.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from contract.errors import InputError
from contract.loras import EFFECT_NAME

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

CAMERA_LABELS: dict[str, str] = {move: move.replace("_", " ") for move in CAMERA_MOVES}
"""How members read and type each move ("zoom in")."""

SMOOTH_FACTORS: tuple[int, ...] = (1, 2)
SMOOTH_RATES: tuple[int, ...] = (48, 60)
UPSCALES: tuple[int, ...] = (1, 2)
MAX_UPSCALED_SIDE = 3840
"""An upscaled clip is at most 4K wide: past it, players and Discord's previews give up."""
PROMPT_MAX = 1000
SEED_MAX = 2**32 - 1
FRESH_SEEDS = 2**31
"""random_seed()'s bound when none is given (a request that names no seed, in the CLI and the
workers): every family's generator takes it, and so does a member who types it back."""
VARIATIONS: tuple[int, ...] = (1, 2, 4)
"""How many takes one job may render: a message holds four clips with their buttons in
Discord's five action rows, and 1/2/4 split an upload limit evenly."""


def random_seed(below: int = FRESH_SEEDS) -> int:
    """A fresh seed in [0, below) from the OS's entropy, as :mod:`secrets` draws it (whose
    import of hmac and OpenSSL costs a short CLI run 3 ms)."""
    return random.SystemRandom().randrange(below)


@dataclass(frozen=True)
class JobSpec:
    """Everything about one video except the binary inputs. Unset optional fields mean "the
    model's default". Invalid values raise InputError with a sentence for the member."""

    model: str = "auto"
    prompt: str = ""
    negative_prompt: str = ""
    seed: int | None = None
    camera: str = "static"
    motion: int = 5
    """Motion strength, 1 (barely moves) to 10 (a lot)."""
    duration: float = 3.0
    """Seconds of new video; the backend rounds to its frame-count rule."""
    fps: int | None = None
    width: int | None = None
    height: int | None = None
    steps: int | None = None
    loop: bool = False
    """A seamless loop: the last frame leads back into the first (see pipeline.loops)."""
    max_bytes: int | None = None
    """The MP4 is never larger than this (Discord's per-file upload limit)."""
    effect: str | None = None
    """An effect the operator set up for this model (EFFECTS), by name; None: the plain model."""
    variations: int = 1
    """Takes in one job (1, 2 or 4), each with its own seed (seed, seed+1, ...): members
    compare a few and keep the best; priced as that many single clips."""
    audio: bool = True
    """Keep the sound a model with audio makes (LTX-2); silent models ignore it."""
    interpolate: int = 1
    """Smooth: 2 puts a learned in-between frame between each pair (n → 2n − 1 frames at
    twice the rate); 1: the model's own frames (pipeline.finish)."""
    fps_out: int | None = None
    """Smooth to this rate (48 or 60) instead; None: no target rate."""
    upscale: int = 1
    """Upscale 2×: 2 doubles width and height with Real-ESRGAN; 1: the model's size."""

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
        if len(self.prompt) > PROMPT_MAX or len(self.negative_prompt) > PROMPT_MAX:
            raise InputError(f"Prompts can be at most {PROMPT_MAX} characters.")
        if self.seed is not None and not 0 <= int(self.seed) <= SEED_MAX:
            raise InputError(f"The seed must be a whole number from 0 to {SEED_MAX}.")
        if self.variations not in VARIATIONS:
            raise InputError(
                f"Variations must be 1, 2 or 4 takes, not {self.variations!r}."
            )
        if self.interpolate not in SMOOTH_FACTORS:
            raise InputError("Smoothing can double the frames (2) or leave them as they are (1).")
        if self.fps_out is not None and self.fps_out not in SMOOTH_RATES:
            raise InputError(
                f"Smoothing can reach {' or '.join(map(str, SMOOTH_RATES))} fps, not {self.fps_out!r}."
            )
        if self.fps_out is not None and self.interpolate != 1:
            raise InputError("Choose either double the frames or a target frame rate, not both.")
        if self.upscale not in UPSCALES:
            raise InputError("Upscaling can double the size (2) or keep it (1).")
        if self.effect is not None and not EFFECT_NAME.match(self.effect):
            raise InputError(f"There is no effect called {self.effect[:40]!r}.")

    def replace(self, **changes: Any) -> JobSpec:
        return dataclasses.replace(self, **changes)

    @property
    def finishes(self) -> tuple[str, ...]:
        """The finishing steps asked for: "upscale" and/or "smooth" (pipeline.finish)."""
        asked = ("upscale",) if self.upscale > 1 else ()
        return asked + (("smooth",) if self.interpolate > 1 or self.fps_out else ())

    # ---- (de)serialisation: the only place that knows the stored keys ----------------------

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(JobSpec)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> JobSpec:
        """Read a stored spec; keys this version does not know (older rows) are ignored."""
        names = {f.name for f in dataclasses.fields(JobSpec)}
        return JobSpec(**{k: v for k, v in data.items() if k in names})


@dataclass(frozen=True, kw_only=True)
class AnimateRequest(JobSpec):
    """What a worker renders: a JobSpec plus the photo and optional extra inputs."""

    image: bytes
    end_image: bytes | None = None
    """Optional last frame (first→last frame interpolation where the model supports it)."""
    previous_clip: bytes | None = None
    """An MP4 to extend: the new clip starts from its last frame and is appended to it."""
    finish_clip: bytes | None = None
    """An MP4 to finish without rendering anything (the Smooth and Upscale 2× buttons on a
    delivered clip): `interpolate`, `fps_out` and `upscale` say what to do; `image` is unused."""
    job_id: str | None = None
    """Set by the job layer for logs and output names; the pipeline does not need it."""

    def replace(self, **changes: Any) -> AnimateRequest:
        return dataclasses.replace(self, **changes)

    @classmethod
    def of(
        cls,
        spec: JobSpec,
        *,
        image: bytes,
        end_image: bytes | None = None,
        previous_clip: bytes | None = None,
        finish_clip: bytes | None = None,
        job_id: str | None = None,
    ) -> AnimateRequest:
        return cls(
            **spec.to_dict(),
            image=image,
            end_image=end_image,
            previous_clip=previous_clip,
            finish_clip=finish_clip,
            job_id=job_id,
        )
