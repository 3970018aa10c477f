"""The camera backend: right length and size, a camera that really moves, smoothly."""

from __future__ import annotations

import io
import math
import subprocess
import tempfile
from functools import cache
from pathlib import Path

import av
import numpy as np
import pytest
from photos import NAMES, photo_bytes
from PIL import Image

from contract import CAMERA_MOVES, CARDS, AnimateRequest, Cancelled, Progress
from pipeline.animate import animate
from pipeline.backends.base import Backend, RenderPlan
from pipeline.backends.camera import (
    CameraBackend,
    View,
    camera_path,
    draw_view,
    ease,
)
from pipeline.backends.camera_graph import yuv420_planes
from pipeline.encode import decode_frames, encode_mp4
from pipeline.ffmpeg import ffmpeg_exe
from pipeline.intake import fit, load_photo
from pipeline.stream import Yuv420Frames

WIDTH, HEIGHT = 320, 192


@cache
def photo(name: str) -> Image.Image:
    return load_photo(photo_bytes(name)).image


def render(
    name: str, move: str, *, motion: int = 5, duration: float = 1.5, fps: int = 24, **extra: object
) -> tuple[np.ndarray, RenderPlan]:
    backend = CameraBackend()
    request = AnimateRequest(
        image=b"-", camera=move, motion=motion, duration=duration, fps=fps,
        width=WIDTH, height=HEIGHT, **extra,  # type: ignore[arg-type]
    )
    image = photo(name)
    plan = backend.plan(request, image.size)
    source = fit(image, *plan.source_size)
    return backend.render(source, plan, request), plan


def yuv420_bytes(image: Image.Image) -> bytes:
    return b"".join(plane.tobytes() for plane in yuv420_planes(image))


def step_differences(frames: np.ndarray) -> np.ndarray:
    """Mean absolute difference between each frame and the next, in 8-bit levels."""
    as_float = frames.astype(np.float32)
    return np.abs(np.diff(as_float, axis=0)).mean(axis=(1, 2, 3))


@pytest.mark.parametrize("move", CAMERA_MOVES)
@pytest.mark.parametrize("name", NAMES)
def test_every_move_on_every_photo_is_smooth(name: str, move: str) -> None:
    frames, plan = render(name, move)
    assert frames.shape == (36, HEIGHT, WIDTH, 3) and frames.dtype == np.uint8
    assert plan.num_frames == 36 and plan.fps == 24

    steps = step_differences(frames)
    middle = steps[len(steps) // 10 : len(steps) - len(steps) // 10]
    # The camera moves: every step away from the (deliberately slow) ends changes the picture,
    # and the clip's first and last frames are clearly different views.
    assert middle.min() > 0.2
    assert np.abs(frames[-1].astype(int) - frames[0].astype(int)).mean() > 3
    # Ease-in and ease-out: the first and last steps are slower than the middle one.
    assert steps[0] < 0.5 * steps[len(steps) // 2]
    assert steps[-1] < 0.5 * steps[len(steps) // 2]
    # No jumps. The eased speed is 0.9·(π/2)·sin(πt) + 0.1 of the average, so the fastest step
    # is 1.51 and the median step 1.10 of it: a ratio of 1.38 while the frame difference grows
    # in proportion to the displacement (small steps: mean|∇I·d|), and less than that for big
    # steps (differences saturate). Integer-pixel snapping or a skipped frame gives steps of 0
    # and 1 px (median near 0) or a double step: far beyond 2.5.
    assert steps.max() <= 2.5 * np.median(steps)
    # Away from the slow ends (where rounding to 8 bits dominates tiny steps) the speed curve
    # is smooth: no step is more than 20 % off its neighbours' average. A stutter (one step
    # short, the next long) breaks this even where the max/median bound can't see it.
    neighbours = (middle[:-2] + middle[2:]) / 2
    assert np.all(np.abs(middle[1:-1] - neighbours) <= 0.2 * neighbours)


def test_pan_is_sub_pixel_accurate() -> None:
    # A horizontal ramp, one 8-bit level per pixel: bicubic reproduces it exactly, so every
    # output pixel must equal the ramp at its exact float source position, within rounding
    # (0.5). Snapping the view to whole pixels would be off by up to a full level.
    source_w, source_h, out_w, out_h = 230, 138, 200, 120
    ramp = np.tile(np.arange(source_w, dtype=np.float64) + 12, (source_h, 1))
    source = Image.fromarray(np.repeat(ramp[..., None], 3, axis=2).astype(np.uint8))
    views = camera_path("pan_right", 5, 30, aspect=source_w / source_h)
    scale = source_w / views[0].zoom / out_w
    inner = slice(6, out_w - 6)  # kernels touching the image edge are renormalised
    for view in views:
        frame = np.asarray(draw_view(source, view, (out_w, out_h)))[..., 0].astype(np.float64)
        left = view.cx * source_w - source_w / view.zoom / 2
        expected = left + (np.arange(out_w) + 0.5) * scale - 0.5 + 12
        error = np.abs(frame[:, inner] - expected[None, inner])
        assert error.max() <= 0.5 + 1e-3
    assert views[-1].cx - views[0].cx > 0.1  # it did pan right


def test_frame_zero_is_the_image_for_push_ins_and_extensions() -> None:
    backend = CameraBackend()
    image = fit(photo("coffee"), WIDTH, HEIGHT)
    for move in ("static", "zoom_in"):
        request = AnimateRequest(image=b"-", camera=move, duration=1, width=WIDTH, height=HEIGHT)
        plan = backend.plan(request, image.size)
        # The photo is no larger than the clip: a source 3 % smaller, never 1:1 (see the
        # yuv420p path); the RGB frames draw whatever source they are given.
        assert plan.source_size == (310, 186)
        frames = backend.render(image, plan, request)
        assert np.array_equal(frames[0], np.asarray(image))
    for move in CAMERA_MOVES:  # continuing a clip: always from its last frame, exactly
        request = AnimateRequest(
            image=b"-", camera=move, duration=1, width=WIDTH, height=HEIGHT, previous_clip=b"x"
        )
        plan = backend.plan(request, image.size)
        frames = backend.render(image, plan, request)
        assert np.array_equal(frames[0], np.asarray(image)), move
        assert step_differences(frames)[len(frames) // 2] > 0.2, move


def test_orbit_rolls_and_never_shows_outside_the_photo() -> None:
    white = Image.new("RGB", (WIDTH, HEIGHT), (255, 255, 255))
    backend = CameraBackend()
    for motion in (1, 10):
        request = AnimateRequest(
            image=b"-", camera="orbit", motion=motion, duration=1, width=WIDTH, height=HEIGHT
        )
        plan = backend.plan(request, white.size)
        frames = backend.render(white, plan, request)
        assert frames.min() >= 250  # any black fill from outside the photo would show here
    views = camera_path("orbit", 10, 24, aspect=WIDTH / HEIGHT)
    assert math.degrees(views[0].roll) == pytest.approx(3.0)
    assert math.degrees(views[-1].roll) == pytest.approx(-3.0)


def test_motion_strength_scales_the_move() -> None:
    def travel(motion: int) -> float:
        frames, _ = render("astronaut", "pan_left", motion=motion, duration=1)
        return float(step_differences(frames).sum())

    gentle, medium, strong = travel(1), travel(5), travel(10)
    assert gentle < medium < strong
    assert strong > 2.5 * gentle


def test_directions() -> None:
    assert camera_path("pan_left", 5, 10, aspect=1.5)[-1].cx < 0.5
    assert camera_path("pan_right", 5, 10, aspect=1.5)[-1].cx > 0.5
    assert camera_path("tilt_up", 5, 10, aspect=1.5)[-1].cy < 0.5
    assert camera_path("tilt_down", 5, 10, aspect=1.5)[-1].cy > 0.5
    zoom_in = camera_path("zoom_in", 5, 10, aspect=1.5)
    zoom_out = camera_path("zoom_out", 5, 10, aspect=1.5)
    assert zoom_in[0].zoom == 1.0 < zoom_in[-1].zoom
    assert zoom_out[0].zoom > zoom_out[-1].zoom == 1.0
    static = camera_path("static", 5, 10, aspect=1.5)
    assert 1.0 < static[-1].zoom < 1.07  # a gentle push-in


def test_ease_is_monotonic_and_gentle_at_the_ends() -> None:
    values = [ease(i / 100) for i in range(101)]
    assert values[0] == 0.0 and values[-1] == pytest.approx(1.0)
    speeds = np.diff(values)
    assert np.all(speeds > 0)
    assert speeds[0] < 0.15 * speeds[50]


def test_plan_defaults() -> None:
    backend = CameraBackend()
    request = AnimateRequest(image=b"-", duration=5, seed=None)
    plan = backend.plan(request, (451, 300))
    assert (plan.width, plan.height) == (1184, 784)  # photo aspect, ~720p area, ×16
    assert plan.fps == 24 and plan.num_frames == 120
    assert isinstance(plan.seed, int) and 0 <= plan.seed < 2**31
    assert backend.plan(request.replace(seed=7), (451, 300)).seed == 7
    sized = backend.plan(request.replace(width=640, height=360, fps=30, duration=2), (451, 300))
    assert (sized.width, sized.height, sized.fps, sized.num_frames) == (640, 360, 30, 60)
    # Extending: one more frame, because the first repeats the previous clip's last frame.
    extending = backend.plan(request.replace(previous_clip=b"x"), (451, 300))
    assert extending.num_frames == 121 and extending.continuing


def test_zoom_out_cannot_continue_a_clip_and_says_so() -> None:
    plan = CameraBackend().plan(
        AnimateRequest(image=b"-", camera="zoom_out", previous_clip=b"x"), (640, 480)
    )
    assert plan.camera == "static"
    assert "zoom-out can't continue a clip" in plan.warnings[0]


def test_bigger_photos_give_a_bigger_source_for_zooms() -> None:
    backend = CameraBackend()
    request = AnimateRequest(image=b"-", camera="zoom_in", motion=10, width=WIDTH, height=HEIGHT)
    # Deepest zoom 1.5, drawn from just under one source pixel per output pixel: 1.455× the output.
    plan = backend.plan(request, (1600, 960))
    width, height = plan.source_size
    assert width == pytest.approx(WIDTH * 1.455, abs=2) and height == pytest.approx(HEIGHT * 1.455, abs=2)
    assert width % 2 == height % 2 == 0
    frames = backend.render(fit(photo("astronaut"), width, height), plan, request)
    assert frames.shape == (plan.num_frames, HEIGHT, WIDTH, 3)
    # Never more than the photo has...
    assert backend.plan(request, (400, 240)).source_size == (400, 240)
    # ...and never a pan at exactly one source pixel per output pixel (it pulses in sharpness).
    pan = request.replace(camera="pan_left", motion=5)
    zoom = camera_path("pan_left", 5, 2, aspect=WIDTH / HEIGHT)[0].zoom
    width, height = backend.plan(pan, (round(WIDTH * zoom), round(HEIGHT * zoom))).source_size
    assert not 0.97 < width / WIDTH / zoom < 1.03


def test_progress_and_preview() -> None:
    events: list[Progress] = []
    backend = CameraBackend()
    request = AnimateRequest(image=b"-", camera="zoom_in", duration=2, width=WIDTH, height=HEIGHT)
    plan = backend.plan(request, (WIDTH, HEIGHT))
    backend.render(fit(photo("chelsea"), WIDTH, HEIGHT), plan, request, emit=events.append)
    assert events and all(e.stage == "denoise" and e.total == 48 for e in events)
    steps = [e.step for e in events]
    assert steps == sorted(steps) and steps[-1] == 48 and len(set(steps)) == len(steps)
    assert events[0].preview is not None and events[0].preview[:2] == b"\xff\xd8"  # a JPEG


def test_should_stop_cancels() -> None:
    backend = CameraBackend()
    request = AnimateRequest(image=b"-", duration=5, width=WIDTH, height=HEIGHT)
    plan = backend.plan(request, (WIDTH, HEIGHT))
    polls = 0

    def stop_after_two() -> bool:
        nonlocal polls
        polls += 1
        return polls > 2

    events: list[Progress] = []
    with pytest.raises(Cancelled):
        backend.render(
            fit(photo("coffee"), WIDTH, HEIGHT), plan, request,
            emit=events.append, should_stop=stop_after_two,
        )
    assert len(events) == 2 and events[-1].step < plan.num_frames


def test_describes_itself_as_not_ai() -> None:
    backend = CameraBackend()
    assert isinstance(backend, Backend)
    info = backend.info
    assert (info.name, info.label, info.family) == ("camera", CARDS["camera"].label, "camera")
    assert "no AI" in info.label
    assert not info.is_ai and not info.supports_prompt and not info.supports_end_image
    assert info.supports_extend and info.durations == (2.0, 3.0, 5.0, 8.0)
    backend.close()


def test_unknown_move_is_an_error() -> None:
    with pytest.raises(ValueError):
        camera_path("barrel_roll", 5, 10, aspect=1.0)
    assert View().zoom == 1.0


# -- the yuv420p path: what `python -m pipeline animate --model camera` encodes ---------------

JITTER_SIZE = (640, 360)
CHECKER_PERIOD = 8.0
"""A fine checkerboard: 4-pixel squares, as a band-limited cos·cos so each frame's scale and
centre can be measured to a few hundredths of a pixel."""


def checkerboard(width: int, height: int) -> bytes:
    y, x = np.mgrid[0:height, 0:width] + 0.5
    board = 128 + 90 * np.cos(2 * np.pi * x / CHECKER_PERIOD) * np.cos(2 * np.pi * y / CHECKER_PERIOD)
    buffer = io.BytesIO()
    Image.fromarray(np.repeat(np.round(board)[..., None], 3, 2).astype(np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


def grey_frames(mp4: bytes) -> np.ndarray:
    with av.open(io.BytesIO(mp4)) as container:
        return np.stack([f.to_ndarray(format="gray") for f in container.decode(video=0)]).astype(float)


def scale_and_centre(frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each frame's zoom and horizontal centre shift (px), from the checkerboard's phase.

    Demodulates the diagonal wave of the board at its current frequency in Gaussian windows
    across the frame; the phase's slope across the windows is the frequency (the zoom), its
    value at the frame's centre the shift. Iterated from the previous estimate.
    """
    _, height, width = frames.shape
    y, x = np.mgrid[0:height, 0:width]
    u, v = np.fft.fftfreq(width)[None, :], np.fft.fftfreq(height)[:, None]
    window = np.exp(-2 * np.pi**2 * 12.0**2 * (u**2 + v**2))
    cx = np.arange(width // 2 - 240, width // 2 + 241, 16)
    cy = np.arange(height // 2 - 120, height // 2 + 121, 16)
    grid_x, grid_y = np.meshgrid(cx, cy)
    diagonal = (grid_x - width / 2) + (grid_y - height / 2)
    design = np.column_stack([np.ones(diagonal.size), diagonal.ravel()])
    wave = (x - width / 2) + (y - height / 2)
    zooms, shifts, previous = [], [], None
    for frame in frames:
        frequency = 1 / CHECKER_PERIOD
        centred = frame - frame.mean()
        for _ in range(3):
            low = np.fft.ifft2(np.fft.fft2(centred * np.exp(-2j * np.pi * frequency * wave)) * window)
            phases = np.unwrap(np.unwrap(np.angle(low[grid_y, grid_x]), axis=1), axis=0)
            at_centre, slope = np.linalg.lstsq(design, phases.ravel(), rcond=None)[0]
            frequency += slope / (2 * np.pi)
        at_centre = float(np.angle(np.exp(1j * at_centre)))
        if previous is not None:
            at_centre = previous + float(np.angle(np.exp(1j * (at_centre - previous))))
        previous = at_centre
        zooms.append(1 / (CHECKER_PERIOD * frequency))
        shifts.append(at_centre / (2 * np.pi * frequency))
    return np.array(zooms), np.array(shifts)


def off_smooth(values: np.ndarray) -> float:
    """Largest distance of a per-frame series from a smooth (degree 7) curve through it."""
    t = np.arange(len(values))
    return float(np.abs(values - np.polyval(np.polyfit(t, values, 7), t)).max())


def zoompan_clip(photo: bytes, frames: int, deep: float, size: tuple[int, int]) -> bytes:
    """ffmpeg's zoompan one-liner for the same eased push-in, at the product's x264 settings."""
    ease_expr = f"(0.9*(0.5-0.5*cos(PI*on/{frames - 1}))+0.1*on/{frames - 1})"
    graph = (
        f"zoompan=z='pow({deep},{ease_expr})':x='iw/2-iw/zoom/2':y='ih/2-ih/zoom/2'"
        f":d={frames}:s={size[0]}x{size[1]}:fps=24"
    )
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "zoompan.mp4"
        subprocess.run(
            [ffmpeg_exe(), "-loglevel", "error", "-f", "png_pipe", "-i", "pipe:0", "-vf", graph,
             "-frames:v", str(frames), "-c:v", "libx264", "-preset", "veryfast", "-crf", "19",
             "-pix_fmt", "yuv420p", str(out)],
            input=photo, check=True, capture_output=True,
        )
        return out.read_bytes()


SCALE_JITTER_PX = 0.15
"""Bound on the measured zoom's frame-to-frame wobble, as a displacement at the frame's edge.
Our delivered clips (drawn by ffmpeg's filter graph, pipeline.backends.camera_graph) measure
~0.06 (the x264 noise floor: the Pillow RGB path measures ~0.05), zoompan ~0.27: its crop is a
whole number of pixels, so its zoom moves in steps."""
CENTRE_JITTER_PX = 0.1
"""Bound on the frame centre's wobble in a centred push-in: ours ~0.02, zoompan ~1.6 (its
crop's corner is rounded to an even pixel)."""


def test_slow_zoom_is_sub_pixel_smooth_where_zoompan_jitters() -> None:
    width, height = JITTER_SIZE
    photo, frames, deep = checkerboard(width, height), 48, 1.1  # zoom_in at motion 1, 2 s
    result = animate(
        AnimateRequest(image=photo, camera="zoom_in", motion=1, duration=2, fps=24,
                       width=width, height=height),
        CameraBackend(),
    )
    zooms, centres = scale_and_centre(grey_frames(result.video))
    assert len(zooms) == frames
    assert zooms[0] == pytest.approx(1.0, abs=1e-3) and zooms[-1] == pytest.approx(deep, abs=2e-3)
    assert np.all(np.diff(zooms) > -1e-4)  # it only ever pushes in
    assert off_smooth(zooms) * width / 2 <= SCALE_JITTER_PX
    assert off_smooth(centres) <= CENTRE_JITTER_PX

    theirs, their_centres = scale_and_centre(grey_frames(zoompan_clip(photo, frames, deep, JITTER_SIZE)))
    assert theirs[-1] == pytest.approx(deep, abs=5e-3)  # the same move...
    assert off_smooth(theirs) * width / 2 > SCALE_JITTER_PX  # ...in whole-pixel steps
    assert off_smooth(their_centres) > 5 * CENTRE_JITTER_PX


@pytest.mark.parametrize("move", ["pan_right", "tilt_up", "zoom_in", "static"])
def test_yuv_frames_sample_each_view_within_a_tenth_of_a_pixel(move: str) -> None:
    # A sine along one axis (period 12 px) in luma and chroma: demodulating each drawn frame
    # at the view's own frequency gives where it really sampled; it must be where the view
    # says, frame after frame (ffmpeg's crop/scale plans, on either copy of the photo). Whole-pixel
    # crops would be off by up to half a pixel.
    width, height, period = 320, 192, 12.0
    vertical = move.startswith("tilt")
    axis = np.arange(height if vertical else width) + 0.5
    wave = 128 + 80 * np.cos(2 * np.pi * axis / period)
    grey = np.broadcast_to(wave[:, None] if vertical else wave[None, :], (height, width))
    rgb = np.stack([grey, 255 - grey, np.full_like(grey, 128.0)], axis=2)
    image = Image.fromarray(np.round(rgb).astype(np.uint8))
    backend = CameraBackend()
    request = AnimateRequest(image=b"-", camera=move, duration=1, width=width, height=height)
    plan = backend.plan(request, image.size)
    drawn: list[bytes] = []
    backend.render_yuv420(image, plan, request, drawn.append)
    views = camera_path(move, request.motion, plan.num_frames, aspect=width / height)
    assert len(drawn) == plan.num_frames
    for view, frame in zip(views, drawn, strict=True):
        planes = np.frombuffer(frame, np.uint8)
        luma = planes[: width * height].reshape(height, width).astype(float)
        chroma = planes[width * height : width * height * 5 // 4].reshape(height // 2, width // 2)
        for plane, div in ((luma, 1), (chroma.astype(float), 2)):
            profile = (plane.mean(axis=1) if vertical else plane.mean(axis=0))[2:-2]
            length = (height if vertical else width) / div
            centre = view.cy if vertical else view.cx
            span = length / view.zoom  # source pixels across the view, in this plane's units
            scale = span / length
            start = centre * length - span / 2
            d = np.arange(len(profile)) + 2 + 0.5
            measured = np.angle(np.sum((profile - profile.mean()) * np.exp(-2j * np.pi * d * scale * div / period)))
            expected = 2 * np.pi * start * div / period
            # Pixels of the plane; modulo half a period, as luma and chroma may run inverted.
            error = np.angle(np.exp(2j * (measured - expected))) * period / (4 * np.pi * div)
            assert abs(error) <= 0.08, (move, view, div, error)


@pytest.mark.parametrize("move", CAMERA_MOVES)
@pytest.mark.parametrize("name", NAMES)
def test_every_move_is_as_smooth_as_yuv420p(name: str, move: str) -> None:
    # The yuv420p frames (what the CLI encodes) pass the same smoothness rules as the RGB
    # frames of test_every_move_on_every_photo_is_smooth, on their luma.
    backend = CameraBackend()
    request = AnimateRequest(image=b"-", camera=move, duration=1.5, width=WIDTH, height=HEIGHT)
    plan = backend.plan(request, photo(name).size)
    drawn: list[bytes] = []
    backend.render_yuv420(fit(photo(name), *plan.source_size), plan, request, drawn.append)
    luma = np.stack([np.frombuffer(f, np.uint8)[: WIDTH * HEIGHT].reshape(HEIGHT, WIDTH, 1) for f in drawn])
    assert luma.shape == (36, HEIGHT, WIDTH, 1)
    steps = step_differences(luma)
    middle = steps[len(steps) // 10 : len(steps) - len(steps) // 10]
    assert middle.min() > 0.2
    assert steps[0] < 0.5 * steps[len(steps) // 2] and steps[-1] < 0.5 * steps[len(steps) // 2]
    assert steps.max() <= 2.5 * np.median(steps)
    neighbours = (middle[:-2] + middle[2:]) / 2
    assert np.all(np.abs(middle[1:-1] - neighbours) <= 0.2 * neighbours)


def test_yuv_frame_zero_shows_the_whole_photo_for_push_ins() -> None:
    # A push-in starts on the whole photo: frame 0 is the photo fitted to the clip, but for the
    # hair of softness of a source 3 % smaller (never 1:1, see _source_size) scaled back up.
    backend = CameraBackend()
    for name in NAMES:
        photo_fitted = np.frombuffer(yuv420_bytes(fit(photo(name), WIDTH, HEIGHT)), np.uint8).astype(float)
        for move in ("static", "zoom_in"):
            request = AnimateRequest(image=b"-", camera=move, duration=1, width=WIDTH, height=HEIGHT)
            plan = backend.plan(request, photo(name).size)
            drawn: list[bytes] = []
            backend.render_yuv420(fit(photo(name), *plan.source_size), plan, request, drawn.append)
            first, last = (np.frombuffer(drawn[i], np.uint8).astype(float) for i in (0, -1))
            luma = slice(0, WIDTH * HEIGHT)
            off = np.abs(first[luma] - photo_fitted[luma]).mean()
            assert off < 1.6, (name, move, off)
            assert np.abs(last[luma] - photo_fitted[luma]).mean() > 5 * off, (name, move)
            assert drawn[1] != drawn[0]


def test_yuv420_frames_encode_with_bt709_colours_and_re_encode_for_a_byte_limit() -> None:
    # Colours drawn as yuv420p come out of a real decoder as the photo's colours (no second
    # colour conversion in ffmpeg), and a byte limit's second attempt re-reads the kept frames.
    width, height = 96, 64
    colours = [(200, 30, 40), (20, 180, 60), (30, 40, 210), (128, 128, 128), (250, 240, 30)]
    frames = Yuv420Frames(width, height, 48)
    photo = Image.new("RGB", (width, height))
    for index in range(48):
        photo.paste(colours[index % len(colours)], (0, 0, width // 2, height))
        noise = np.random.default_rng(index).integers(0, 255, (height, width // 2, 3), dtype=np.uint8)
        photo.paste(Image.fromarray(noise), (width // 2, 0))
        frames.put(yuv420_bytes(photo))
    video = encode_mp4(frames, 24)
    decoded = decode_frames(video.data)[0]
    assert decoded.shape == (48, height, width, 3)
    for index, frame in enumerate(decoded):
        flat = frame[8 : height - 8, 8 : width // 2 - 8].reshape(-1, 3).mean(axis=0)
        assert np.abs(flat - colours[index % len(colours)]).max() <= 3, (index, flat)
    small = encode_mp4(frames, 24, max_bytes=len(video.data) // 3)
    assert len(small.data) <= len(video.data) // 3 and small.bitrate_used is not None
    assert decode_frames(small.data)[0].shape[0] == 48
