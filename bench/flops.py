"""Exact work per clip, counted on the `meta` device: no GPU, no weights, no download.

For each preset whose full-size configs are committed (pipeline/configs/), the pipeline is built
on `meta` from them and one forward of each part is run under torch's FlopCounterMode at the
preset's default clip: the denoiser (per forward, per step with classifier-free guidance's
second pass counted, per clip), the text encoder (one prompt, plus the negative prompt when
CFG is on), the VAE encoding the conditioning and decoding the clip, and any further part a
pipeline runs once per clip (LTX-2's text connectors, audio VAE decoder and vocoder: its
denoiser also carries the clip's audio tokens); and the weight bytes of each component in the
dtype the preset runs it in. These numbers are stable on any machine,
unlike seconds: a fast preset is one that does less work.

    python -m bench flops                       # every preset at its default clip
    python -m bench flops --frames 57           # the same presets at 57 frames
    python -m bench flops --half-frames         # what HALF_FRAMES saves (the LTX presets)
    python -m bench.flops ltx-2b --half-frames  # one preset

``--frames N`` counts each clip at N frames (on the preset's frame rule) instead of its
default. ``--half-frames`` counts each preset HALF_FRAMES applies to (the LTX families, told
the clip's frame rate) twice: at its full frame count, and at the count HALF_FRAMES renders
(the clip's length at half the rate on the frame rule, as
:meth:`pipeline.backends.diffusion.DiffusionBackend.plan` picks it) plus RIFE's flow network
(:class:`pipeline.finish.rife.IFNet`, built on `meta`) drawing the frames between, as
:func:`pipeline.finish.interpolate.interpolate_frames` runs it: each rendered frame encoded
once, one motion pass per pair, at the clip's size padded to a multiple of 64. The whole clip
is the denoising, the text encoder, the VAE (and LTX-2's sound parts), plus RIFE.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
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
    "ltx2": Clip(
        "ltx2", "ltx2", CONFIGS / "ltx2-distilled", 768, 512, 121,
        note="video and 5.04 s of audio (126 latent frames) in one forward",
    ),
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
    extra: dict[str, float] = field(default_factory=dict)
    """Once-per-clip parts beyond these, by component (LTX-2: connectors, audio_vae, vocoder)."""

    @property
    def denoiser_per_step(self) -> float:
        return self.denoiser_per_forward * self.forwards_per_step

    @property
    def denoiser_per_clip(self) -> float:
        return self.denoiser_per_step * self.steps

    @property
    def per_clip(self) -> float:
        """The whole clip: denoising, text encoder, VAE encode and decode, and the rest."""
        return (
            self.denoiser_per_clip + self.text_encoder + self.vae_encode + self.vae_decode
            + sum(self.extra.values())
        )


def flops(call: Callable[[], Any]) -> float:
    """Floating-point operations of one call, counted by torch (on `meta`: nothing runs)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad(), torch.device("meta"), FlopCounterMode(display=False) as counter:
        call()
    return float(counter.get_total_flops())


Stage = Callable[[], Any]


@dataclass(frozen=True)
class Stages:
    """One default clip's work as calls on a built pipeline: each runs one forward of a part
    (the denoiser once, with its batch as the pipeline runs it)."""

    denoiser: Stage
    text_encoder: Stage | None
    vae_encode: Stage
    vae_decode: Stage
    denoiser_batch: int = 1
    """Rows per denoiser call: 2 where the pipeline batches CFG's two passes (LTX, SVD, CogVideoX)."""
    extra: Mapping[str, Stage] = field(default_factory=dict)
    """Further once-per-clip parts, by the component that runs them (LTX-2: the text
    connectors, the audio VAE decoding the clip's sound, the vocoder)."""


def count(clip: Clip, *, fps: float | None = None) -> Count:
    """Build `clip`'s pipeline on `meta` and count one forward of each part. `fps`: the rate
    the pipeline is told (the preset's by default; it sets LTX-2's sound length)."""
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
    work = stages(pipe, preset.family, clip.width, clip.height, clip.frames, dtype, fps=fps or preset.fps)
    return Count(
        denoiser_per_forward=flops(work.denoiser),
        forwards_per_step=2 if cfg else 1,
        steps=preset.steps,
        text_encoder=(flops(work.text_encoder) if work.text_encoder else 0.0) * (2 if cfg else 1),
        vae_encode=flops(work.vae_encode),
        vae_decode=flops(work.vae_decode),
        weight_bytes=weights,
        extra={name: flops(stage) for name, stage in work.extra.items()},
    )


def stages(
    pipe: Any, family: str, width: int, height: int, frames: int, dtype: Any, *, cfg_batch: int = 1,
    fps: float = 24.0,
) -> Stages:
    """The calls of `family`'s pipeline for one clip, on `meta` tensors. `cfg_batch` 2 runs the
    denoiser as the pipeline does when it batches CFG's conditional and unconditional passes;
    `fps` sets the clip's duration where a pipeline generates sound alongside (LTX-2)."""
    if family == "ltx2":
        return _ltx2(pipe, width, height, frames, dtype, cfg_batch, fps)
    if family == "wan":
        return _wan(pipe, width, height, frames, dtype)
    if family == "ltx":
        return _ltx(pipe, width, height, frames, dtype, cfg_batch)
    if family == "svd":
        return _svd(pipe, width, height, frames, dtype, cfg_batch)
    if family == "cogvideox":
        return _cogvideox(pipe, width, height, frames, dtype, cfg_batch)
    raise ValueError(f"no stages for the {family} family")


def _wan(pipe: Any, width: int, height: int, frames: int, dtype: Any) -> Stages:
    import torch

    vae = pipe.vae
    spatial = pipe.vae_scale_factor_spatial
    latent_frames = (frames - 1) // pipe.vae_scale_factor_temporal + 1
    h, w = height // spatial, width // spatial
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
        cond_frames = 1 if pipe.config.get("expand_timesteps") else frames
        video = torch.empty(1, 3, cond_frames, height, width, dtype=vae_dtype)
        latents = torch.empty(1, vae.config.z_dim, latent_frames, h, w, dtype=vae_dtype)
    return Stages(
        denoiser=lambda: transformer(hidden, timestep=timestep, encoder_hidden_states=text, return_dict=False),
        text_encoder=lambda: pipe.text_encoder(ids),
        vae_encode=lambda: vae.encode(video),
        vae_decode=lambda: vae.decode(latents),
    )


def _ltx(pipe: Any, width: int, height: int, frames: int, dtype: Any, batch: int = 1) -> Stages:
    import torch

    vae, transformer = pipe.vae, pipe.transformer
    config = transformer.config
    latent_frames = (frames - 1) // pipe.vae_temporal_compression_ratio + 1
    h = height // pipe.vae_spatial_compression_ratio
    w = width // pipe.vae_spatial_compression_ratio
    tokens, text_tokens = latent_frames * h * w, 128
    vae_dtype = next(vae.parameters()).dtype
    with torch.device("meta"):
        hidden = torch.empty(batch, tokens, config.in_channels, dtype=dtype)
        text = torch.empty(batch, text_tokens, config.caption_channels, dtype=dtype)
        mask = torch.ones(batch, text_tokens, dtype=dtype)
        ids = torch.zeros(1, text_tokens, dtype=torch.long)
        photo = torch.empty(1, 3, 1, height, width, dtype=vae_dtype)
        latents = torch.empty(1, vae.config.latent_channels, latent_frames, h, w, dtype=vae_dtype)
        decode_timestep = torch.empty(1, dtype=vae_dtype)
        timestep = torch.empty(batch)
    decode_kwargs = {"temb": decode_timestep} if vae.config.get("timestep_conditioning") else {}
    return Stages(
        denoiser=lambda: transformer(
            hidden_states=hidden, encoder_hidden_states=text, timestep=timestep,
            encoder_attention_mask=mask, num_frames=latent_frames, height=h, width=w, return_dict=False,
        ),
        text_encoder=lambda: pipe.text_encoder(ids),
        vae_encode=lambda: vae.encode(photo),
        vae_decode=lambda: vae.decode(latents, **decode_kwargs),
        denoiser_batch=batch,
    )


LTX2_TEXT_TOKENS = 1024
"""LTX-2's prompt length: ``encode_prompt`` pads every prompt to ``max_sequence_length``
(1024 by default) and the connectors keep that length."""


def audio_latent_frames(pipe: Any, frames: int, fps: float) -> int:
    """Audio latent frames of a clip, as ``LTX2ImageToVideoPipeline.__call__`` computes them:
    duration × sample rate / mel hop / the audio VAE's temporal compression, rounded
    (121 frames at 24 fps: 5.04 s × 16000 / 160 / 4 = 126)."""
    per_second = pipe.audio_sampling_rate / pipe.audio_hop_length / float(pipe.audio_vae_temporal_compression_ratio)
    return round(frames / fps * per_second)


def _ltx2(pipe: Any, width: int, height: int, frames: int, dtype: Any, batch: int, fps: float) -> Stages:
    """LTX-2 (``LTX2ImageToVideoPipeline``): Gemma 3's hidden states of every layer go through
    the text connectors (one video and one audio embedding), then each step runs the
    transformer once over the video tokens and the clip's audio tokens together; the video VAE
    decodes the frames, the audio VAE the mel spectrogram, and the vocoder makes the waveform."""
    import torch

    vae, audio_vae, transformer = pipe.vae, pipe.audio_vae, pipe.transformer
    config = transformer.config
    latent_frames = (frames - 1) // pipe.vae_temporal_compression_ratio + 1
    h = height // pipe.vae_spatial_compression_ratio
    w = width // pipe.vae_spatial_compression_ratio
    tokens, text_tokens = latent_frames * h * w, LTX2_TEXT_TOKENS
    audio_frames = audio_latent_frames(pipe, frames, fps)
    mel_bins = audio_vae.config.mel_bins // pipe.audio_vae_mel_compression_ratio
    encoder = pipe.text_encoder
    text_config = encoder.config.get_text_config()
    layers = text_config.num_hidden_layers + 1  # the embeddings and every layer's output
    vae_dtype = next(vae.parameters()).dtype
    audio_dtype = next(audio_vae.parameters()).dtype
    with torch.device("meta"):
        ids = torch.zeros(1, text_tokens, dtype=torch.long)
        stacked = torch.empty(batch, text_tokens, text_config.hidden_size * layers, dtype=dtype)
        text_mask = torch.ones(batch, text_tokens, dtype=torch.long)
        video_text, audio_text, connector_mask = pipe.connectors(stacked, text_mask, padding_side="left")
        hidden = torch.empty(batch, tokens, config.in_channels, dtype=dtype)
        audio_hidden = torch.empty(batch, audio_frames, config.audio_in_channels, dtype=dtype)
        timestep = torch.empty(batch, tokens)  # per token: the photo's frame is not noised
        sigma = torch.empty(batch)
        photo = torch.empty(1, 3, 1, height, width, dtype=vae_dtype)
        latents = torch.empty(1, vae.config.latent_channels, latent_frames, h, w, dtype=vae_dtype)
        audio_latents = torch.empty(1, audio_vae.config.latent_channels, audio_frames, mel_bins, dtype=audio_dtype)
        mel = audio_vae.decode(audio_latents, return_dict=False)[0]
    return Stages(
        denoiser=lambda: transformer(
            hidden_states=hidden, audio_hidden_states=audio_hidden,
            encoder_hidden_states=video_text, audio_encoder_hidden_states=audio_text,
            timestep=timestep, audio_timestep=sigma, sigma=sigma,
            encoder_attention_mask=connector_mask, audio_encoder_attention_mask=connector_mask,
            num_frames=latent_frames, height=h, width=w, fps=fps, audio_num_frames=audio_frames,
            use_cross_timestep=True, return_dict=False,
        ),
        # As ``_get_gemma_prompt_embeds``: the full model (its vocabulary head included), every
        # layer's hidden states stacked. The pipeline passes the padding mask too; on `meta` a
        # mask cannot be inspected, and an all-ones mask costs the same work.
        text_encoder=lambda: torch.stack(encoder(input_ids=ids, output_hidden_states=True).hidden_states, dim=-1),
        vae_encode=lambda: vae.encode(photo),
        vae_decode=lambda: vae.decode(latents, None),
        denoiser_batch=batch,
        extra={
            "connectors": lambda: pipe.connectors(stacked, text_mask, padding_side="left"),
            "audio_vae": lambda: audio_vae.decode(audio_latents),
            "vocoder": lambda: pipe.vocoder(mel),
        },
    )


def _svd(pipe: Any, width: int, height: int, frames: int, dtype: Any, batch: int = 1) -> Stages:
    import torch

    vae, unet = pipe.vae, pipe.unet
    scale = pipe.vae_scale_factor
    h, w = height // scale, width // scale
    chunk = 8  # the preset's decode_chunk_size: frames decoded at once
    vae_dtype = next(vae.parameters()).dtype
    encoder = pipe.image_encoder
    with torch.device("meta"):
        # The UNet sees the noisy latents and the photo's latents side by side (8 channels).
        sample = torch.empty(batch, frames, unet.config.in_channels, h, w, dtype=dtype)
        embeds = torch.empty(batch, 1, unet.config.cross_attention_dim, dtype=dtype)
        time_ids = torch.empty(batch, 3, dtype=dtype)
        timestep = torch.empty(1)
        pixels = torch.empty(1, 3, 224, 224, dtype=next(encoder.parameters()).dtype)
        photo = torch.empty(1, 3, height, width, dtype=vae_dtype)
        latents = torch.empty(chunk, vae.config.latent_channels, h, w, dtype=vae_dtype)
    return Stages(
        denoiser=lambda: unet(sample, timestep, encoder_hidden_states=embeds, added_time_ids=time_ids, return_dict=False),
        text_encoder=lambda: encoder(pixels),
        vae_encode=lambda: vae.encode(photo),
        vae_decode=lambda: vae.decode(latents, num_frames=chunk),
        denoiser_batch=batch,
    )


def _cogvideox(pipe: Any, width: int, height: int, frames: int, dtype: Any, batch: int = 1) -> Stages:
    import torch

    vae, transformer = pipe.vae, pipe.transformer
    config = transformer.config
    latent_frames = (frames - 1) // pipe.vae_scale_factor_temporal + 1
    h, w = height // pipe.vae_scale_factor_spatial, width // pipe.vae_scale_factor_spatial
    vae_dtype = next(vae.parameters()).dtype
    text_tokens = config.max_text_seq_length
    with torch.device("meta"):
        # Noisy latents and the photo's latents concatenated on channels (in_channels = 2 × 16).
        hidden = torch.empty(batch, latent_frames, config.in_channels, h, w, dtype=dtype)
        text = torch.empty(batch, text_tokens, config.text_embed_dim, dtype=dtype)
        timestep = torch.empty(batch)
        ids = torch.zeros(1, text_tokens, dtype=torch.long)
        photo = torch.empty(1, 3, 1, height, width, dtype=vae_dtype)
        latents = torch.empty(1, vae.config.latent_channels, latent_frames, h, w, dtype=vae_dtype)
    rotary = None
    if config.use_rotary_positional_embeddings:
        rotary = pipe._prepare_rotary_positional_embeddings(height, width, latent_frames, torch.device("meta"))
    return Stages(
        denoiser=lambda: transformer(
            hidden_states=hidden, encoder_hidden_states=text, timestep=timestep,
            image_rotary_emb=rotary, return_dict=False,
        ),
        text_encoder=lambda: pipe.text_encoder(ids),
        vae_encode=lambda: vae.encode(photo),
        vae_decode=lambda: vae.decode(latents),
        denoiser_batch=batch,
    )


def at_frames(clip: Clip, frames: int) -> Clip:
    """`clip` at `frames` frames, which must be a count its preset renders (its frame rule,
    within its limits); ValueError with the nearest counts otherwise. Not the default clip,
    so no target applies."""
    preset = clip.settings
    step, low, high = preset.frame_step, preset.min_frames, preset.max_frames
    if frames < low or frames > high or (frames - 1) % step:
        k = (min(max(frames, low), high) - 1) // step
        nearest = sorted({n for n in (k * step + 1, (k + 1) * step + 1) if low <= n <= high})
        raise ValueError(
            f"{clip.name} renders {step}k+1 frames from {low} to {high}; {frames} is not one of "
            f"them (nearest: {' or '.join(map(str, nearest))})"
        )
    if frames == clip.frames:
        return clip
    return dataclasses.replace(clip, frames=frames, target_pflop=None)


def half_frames_of(clip: Clip) -> tuple[Clip, int]:
    """`clip` as HALF_FRAMES renders it, and that rate: the clip's length (its first frame to
    its last) at half the preset's rate, on the frame rule (121 frames at 24 fps → 57 at 12).
    ValueError where HALF_FRAMES renders every frame (a family not told its frame rate, a
    rate that is odd or under 16 fps)."""
    from pipeline.backends.families import FAMILIES

    preset = clip.settings
    if not FAMILIES[preset.family].paced_by_frame_rate:
        raise ValueError(
            f"HALF_FRAMES renders every frame of {clip.name}: its pipeline is not told the "
            "frame rate, so half the frames would play in slow motion"
        )
    if preset.fps % 2 or preset.fps < 16:
        raise ValueError(f"HALF_FRAMES renders every frame of {clip.name} at {preset.fps} fps")
    rate = preset.fps // 2
    frames = preset.frames_for((clip.frames - 1) / preset.fps, rate)
    return dataclasses.replace(clip, frames=frames, target_pflop=None), rate


@dataclass(frozen=True)
class Rife:
    """RIFE's work drawing one frame between each pair of `frames` rendered ones."""

    encode_per_frame: float
    motion_per_pair: float
    frames: int
    width: int
    height: int
    """The size the network sees: the clip's, padded to a multiple of 64."""

    @property
    def drawn(self) -> int:
        return self.frames - 1

    @property
    def total(self) -> float:
        return self.encode_per_frame * self.frames + self.motion_per_pair * self.drawn

    @property
    def per_drawn_frame(self) -> float:
        return self.total / max(self.drawn, 1)


def count_rife(width: int, height: int, frames: int) -> Rife:
    """RIFE 4.x's IFNet (the standard 4.25/4.26 shape) built on `meta`, drawing the middle
    frame of each pair of `frames` frames of `width`×`height` as the finish step does."""
    import torch

    from pipeline.finish.rife import PAD, IFNet

    w, h = -(-width // PAD) * PAD, -(-height // PAD) * PAD
    with torch.device("meta"):
        net = IFNet()
        first, second = torch.empty(1, 3, h, w), torch.empty(1, 3, h, w)
        moment = torch.full((1,), 0.5)
        features = (net.encode(first), net.encode(second))
    flow, mask = net.motion(first, second, moment, features)
    return Rife(
        encode_per_frame=flops(lambda: net.encode(first)),
        motion_per_pair=flops(lambda: net.motion(first, second, moment, features))
        + flops(lambda: net.synthesize(first, second, flow, mask)),
        frames=frames,
        width=w,
        height=h,
    )


def half_figures(clip: Clip, full: Count, half_clip: Clip, rate: int, half: Count, rife: Rife) -> list[Figure]:
    """What HALF_FRAMES saves on `clip`: the denoising and the whole clip at both frame
    counts (the half one with RIFE), and RIFE's own work."""
    name, fps = clip.name, clip.settings.fps
    shape = (
        f"{clip.width}×{clip.height}: {half_clip.frames} frames at {rate} fps instead of "
        f"{clip.frames} at {fps}, RIFE draws {rife.drawn} ({(half_clip.frames - 1) * 2 + 1} "
        f"frames at {fps} fps)"
    )
    denoise = half.denoiser_per_clip / full.denoiser_per_clip
    whole = (half.per_clip + rife.total) / full.per_clip
    parts = "denoising, text encoder, VAE" + (" and sound" if full.extra else "")
    return [
        Figure(f"{name}_half_frames_denoise_pflop_per_clip", half.denoiser_per_clip / 1e15, "PFLOP",
               detail=f"{shape}; {denoise:.2f}× of {full.denoiser_per_clip / 1e15:.3f} PFLOP"),
        Figure(f"{name}_clip_pflop", full.per_clip / 1e15, "PFLOP",
               detail=f"the whole clip, {clip.frames} frames: {parts}"),
        Figure(f"{name}_half_frames_clip_pflop", (half.per_clip + rife.total) / 1e15, "PFLOP",
               detail=f"the whole clip with HALF_FRAMES: {parts} at {half_clip.frames} frames, "
               f"and RIFE; {whole:.2f}× of {full.per_clip / 1e15:.3f} PFLOP"),
        Figure(f"{name}_rife_tflop_per_drawn_frame", rife.per_drawn_frame / 1e12, "TFLOP",
               detail=f"IFNet at {rife.width}×{rife.height}: each of {rife.frames} frames encoded "
               f"once ({rife.encode_per_frame / 1e12:.4f}), one motion pass per pair "
               f"({rife.motion_per_pair / 1e12:.4f}); {rife.total / 1e12:.2f} TFLOP for "
               f"{rife.drawn} frames"),
    ]


def figures_for(clip: Clip, work: Count) -> list[Figure]:
    preset = clip.settings
    passes = "CFG, 2 forwards" if work.forwards_per_step == 2 else "no CFG, 1 forward"
    shape = f"{clip.width}×{clip.height}, {clip.frames} frames, {work.steps} steps, {passes} per step"
    weights = ", ".join(
        f"{name} {size / GIB:.1f}" for name, size in sorted(work.weight_bytes.items()) if size
    )
    name = clip.name
    sound = [
        Figure(f"{name}_{part}_tflop", value / 1e12, "TFLOP", detail=EXTRA_DETAIL.get(part, ""))
        for part, value in work.extra.items()
    ]
    return [
        Figure(f"{name}_denoise_pflop_per_clip", work.denoiser_per_clip / 1e15, "PFLOP",
               target=clip.target_pflop, detail=f"{shape}; {clip.note}".rstrip("; ")),
        Figure(f"{name}_denoise_tflop_per_step", work.denoiser_per_step / 1e12, "TFLOP", detail=shape),
        Figure(f"{name}_text_encoder_tflop", work.text_encoder / 1e12, "TFLOP",
               detail="one prompt" + (" and its negative" if work.forwards_per_step == 2 else "")),
        Figure(f"{name}_vae_tflop", (work.vae_encode + work.vae_decode) / 1e12, "TFLOP",
               detail=f"encode {work.vae_encode / 1e12:.1f} + decode {work.vae_decode / 1e12:.1f}"),
        *sound,
        Figure(f"{name}_weights_gib", sum(work.weight_bytes.values()) / GIB, "GiB",
               detail=f"{preset.dtype} (VAE float32 where the preset keeps it): {weights}"),
    ]


EXTRA_DETAIL = {
    "connectors": "text connectors: Gemma's stacked hidden states to the video and audio prompt embeddings",
    "audio_vae": "audio VAE decoding the clip's mel spectrogram",
    "vocoder": "vocoder with bandwidth extension: mel spectrogram to 48 kHz stereo",
}


def half_frame_presets() -> list[str]:
    """The counted presets HALF_FRAMES applies to."""
    out = []
    for name, clip in CLIPS.items():
        try:
            half_frames_of(clip)
        except ValueError:
            continue
        out.append(name)
    return out


def run(
    names: list[str] | None = None, *, frames: int | None = None, half_frames: bool = False
) -> list[Figure]:
    """Each of `names` (default: every counted preset; with `half_frames`, those it applies
    to) at its default clip, or at `frames` frames; with `half_frames` also as HALF_FRAMES
    renders it. ValueError for a name not counted, a frame count a preset does not render, or
    HALF_FRAMES asked of a preset that renders every frame."""
    chosen = names or (half_frame_presets() if half_frames else list(CLIPS))
    unknown = [name for name in chosen if name not in CLIPS]
    if unknown:
        raise ValueError(
            f"no committed configs for {', '.join(unknown)}; counted: {', '.join(CLIPS)}"
        )
    clips = [CLIPS[name] if frames is None else at_frames(CLIPS[name], frames) for name in chosen]
    halves = [half_frames_of(clip) for clip in clips] if half_frames else []
    out: list[Figure] = []
    for index, clip in enumerate(clips):
        full = count(clip)
        out += figures_for(clip, full)
        if half_frames:
            half_clip, rate = halves[index]
            half = count(half_clip, fps=rate)
            rife = count_rife(clip.width, clip.height, half_clip.frames)
            out += half_figures(clip, full, half_clip, rate, half, rife)
    return out


def suffix(frames: int | None = None, half_frames: bool = False) -> str:
    """The results file's suffix, so a variant never replaces the day's plain count."""
    return "-flops" + (f"-{frames}-frames" if frames else "") + ("-half-frames" if half_frames else "")


def main(argv: list[str] | None = None) -> int:
    import argparse

    from bench.__main__ import report

    parser = argparse.ArgumentParser(prog="python -m bench.flops", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("presets", nargs="*", help=f"presets to count: {', '.join(CLIPS)} (default: all)")
    parser.add_argument("--frames", type=int, default=None, metavar="N",
                        help="count each clip at N frames instead of its default")
    parser.add_argument("--half-frames", action="store_true",
                        help="also count the clip as HALF_FRAMES renders it, with RIFE")
    args = parser.parse_args(argv)
    try:
        figures = run(args.presets or None, frames=args.frames, half_frames=args.half_frames)
    except ValueError as exc:
        parser.error(str(exc))
    return report({"flops": figures}, suffix=suffix(args.frames, args.half_frames))


if __name__ == "__main__":
    import sys

    sys.exit(main())
