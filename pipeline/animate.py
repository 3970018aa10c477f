"""The orchestrator: one request in, one MP4 out, whatever the backend.

Intake, extension and encoding live here so every backend (the camera move, each diffusers
family, test doubles) gets them identically and only turns one fitted image into frames.
Nothing here imports torch: the camera path and the bot-side tests stay light.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from PIL import Image

from contract import (
    AnimateRequest,
    AnimateResult,
    Cancelled,
    ModelError,
    Progress,
)
from pipeline.backends.base import Backend, Rendered, RenderPlan
from pipeline.encode import EncodedVideo, decode_frames, encode_mp4
from pipeline.finish import FinishPlan
from pipeline.finish import Method as FinishMethod
from pipeline.finish import apply as apply_finish
from pipeline.finish import check as check_finish
from pipeline.intake import (
    OpenedPhoto,
    Photo,
    fit,
    load_photo,
    low_resolution_warning,
    open_photo,
)
from pipeline.loops import (
    CROSSFADE_SECONDS,
    LoopMethod,
    crossfade_frames,
    crossfade_loop,
)

if TYPE_CHECKING:
    import numpy as np

    from pipeline.audio import Soundtrack

log = logging.getLogger(__name__)

ENCODER = "auto"
"""NVENC when this machine's ffmpeg can use it (probed once), libx264 otherwise."""

PROMPT_IGNORED = "This model ignores text prompts; motion comes from the motion strength setting."
END_IMAGE_IGNORED = "This model can't use an end image, so it was ignored."
FINISH_NOT_ON_EXTENSIONS = (
    "An extension keeps the clip's frame rate and size, so smoothing and upscaling were not "
    "applied again."
)


def _ignore(progress: Progress) -> None:
    """Default `emit`: nobody is listening."""


def _never() -> bool:
    """Default `should_stop`: run to the end."""
    return False


def animate(
    request: AnimateRequest,
    backend: Backend,
    *,
    emit: Callable[[Progress], None] = _ignore,
    should_stop: Callable[[], bool] = _never,
    out_path: str | os.PathLike[str] | None = None,
    photo: Photo | OpenedPhoto | None = None,
) -> AnimateResult:
    """Run one job: intake → plan → fit → render → (extend) → encode.

    emit: receives Progress events (intake, the backend's denoise steps, encode).
    should_stop: polled between stages and by the backend; True raises Cancelled.
    out_path: also write the MP4 there; it appears only complete, never on failure.
    photo: ``request.image`` as the caller already opened or decoded it (the CLI judges the
    photo before loading a model; takes share one), else it is opened here.
    Raises PipelineError subclasses whose message is meant for the member.
    """
    started = time.perf_counter()
    timings: dict[str, float] = {}
    notes: list[str] = []

    def checkpoint() -> None:
        if should_stop():
            raise Cancelled()

    emit(Progress("intake", message="Reading the photo"))
    # The header first: the plan needs only the photo's size, and then says how much of a
    # JPEG to decode (OpenedPhoto.decode's cover).
    opened = photo if isinstance(photo, OpenedPhoto) else None
    if photo is None:
        opened = open_photo(request.image)
    previous: np.ndarray | None = None
    fps: float
    start: Image.Image | None = None
    if request.previous_clip is not None:
        if not backend.info.supports_extend:
            raise ModelError(f"{backend.info.label} can't extend a clip; choose another model.")
        previous, fps = decode_frames(request.previous_clip)
        # The new part continues the old one: same size, same rate, from its last frame.
        request = request.replace(
            width=previous.shape[2], height=previous.shape[1], fps=min(60, max(1, round(fps)))
        )
        start = Image.fromarray(previous[-1])
    if start is not None:
        start_size = start.size
    else:
        start_size = opened.size if opened is not None else photo.image.size  # type: ignore[union-attr]
    checkpoint()

    loop: LoopMethod | None = None
    if request.loop and previous is None:
        if backend.info.supports_end_image and request.end_image is None:
            loop = "end frame"
        else:
            loop = "crossfade"
            # The dissolve eats half a second: render that much more, so the loop lasts
            # as long as asked (a model with fixed lengths rounds it back).
            request = request.replace(duration=request.duration + CROSSFADE_SECONDS)
    plan = backend.plan(request, start_size)
    notes += plan.warnings
    if (request.prompt.strip() or request.negative_prompt.strip()) and not (
        backend.info.supports_prompt
    ):
        notes.append(PROMPT_IGNORED)
    source_size = plan.source_size or (plan.width, plan.height)
    if opened is not None:
        photo = opened.decode(cover=source_size if previous is None else None)
    assert isinstance(photo, Photo)
    notes[:0] = photo.warnings
    if start is None:
        start = photo.image
    image = fit(start, source_size[0], source_size[1])
    end_image: Image.Image | None = None
    if request.end_image is not None:
        if backend.info.supports_end_image:
            end_image = fit(load_photo(request.end_image).image, source_size[0], source_size[1])
        else:
            notes.append(END_IMAGE_IGNORED)
    elif loop == "end frame":
        end_image = fit(start, source_size[0], source_size[1])  # end where it starts
    if previous is None:
        soft = low_resolution_warning(photo.original_size, (plan.width, plan.height))
        if soft:
            notes.append(soft)
    timings["intake"] = time.perf_counter() - started  # decode, orient, plan and fit
    # What the model did not do itself (and, with HALF_FRAMES, the frames it left to RIFE).
    finish = FinishPlan.of(request, upscaled=plan.upscaled, interpolated=plan.interpolated)
    finishing: dict[str, FinishMethod] = {}
    if finish.active and previous is not None:
        # The new part already takes the clip's rate and size; finishing the chain again
        # would double what the first part had.
        notes.append(FINISH_NOT_ON_EXTENSIONS)
    elif finish.active:
        # Known before the render: a job this machine cannot finish fails in a second.
        # On the frames the model hands over (twice the size after a latent upscale).
        finishing = check_finish(
            finish, frames=plan.num_frames, width=plan.width * plan.upscaled,
            height=plan.height * plan.upscaled, fps=plan.fps,
        )
    checkpoint()

    draw_yuv420 = getattr(backend, "render_yuv420", None)
    if draw_yuv420 is not None and previous is None and loop is None and not finishing:
        # The camera move: frames stream into the encoder as they are drawn.
        return _streamed(request, backend, plan, image, emit, should_stop, out_path, timings, notes)

    render_started = time.perf_counter()
    rendered = backend.render(
        image, plan, request, end_image=end_image, emit=emit, should_stop=should_stop
    )
    timings["render"] = time.perf_counter() - render_started
    frames, audio = (
        (rendered.frames, rendered.audio) if isinstance(rendered, Rendered) else (rendered, None)
    )
    _check_frames(frames, plan)
    clip: np.ndarray | Sequence[np.ndarray]
    if previous is not None:
        if frames.shape[1:3] != previous.shape[1:3]:
            frames = _resize_frames(frames, previous.shape[2], previous.shape[1])
        # The new clip's first frame is the previous clip's last: keep only one of them.
        clip = [*previous, *frames[1:]]
        audio = _extended_audio(request, len(previous), fps, audio, len(frames) - 1)
    else:
        clip = frames
        fps = plan.fps
        if audio is not None:
            audio = audio.fitted(len(frames) / fps)
        if loop == "crossfade":
            fade = crossfade_frames(fps, len(frames))
            clip = crossfade_loop(frames, fade)
            if audio is not None:
                from pipeline.audio import crossfade_loop_audio

                audio = crossfade_loop_audio(audio, fps, len(frames), fade)
    if not request.audio:
        audio = None
    checkpoint()
    if finishing:
        import numpy as np

        finish_started = time.perf_counter()
        clip, fps, finished = apply_finish(
            np.asarray(clip), fps, finish, finishing, emit=emit, should_stop=should_stop
        )
        notes += finished
        if audio is not None:
            audio = audio.fitted(len(clip) / fps)
        timings["finish"] = time.perf_counter() - finish_started
        checkpoint()

    emit(Progress("encode", message="Encoding the video"))
    encode_started = time.perf_counter()
    video = encode_mp4(
        clip,
        fps,
        max_bytes=request.max_bytes,
        metadata=_metadata(request, plan, backend),
        out_path=out_path,
        encoder=ENCODER,
        audio=audio,
    )
    timings["encode"] = time.perf_counter() - encode_started
    timings["total"] = time.perf_counter() - started
    return _result(video, plan, backend, timings, notes, loop=loop, audio=audio is not None)


def _result(
    video: EncodedVideo,
    plan: RenderPlan,
    backend: Backend,
    timings: dict[str, float],
    notes: list[str],
    *,
    loop: LoopMethod | None = None,
    audio: bool = False,
) -> AnimateResult:
    return AnimateResult(
        video=video.data,
        width=video.width,
        height=video.height,
        frames=video.frames,
        fps=video.fps,
        seed=plan.seed,
        model=backend.info.name,
        timings=timings,
        warnings=tuple(dict.fromkeys(notes)),
        path=video.path,
        loop=loop,
        prompt=plan.prompt or None,
        audio=audio,
        steps=plan.steps or None,
    )


def _streamed(
    request: AnimateRequest,
    backend: Backend,
    plan: RenderPlan,
    image: Image.Image,
    emit: Callable[[Progress], None],
    should_stop: Callable[[], bool],
    out_path: str | os.PathLike[str] | None,
    timings: dict[str, float],
    notes: list[str],
) -> AnimateResult:
    """A fresh clip from a backend that draws yuv420p frames (the camera move): encoding runs
    beside the drawing, so "render" is until the last frame is drawn and "encode" the rest."""
    from pipeline.stream import Sink, Yuv420Frames, encode_while_drawing

    started = time.perf_counter()
    frames = Yuv420Frames(plan.width, plan.height, plan.num_frames)

    def draw(sink: Sink) -> None:
        backend.render_yuv420(  # type: ignore[attr-defined]
            image, plan, request, sink, emit=emit, should_stop=should_stop
        )
        emit(Progress("encode", message="Encoding the video"))

    video = encode_while_drawing(
        draw,
        frames,
        plan.fps,
        max_bytes=request.max_bytes,
        metadata=_metadata(request, plan, backend),
        out_path=out_path,
        encoder=ENCODER,
    )
    drawn = frames.finished or time.perf_counter()
    timings["render"] = drawn - started
    timings["encode"] = time.perf_counter() - drawn
    timings["total"] = time.perf_counter() - started + timings["intake"]
    return _result(video, plan, backend, timings, notes)


def _extended_audio(
    request: AnimateRequest,
    previous_frames: int,
    fps: float,
    new: Soundtrack | None,
    new_frames: int,
) -> Soundtrack | None:
    """The chain's sound: the previous clip's track, then the new part's (without its first
    frame, which the previous clip already shows). Silence stands in for whichever side has no
    sound, so the track stays in step with the picture; None when neither has any."""
    if not request.audio:
        return None
    from pipeline.audio import Soundtrack, read_audio

    before = read_audio(
        request.previous_clip or b"",
        rate=new.rate if new is not None else None,
        channels=new.channels if new is not None else None,
    )
    if before is None and new is None:
        return None
    rate = new.rate if new is not None else before.rate  # type: ignore[union-attr]
    channels = new.channels if new is not None else before.channels  # type: ignore[union-attr]
    before_seconds = previous_frames / fps
    head = (
        before.fitted(before_seconds) if before is not None
        else Soundtrack.silence(before_seconds, rate, channels)
    )
    if new is None:
        return head.then(Soundtrack.silence(new_frames / fps, rate, channels))
    tail = new.fitted((new_frames + 1) / fps).slice(1 / fps)
    return head.then(tail).fitted((previous_frames + new_frames) / fps)


def _check_frames(frames: np.ndarray, plan: RenderPlan) -> None:
    import numpy as np

    expected = (plan.height * plan.upscaled, plan.width * plan.upscaled, 3)
    if (
        not isinstance(frames, np.ndarray)
        or frames.ndim != 4
        or frames.shape[1:] != expected
        or frames.dtype != np.uint8
        or len(frames) < 1
    ):
        shape = getattr(frames, "shape", None)
        log.error("backend returned %s frames %s, expected (*, %s) uint8", type(frames), shape, expected)
        raise ModelError("The model produced video frames of an unexpected shape.")


def _resize_frames(frames: np.ndarray, width: int, height: int) -> np.ndarray:
    """Bring a backend's frames to the previous clip's size (its family rounded the size)."""
    import numpy as np

    return np.stack([np.asarray(fit(Image.fromarray(f), width, height)) for f in frames])


def _metadata(request: AnimateRequest, plan: RenderPlan, backend: Backend) -> dict[str, str]:
    """Tags a member can read back from the file: what made it and how to make it again."""
    camera = plan.camera or request.camera
    tags = {
        "title": request.prompt or f"{backend.info.label}: {camera.replace('_', ' ')}",
        "prompt": request.prompt,
        "negative_prompt": request.negative_prompt,
        "seed": str(plan.seed),
        "model": backend.info.name,
        "camera": camera,
        "motion": str(request.motion),
    }
    summary = "; ".join(f"{key}={value}" for key, value in tags.items() if value and key != "title")
    tags["comment"] = summary
    return {key: value for key, value in tags.items() if value}
