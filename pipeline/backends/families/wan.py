"""Wan 2.1/2.2: one or two expert transformers; a last frame only where the weights use it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pipeline.backends.base import RenderPlan
from pipeline.backends.families.base import Family, PipelineRules
from pipeline.backends.model_index import is_component
from pipeline.presets import PRESETS, Preset


class Wan(Family):
    name = "wan"
    label = "Wan"
    preset = "wan"

    def read_rules(self, class_name: str, pipe: Any) -> PipelineRules:
        denoiser = pipe.transformer if pipe.transformer is not None else pipe.transformer_2
        patch = denoiser.config.patch_size
        # last_image goes into the conditioning latents; a CLIP image encoder (Wan 2.1 I2V) would
        # also need a transformer trained on two image embeddings (FLF2V: pos_embed_seq_len).
        clip_tokens = denoiser.config.get("image_dim") is not None
        two_images = bool(denoiser.config.get("pos_embed_seq_len"))
        return PipelineRules(
            spatial=pipe.vae_scale_factor_spatial * int(patch[1]),
            temporal=pipe.vae_scale_factor_temporal * int(patch[0]),
            supports_end_image=not pipe.config.get("expand_timesteps", False)
            and (not clip_tokens or two_images),
        )

    def default_preset(self, model_index: Mapping[str, Any] | None = None) -> Preset:
        """A CLIP image encoder or two experts (without expand_timesteps) means the 14B I2V;
        anything else gets the 5B TI2V settings."""
        if model_index is None:
            return PRESETS[self.preset]
        has_image_encoder = is_component(model_index, "image_encoder")
        two_experts = is_component(model_index, "transformer_2")
        if (has_image_encoder or two_experts) and not model_index.get("expand_timesteps"):
            return PRESETS["wan-14b"]
        return PRESETS[self.preset]

    def own_kwargs(
        self, class_name: str, plan: RenderPlan, image: Any, end_image: Any | None
    ) -> dict[str, Any]:
        return {"last_image": end_image} if end_image is not None else {}

