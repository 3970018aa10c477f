"""Upscale 2× inside an LTX-Video render: Lightricks' spatial latent upsampler.

Real-ESRGAN (:mod:`pipeline.finish.upscale`) sharpens finished frames; an LTX preset can do
better when ``python -m pipeline download ltx-upscale`` has fetched its upsampler. The render
then runs in two passes (diffusers' documented flow, see :class:`~pipeline.presets.LatentUpscale`):
denoise at the base size with ``output_type="latent"``, double the latents' width and height
with ``LTXLatentUpsamplePipeline`` (AdaIN to the base latents' statistics, optional tone
mapping), re-noise them to sigma 0.909 and denoise three distilled steps at twice the size,
then decode. The model draws the detail at the new size itself, with the photo (and an end
image) as conditions at that size.

Here: where the upsampler's files are (hub cache or ``LTX_UPSCALER_WEIGHTS``, never
downloaded by a job), loading it with diffusers' own ``LTXLatentUpsamplerModel.from_pretrained``
and running it on the loaded model's VAE statistics. The two passes themselves are the
diffusion backend's (:meth:`pipeline.backends.diffusion.DiffusionBackend.render`). No torch at
import.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from contract import FinishUnavailable, ModelError, one_line
from pipeline.presets import AUTO_ORDER, PRESETS, LatentUpscale

logger = logging.getLogger("pipeline")

NOTE = (
    "Upscaled 2× inside the model: LTX-Video's latent upsampler doubled the clip and the model "
    "refined it at the new size (not a frame upscaler)."
)
"""What the member reads (Info's warnings) when this path made the clip."""


def _env() -> str:
    from pipeline.finish import LTX_UPSCALER

    return LTX_UPSCALER.env


def upsampler_dir(settings: LatentUpscale) -> Path:
    """The folder ``LTXLatentUpsamplerModel.from_pretrained`` reads (``config.json`` and
    ``diffusion_pytorch_model.safetensors``): ``LTX_UPSCALER_WEIGHTS`` when set (that folder,
    a copy of the whole repo, or the weights file in it), else the hub cache. Never downloads;
    raises FinishUnavailable with what to run when the files are not here."""
    config, weights = settings.files
    override = os.environ.get(_env(), "").strip()
    if override:
        path = Path(override).expanduser()
        candidates = [path.parent] if path.is_file() else [path / settings.subfolder, path]
        for folder in candidates:
            if (folder / "config.json").is_file() and (folder / Path(weights).name).is_file():
                return folder
        raise FinishUnavailable(
            f"{_env()} names {override!r}, which holds no config.json and "
            f"{Path(weights).name} of the LTX latent upsampler; point it at that folder or unset it."
        )
    from pipeline.backends.hub import cached_file

    found = [cached_file(settings.repo_id, name) for name in (config, weights)]
    if None in found:
        raise FinishUnavailable(
            "The LTX-Video latent upsampler is not downloaded on this machine; run "
            f"`python -m pipeline download ltx-upscale` (or set {_env()} to a local folder)."
        )
    return Path(str(found[1])).parent


def latent_upscale_for(model: str) -> LatentUpscale | None:
    """The latent upsampler settings of preset `model` (``auto``: of the first preset it may
    pick that has one), or None."""
    names = AUTO_ORDER if model == "auto" else (model,)
    for name in names:
        preset = PRESETS.get(name)
        if preset is not None and preset.latent_upscale is not None:
            return preset.latent_upscale
    return None


def latent_upscale_available(model: str) -> bool:
    """Whether a job on `model` would upscale in the latent space here (weights present)."""
    settings = latent_upscale_for(model)
    if settings is None:
        return False
    try:
        upsampler_dir(settings)
    except FinishUnavailable:
        return False
    return True


def load_latent_upsampler(folder: Path, *, dtype: Any = None, device: Any = "cpu") -> Any:
    """``LTXLatentUpsamplerModel`` from `folder` in `dtype` on `device`, in eval mode. A file
    that is not the upsampler is one ModelError sentence."""
    from diffusers.pipelines.ltx.modeling_latent_upsampler import (
        LTXLatentUpsamplerModel,
    )

    from pipeline.backends.loader import _dtype_kwarg

    kwargs = {_dtype_kwarg(): dtype} if dtype is not None else {}
    try:
        model = LTXLatentUpsamplerModel.from_pretrained(str(folder), **kwargs)
    except Exception as exc:  # noqa: BLE001 - a broken or foreign file, a config of another model
        raise ModelError(
            f"The LTX latent upsampler in {str(folder)!r} cannot be loaded "
            f"({one_line(str(exc))[:160] or type(exc).__name__}); download it again with "
            "`python -m pipeline download ltx-upscale`."
        ) from None
    if not model.config.spatial_upsample or model.config.temporal_upsample:
        raise ModelError(
            f"The model in {str(folder)!r} is not LTX's 2× spatial latent upsampler; download it "
            "again with `python -m pipeline download ltx-upscale`."
        )
    return model.to(device).eval()


def upsample_latents(vae: Any, upsampler: Any, latents: Any, settings: LatentUpscale) -> Any:
    """`latents` (the normalized output of an LTX render with ``output_type="latent"``) at
    twice the width and height, normalized again, through diffusers' ``LTXLatentUpsamplePipeline``
    on the render's own VAE (only its latent statistics are read: nothing is decoded)."""
    from diffusers import LTXLatentUpsamplePipeline

    expected = getattr(vae.config, "latent_channels", None)
    if expected is not None and upsampler.config.in_channels != expected:
        raise ModelError(
            f"The LTX latent upsampler takes {upsampler.config.in_channels}-channel latents; this "
            f"model's VAE makes {expected}. Use Real-ESRGAN (`python -m pipeline download upscale`)."
        )
    pipe = LTXLatentUpsamplePipeline(vae=vae, latent_upsampler=upsampler)
    pipe.set_progress_bar_config(disable=True)
    return pipe(
        latents=latents,
        adain_factor=settings.adain_factor,
        tone_map_compression_ratio=settings.tone_map_compression_ratio,
        output_type="latent",
    ).frames
