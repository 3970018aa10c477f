"""The camera move drawn by ffmpeg's own filters from one still: what the CLI and workers encode.

Python prepares one frame (the fitted photo as BT.709 yuv420p, edge-padded) and the move as a
filter graph; ffmpeg repeats the still with ``loop`` and draws every frame in C while x264
encodes, so no frame is drawn in Python and none crosses a pipe (:class:`pipeline.stream.Drawn`).

Zoom, pan, tilt and the gentle push-in are ``crop → scale → crop`` on each plane (swscale's
bicubic): swscale only crops at whole pixels, so each frame takes an integer crop, an integer
scaled size and an integer offset into it whose composition lands within a few hundredths of a
pixel of the exact view (:mod:`pipeline.backends.camera_plan`), and ``sendcmd`` sets those
numbers before each frame. Near scales that are simple fractions (1/1, 5/4 ...) few sub-pixel positions are
reachable; there a second copy of the photo, 1.7 % smaller and stored in the same still,
usually has a plan (:class:`_Planner` changes copy as seldom as it can). ffmpeg's zoompan crops
at whole pixels and jitters; this does not.

Orbit rolls, which swscale cannot: ``perspective`` maps each frame's rolled view with bilinear
sampling at 1/256 px, its corners written as expressions of the frame number (the eased
progress, and the view's centre, roll and zoom as quadratics in it, checked against every
frame's view).
"""

from __future__ import annotations

import contextlib
import itertools
import math
import os
import subprocess
import tempfile
import threading
import weakref
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING

from PIL import Image

from pipeline.backends.camera import EASE_FLOOR, View, ease
from pipeline.backends.camera_plan import TOLERANCE, AxisPlan, kept_axis, plan_axis
from pipeline.stream import Drawn

if TYPE_CHECKING:
    import numpy as np

PAD = 320
"""Edge pixels repeated around each copy of the photo in the still (luma; half in chroma),
so a crop may reach past the photo's edge by a few pixels (swscale's kernel needs them, and
so do plans that take a longer strip) while the view itself stays inside."""

STAY = 0.02
"""A frame keeps the previous frame's copy while its plans err less than this (source
pixels), even where a slow frame's own tolerance is tighter: the copies differ in sharpness
by a hair, and a change of copy shows more than a fiftieth of a pixel does."""

SECOND_COPY = 1 / 1.0173
"""The second copy's size: a ratio that is no simple fraction, so where the first copy's scale
sits near one (few offsets reachable) the second's does not."""

_SCALER = "bicubic"
"""swscale's bicubic (a = −0.6): a third sharper than bilinear between pixels, and steady in
sharpness as a view slides across half-pixel offsets."""


def tolerances(views: Sequence[View], size: tuple[int, int]) -> list[float]:
    """Per frame, the sampling error to allow: TOLERANCE, or a tenth of the frame's own
    travel (output pixels at its edge, towards either neighbour) when that is less. A slow
    push-in moves a fraction of a pixel a frame; an error that is a fair share of that makes
    its speed wobble from frame to frame (and a repeated frame where it rounds to none)."""
    width, height = size

    def travel(a: View, b: View) -> float:
        zoom = abs(math.log(b.zoom / a.zoom)) * max(width, height) / 2
        return zoom + abs(b.cx - a.cx) * width * a.zoom + abs(b.cy - a.cy) * height * a.zoom

    steps = [travel(a, b) for a, b in itertools.pairwise(views)] or [TOLERANCE * 4]
    allowed = []
    for index in range(len(views)):
        near = [steps[i] for i in (index - 1, index) if 0 <= i < len(steps)]
        allowed.append(min(TOLERANCE, max(0.004, min(near) / 10)))
    return allowed


# -- the still ----------------------------------------------------------------------------------


_K, _C = 219 / 255, 224 / 255
_BT709 = (
    0.2126 * _K, 0.7152 * _K, 0.0722 * _K, 16.0,
    -0.2126 / 1.8556 * _C, -0.7152 / 1.8556 * _C, 0.5 * _C, 128.0,
    0.5 * _C, -0.7152 / 1.5748 * _C, -0.0722 / 1.5748 * _C, 128.0,
)  # fmt: skip
"""Full-range RGB to BT.709 tv-range Y, Cb, Cr, as one Pillow matrix conversion."""


def yuv420_planes(image: Image.Image) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The photo as BT.709 tv-range yuv420p planes (even sides), as arrays (:func:`_planes`)."""
    import numpy as np  # only here: drawing a clip (drawn_move) never loads numpy

    y, u, v = _planes(image)
    return np.asarray(y), np.asarray(u), np.asarray(v)


def _planes(image: Image.Image) -> tuple[Image.Image, Image.Image, Image.Image]:
    """The photo as BT.709 tv-range yuv420p planes (even sides), each an "L" image: Pillow's
    matrix conversion and a 2×2 average for the chroma, within a level of swscale's, in a few
    milliseconds and without loading PyAV."""
    rgb = image if image.mode == "RGB" else image.convert("RGB")
    y, cb, cr = rgb.convert("RGB", _BT709).split()
    return y, cb.reduce(2), cr.reduce(2)


@dataclass(frozen=True)
class Copy:
    """One copy of the photo inside the still: its top-left luma pixel and its size."""

    x: int
    y: int
    width: int
    height: int


def _copies(source: Image.Image) -> list[Copy]:
    """Where the photo and its smaller copy sit in the still: one above the other, each with
    PAD pixels of its edges repeated around it."""
    width, height = source.size
    smaller = (round(width * SECOND_COPY / 2) * 2, round(height * SECOND_COPY / 2) * 2)
    return [Copy(PAD, PAD, width, height), Copy(PAD, height + 3 * PAD, *smaller)]


def _still(source: Image.Image, copies: Sequence[Copy]) -> tuple[bytes, tuple[int, int]]:
    """The still holding `copies` (the first is `source` itself) as one yuv420p frame. The
    copies lie one under the other, each with its PAD rows and columns; past a narrower copy's
    padding the frame holds zero bytes (never sampled)."""
    if any(copy.width % 2 or copy.height % 2 for copy in copies):
        raise ValueError("a yuv420p still needs even sides")  # its chroma rows would not add up
    width = max(copy.width for copy in copies) + 2 * PAD
    height = copies[-1].y + copies[-1].height + PAD
    planes: tuple[list[bytes], list[bytes], list[bytes]] = ([], [], [])
    for index, copy in enumerate(copies):
        image = source.resize((copy.width, copy.height), Image.Resampling.LANCZOS) if index else source
        for plane, rows, d in zip(_planes(image), planes, (1, 2, 2), strict=True):
            rows.extend(_padded(plane, width // d, PAD // d))
    return b"".join(itertools.chain.from_iterable(planes)), (width, height)


def _padded(plane: Image.Image, width: int, pad: int) -> list[bytes]:
    """`plane`'s rows with its edge pixels repeated `pad` deep on every side (corners too, as
    numpy's edge padding), each row `width` long (zero bytes past the padding), as bytes: the top
    rows, the middle and the bottom rows. Pillow draws the middle; the top and bottom rows,
    most of a still, are its first and last row repeated."""
    w, h = plane.size
    nearest = Image.Resampling.NEAREST
    middle = Image.new("L", (width, h))
    middle.paste(plane, (pad, 0))
    middle.paste(plane.resize((pad, h), nearest, box=(0, 0, 1, h)), (0, 0))
    middle.paste(plane.resize((pad, h), nearest, box=(w - 1, 0, w, h)), (pad + w, 0))
    rows = middle.tobytes()
    return [rows[:width] * pad, rows, rows[-width:] * pad]


# -- the graph ----------------------------------------------------------------------------------


def drawn_move(
    source: Image.Image, views: Sequence[View], size: tuple[int, int], fps: float,
    should_stop: Callable[[], bool] = lambda: False,
) -> Drawn:
    """The clip of `views` over `source` (RGB, even sides, the clip's aspect) at `size`, as a
    still and the filters that draw every frame from it; `should_stop` ends ffmpeg's run."""
    width, height = size
    rate = Fraction(fps).limit_denominator(1001)
    # Frame n at n / fps exactly, whatever rate the still was read at: sendcmd goes by time.
    head = f"loop=loop={len(views) - 1}:size=1:start=0,settb={rate.denominator}/{rate.numerator},setpts=N"
    if any(view.roll != 0.0 for view in views):
        still, still_size, filters = _rolled(source, views, size)
        return Drawn(
            width, height, len(views), still_size, memoryview(still), f"{head},{filters}", should_stop
        )
    still, still_size, chains, commands = _cropped(source, views, size, rate)
    # Every frame's numbers are read from a file (a long clip's would not fit on a command
    # line), removed with the clip.
    with tempfile.NamedTemporaryFile("w", prefix="camera-", suffix=".cmd", delete=False) as file:
        file.write(commands)
    filters = f"{head},sendcmd=f='{_quoted(file.name)}',{chains}"
    drawn = Drawn(width, height, len(views), still_size, memoryview(still), filters, should_stop)
    weakref.finalize(drawn, _remove, file.name)
    return drawn


_PLANES = (("y", 1), ("u", 2), ("v", 2))
_NUMBERS = (
    ("in", "w"), ("in", "h"), ("in", "x"), ("in", "y"), ("", "w"), ("", "h"), ("out", "x"), ("out", "y"),
)  # fmt: skip
"""What each frame sets, per plane: the crop (w, h, x, y), the scaled size (w, h), the offset."""


def _cropped(
    source: Image.Image, views: Sequence[View], size: tuple[int, int], rate: Fraction
) -> tuple[bytes, tuple[int, int], str, str]:
    """crop → scale → crop for each plane (extractplanes … mergeplanes), and the sendcmd
    commands that set each frame's numbers before it passes."""
    width, height = size
    copies = _copies(source)
    plans = _Planner(views, copies, size).frames()
    lines = []
    for index in range(1, len(plans)):
        changed = []
        for (plane, _), now, before in zip(_PLANES, plans[index][1], plans[index - 1][1], strict=True):
            for (role, key), value, old in zip(_NUMBERS, now, before, strict=True):
                if value != old:
                    changed.append(f"{_name(plane, role)} {key} {value}")
        if changed:
            # Set when the frame's timestamp passes sendcmd (half a frame early, so rounding
            # never leaves a frame with its neighbour's numbers).
            at = (index - 0.5) * rate.denominator / rate.numerator
            lines.append(f"{at:.6f} {','.join(changed)};")
    still, still_size = _still(source, copies[: 1 + max(copy for copy, _ in plans)])
    chains = []
    for (plane, div), numbers in zip(_PLANES, plans[0][1], strict=True):
        cw, ch, cx, cy, sw, sh, ox, oy = numbers
        chains.append(
            f"[{plane}]{_name(plane, 'in')}=w={cw}:h={ch}:x={cx}:y={cy},"
            f"{_name(plane, '')}=w={sw}:h={sh}:flags={_SCALER}:threads=1,"
            f"{_name(plane, 'out')}=w={width // div}:h={height // div}:x={ox}:y={oy}[{plane}o]"
        )
    graph = "extractplanes=y+u+v[y][u][v];" + ";".join(chains) + ";[yo][uo][vo]mergeplanes=0x001020:yuv420p"
    return still, still_size, graph, "".join(line + "\n" for line in lines)


def _name(plane: str, role: str) -> str:
    return f"{'crop' if role else 'scale'}@cam_{plane}{role}"


def _quoted(path: str) -> str:
    """`path` inside single quotes of a filter graph."""
    return path.replace("\\", "\\\\").replace("'", "'\\''").replace(":", "\\:")


def _remove(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


Numbers = tuple[int, int, int, int, int, int, int, int]
Axis = tuple[float, float, int, int]


class _Planner:
    """Each frame's copy and, per plane, its crop (w, h, x, y in the still), scaled size (w, h)
    and offset (x, y); each plane is planned on its own pixel grid.

    A frame keeps the previous frame's copy while its plans come within the frame's tolerance
    (or STAY): a change of copy is a change of sharpness, however slight. On the same copy,
    each plane keeps the previous frame's crop and scaled sizes where they still come within
    tolerance (:func:`kept_axis`), so a pan or tilt sets swscale up once. Where it must change
    (and at the start) it takes the copy that serves the most frames from there on (looking
    LOOKAHEAD frames ahead), else the one that errs least on this frame."""

    LOOKAHEAD = 24

    def __init__(self, views: Sequence[View], copies: Sequence[Copy], size: tuple[int, int]) -> None:
        self.views, self.copies, self.size = views, copies, size
        self.allowed = tolerances(views, size)
        self.plans: dict[tuple[int, int], tuple[float, tuple[Numbers, Numbers]]] = {}

    def plan(self, copy: int, frame: int) -> tuple[float, tuple[Numbers, Numbers]]:
        """The larger error of the frame's luma and chroma plans on `copy` (each in its plane's
        pixels), and their numbers."""
        key = (copy, frame)
        if key not in self.plans:
            error = 0.0
            planes = []
            for div, axes in zip((1, 2), self._axes(copy, frame), strict=True):
                xs, ys = (plan_axis(*axis, pad=PAD // div, tolerance=self.allowed[frame]) for axis in axes)
                error = max(error, xs.error, ys.error)
                planes.append(self._numbers(copy, div, xs, ys))
            self.plans[key] = (error, (planes[0], planes[1]))
        return self.plans[key]

    def kept(self, copy: int, frame: int, before: tuple[Numbers, Numbers]) -> tuple[Numbers, Numbers]:
        """The frame's numbers on `copy`, each plane keeping the crop and scaled sizes it had
        in `before` (the previous frame's, on the same copy) where that is within tolerance."""
        planes = []
        free = self.plan(copy, frame)[1]
        for div, axes, numbers, own in zip((1, 2), self._axes(copy, frame), before, free, strict=True):
            cw, ch, _, _, sw, sh, _, _ = numbers
            (x, y), tolerance = axes, self.allowed[frame]
            xs = kept_axis(*x, cw, sw, pad=PAD // div, tolerance=tolerance)
            ys = xs and kept_axis(*y, ch, sh, pad=PAD // div, tolerance=tolerance)
            planes.append(own if xs is None or ys is None else self._numbers(copy, div, xs, ys))
        return planes[0], planes[1]

    def _axes(self, copy: int, frame: int) -> tuple[tuple[Axis, Axis], tuple[Axis, Axis]]:
        """Per plane (luma, chroma), the x and y axes of the frame's view on `copy` as
        (left edge, source pixels per output pixel, output pixels, plane length)."""
        width, height = self.size
        place, view = self.copies[copy], self.views[frame]
        ww, wh = place.width / view.zoom, place.height / view.zoom
        left, top = view.cx * place.width - ww / 2, view.cy * place.height - wh / 2
        return tuple(  # type: ignore[return-value]
            (
                (left / div, ww / width, width // div, place.width // div),
                (top / div, wh / height, height // div, place.height // div),
            )
            for div in (1, 2)
        )

    def _numbers(self, copy: int, div: int, xs: AxisPlan, ys: AxisPlan) -> Numbers:
        """One plane's crop (w, h, x, y in the still), scaled size and offset."""
        place, pad = self.copies[copy], PAD // div
        return (
            xs.crop, ys.crop, (place.x - PAD) // div + pad + xs.start,
            (place.y - PAD) // div + pad + ys.start, xs.scaled, ys.scaled, xs.offset, ys.offset,
        )  # fmt: skip

    def fits(self, copy: int, frame: int) -> bool:
        return self.plan(copy, frame)[0] <= max(self.allowed[frame], STAY)

    def run(self, copy: int, frame: int) -> int:
        """How many frames from `frame` on `copy` serves, up to LOOKAHEAD."""
        end = min(len(self.views), frame + self.LOOKAHEAD)
        return next((i - frame for i in range(frame, end) if not self.fits(copy, i)), end - frame)

    def frames(self) -> list[tuple[int, tuple[Numbers, Numbers, Numbers]]]:
        """Per frame: its copy, and the Y, U and V planes' numbers."""
        out = []
        current = -1
        for frame in range(len(self.views)):
            if current < 0 or not self.fits(current, frame):
                runs = []
                for copy in range(len(self.copies)):  # the first that lasts LOOKAHEAD frames
                    runs.append(self.run(copy, frame))
                    if runs[-1] == min(self.LOOKAHEAD, len(self.views) - frame):
                        break
                if max(runs):
                    current = runs.index(max(runs))
                else:
                    errors = [self.plan(copy, frame)[0] for copy in range(len(self.copies))]
                    current = errors.index(min(errors))
            if out and out[-1][0] == current:
                luma, chroma = self.kept(current, frame, out[-1][1][:2])
            else:
                luma, chroma = self.plan(current, frame)[1]
            out.append((current, (luma, chroma, chroma)))
        return out


def _rolled(
    source: Image.Image, views: Sequence[View], size: tuple[int, int]
) -> tuple[bytes, tuple[int, int], str]:
    """perspective: each frame's rolled view.

    Its corners are written as expressions of the frame number: the eased progress, then the
    view's centre, roll and log-zoom as quadratics in it (exact for the orbit, whose path is
    one), checked against every frame's view. perspective's output is as large as its input;
    a source larger than the clip is mapped into the output's top-left corner and cropped."""
    width, height = size
    sw, sh = source.size
    still = b"".join(plane.tobytes() for plane in _planes(source))
    count = len(views)
    progress = [2 * ease(i / (count - 1)) - 1 if count > 1 else -1.0 for i in range(count)]
    middle = min(range(count), key=lambda i: abs(progress[i]))
    picks = (0, middle, count - 1) if count > 2 else tuple(range(count))
    series = {
        "cx": [view.cx for view in views],
        "cy": [view.cy for view in views],
        "roll": [view.roll for view in views],
        "zoom": [math.log(view.zoom) for view in views],
    }
    fits = {
        name: _through([progress[i] for i in picks], [values[i] for i in picks])
        for name, values in series.items()
    }
    for name, values in series.items():
        if max(abs(_value(fits[name], x) - y) for x, y in zip(progress, values, strict=True)) > 1e-9:
            raise ValueError(f"a rolled move whose {name} is no quadratic in its eased progress")

    def quadratic(name: str) -> str:
        constant, *powers = (0.0 if abs(c) < 1e-12 else c for c in fits[name])
        terms = "".join(f"{c:+.12g}*pow(ld(1),{k})" for k, c in enumerate(powers, 1) if c)
        return f"({constant:.12g}{terms})"

    last = max(1, count - 1)
    # ld(1): the eased progress as -1..1; ld(2): the roll; ld(3): the zoom.
    prelude = (
        f"st(0,(on-1)/{last});"  # perspective counts frames from 1
        f"st(1,2*({1 - EASE_FLOOR!r}*(0.5-0.5*cos(PI*ld(0)))+{EASE_FLOOR!r}*ld(0))-1);"
        f"st(2,{quadratic('roll')});st(3,exp({quadratic('zoom')}));"
    )
    options = []
    for index, (x, y) in enumerate(((0, 0), (sw, 0), (0, sh), (sw, sh))):
        # Output pixel (x, y) samples the source at the view's centre plus its offset from the
        # clip's centre (pixel centres), scaled by the zoom and rolled.
        dx, dy = x + 0.5 - width / 2, y + 0.5 - height / 2
        ax, ay = f"{sw / width!r}/ld(3)*{dx!r}", f"{sh / height!r}/ld(3)*{dy!r}"
        options.append(f"x{index}='{prelude}{quadratic('cx')}*{sw}+cos(ld(2))*{ax}-sin(ld(2))*{ay}-0.5'")
        options.append(f"y{index}='{prelude}{quadratic('cy')}*{sh}+sin(ld(2))*{ax}+cos(ld(2))*{ay}-0.5'")
    filters = f"perspective={':'.join(options)}:interpolation=linear:eval=frame"
    if (sw, sh) != (width, height):
        filters += f",crop={width}:{height}:0:0"
    return still, (sw, sh), filters


def _through(xs: Sequence[float], ys: Sequence[float]) -> list[float]:
    """The coefficients (constant first) of the polynomial of degree len(xs) − 1 (at most 2)
    through the points (xs, ys), whose xs differ: Newton's divided differences."""
    if len(xs) == 1:
        return [ys[0]]
    slope = (ys[1] - ys[0]) / (xs[1] - xs[0])
    if len(xs) == 2:
        return [ys[0] - slope * xs[0], slope]
    curve = ((ys[2] - ys[1]) / (xs[2] - xs[1]) - slope) / (xs[2] - xs[0])
    return [ys[0] - slope * xs[0] + curve * xs[0] * xs[1], slope - curve * (xs[0] + xs[1]), curve]


def _value(coefficients: Sequence[float], x: float) -> float:
    """The polynomial (constant first) at x, by Horner's rule."""
    value = 0.0
    for c in reversed(coefficients):
        value = value * x + c
    return value


# -- frames for a plain sink -------------------------------------------------------------------


def frames(drawn: Drawn) -> Iterator[bytes]:
    """Every frame of `drawn` as yuv420p bytes, drawn by ffmpeg (for a caller that wants the
    frames themselves, not an MP4)."""
    from pipeline.ffmpeg import YUV420_INPUT_TAGS, ffmpeg_exe

    width, height = drawn.size
    command = [
        ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", "yuv420p",
        *YUV420_INPUT_TAGS, "-s", f"{width}x{height}", "-i", "pipe:0", "-vf", drawn.filters,
        "-fps_mode", "passthrough", "-f", "rawvideo", "-pix_fmt", "yuv420p", "pipe:1",
    ]  # fmt: skip
    frame_bytes = drawn.width * drawn.height * 3 // 2
    with subprocess.Popen(
        command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    ) as process:
        assert process.stdin is not None and process.stdout is not None
        stdin = process.stdin

        def feed() -> None:
            try:
                stdin.write(drawn.still)
            except BrokenPipeError:
                pass
            finally:
                stdin.close()

        writer = threading.Thread(target=feed, name="still", daemon=True)
        writer.start()
        count = 0
        try:
            while chunk := process.stdout.read(frame_bytes):
                if len(chunk) != frame_bytes:
                    break
                count += 1
                yield chunk
        finally:
            process.kill()  # done, or the caller stopped early: the writer is not left blocked
            writer.join()
            errors = process.stderr.read().decode("utf-8", "replace") if process.stderr else ""
        if count != drawn.count:
            raise RuntimeError(f"ffmpeg drew {count} of {drawn.count} frames: {errors[-2000:]}")


__all__ = ["PAD", "Copy", "drawn_move", "frames", "tolerances", "yuv420_planes"]
