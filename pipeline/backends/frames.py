"""Frames in and out of a diffusers pipeline: fitting the photo, uint8 output, a preview JPEG."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from contract import PipelineError

if TYPE_CHECKING:
    import numpy as np
    from PIL import Image

PREVIEW_SIDE = 256


def to_uint8(frames: Any) -> np.ndarray:
    """(T, H, W, 3) floats in [0, 1] (or uint8, or PIL images) as a contiguous uint8 array."""
    import numpy as np

    if isinstance(frames, list):
        frames = np.stack([np.asarray(frame.convert("RGB")) for frame in frames])
    array = np.asarray(frames)
    if array.dtype != np.uint8:
        array = np.clip(np.rint(array.astype(np.float32) * 255.0), 0, 255).astype(np.uint8)
    if array.ndim != 4 or array.shape[-1] != 3:
        raise PipelineError(
            f"The model returned frames shaped {array.shape}, not (frames, height, width, 3)."
        )
    return np.ascontiguousarray(array)


def jpeg_preview(frame: np.ndarray, side: int = PREVIEW_SIDE) -> bytes:
    """A small JPEG of one frame, for the progress message."""
    from pipeline.intake import jpeg_thumbnail

    return jpeg_thumbnail(frame, side)


def fitted(image: Image.Image, width: int, height: int) -> Image.Image:
    """`image` at exactly width×height, cropped to the aspect rather than stretched."""
    if image.size == (width, height):
        return image
    from pipeline.intake import fit

    return fit(image, width, height)
