"""Stable Video Diffusion: no text; motion is micro-conditioning, guidance a min→max ramp."""

from __future__ import annotations

from typing import Any

from contract import AnimateRequest, BackendOptions
from pipeline.backends.base import RenderPlan
from pipeline.backends.families.base import Family, PipelineRules
from pipeline.presets import svd_conditioning

LOW_MEMORY_DECODE_CHUNK = 2
"""Frames the VAE decodes at once in low-memory mode (the preset's 8 peaks several GiB)."""


class SVD(Family):
    name = "svd"
    label = "Stable Video Diffusion"
    preset = "svd"
    text_conditioned = False

    def read_rules(self, class_name: str, pipe: Any) -> PipelineRules:
        levels = len(pipe.unet.config.block_out_channels) - 1
        return PipelineRules(spatial=pipe.vae_scale_factor * 2**levels)

    def call_extras(self, request: AnimateRequest, options: BackendOptions) -> dict[str, Any]:
        extras: dict[str, Any] = dict(svd_conditioning(request.motion))
        if options.low_memory:
            extras["decode_chunk_size"] = LOW_MEMORY_DECODE_CHUNK
        return extras

    def own_kwargs(
        self, class_name: str, plan: RenderPlan, image: Any, end_image: Any | None
    ) -> dict[str, Any]:
        return {"fps": plan.fps, "max_guidance_scale": plan.guidance}
