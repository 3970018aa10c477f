"""What every backend (camera move or diffusion model) offers to the orchestrator.

The orchestrator (:mod:`pipeline.animate`) owns intake, extension and encoding; a backend only
turns one fitted RGB image into frames. Keeping that seam narrow lets the camera move, the
diffusers families and test doubles be swapped without touching the rest.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from contract import AnimateRequest, ModelCard, Progress

if TYPE_CHECKING:
    import numpy as np
    from PIL import Image

    from pipeline.audio import Soundtrack

Emit = Callable[[Progress], None]
ShouldStop = Callable[[], bool]


@dataclass(frozen=True)
class RenderPlan:
    """The concrete numbers one render uses, after the model's rules were applied."""

    width: int
    height: int
    num_frames: int
    fps: int
    steps: int
    guidance: float
    seed: int
    prompt: str = ""
    """What the model reads: the member's prompt with the camera move and motion in words."""
    negative_prompt: str = ""
    timesteps: tuple[float, ...] = ()
    """A custom schedule (distilled LTX) instead of `steps` evenly spaced ones."""
    sigmas: tuple[float, ...] = ()
    """A custom schedule given as noise levels (distilled LTX-2)."""
    call: Mapping[str, Any] = field(default_factory=dict)
    """Family-specific pipeline keyword arguments (e.g. SVD's motion_bucket_id), passed as is."""
    warnings: tuple[str, ...] = ()
    """Sentences for the member about how the request was adapted to the model."""
    camera: str | None = None
    """The camera move actually drawn (the camera backend may have to change it)."""
    continuing: bool = False
    """The render continues a previous clip from its last frame."""
    source_size: tuple[int, int] | None = None
    """Fit the photo to this (larger) size first, so zoomed-in views stay sharp."""
    upscaled: int = 1
    """The backend returns frames this many times `width` × `height` (an LTX preset's latent
    upsampler: it renders at `width` × `height`, then refines at the larger size), so the
    finish step's upscaler leaves that factor out."""
    interpolated: int = 1
    """The model renders every `interpolated`-th frame at `fps` (HALF_FRAMES: 2) and the finish
    step's RIFE draws the rest, so the clip plays at `interpolated` × `fps`."""


@dataclass(frozen=True)
class Rendered:
    """Frames with the sound a model made alongside them (LTX-2); a silent backend may
    return the bare frames instead."""

    frames: np.ndarray
    audio: Soundtrack | None = None


@dataclass(frozen=True)
class BackendInfo:
    """How a backend describes itself to members and operators."""

    name: str
    """Preset name or model path, as the member or operator chose it."""
    label: str
    """Shown to members: the model card's label, or "<directory> (<family>)" for a checkpoint
    that is not a preset."""
    family: str
    """camera, ltx, wan, svd or cogvideox."""
    device: str = "cpu"
    is_ai: bool = True
    supports_prompt: bool = True
    supports_end_image: bool = False
    supports_extend: bool = True
    supports_audio: bool = False
    """The model makes a sound track with the frames."""
    uses_seed: bool = True
    """Different seeds draw different clips; False for the camera move (variations refused)."""
    durations: tuple[float, ...] = (2.0, 3.0, 5.0)
    """Clip lengths (seconds) members may choose."""

    @classmethod
    def from_card(
        cls,
        card: ModelCard,
        *,
        family: str,
        device: str = "cpu",
        name: str | None = None,
        label: str | None = None,
    ) -> BackendInfo:
        """The description members see, taken from the model's card so the bot's catalog and
        the backend cannot disagree. `name`/`label` override the card's for a checkpoint that
        is described by its family's card (a local directory or repo id)."""
        return cls(
            name=name or card.name,
            label=label or card.label,
            family=family,
            device=device,
            is_ai=card.is_ai,
            supports_prompt=card.supports_prompt,
            supports_end_image=card.supports_end_image,
            supports_extend=card.supports_extend,
            supports_audio=card.supports_audio,
            uses_seed=card.uses_seed,
            durations=card.durations,
        )


@runtime_checkable
class Backend(Protocol):
    info: BackendInfo

    def plan(self, request: AnimateRequest, image_size: tuple[int, int]) -> RenderPlan:
        """Resolve size (from the photo's aspect ratio), frames, fps, steps and seed."""
        ...

    def render(
        self,
        image: Image.Image,
        plan: RenderPlan,
        request: AnimateRequest,
        *,
        end_image: Image.Image | None = None,
        emit: Emit = lambda progress: None,
        should_stop: ShouldStop = lambda: False,
    ) -> np.ndarray | Rendered:
        """Return uint8 frames shaped (num_frames, height, width, 3); frame 0 is `image`
        (with the sound track as a :class:`Rendered` when the model makes one).

        Reports Progress("denoise", step, total) per step (and a preview when it has one) and
        raises :class:`contract.Cancelled` soon after `should_stop()` turns true.
        """
        ...

    def close(self) -> None:
        """Free the model (GPU memory) when the worker shuts down or switches model."""
        ...
