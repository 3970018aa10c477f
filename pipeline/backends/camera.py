"""A classic camera move over the still photo: no AI, CPU only, a few seconds per clip.

It is the fallback when no GPU is present and the offline demo, so it must look deliberate:
every move is eased (cosine ease-in-out, so the camera starts and stops gently) and sampled
with float precision (Pillow's separable resize with a fractional box, or an affine transform
when the camera rolls), so motion is sub-pixel smooth with no integer-pixel jitter. The
virtual camera only ever looks inside the photo: nothing is invented at the borders.

Frames are drawn on a thread pool: Pillow releases the GIL while resampling, and a 5 s 720p
clip must render and encode within ~2 s on two cores.

The encoder, not the drawing, is the bulk of a clip's time (x264 alone takes ~1 CPU-second of
a 5 s 720p clip), so :meth:`CameraBackend.render_yuv420` draws what ffmpeg encodes, yuv420p
planes (half the bytes of RGB, no colour conversion in ffmpeg), for ffmpeg to encode while the
rest are drawn (:mod:`pipeline.stream`). It resamples each plane with swscale (SIMD: ~2 ms a
720p frame, planning included, against ~5 ms for Pillow on the same planes and ~8 ms on RGB)
and keeps float precision by choosing, per frame, an integer crop, an integer scaled size and
an integer offset into it whose composition lands within a few hundredths of a pixel of the
exact view (:func:`plan_axis`); swscale alone only crops at whole pixels, which is why ffmpeg's
zoompan jitters. A view no such plan reaches closely enough is drawn by Pillow. The orbit's roll
is beyond swscale: its planes take Pillow's affine warp (~10 ms a frame).
"""

from __future__ import annotations

import functools
import math
import os
import secrets
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

if TYPE_CHECKING:
    from collections.abc import Callable

from contract import CAMERA, CARDS, AnimateRequest, Cancelled, Progress
from pipeline.backends.base import BackendInfo, Emit, RenderPlan, ShouldStop
from pipeline.backends.frames import jpeg_preview
from pipeline.intake import fit

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
        seed = request.seed if request.seed is not None else secrets.randbelow(2**31)
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
                        preview=jpeg_preview(out[0], CAMERA_PREVIEW_SIDE) if start == 0 else None,
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
        """Draw the move as yuv420p frames (BT.709, tv range), handing each to `sink` in order
        as soon as it is drawn, so the encoder works while the rest are drawn.

        The same views as :meth:`render`; a fresh clip only (an extension or a crossfade loop
        needs RGB frames and takes :meth:`render`).
        """
        width, height = plan.width, plan.height
        source, views = _source_and_views(image, plan, request, even=True)
        rolled = any(view.roll != 0.0 for view in views)
        tolerances = _tolerances(views, (width, height))
        zooms = {view.zoom for view in views}
        if not rolled and len(zooms) == 1:
            source = _off_simple_fractions(source, width * zooms.pop() / source.width)
        planes = YuvSource.of(source)
        total = plan.num_frames
        local = threading.local()

        def draw(index: int) -> Frame:
            if rolled:
                return planes.draw_rolled(views[index], (width, height))
            scalers = getattr(local, "scalers", None)
            if scalers is None:
                scalers = local.scalers = planes.scalers()
            return planes.draw(views[index], (width, height), scalers, tolerance=tolerances[index])

        # Small chunks: the first frames reach the encoder at once, and a cancel is quick.
        chunk = 2 * self.workers
        with ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="camera") as pool:
            for start in range(0, total, chunk):
                if should_stop():
                    raise Cancelled()
                stop = min(total, start + chunk)
                for index, frame in enumerate(pool.map(draw, range(start, stop)), start):
                    sink(frame)
                    if index == 0:
                        preview = jpeg_preview(yuv420_to_rgb(frame, width, height), CAMERA_PREVIEW_SIDE)
                        emit(Progress("denoise", 1, total, preview=preview, message=_RENDERING))
                emit(Progress("denoise", stop, total, message=_RENDERING))
        if should_stop():
            raise Cancelled()

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


# -- yuv420p frames through swscale ----------------------------------------------------------

PAD = 320
"""Edge pixels repeated around the source planes, so a crop may reach past the photo's edge by
a few pixels (swscale's kernel needs them) while the view itself stays inside."""

TOLERANCE = 0.05
"""Largest sampling-position error (source pixels) a swscale plan may have; a view no plan
reaches within it (see :func:`plan_axis`) is drawn by Pillow's exact resize instead."""

_YUV_SWSCALE = "BICUBIC"
_YUV_PILLOW = Image.Resampling.BICUBIC
"""Bicubic in both samplers. swscale's cubic is a touch sharper than Pillow's (a = −0.6 against
−0.5), but a frame Pillow draws differs from swscale's by 0.15 levels on average (max 3), which
no step-to-step test or eye can see; Lanczos-3 in both matches exactly and costs 50 % more."""

_SPANS = (160, 640)
"""How many extra scaled pixels a plan may use: a few in most frames, more near scales where
few offsets are reachable (a slow push-in from 1:1)."""


@dataclass(frozen=True)
class AxisPlan:
    """One axis of a view as swscale can draw it: crop [start, start + crop) of the padded
    source plane, scale that to `scaled` pixels, keep [offset, offset + out) of them."""

    start: int
    crop: int
    scaled: int
    offset: int
    error: float
    """Largest distance (source pixels) between where an output pixel samples and where the
    exact view would sample it."""


@functools.lru_cache(maxsize=4096)  # a pan's other axis is the same plan in every frame
def plan_axis(
    left: float, scale: float, out: int, size: int, *, pad: int = PAD, tolerance: float = TOLERANCE
) -> AxisPlan | None:
    """The integer crop/scale/offset whose composition best matches a float view, or None
    when none comes within `tolerance`.

    The exact view samples output pixel d at source coordinate left + (d + 0.5)·scale − 0.5
    (pixel centres). swscale maps pixel e of a crop [x0, x0 + n) scaled to m pixels to
    x0 + (e + 0.5)·n/m − 0.5, so keeping e = d + k errs by
    (x0 + k·n/m − left) + (d + 0.5)·(n/m − scale). The m whose n/m is closest to `scale` fix
    the second term; the offsets k·n/m (mod 1) reachable with k below the span fix the first,
    and they are dense unless n/m is close to a simple fraction (1/1, 5/4 ...), where a wider
    span helps. Whole-pixel crops alone (zoompan) are off by up to half a pixel.

    left, scale: the view's left edge and source pixels per output pixel; size: the source
    plane's length (without its padding).
    """
    margin = 2.0 * max(1.0, scale) + 1.0  # the bicubic kernel's reach, in source pixels
    kmin = math.ceil((margin + 0.5) / scale)
    best: AxisPlan | None = None
    for span in _SPANS:
        m = np.arange(out + 2 * kmin, out + span)
        n = np.round(scale * m)
        slope = n / m - scale
        pick = np.argsort(np.abs(slope))[:16]
        m, n, slope = m[pick, None], n[pick, None], slope[pick, None]
        k = np.arange(kmin, span)[None, :]
        x0 = np.round(left - k * (n / m))
        offset = x0 + k * (n / m) - left
        error = np.maximum(np.abs(offset + 0.5 * slope), np.abs(offset + (out - 0.5) * slope))
        fits = (
            (k <= m - out - kmin)
            & (x0 >= -pad)
            & (x0 <= left - margin)
            & (x0 + n <= size + pad)
            & (x0 + n >= left + out * scale + margin)
        )
        error = np.where(fits, error, np.inf)
        # Among the plans good enough, the narrowest strip: fewer pixels for swscale.
        good = error <= max(tolerance / 2, float(error.min()))
        row, col = np.unravel_index(int(np.argmin(np.where(good, m + 0 * k, np.inf))), error.shape)
        if error[row, col] <= tolerance:
            best = AxisPlan(
                start=int(x0[row, col]),
                crop=int(n[row, 0]),
                scaled=int(m[row, 0]),
                offset=int(k[0, col]),
                error=float(error[row, col]),
            )
            if best.error <= tolerance / 2:
                break
    return best


def _tolerances(views: list[View], size: tuple[int, int]) -> list[float]:
    """Per frame, the sampling error to allow: TOLERANCE, or a tenth of the frame's own
    travel (output pixels at its edge, towards either neighbour) when that is less. A slow
    push-in moves a fraction of a pixel a frame; an error that is a fair share of that makes
    its speed wobble from frame to frame (and a repeated frame where it rounds to none)."""
    width, height = size

    def travel(a: View, b: View) -> float:
        zoom = abs(math.log(b.zoom / a.zoom)) * max(width, height) / 2
        return zoom + abs(b.cx - a.cx) * width * a.zoom + abs(b.cy - a.cy) * height * a.zoom

    steps = [travel(a, b) for a, b in zip(views, views[1:], strict=False)] or [TOLERANCE * 4]
    allowed = []
    for index in range(len(views)):
        near = [steps[i] for i in (index - 1, index) if 0 <= i < len(steps)]
        allowed.append(min(TOLERANCE, max(0.004, min(near) / 10)))
    return allowed


def _near_simple_fraction(scale: float) -> bool:
    """Whether swscale plans reach few sub-pixel offsets at this scale (see plan_axis)."""
    return any(abs(scale * q - round(scale * q)) < 1 / 150 for q in range(1, 15))


def _off_simple_fractions(source: Image.Image, output_per_source: float) -> Image.Image:
    """A pan at a steady scale that is a simple fraction (6/7, 5/4 ...) reaches only a few
    sub-pixel offsets through swscale; a source a hair larger makes every offset reachable."""
    if not _near_simple_fraction(1 / output_per_source):
        return source
    for grow in (1.0173, 1.0391, 1.0611):
        if not _near_simple_fraction(grow / output_per_source):
            size = (round(source.width * grow / 2) * 2, round(source.height * grow / 2) * 2)
            return source.resize(size, Image.Resampling.LANCZOS)
    return source


class YuvSource:
    """The source photo as padded BT.709 tv-range planes, converted once per clip."""

    def __init__(self, y: np.ndarray, u: np.ndarray, v: np.ndarray) -> None:
        self.planes = (y, u, v)
        self.height, self.width = y.shape[0] - 2 * PAD, y.shape[1] - 2 * PAD
        self._images: tuple[Image.Image, ...] | None = None

    @classmethod
    def of(cls, image: Image.Image) -> YuvSource:
        """Convert with swscale, exactly as ffmpeg's own rgb24 → yuv420p step would."""
        import av

        frame = av.VideoFrame.from_ndarray(np.asarray(image.convert("RGB")), format="rgb24")
        yuv = frame.reformat(
            format="yuv420p",
            src_colorspace="ITU709",
            dst_colorspace="ITU709",
            src_color_range="JPEG",
            dst_color_range="MPEG",
            threads=1,
        )
        planes = []
        for index, plane in enumerate(yuv.planes):
            pad = PAD if index == 0 else PAD // 2
            rows = plane.height
            array = np.frombuffer(plane, np.uint8).reshape(rows, plane.line_size)[:, : plane.width]
            planes.append(np.pad(array, pad, mode="edge"))
        return cls(*planes)

    def whole(self) -> bytes:
        """The photo itself as one yuv420p frame (frame 0 of a push-in)."""
        height, width = self.height, self.width
        return b"".join(
            plane[PAD // div : PAD // div + height // div, PAD // div : PAD // div + width // div].tobytes()
            for plane, div in zip(self.planes, (1, 2, 2), strict=True)
        )

    def scalers(self) -> list[object]:
        """One swscale context per plane and thread: swscale rebuilds it only when sizes change."""
        from av.video.reformatter import VideoReformatter

        return [VideoReformatter() for _ in self.planes]

    def draw(
        self,
        view: View,
        size: tuple[int, int],
        scalers: list[object],
        *,
        tolerance: float = TOLERANCE,
    ) -> memoryview:
        """One unrolled view as yuv420p bytes (Y, then U, then V).

        tolerance: the sampling error allowed (source pixels); the slowest frames of an eased
        move travel less than TOLERANCE, so they get a share of their own travel.
        """
        import av

        width, height = size
        ww, wh = self.width / view.zoom, self.height / view.zoom
        left, top = view.cx * self.width - ww / 2, view.cy * self.height - wh / 2
        out = np.empty(width * height * 3 // 2, np.uint8)
        at = 0
        plans: dict[int, tuple[AxisPlan | None, AxisPlan | None]] = {}
        for index, (plane, scaler) in enumerate(zip(self.planes, scalers, strict=True)):
            div = 1 if index == 0 else 2
            pad = PAD // div
            ow, oh = width // div, height // div
            if div not in plans:
                plans[div] = (
                    plan_axis(left / div, ww / width, ow, self.width // div, pad=pad, tolerance=tolerance),
                    plan_axis(top / div, wh / height, oh, self.height // div, pad=pad, tolerance=tolerance),
                )
            xs, ys = plans[div]
            target_plane = out[at : at + ow * oh].reshape(oh, ow)
            at += ow * oh
            if xs is None or ys is None:
                box = (pad + left / div, pad + top / div, pad + (left + ww) / div, pad + (top + wh) / div)
                target_plane[:] = np.asarray(self._image(index).resize((ow, oh), _YUV_PILLOW, box=box))
                continue
            frame = av.VideoFrame(xs.crop, ys.crop, "gray")
            target = frame.planes[0]
            rows = np.frombuffer(target, np.uint8).reshape(ys.crop, target.line_size)
            rows[:, : xs.crop] = plane[
                pad + ys.start : pad + ys.start + ys.crop, pad + xs.start : pad + xs.start + xs.crop
            ]
            if (xs.scaled, ys.scaled) != (xs.crop, ys.crop):
                frame = scaler.reformat(  # type: ignore[attr-defined]
                    frame, xs.scaled, ys.scaled, "gray", interpolation=_YUV_SWSCALE, threads=1
                )
            result = frame.planes[0]
            pixels = np.frombuffer(result, np.uint8).reshape(ys.scaled, result.line_size)
            target_plane[:] = pixels[ys.offset : ys.offset + oh, xs.offset : xs.offset + ow]
        return out.data

    def _image(self, index: int) -> Image.Image:
        if self._images is None:
            self._images = tuple(Image.fromarray(plane) for plane in self.planes)
        return self._images[index]

    def draw_rolled(self, view: View, size: tuple[int, int]) -> bytearray:
        """One rolled view (orbit) as yuv420p bytes: an affine warp of each plane.

        Bilinear, at a third of the cost of Pillow's bicubic affine: a touch softer, but an
        orbit's zoom is steady, so it is equally soft in every frame (no pulsing).
        """
        width, height = size
        sw, sh = self.width, self.height
        ww, wh = sw / view.zoom, sh / view.zoom
        cx, cy = view.cx * sw, view.cy * sh
        cos, sin = math.cos(view.roll), math.sin(view.roll)
        a, b = ww / width * cos, -wh / height * sin
        d, e = ww / width * sin, wh / height * cos
        c = cx - a * width / 2 - b * height / 2
        f = cy - d * width / 2 - e * height / 2
        out = bytearray()
        for index in range(len(self.planes)):
            plane = self._image(index)
            div = 1 if index == 0 else 2
            pad = PAD // div
            # Output pixel (x, y) of this plane is (div·x, div·y) of the luma frame.
            matrix = (a, b, c / div + pad, d, e, f / div + pad)
            warped = plane.transform(
                (width // div, height // div), Image.Transform.AFFINE, matrix, Image.Resampling.BILINEAR
            )
            out += warped.tobytes()
        return out


def yuv420_to_rgb(frame: Frame, width: int, height: int) -> np.ndarray:
    """A drawn yuv420p frame as RGB (for the preview), converted as players do."""
    import av

    planes = np.frombuffer(frame, np.uint8).reshape(height * 3 // 2, width)
    video = av.VideoFrame.from_ndarray(planes, format="yuv420p")
    return video.to_ndarray(
        format="rgb24", src_colorspace="ITU709", src_color_range="MPEG", dst_color_range="JPEG"
    )


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


OVERSAMPLE = 1.25
"""The deepest view is drawn from 1.25 source pixels per output pixel when the photo has them:
an antialiased downscale is sharp and looks the same at every sub-pixel offset."""


def _source_size(
    move: str, motion: int, output: tuple[int, int], photo: tuple[int, int]
) -> tuple[int, int]:
    """How large a source to fit the photo to before drawing the move.

    As large as the deepest zoom needs (times OVERSAMPLE), never larger than the photo
    provides, and never exactly 1:1 with a view: a pan at exactly one source pixel per output
    pixel pulses in sharpness (sharp at whole-pixel offsets, softer between), while slightly
    more or fewer source pixels spread the offsets across the frame and it stays steady.
    """
    width, height = output
    available = min(photo[0] / width, photo[1] / height)
    deepest = max_zoom(move, motion, aspect=width / height)
    scale = min(deepest * OVERSAMPLE, available)
    if 0.97 < scale / deepest < 1.04:
        scale = deepest * 0.97
    if scale < 1.05:  # not worth the extra resampling work
        return output
    return round(width * scale), round(height * scale)


def _even(n: int) -> int:
    return max(2, n - n % 2)


__all__ = [
    "AxisPlan",
    "CameraBackend",
    "View",
    "YuvSource",
    "camera_path",
    "draw_view",
    "ease",
    "max_zoom",
    "plan_axis",
    "yuv420_to_rgb",
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
