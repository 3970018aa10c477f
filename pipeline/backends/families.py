"""What differs between the diffusers image-to-video families, in one place.

Two questions per family: what does the *loaded* pipeline require (size multiple, frame rule,
a fixed size, end-frame support) — read from its components' configs so a tiny test model and
a 13B checkpoint are handled by the same code — and how are the plan's numbers spelled as
keyword arguments of that pipeline's ``__call__``.
"""

from __future__ import annotations

import inspect
import logging
from dataclasses import dataclass
from typing import Any

from pipeline.backends.base import RenderPlan
from pipeline.presets import Preset, lcm

logger = logging.getLogger("pipeline")


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


def constraints(family: str, class_name: str, pipe: Any, preset: Preset) -> Constraints:
    """Read the size/frame rules from the loaded pipeline's configs."""
    spatial, temporal = 8, 1
    fixed: tuple[int, int] | None = None
    end_image = False
    min_frames, max_frames = preset.min_frames, preset.max_frames
    if family == "ltx":
        spatial = pipe.vae_spatial_compression_ratio * pipe.transformer_spatial_patch_size
        temporal = pipe.vae_temporal_compression_ratio * pipe.transformer_temporal_patch_size
        end_image = class_name == "LTXConditionPipeline"
    elif family == "wan":
        denoiser = pipe.transformer if pipe.transformer is not None else pipe.transformer_2
        patch = denoiser.config.patch_size
        spatial = pipe.vae_scale_factor_spatial * int(patch[1])
        temporal = pipe.vae_scale_factor_temporal * int(patch[0])
        # last_image goes into the conditioning latents; a CLIP image encoder (Wan 2.1 I2V) would
        # also need a transformer trained on two image embeddings (FLF2V: pos_embed_seq_len).
        clip_tokens = denoiser.config.get("image_dim") is not None
        two_images = bool(denoiser.config.get("pos_embed_seq_len"))
        end_image = not pipe.config.get("expand_timesteps", False) and (
            not clip_tokens or two_images
        )
    elif family == "svd":
        spatial = pipe.vae_scale_factor * 2 ** (len(pipe.unet.config.block_out_channels) - 1)
        temporal = 1
    elif family == "cogvideox":
        config = pipe.transformer.config
        spatial = pipe.vae_scale_factor_spatial * int(config.patch_size)
        temporal = pipe.vae_scale_factor_temporal * int(config.patch_size_t or 1)
        if config.use_learned_positional_embeddings:
            scale = pipe.vae_scale_factor_spatial
            fixed = (int(config.sample_width) * scale, int(config.sample_height) * scale)
            min_frames = max_frames = int(config.sample_frames)
    return Constraints(
        multiple=lcm(preset.multiple, int(spatial)),
        frame_step=lcm(preset.frame_step, int(temporal)),
        min_frames=min_frames,
        max_frames=max_frames,
        fixed_size=fixed,
        supports_end_image=end_image,
    )


def call_kwargs(
    family: str,
    class_name: str,
    plan: RenderPlan,
    image: Any,
    end_image: Any | None = None,
) -> dict[str, Any]:
    """Keyword arguments for the pipeline call (without generator, output type and callback)."""
    extra = plan.extra
    kwargs: dict[str, Any] = {
        "image": image,
        "height": plan.height,
        "width": plan.width,
        "num_frames": plan.num_frames,
    }
    if family != "svd":
        kwargs["prompt"] = extra.get("prompt", "")
        kwargs["negative_prompt"] = extra.get("negative_prompt") or None
        kwargs["guidance_scale"] = plan.guidance
    timesteps = extra.get("timesteps")
    if timesteps:
        kwargs["timesteps"] = list(timesteps)
    else:
        kwargs["num_inference_steps"] = plan.steps

    if family == "ltx":
        kwargs["frame_rate"] = plan.fps
        if end_image is not None and class_name == "LTXConditionPipeline":
            kwargs["image"] = [image, end_image]
            kwargs["frame_index"] = [0, plan.num_frames - 1]
    elif family == "wan":
        if end_image is not None:
            kwargs["last_image"] = end_image
    elif family == "svd":
        kwargs["fps"] = plan.fps
        kwargs["max_guidance_scale"] = plan.guidance
    kwargs.update(extra.get("call", {}))
    return kwargs


def supported_kwargs(pipe: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
    """Drop arguments this diffusers version's ``__call__`` does not take (logged), so a preset
    setting that an older or newer pipeline lacks degrades instead of crashing."""
    parameters = inspect.signature(type(pipe).__call__).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return kwargs
    dropped = sorted(k for k in kwargs if k not in parameters)
    if dropped:
        logger.debug("%s does not take %s; ignored", type(pipe).__name__, ", ".join(dropped))
    return {k: v for k, v in kwargs.items() if k in parameters}
