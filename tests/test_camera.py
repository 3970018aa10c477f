"""The camera backend: right length and size, a camera that really moves, smoothly."""

from __future__ import annotations

import math
from functools import cache

import numpy as np
import pytest
from photos import NAMES, photo_bytes
from PIL import Image

from contract import CAMERA_MOVES, CARDS, AnimateRequest, Cancelled, Progress
from pipeline.backends.base import Backend, RenderPlan
from pipeline.backends.camera import CameraBackend, View, camera_path, draw_view, ease
from pipeline.intake import fit, load_photo

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
        assert plan.source_size == (WIDTH, HEIGHT)  # photo too small for a bigger one
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
    # Deepest zoom 1.5, drawn from 1.25 source pixels per output pixel: 1.875× the output.
    plan = backend.plan(request, (1600, 960))
    width, height = plan.source_size
    assert width == pytest.approx(WIDTH * 1.875, abs=1) and height == pytest.approx(HEIGHT * 1.875, abs=1)
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
