"""A true loop: the last frame leads into the first, with no ping-pong. The camera move (and
any model without end-image conditioning) crossfades its end into its start; a model that can
end on an image is asked to end on the photo. Every clip is read back by a real decoder."""

# ruff: noqa: F811  (pytest fixtures imported from tiny_models are "redefined" as arguments)

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from photos import photo_bytes
from tiny_models import tiny_ltx_dir  # noqa: F401

from contract import AnimateRequest, BackendOptions
from pipeline.animate import animate
from pipeline.backends.camera import CameraBackend
from pipeline.encode import decode_frames
from pipeline.loops import crossfade_loop


def seam(frames: np.ndarray) -> float:
    """Mean absolute difference between the last frame and the first: the jump a viewer sees
    each time the clip starts again."""
    return float(np.abs(frames[-1].astype(np.int16) - frames[0].astype(np.int16)).mean())


def steps(frames: np.ndarray) -> np.ndarray:
    return np.abs(np.diff(frames.astype(np.int16), axis=0)).mean(axis=(1, 2, 3))


def test_the_crossfade_starts_where_the_dissolve_leaves_off() -> None:
    ramp = np.stack([np.full((4, 4, 3), 10 * i, np.uint8) for i in range(20)])
    looped = crossfade_loop(ramp, 5)
    assert len(looped) == 15
    assert looped[0, 0, 0, 0] == 50  # frame 5 of the original
    # The last frames dissolve from frames 15..19 into frames 0..4 and end on frame 4 itself.
    assert [int(v) for v in looped[:10, 0, 0, 0]] == [50, 60, 70, 80, 90, 100, 110, 120, 130, 140]
    # frame 15 (150) weighs 4/5 against frame 0 (0), …, frame 19 gives way to frame 4 (40)
    assert [int(v) for v in looped[10:, 0, 0, 0]] == [120, 100, 80, 60, 40]


@pytest.mark.parametrize("camera", ["zoom_in", "pan_right", "orbit"])
def test_a_camera_loop_has_no_jump_at_the_seam(camera: str) -> None:
    request = AnimateRequest(
        image=photo_bytes("coffee"), camera=camera, motion=8, duration=2.0, fps=24,
        width=320, height=192, seed=1,
    )
    plain, _ = decode_frames(animate(request, CameraBackend()).video)
    result = animate(request.replace(loop=True), CameraBackend())
    looped, _ = decode_frames(result.video)
    assert result.loop == "crossfade"
    assert len(looped) == 48  # as long as asked: the render ran half a second longer
    # The plain clip jumps back from its end view to its start; the loop's seam is no bigger
    # than the largest step inside the clip, and a small fraction of the plain clip's jump.
    assert seam(plain) > 4 * seam(looped), (seam(plain), seam(looped))
    assert seam(looped) <= steps(looped).max() + 0.5


def test_a_model_that_ends_on_an_image_is_asked_to_end_on_the_photo(
    tiny_ltx_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """LTX conditions its first and last frames on images: a loop asks diffusers' own call
    for the photo at both ends. (With random weights the model ignores keyframes, so the
    seam itself can only be judged with real weights on a GPU.)"""
    import diffusers

    from pipeline.backends.diffusion import DiffusionBackend

    calls: list[dict] = []
    original = diffusers.LTXConditionPipeline.__call__

    def spy(self, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        calls.append(kwargs)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(diffusers.LTXConditionPipeline, "__call__", spy)
    backend = DiffusionBackend(str(tiny_ltx_dir), options=BackendOptions(device="cpu"))
    request = AnimateRequest(
        image=photo_bytes("coffee"), prompt="a cup", seed=3, duration=1.0, fps=8, width=64,
        height=64, steps=2,
    )
    plain = animate(request, backend)
    result = animate(request.replace(loop=True), backend)
    assert (plain.loop, result.loop) == (None, "end frame")
    assert result.frames == plain.frames  # no extra frames: the model closes the loop itself
    first, looped = calls[-2], calls[-1]
    assert not isinstance(first["image"], list)
    start, end = looped["image"]
    assert looped["frame_index"] == [0, result.frames - 1]
    assert np.array_equal(np.asarray(start), np.asarray(end))  # it ends where it starts
