"""Finishing a clip that was already delivered: the "Smooth" and "Upscale 2×" buttons.

A member who presses them wants the same video, smoother or sharper, not a new render: the
MP4 is decoded, finished and encoded again under the upload limit, with its sound and tags.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable

from contract import AnimateResult, Progress
from pipeline import finish
from pipeline.encode import decode_frames, encode_mp4

log = logging.getLogger(__name__)


def refinish(
    video: bytes,
    plan: finish.FinishPlan,
    *,
    seed: int = 0,
    model: str = "",
    max_bytes: int | None = None,
    emit: Callable[[Progress], None] = lambda p: None,
    should_stop: Callable[[], bool] = lambda: False,
    out_path: str | os.PathLike[str] | None = None,
) -> AnimateResult:
    """`video` (an MP4 this bot made) smoothed and/or upscaled as `plan` says. Raises
    InputError for a clip that cannot take it and FinishUnavailable before any work when
    this machine cannot (see :func:`pipeline.finish.check`)."""
    started = time.perf_counter()
    emit(Progress("decode", message="Reading the clip"))
    frames, fps = decode_frames(video)
    height, width = frames.shape[1:3]
    methods = finish.check(plan, frames=len(frames), width=width, height=height, fps=fps)
    from pipeline.audio import read_audio

    audio = read_audio(video)
    frames, fps, notes = finish.apply(
        frames, fps, plan, methods, emit=emit, should_stop=should_stop
    )
    emit(Progress("encode", message="Encoding the video"))
    encoded = encode_mp4(
        frames, fps, max_bytes=max_bytes, out_path=out_path, encoder="auto",
        audio=audio.fitted(len(frames) / fps) if audio is not None else None,
        metadata={"seed": str(seed), "model": model} if model else None,
    )
    return AnimateResult(
        video=encoded.data, width=encoded.width, height=encoded.height, frames=encoded.frames,
        fps=encoded.fps, seed=seed, model=model, timings={"total": time.perf_counter() - started},
        warnings=tuple(notes), path=encoded.path, audio=audio is not None,
    )
