"""The width×height a diffusion model renders a photo at, on the loaded model's size rules."""

from __future__ import annotations

import logging

from contract import AnimateRequest
from contract.sizes import choose_size, size_for_area, snap_size
from pipeline.backends.families import Constraints
from pipeline.presets import Preset

logger = logging.getLogger("pipeline")


def render_size(
    request: AnimateRequest,
    image_size: tuple[int, int],
    rules: Constraints,
    preset: Preset,
    *,
    name: str,
) -> tuple[int, int]:
    """A fixed-size model's size; else the requested size snapped to the model's multiple;
    else the preset's pixel budget or bucket for the photo's aspect ratio.

    Size changes are logged, not told to the member: when extending a clip the orchestrator
    asks for the previous clip's size and scales our frames back to it anyway.
    """
    image_w, image_h = image_size
    aspect = image_w / image_h
    if rules.fixed_size is not None:
        width, height = rules.fixed_size
        if request.width or request.height:
            logger.info("%s only renders at %dx%d; requested size not used", name, width, height)
        return width, height
    if request.width or request.height:
        want_w = request.width or round(request.height * aspect)  # type: ignore[operator]
        want_h = request.height or round(request.width / aspect)  # type: ignore[operator]
        width, height = snap_size(want_w, want_h, rules.multiple)
        if (width, height) != (want_w, want_h):
            logger.info(
                "size %dx%d -> %dx%d (multiples of %d)", want_w, want_h, width, height, rules.multiple
            )
        return width, height
    if preset.area:
        return size_for_area(aspect, preset.area, rules.multiple)
    return snap_size(*choose_size(aspect, preset.buckets), rules.multiple)
