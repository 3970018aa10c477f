"""Exact work per clip, counted on the `meta` device: no GPU, no weights, no download.

For each preset whose full-size configs are committed (bench/configs/), the pipeline is built
on `meta` from them and one forward of each part is run under torch's FlopCounterMode at the
preset's default clip: the denoiser (per forward, per step with classifier-free guidance's
second pass counted, per clip), the text encoder (one prompt, plus the negative prompt when
CFG is on), the VAE encoding the conditioning and decoding the clip; and the weight bytes of
each component in the dtype the preset runs it in. These numbers are stable on any machine,
unlike seconds: a fast preset is one that does less work.

    python -m bench flops
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import Figure
from bench.random_weights import CONFIGS, build_pipeline
from pipeline.presets import PRESETS, Preset

GIB = 2**30


@dataclass(frozen=True)
class Clip:
    """A preset's default clip and the committed configs of its checkpoint."""

    name: str
    preset: str
    configs: Path
    width: int
    height: int
    frames: int
    target_pflop: float | None = None
    """The promise for the denoising work per clip (issue 13: fast presets)."""
    note: str = ""

    @property
    def settings(self) -> Preset:
        return PRESETS[self.preset]


CLIPS: dict[str, Clip] = {
    "ltx-2b": Clip("ltx-2b", "ltx-2b", CONFIGS / "ltx-2b", 768, 512, 121, 0.3),
    "wan": Clip("wan", "wan", CONFIGS / "wan-5b", 1280, 704, 121),
    "wan-14b": Clip("wan-14b", "wan-14b", CONFIGS / "wan-14b", 832, 480, 81),
    "wan-14b-fast": Clip("wan-14b-fast", "wan-14b-fast", CONFIGS / "wan-14b", 832, 480, 81, 10.0),
}
NOT_COUNTED = {
    "ltx": "LTX-Video 0.9.8 13B: no full-size config committed yet",
    "svd": "Stable Video Diffusion: no full-size config committed yet",
    "cogvideox": "CogVideoX 5B: no full-size config committed yet",
}


@dataclass(frozen=True)
class Count:
    """One clip's work, in FLOPs, and its weights, in bytes."""

    denoiser_per_forward: float
    forwards_per_step: int
    steps: int
    text_encoder: float
    vae_encode: float
    vae_decode: float
    weight_bytes: dict[str, int]

    @property
    def denoiser_per_step(self) -> float:
        return self.denoiser_per_forward * self.forwards_per_step

    @property
    def denoiser_per_clip(self) -> float:
        return self.denoiser_per_step * self.steps


def flops(module: Any, *args: Any, **kwargs: Any) -> float:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        module(*args, **kwargs)
    return float(counter.get_total_flops())


def count(clip: Clip) -> Count:
    """Build `clip`'s pipeline on `meta` and count one forward of each part."""
    import torch

    preset = clip.settings
    dtype = getattr(torch, preset.dtype)
    pipe = build_pipeline(clip.configs, device="meta", dtype=dtype, fp32_components=preset.fp32_components)
    cfg = preset.guidance > 1.0
    weights = {
        name: sum(p.numel() * p.element_size() for p in module.parameters())
        for name, module in pipe.components.items()
        if hasattr(module, "parameters")
    }
    if preset.family == "wan":
        work = _wan(pipe, clip, dtype)
    elif preset.family == "ltx":
        work = _ltx(pipe, clip, dtype)
    else:
        raise ValueError(f"no FLOP count for the {preset.family} family")
    per_forward, text, encode, decode = work
    return Count(
        denoiser_per_forward=per_forward,
        forwards_per_step=2 if cfg else 1,
        steps=preset.steps,
        text_encoder=text * (2 if cfg else 1),
        vae_encode=encode,
        vae_decode=decode,
        weight_bytes=weights,
    )


def _wan(pipe: Any, clip: Clip, dtype: Any) -> tuple[float, float, float, float]:
    import torch

    vae = pipe.vae
    spatial = pipe.vae_scale_factor_spatial
    latent_frames = (clip.frames - 1) // pipe.vae_scale_factor_temporal + 1
    h, w = clip.height // spatial, clip.width // spatial
    transformer = pipe.transformer
    config = transformer.config
    patch = config.patch_size
    vae_dtype = next(vae.parameters()).dtype
    with torch.device("meta"):
        hidden = torch.empty(1, config.in_channels, latent_frames, h, w, dtype=dtype)
        text = torch.empty(1, 512, config.text_dim, dtype=dtype)
        if pipe.config.get("expand_timesteps"):  # TI2V: one timestep per latent token
            tokens = latent_frames * (h // patch[1]) * (w // patch[2])
            timestep = torch.empty(1, tokens)
        else:
            timestep = torch.empty(1)
        ids = torch.zeros(1, 512, dtype=torch.long)
        # I2V (A14B) encodes the whole conditioning video (photo, then blank frames); TI2V
        # encodes the photo alone.
        frames = 1 if pipe.config.get("expand_timesteps") else clip.frames
        video = torch.empty(1, 3, frames, clip.height, clip.width, dtype=vae_dtype)
        latents = torch.empty(1, vae.config.z_dim, latent_frames, h, w, dtype=vae_dtype)
    per_forward = flops(transformer, hidden, timestep=timestep, encoder_hidden_states=text, return_dict=False)
    return (
        per_forward,
        flops(pipe.text_encoder, ids),
        flops(vae.encode, video),
        flops(vae.decode, latents),
    )


def _ltx(pipe: Any, clip: Clip, dtype: Any) -> tuple[float, float, float, float]:
    import torch

    vae, transformer = pipe.vae, pipe.transformer
    config = transformer.config
    latent_frames = (clip.frames - 1) // pipe.vae_temporal_compression_ratio + 1
    h = clip.height // pipe.vae_spatial_compression_ratio
    w = clip.width // pipe.vae_spatial_compression_ratio
    tokens, text_tokens = latent_frames * h * w, 128
    vae_dtype = next(vae.parameters()).dtype
    with torch.device("meta"):
        hidden = torch.empty(1, tokens, config.in_channels, dtype=dtype)
        text = torch.empty(1, text_tokens, config.caption_channels, dtype=dtype)
        mask = torch.ones(1, text_tokens, dtype=dtype)
        ids = torch.zeros(1, text_tokens, dtype=torch.long)
        photo = torch.empty(1, 3, 1, clip.height, clip.width, dtype=vae_dtype)
        latents = torch.empty(1, vae.config.latent_channels, latent_frames, h, w, dtype=vae_dtype)
        decode_timestep = torch.empty(1, dtype=vae_dtype)
    per_forward = flops(
        transformer, hidden_states=hidden, encoder_hidden_states=text, timestep=torch.empty(1, device="meta"),
        encoder_attention_mask=mask, num_frames=latent_frames, height=h, width=w, return_dict=False,
    )
    decode_kwargs = {"temb": decode_timestep} if vae.config.get("timestep_conditioning") else {}
    return (
        per_forward,
        flops(pipe.text_encoder, ids),
        flops(vae.encode, photo),
        flops(vae.decode, latents, **decode_kwargs),
    )


def figures_for(clip: Clip, work: Count) -> list[Figure]:
    preset = clip.settings
    passes = "CFG, 2 forwards" if work.forwards_per_step == 2 else "no CFG, 1 forward"
    shape = f"{clip.width}×{clip.height}, {clip.frames} frames, {work.steps} steps, {passes} per step"
    weights = ", ".join(
        f"{name} {size / GIB:.1f}" for name, size in sorted(work.weight_bytes.items()) if size
    )
    name = clip.name
    return [
        Figure(f"{name}_denoise_pflop_per_clip", work.denoiser_per_clip / 1e15, "PFLOP",
               target=clip.target_pflop, detail=f"{shape}; {clip.note}".rstrip("; ")),
        Figure(f"{name}_denoise_tflop_per_step", work.denoiser_per_step / 1e12, "TFLOP", detail=shape),
        Figure(f"{name}_text_encoder_tflop", work.text_encoder / 1e12, "TFLOP",
               detail="one prompt" + (" and its negative" if work.forwards_per_step == 2 else "")),
        Figure(f"{name}_vae_tflop", (work.vae_encode + work.vae_decode) / 1e12, "TFLOP",
               detail=f"encode {work.vae_encode / 1e12:.1f} + decode {work.vae_decode / 1e12:.1f}"),
        Figure(f"{name}_weights_gib", sum(work.weight_bytes.values()) / GIB, "GiB",
               detail=f"{preset.dtype} (VAE float32 where the preset keeps it): {weights}"),
    ]


def run(names: list[str] | None = None) -> list[Figure]:
    out: list[Figure] = []
    for name in names or list(CLIPS):
        clip = CLIPS[name]
        out += figures_for(clip, count(clip))
    return out


if __name__ == "__main__":
    import sys

    from bench.__main__ import report

    sys.exit(report({"flops": run(sys.argv[1:] or None)}, suffix="-flops"))
