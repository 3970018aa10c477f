"""The arithmetic that picks a render size from a photo's aspect ratio.

Pure functions on numbers, shared by the workers (which render at that size) and the bot
(which warns about a low-resolution photo before the member pays).
"""

from __future__ import annotations

import math
from collections.abc import Sequence


def choose_size(aspect: float, buckets: Sequence[tuple[int, int]]) -> tuple[int, int]:
    """The bucket closest to `aspect` (width/height) in log-ratio; a tie goes to the larger area.

    Log-ratios make 2:1 and 1:2 equally far from 1:1, which plain ratio differences do not.
    """
    if not buckets:
        raise ValueError("choose_size needs at least one bucket")
    target = math.log(aspect)

    def key(bucket: tuple[int, int]) -> tuple[float, int]:
        w, h = bucket
        return (round(abs(math.log(w / h) - target), 9), -w * h)

    return min(buckets, key=key)


def size_for_area(
    aspect: float, area: int, multiple: int, max_side: int | None = None
) -> tuple[int, int]:
    """A width×height near `area` pixels, both multiples of `multiple`, aspect as close as possible.

    For families with a pixel budget rather than fixed buckets. The ideal real-valued size is
    rounded both ways on each side and the candidate closest in aspect wins (closer area breaks
    a tie), so a 451×300 photo at a 720p budget gives 1184×784, not a squashed 1168×784.
    """
    if aspect <= 0 or area <= 0 or multiple <= 0:
        raise ValueError("aspect, area and multiple must be positive")
    width = math.sqrt(area * aspect)
    height = math.sqrt(area / aspect)
    if max_side is not None and max(width, height) > max_side:
        shrink = max_side / max(width, height)
        width, height = width * shrink, height * shrink

    def options(value: float) -> set[int]:
        low = max(multiple, math.floor(value / multiple) * multiple)
        high = max(multiple, math.ceil(value / multiple) * multiple)
        return {low, high}

    candidates = [
        (w, h)
        for w in options(width)
        for h in options(height)
        if max_side is None or max(w, h) <= max(max_side, multiple)
    ] or [(max(multiple, w), max(multiple, h)) for w in options(width) for h in options(height)]
    target = math.log(aspect)
    return min(
        candidates,
        key=lambda s: (
            round(abs(math.log(s[0] / s[1]) - target), 9),
            abs(s[0] * s[1] - area),
        ),
    )


def snap_size(width: int, height: int, multiple: int) -> tuple[int, int]:
    """Round a requested size to the nearest multiples (at least one multiple each)."""
    m = max(1, int(multiple))
    return max(m, round(width / m) * m), max(m, round(height / m) * m)


def low_resolution_warning(
    original_size: tuple[int, int], target_size: tuple[int, int]
) -> str | None:
    """A sentence for the member when the photo will be upscaled (shorter sides compared)."""
    if min(original_size) >= min(target_size):
        return None
    (ow, oh), (tw, th) = original_size, target_size
    return (
        f"Your photo is {ow}×{oh}; the model works at {tw}×{th}, so it was upscaled and the "
        "video may look soft. A larger photo gives a sharper result."
    )
