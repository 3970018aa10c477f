"""Speed-ups on a pipeline's denoiser(s): attention kernel, first-block cache, regional compile.

Each lives in its own module as a frozen config plus an ``apply_*`` function (the layout of
diffusers' ``hooks``), and none may stop a job: a missing kernel or an unsupported model is
logged and the pipeline runs without it.
"""

from __future__ import annotations

from typing import Any

DENOISER_NAMES = ("transformer", "transformer_2", "unet")
"""Components that run once per step (Wan 2.2 A14B has two experts); the speed-ups target them."""


def denoisers(pipe: Any) -> list[Any]:
    """The pipeline's denoising networks that are present."""
    found = [getattr(pipe, name, None) for name in DENOISER_NAMES]
    return [module for module in found if module is not None]
