"""What every diffusers image-to-video family answers, and the answers most families share.

A family is a small stateless object: the rules its loaded pipeline imposes (read from the
components' configs, so a tiny test model and a 13B checkpoint go through the same code), how
a plan is spelled as keyword arguments of its ``__call__``, and what its plans add. The
backend asks these questions of whichever family it loaded instead of branching on a name.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from contract import AnimateRequest, BackendOptions
from pipeline.backends.base import RenderPlan
from pipeline.presets import PRESETS, Preset


@dataclass(frozen=True)
class Constraints:
    """The loaded pipeline's hard rules, merged with the preset's recommendations."""

    multiple: int
    frame_step: int
    min_frames: int
    max_frames: int
    fixed_size: tuple[int, int] | None = None
    """(width, height) when the model only works at one size (learned positional embeddings)."""
    supports_end_image: bool = False


@dataclass(frozen=True)
class PipelineRules:
    """What one family reads off a loaded pipeline, before the preset's numbers are merged in."""

    spatial: int
    """Pixels per latent token along each side (VAE ratio × patch size)."""
    temporal: int = 1
    """Frames per latent frame (the frame count is a multiple of this, plus one)."""
    fixed_size: tuple[int, int] | None = None
    frames: int | None = None
    """The only frame count the model takes, when it has one."""
    supports_end_image: bool = False


class Family:
    """One family's rules. Subclasses set the class attributes and override what differs."""

    name: ClassVar[str]
    label: ClassVar[str]
    """How logs and members name a checkpoint of this family that is not a preset."""
    preset: ClassVar[str]
    """The preset whose settings an arbitrary checkpoint of this family gets."""
    text_conditioned: ClassVar[bool] = True
    """Whether ``__call__`` takes prompt, negative_prompt and guidance_scale."""
    paced_by_frame_rate: ClassVar[bool] = False
    """Whether the pipeline is told the clip's frame rate (LTX's ``frame_rate``), so it can
    draw half the frames at half the rate for RIFE to fill (HALF_FRAMES). A model that is not
    told draws its frames at the spacing it was trained on: half of them, doubled, would play
    in slow motion."""
    masked_cross_attention: ClassVar[bool] = False
    """Whether the denoiser's cross-attention to the text carries a padding mask, which fused
    kernels such as flash-attn refuse: it then stays on SDPA while self-attention is fused."""

    def read_rules(self, class_name: str, pipe: Any) -> PipelineRules:
        """The size and frame rules of the loaded `pipe` (loaded as `class_name`)."""
        raise NotImplementedError

    def constraints(self, class_name: str, pipe: Any, preset: Preset) -> Constraints:
        """The pipeline's rules merged with the preset's: both multiples must hold."""
        rules = self.read_rules(class_name, pipe)
        min_frames = max_frames = rules.frames
        return Constraints(
            multiple=math.lcm(preset.multiple, int(rules.spatial)),
            frame_step=math.lcm(preset.frame_step, int(rules.temporal)),
            min_frames=min_frames or preset.min_frames,
            max_frames=max_frames or preset.max_frames,
            fixed_size=rules.fixed_size,
            supports_end_image=rules.supports_end_image,
        )

    def default_preset(self, model_index: Mapping[str, Any] | None = None) -> Preset:
        """Settings for a checkpoint of this family that was not named by a preset."""
        return PRESETS[self.preset]

    def call_extras(self, request: AnimateRequest, options: BackendOptions) -> dict[str, Any]:
        """Call arguments this family derives from the request (on top of the preset's)."""
        return {}

    def call_kwargs(
        self, class_name: str, plan: RenderPlan, image: Any, end_image: Any | None = None
    ) -> dict[str, Any]:
        """Keyword arguments for the pipeline call (without generator, output type, callback)."""
        kwargs: dict[str, Any] = {
            "image": image,
            "height": plan.height,
            "width": plan.width,
            "num_frames": plan.num_frames,
        }
        if self.text_conditioned:
            kwargs["prompt"] = plan.prompt
            kwargs["negative_prompt"] = plan.negative_prompt or None
            kwargs["guidance_scale"] = plan.guidance
        if plan.timesteps:
            kwargs["timesteps"] = list(plan.timesteps)
        elif plan.sigmas:
            kwargs["sigmas"] = list(plan.sigmas)
            kwargs["num_inference_steps"] = len(plan.sigmas)
        else:
            kwargs["num_inference_steps"] = plan.steps
        kwargs.update(self.own_kwargs(class_name, plan, image, end_image))
        kwargs.update(plan.call)
        return kwargs

    def own_kwargs(
        self, class_name: str, plan: RenderPlan, image: Any, end_image: Any | None
    ) -> dict[str, Any]:
        """The arguments only this family's ``__call__`` takes (they override the shared ones)."""
        return {}
