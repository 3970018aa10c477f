"""LTX-Video: frame rate is a call argument; LTXConditionPipeline also takes a last frame,
and latents to continue from (the second pass of Upscale 2× in latent space)."""

from __future__ import annotations

from typing import Any

from pipeline.backends.base import RenderPlan
from pipeline.backends.families.base import Family, PipelineRules
from pipeline.presets import LatentUpscale

CONDITION_CLASS = "LTXConditionPipeline"
"""The class that conditions on frames at any index (so on a last frame too)."""


class LTX(Family):
    name = "ltx"
    label = "LTX-Video"
    preset = "ltx"
    paced_by_frame_rate = True
    masked_cross_attention = True

    def read_rules(self, class_name: str, pipe: Any) -> PipelineRules:
        return PipelineRules(
            spatial=pipe.vae_spatial_compression_ratio * pipe.transformer_spatial_patch_size,
            temporal=pipe.vae_temporal_compression_ratio * pipe.transformer_temporal_patch_size,
            supports_end_image=class_name == CONDITION_CLASS,
        )

    def own_kwargs(
        self, class_name: str, plan: RenderPlan, image: Any, end_image: Any | None
    ) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"frame_rate": plan.fps}
        if end_image is not None and class_name == CONDITION_CLASS:
            kwargs["image"] = [image, end_image]
            kwargs["frame_index"] = [0, plan.num_frames - 1]
        return kwargs

    def second_pass_kwargs(self, latents: Any, settings: LatentUpscale) -> dict[str, Any]:
        """What the second pass of a latent upscale adds to a call at twice the size (its
        schedule is the plan's timesteps): LTXConditionPipeline re-noises `latents` to the
        sigma where ``denoise_strength`` starts the schedule, then denoises from there."""
        return {"latents": latents, "denoise_strength": settings.denoise_strength}
