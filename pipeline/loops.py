"""A true loop: played again and again, the clip's last frame leads into its first with no
jump and no reversal (members compare with Midjourney's loops, which are not ping-pong).

Two ways, in order of preference:

- **end frame**: a model that can end on a chosen image is asked to end on the photo itself,
  so the last frame is the first (as in Midjourney's loops: the start pose closes the clip).
- **crossfade**: anything else (the camera move, models without end-image conditioning, or a
  member's own end image): the clip's last half second dissolves into its first, and the
  result starts where the dissolve leaves off, so the seam is an ordinary step of the clip.
  The render is asked for that half second more, so the loop lasts as long as asked.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    import numpy as np

LoopMethod = Literal["end frame", "crossfade"]
CROSSFADE_SECONDS = 0.5


def crossfade_frames(fps: float, frames: int) -> int:
    """Frames of the dissolve: CROSSFADE_SECONDS, at most a third of the clip."""
    return max(1, min(round(CROSSFADE_SECONDS * fps), frames // 3))


def crossfade_loop(frames: np.ndarray, fade: int) -> np.ndarray:
    """`frames` from frame `fade` on, their last `fade` frames dissolving into frames
    0 … fade-1: the result's last frame is frame fade-1, and its first is frame `fade`,
    so playing it again continues as the original clip did. len(result) = len(frames) - fade."""
    n = len(frames)
    if n < 3 or fade < 1:
        return frames
    import numpy as np

    fade = min(fade, n // 3)
    # The dissolve ends on frame fade-1 itself, so the seam is an ordinary step of the clip.
    weights = (np.arange(1, fade + 1, dtype=np.float32) / fade)[:, None, None, None]
    tail = frames[n - fade :].astype(np.float32)
    head = frames[:fade].astype(np.float32)
    blended = np.rint(tail * (1 - weights) + head * weights).clip(0, 255).astype(np.uint8)
    return np.concatenate([frames[fade : n - fade], blended])
