"""CogVideoX I2V: learned positional embeddings pin the 5B model to one size and frame count."""

from __future__ import annotations

from typing import Any

from pipeline.backends.families.base import Family, PipelineRules


class CogVideoX(Family):
    name = "cogvideox"
    label = "CogVideoX"
    preset = "cogvideox"

    def read_rules(self, class_name: str, pipe: Any) -> PipelineRules:
        config = pipe.transformer.config
        scale = pipe.vae_scale_factor_spatial
        fixed = None
        frames = None
        if config.use_learned_positional_embeddings:
            fixed = (int(config.sample_width) * scale, int(config.sample_height) * scale)
            frames = int(config.sample_frames)
        return PipelineRules(
            spatial=scale * int(config.patch_size),
            temporal=pipe.vae_scale_factor_temporal * int(config.patch_size_t or 1),
            fixed_size=fixed,
            frames=frames,
        )
