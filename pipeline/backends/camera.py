"""A classic camera move over the still photo: no AI, CPU only, a few seconds per clip.

It is the fallback when no GPU is present and the offline demo, so it must look deliberate:
every move is eased (cosine ease-in-out, so the camera starts and stops gently) and sampled
with float precision, so motion is sub-pixel smooth with no integer-pixel jitter. The virtual
camera only ever looks inside the photo: nothing is invented at the borders.

A fresh clip (what `python -m pipeline animate --model camera` and the workers make) is drawn
by ffmpeg itself: :meth:`CameraBackend.render_yuv420` prepares one still and the move as a
filter graph (:mod:`pipeline.backends.camera_graph`), and ffmpeg draws every frame in C while
x264 encodes, so the clip costs little more than its encode. An extension or a loop needs RGB
frames and takes :meth:`CameraBackend.render`, drawn by Pillow (its separable resize with a
fractional box, or an affine transform when the camera rolls) on a thread pool.
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

from PIL import Image

if TYPE_CHECKING:
    from collections.abc import Callable

    import numpy as np

from contract import CAMERA, CARDS, AnimateRequest, Cancelled, Progress, random_seed
from pipeline.backends.base import BackendInfo, Emit, RenderPlan, ShouldStop
from pipeline.intake import fit, jpeg_thumbnail

DEFAULT_FPS = 24
CARD = CARDS[CAMERA]
"""The camera move's size rule (~720p: sharp on phones and desktop, fast enough on a CPU)."""

CAMERA_PREVIEW_SIDE = 320
"""The preview frame the bot shows while a clip renders."""

_RENDERING = "Rendering the camera move"

Frame = bytes | bytearray | memoryview
"""One yuv420p frame: its Y, U and V planes back to back (BT.709, tv range)."""

_RESAMPLE = Image.Resampling.BICUBIC
"""Bicubic: about a third sharper than bilinear between pixels, and steadier in sharpness as a
view slides across half-pixel offsets."""


@dataclass(frozen=True)
class View:
    """Where the virtual camera looks, in fractions of the source image.

    cx, cy: the view's centre (0.5, 0.5 is the middle). zoom: 1 shows the whole image, 2 a
    quarter of it. roll: rotation in radians.
    """

    cx: float = 0.5
    cy: float = 0.5
    zoom: float = 1.0
    roll: float = 0.0


FULL = View()


EASE_FLOOR = 0.1
"""Share of linear motion mixed into the cosine ease: the camera starts and stops gently
(10 % of its average speed) but never stands still, so every frame moves."""


def ease(t: float) -> float:
    """Cosine ease-in-out with a small linear floor; speed runs from 0.1 up to ~1.51 mid-clip
    (times the average), smoothly, with no jump anywhere."""
    t = min(1.0, max(0.0, t))
    return (1 - EASE_FLOOR) * (0.5 - 0.5 * math.cos(math.pi * t)) + EASE_FLOOR * t


def camera_path(
    move: str, motion: int, frames: int, *, aspect: float, continuing: bool = False
) -> list[View]:
    """One :class:`View` per frame for `move` at `motion` 1–10.

    aspect: source width / height (orbit needs it to keep a rolled view inside the image).
    continuing: the clip extends another one, so it must start on the full frame (the last
    frame of the previous clip) and move from there towards the move's end view.
    """
    if frames < 1:
        raise ValueError("frames must be at least 1")
    steps = [ease(i / (frames - 1)) if frames > 1 else 0.0 for i in range(frames)]
    if continuing:
        end = _move_view(move, motion, 1.0, aspect)
        views = [_blend(FULL, end, e) for e in steps]
    else:
        views = [_move_view(move, motion, e, aspect) for e in steps]
    return [_contain(view, aspect) for view in views]


def max_zoom(move: str, motion: int, *, aspect: float) -> float:
    """The closest the move gets (to size a sharper source); orbit's roll needs a steady zoom."""
    return max(_move_view(move, motion, e, aspect).zoom for e in (0.0, 1.0))


class CameraBackend:
    """The `camera` preset: a Ken Burns style move, labelled as not AI everywhere."""

    info = BackendInfo.from_card(CARDS[CAMERA], family=CAMERA)

    def __init__(self, *, workers: int | None = None) -> None:
        """workers: threads drawing frames (default: the CPUs this process may use, at most 8)."""
        self.workers = workers or min(8, len(os.sched_getaffinity(0)))

    def plan(self, request: AnimateRequest, image_size: tuple[int, int]) -> RenderPlan:
        """Size from the photo's aspect at ~720p unless asked; frames from duration × fps.

        An extension gets one extra frame: its first frame repeats the previous clip's last
        one and is dropped at the seam, so the clip still grows by `duration`.
        """
        fps = request.fps or DEFAULT_FPS
        width, height = _output_size(request, image_size)
        continuing = request.previous_clip is not None
        frames = max(2, round(request.duration * fps)) + (1 if continuing else 0)
        seed = request.seed if request.seed is not None else random_seed()
        move = request.camera
        notes: list[str] = []
        if continuing and move == "zoom_out":
            # Zooming out of the previous clip's last frame would need pixels beyond its edge.
            move = "static"
            notes.append(
                "A camera zoom-out can't continue a clip (there is nothing beyond its last "
                "frame), so a gentle push-in was used instead."
            )
        source = (width, height)
        if not continuing:
            source = _source_size(move, request.motion, (width, height), image_size)
        return RenderPlan(
            width=width,
            height=height,
            num_frames=frames,
            fps=fps,
            steps=0,
            guidance=0.0,
            seed=seed,
            camera=move,
            continuing=continuing,
            source_size=source,
            warnings=tuple(notes),
        )

    def render(
        self,
        image: Image.Image,
        plan: RenderPlan,
        request: AnimateRequest,
        *,
        end_image: Image.Image | None = None,
        emit: Emit = lambda progress: None,
        should_stop: ShouldStop = lambda: False,
    ) -> np.ndarray:
        """Draw the move: uint8 frames (num_frames, height, width, 3).

        `image` may be larger than the output (see plan.source_size) so zoomed-in
        frames stay sharp; any aspect mismatch is centre-cropped away first.
        """
        size = (plan.width, plan.height)
        source, views = _source_and_views(image, plan, request)
        source.load()
        import numpy as np

        out = np.empty((plan.num_frames, plan.height, plan.width, 3), dtype=np.uint8)

        # One sampler for the whole clip: mixing resize and affine would differ by a hair at
        # the switch (kernels differ slightly), a visible tick in an otherwise smooth move.
        affine = any(view.roll != 0.0 for view in views)

        def draw(index: int) -> None:
            out[index] = np.asarray(draw_view(source, views[index], size, affine=affine))

        total = plan.num_frames
        chunk = max(2 * self.workers, math.ceil(total / 24))
        with ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="camera") as pool:
            for start in range(0, total, chunk):
                if should_stop():
                    raise Cancelled()
                stop = min(total, start + chunk)
                list(pool.map(draw, range(start, stop)))
                emit(
                    Progress(
                        "denoise",
                        stop,
                        total,
                        preview=jpeg_thumbnail(out[0], CAMERA_PREVIEW_SIDE) if start == 0 else None,
                        message=_RENDERING,
                    )
                )
        if should_stop():
            raise Cancelled()
        return out

    def render_yuv420(
        self,
        image: Image.Image,
        plan: RenderPlan,
        request: AnimateRequest,
        sink: Callable[[Frame], None],
        *,
        emit: Emit = lambda progress: None,
        should_stop: ShouldStop = lambda: False,
    ) -> None:
        """Draw the move as yuv420p frames (BT.709, tv range) for `sink`: all at once, as a
        still and the ffmpeg filters that draw every frame from it, when the sink takes one
        (`sink.drawn`, see :class:`pipeline.stream.Drawn`); else frame after frame in order,
        drawn by ffmpeg all the same (by Pillow where no ffmpeg program exists).

        The same views as :meth:`render`; a fresh clip only (an extension or a crossfade loop
        needs RGB frames and takes :meth:`render`).
        """
        from pipeline import ffmpeg
        from pipeline.backends.camera_graph import drawn_move, frames, yuv420_planes

        if should_stop():
            raise Cancelled()
        size = (plan.width, plan.height)
        source, views = _source_and_views(image, plan, request, even=True)
        preview = _preview(source, views[0], size)
        emit(Progress("denoise", 0, plan.num_frames, preview=preview, message=_RENDERING))
        if not ffmpeg.have_program():
            # No ffmpeg program to draw them (PyAV encodes): Pillow draws each frame, slowly.
            rolled = any(view.roll != 0.0 for view in views)
            for index, view in enumerate(views, 1):
                planes = yuv420_planes(draw_view(source, view, size, affine=rolled))
                sink(b"".join(plane.tobytes() for plane in planes))
                if index % 24 == 0 and should_stop():
                    raise Cancelled()
        else:
            clip = drawn_move(source, views, size, plan.fps, should_stop)
            if should_stop():
                raise Cancelled()
            whole = getattr(sink, "drawn", None)
            if whole is not None:
                whole(clip)
            else:
                for index, frame in enumerate(frames(clip), 1):
                    sink(frame)
                    if index % 24 == 0 and should_stop():
                        raise Cancelled()
        emit(Progress("denoise", plan.num_frames, plan.num_frames, message=_RENDERING))

    def close(self) -> None:
        """Nothing to free: no model, no GPU."""


def draw_view(
    source: Image.Image, view: View, size: tuple[int, int], *, affine: bool = False
) -> Image.Image:
    """Sample `view` of `source` into an image of `size`, with float (sub-pixel) precision.

    affine: use the general affine sampler even without roll (default: only when rolled).
    """
    sw, sh = source.size
    width, height = size
    ww, wh = sw / view.zoom, sh / view.zoom
    cx, cy = view.cx * sw, view.cy * sh
    if view.roll == 0.0 and not affine:
        # Separable and antialiased when shrinking: the fast path for every move but orbit.
        box = (
            max(0.0, cx - ww / 2),
            max(0.0, cy - wh / 2),
            min(float(sw), cx + ww / 2),
            min(float(sh), cy + wh / 2),
        )
        return source.resize(size, _RESAMPLE, box=box)
    cos, sin = math.cos(view.roll), math.sin(view.roll)
    a, b = ww / width * cos, -wh / height * sin
    d, e = ww / width * sin, wh / height * cos
    c = cx - a * width / 2 - b * height / 2
    f = cy - d * width / 2 - e * height / 2
    return source.transform(size, Image.Transform.AFFINE, (a, b, c, d, e, f), resample=_RESAMPLE)


def _preview(source: Image.Image, view: View, size: tuple[int, int]) -> bytes:
    """The first frame as a small JPEG for the progress message, drawn straight at its size."""
    scale = CAMERA_PREVIEW_SIDE / max(size)
    small = (max(1, round(size[0] * scale)), max(1, round(size[1] * scale)))
    return jpeg_thumbnail(draw_view(source, view, small), CAMERA_PREVIEW_SIDE)


# -- the moves --------------------------------------------------------------------------------


def _strength(motion: int, low: float, high: float) -> float:
    """Map motion 1..10 linearly onto [low, high]."""
    return low + (high - low) * (min(10, max(1, motion)) - 1) / 9


def _move_view(move: str, motion: int, e: float, aspect: float) -> View:
    """The view at eased progress e ∈ [0, 1] of a fresh (not continuing) clip."""
    if move == "static":  # a barely perceptible push-in: the photo "breathes"
        return View(zoom=_log_lerp(1.0, 1.0 + _strength(motion, 0.015, 0.06), e))
    if move in ("zoom_in", "zoom_out"):
        deep = 1.0 + _strength(motion, 0.10, 0.50)
        start, end = (1.0, deep) if move == "zoom_in" else (deep, 1.0)
        return View(zoom=_log_lerp(start, end, e))
    if move in ("pan_left", "pan_right", "tilt_up", "tilt_down"):
        zoom = 1.0 + _strength(motion, 0.06, 0.30)
        room = 0.5 - 0.5 / zoom  # how far the centre can travel either way
        # Panning left turns the camera left: the view's centre moves towards x = 0.
        sign = -1.0 if move in ("pan_left", "tilt_up") else 1.0
        offset = sign * room * (2 * e - 1)
        if move.startswith("pan"):
            return View(cx=0.5 + offset, zoom=zoom)
        return View(cy=0.5 + offset, zoom=zoom)
    if move == "orbit":
        return _orbit(motion, e, aspect)
    raise ValueError(f"unknown camera move {move!r}")


def _orbit(motion: int, e: float, aspect: float) -> View:
    """A slow sideways arc that banks into the turn: the view sweeps across, rises and falls
    along a shallow curve, and rolls a few degrees, at a steady zoom just deep enough that the
    rolled view never leaves the photo."""
    sweep = _strength(motion, 0.02, 0.08)
    rise = 0.35 * sweep
    bank = math.radians(_strength(motion, 0.5, 3.0))

    def at(phase: float) -> View:  # phase ∈ [-1, 1]
        return View(
            cx=0.5 + sweep * phase, cy=0.5 - rise * (1 - phase * phase), roll=-bank * phase
        )

    zoom = 1.002 * max(_required_zoom(at(p / 32 - 1), aspect) for p in range(65))
    view = at(2 * e - 1)
    return View(cx=view.cx, cy=view.cy, zoom=zoom, roll=view.roll)


def _required_zoom(view: View, aspect: float) -> float:
    """The least zoom at which `view` (centre, roll) lies wholly inside the image."""
    cos, sin = abs(math.cos(view.roll)), abs(math.sin(view.roll))
    slack_x = max(1e-6, 1 - 2 * abs(view.cx - 0.5))
    slack_y = max(1e-6, 1 - 2 * abs(view.cy - 0.5))
    return max((cos + sin / aspect) / slack_x, (cos + sin * aspect) / slack_y, 1.0)


def _contain(view: View, aspect: float) -> View:
    zoom = max(view.zoom, _required_zoom(view, aspect))
    return view if zoom == view.zoom else View(view.cx, view.cy, zoom, view.roll)


def _blend(start: View, end: View, e: float) -> View:
    return View(
        cx=start.cx + (end.cx - start.cx) * e,
        cy=start.cy + (end.cy - start.cy) * e,
        zoom=_log_lerp(start.zoom, end.zoom, e),
        roll=start.roll + (end.roll - start.roll) * e,
    )


def _log_lerp(start: float, end: float, e: float) -> float:
    """Interpolate zoom geometrically: equal steps of e look like equal speeds of zoom."""
    return start * (end / start) ** e


# -- sizes ------------------------------------------------------------------------------------


def _output_size(request: AnimateRequest, image_size: tuple[int, int]) -> tuple[int, int]:
    aspect = image_size[0] / image_size[1]
    if request.width and request.height:
        return _even(request.width), _even(request.height)
    if request.width:
        return _even(request.width), _even(max(16, round(request.width / aspect)))
    if request.height:
        return _even(max(16, round(request.height * aspect))), _even(request.height)
    size = CARD.working_size(aspect)
    assert size is not None  # the camera card has an area rule
    return size


OVERSAMPLE = 0.97
"""The deepest view is drawn from just under one source pixel per output pixel when the photo
has them: as sharp as the clip can show, every other view a downscale, and ffmpeg's per-frame
scaling (and the still it scales from) no larger than it needs to be."""


def _source_size(
    move: str, motion: int, output: tuple[int, int], photo: tuple[int, int]
) -> tuple[int, int]:
    """How large a source to fit the photo to before drawing the move.

    As large as the deepest zoom needs (times OVERSAMPLE), never larger than the photo
    provides (a smaller photo is taken at its own size, and every frame scales it up with
    swscale's bicubic; an orbit's bilinear roll gets it fitted to the clip first), and
    never within a few percent of 1:1 with the view at either end of the move, where it is
    slowest: whole-pixel crops and scales reach few sub-pixel positions near 1:1 (see
    :mod:`pipeline.backends.camera_graph`), and a pan at exactly one source pixel per output
    pixel pulses in sharpness (sharp at whole-pixel offsets, softer between).
    """
    width, height = output
    aspect = width / height
    available = min(photo[0] / width, photo[1] / height)
    ends = [_move_view(move, motion, e, aspect).zoom for e in (0.0, 1.0)]
    scale = min(max(ends) * OVERSAMPLE, available)
    if move == "orbit":  # drawn with bilinear sampling: upscale a small photo well, once
        scale = max(scale, 1.0)
    for zoom in sorted(ends):
        if 0.97 < scale / zoom < 1.04:
            scale = zoom * 0.97
    return _even(round(width * scale)), _even(round(height * scale))


def _even(n: int) -> int:
    return max(2, n - n % 2)


__all__ = [
    "CameraBackend",
    "View",
    "camera_path",
    "draw_view",
    "ease",
    "max_zoom",
]


def _source_and_views(
    image: Image.Image, plan: RenderPlan, request: AnimateRequest, *, even: bool = False
) -> tuple[Image.Image, list[View]]:
    """The photo in RGB at the clip's aspect, and the camera's view for every frame.
    `even`: sides cut to even numbers, as 4:2:0 chroma planes need."""
    source = image if image.mode == "RGB" else image.convert("RGB")
    if abs(math.log((source.width / source.height) / (plan.width / plan.height))) > 0.01:
        source = fit(source, plan.width, plan.height)
    if even and (source.width % 2 or source.height % 2):
        source = source.crop((0, 0, source.width - source.width % 2, source.height - source.height % 2))
    views = camera_path(
        plan.camera or request.camera,
        request.motion,
        plan.num_frames,
        aspect=source.width / source.height,
        continuing=plan.continuing,
    )
    return source, views
