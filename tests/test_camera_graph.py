"""The camera move as ffmpeg draws it from one still (pipeline.backends.camera_graph): where
every frame looks, that only the still is piped, EXIF orientation and a 12 MP phone photo."""

from __future__ import annotations

import gc
import io
import os
import time
from pathlib import Path

import numpy as np
import pytest
from photos import photo_path
from PIL import Image, ImageFilter
from test_camera import checkerboard, grey_frames, off_smooth, scale_and_centre

from contract import CAMERA_MOVES, AnimateRequest, Cancelled
from pipeline.animate import animate
from pipeline.backends.camera import (
    CameraBackend,
    _source_and_views,
    camera_path,
    draw_view,
)
from pipeline.backends.camera_graph import drawn_move, frames, yuv420_planes
from pipeline.encode import decode_frames, encode_mp4
from pipeline.intake import fit
from pipeline.probe import probe
from pipeline.stream import Drawn, Yuv420Frames, encode_while_drawing

WIDTH, HEIGHT = 480, 272


def texture(width: int, height: int, seed: int = 0) -> Image.Image:
    """Smooth random detail at every orientation: phase correlation finds its shifts to a few
    hundredths of a pixel."""
    rng = np.random.default_rng(seed)
    noise = np.uint8(np.clip(128 + 60 * rng.normal(size=(height // 4 + 2, width // 4 + 2)), 0, 255))
    grey = Image.fromarray(noise).resize((width, height), Image.Resampling.BICUBIC)
    grey = grey.filter(ImageFilter.GaussianBlur(1.5))
    return Image.merge("RGB", [grey, grey, grey])


def shift(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """(dy, dx) with b ≈ a moved by it: phase correlation, its peak refined by a parabola."""
    window = np.hanning(a.shape[0])[:, None] * np.hanning(a.shape[1])[None, :]
    spectrum = np.fft.fft2((b - b.mean()) * window) * np.conj(np.fft.fft2((a - a.mean()) * window))
    surface = np.fft.ifft2(spectrum / (np.abs(spectrum) + 1e-9)).real
    py, px = np.unravel_index(int(np.argmax(surface)), surface.shape)

    def vertex(before: float, at: float, after: float) -> float:
        curve = before - 2 * at + after
        return 0.0 if curve == 0 else 0.5 * (before - after) / curve

    rows, cols = surface.shape
    dy = py + vertex(surface[py - 1, px], surface[py, px], surface[(py + 1) % rows, px])
    dx = px + vertex(surface[py, px - 1], surface[py, px], surface[py, (px + 1) % cols])
    return (dy - rows if dy > rows / 2 else dy), (dx - cols if dx > cols / 2 else dx)


def luma(frame: bytes, width: int = WIDTH, height: int = HEIGHT) -> np.ndarray:
    return np.frombuffer(frame, np.uint8)[: width * height].reshape(height, width).astype(float)


GEOMETRY_PX = 0.15
"""How far (output pixels) any patch of a frame ffmpeg draws may sit from where Pillow's exact
float resample of the same view puts it; measured ≤ 0.09 for every move at motion 1 and 10
(the two samplers' kernels differ a little, and so does the estimate)."""


@pytest.mark.parametrize("motion", [1, 10])
@pytest.mark.parametrize("move", CAMERA_MOVES)
def test_every_frame_shows_the_eased_path_to_a_tenth_of_a_pixel(move: str, motion: int) -> None:
    backend = CameraBackend()
    photo = texture(640, 362)
    request = AnimateRequest(image=b"-", camera=move, motion=motion, duration=1, width=WIDTH, height=HEIGHT)
    plan = backend.plan(request, photo.size)
    image = fit(photo, *plan.source_size)
    source, views = _source_and_views(image, plan, request, even=True)
    drawn: list[bytes] = []
    backend.render_yuv420(image, plan, request, drawn.append)
    assert len(drawn) == plan.num_frames == 24
    patches = [(16, 16), (16, WIDTH - 112), (HEIGHT - 112, 16), (HEIGHT - 112, WIDTH - 112), (88, 192)]
    for index in (0, 5, 12, 18, 23):
        ours = luma(drawn[index])
        exact = yuv420_planes(draw_view(source, views[index], (WIDTH, HEIGHT)))[0].astype(float)
        for top, left in patches:
            window = (slice(top, top + 96), slice(left, left + 96))
            dy, dx = shift(exact[window], ours[window])
            assert max(abs(dy), abs(dx)) <= GEOMETRY_PX, (index, top, left, dy, dx)


def test_a_fresh_clip_is_one_still_and_a_filter_graph() -> None:
    # A sink that takes a whole clip gets one Drawn: the still (one frame) and the filters;
    # no frame is drawn in Python. Encoding it pipes only that still, and a byte limit's
    # second attempt draws the clip again inside ffmpeg.
    class Whole(list):  # type: ignore[type-arg]
        def drawn(self, clip: Drawn) -> None:
            self.append(clip)

    backend = CameraBackend()
    photo = texture(640, 362)
    for move in ("zoom_in", "orbit"):
        request = AnimateRequest(image=b"-", camera=move, duration=2, width=320, height=180)
        plan = backend.plan(request, photo.size)
        sink = Whole()
        backend.render_yuv420(fit(photo, *plan.source_size), plan, request, sink)
        assert len(sink) == 1 and isinstance(sink[0], Drawn), move
        clip: Drawn = sink[0]
        assert (clip.width, clip.height, clip.count) == (320, 180, 48)
        assert len(clip.still) == clip.size[0] * clip.size[1] * 3 // 2  # one yuv420p frame
        assert clip.filters.startswith("loop=loop=47:size=1")
        video = encode_mp4(clip, 24)
        assert decode_frames(video.data)[0].shape == (48, 180, 320, 3)
        small = encode_mp4(clip, 24, max_bytes=len(video.data) // 3)
        assert len(small.data) <= len(video.data) // 3 and small.bitrate_used is not None
        assert decode_frames(small.data)[0].shape[0] == 48


def test_encode_while_drawing_takes_a_drawn_clip() -> None:
    clip = drawn_move(texture(320, 180), camera_path("pan_right", 5, 24, aspect=320 / 180), (320, 180), 12)
    planned = Yuv420Frames(320, 180, 24)

    def draw(sink) -> None:  # type: ignore[no-untyped-def]
        sink.drawn(clip)

    video = encode_while_drawing(draw, planned, 12)
    assert planned.finished is not None  # "render" ends when the clip is handed over
    info = probe(video.data)
    assert (info["frames"], info["width"], info["height"], info["fps"]) == (24, 320, 180, 12.0)


def test_the_frames_numbers_file_goes_with_the_clip() -> None:
    clip = drawn_move(texture(320, 180), camera_path("zoom_in", 5, 12, aspect=320 / 180), (320, 180), 24)
    path = clip.filters.split("sendcmd=f='", 1)[1].split("'", 1)[0]
    assert os.path.exists(path)
    assert len(list(frames(clip))) == 12
    del clip
    gc.collect()
    assert not os.path.exists(path)


def test_orbit_drawn_by_ffmpeg_never_shows_outside_the_photo() -> None:
    white = Image.new("RGB", (320, 192), (255, 255, 255))
    backend = CameraBackend()
    for motion in (1, 10):
        request = AnimateRequest(image=b"-", camera="orbit", motion=motion, duration=1, width=320, height=192)
        plan = backend.plan(request, white.size)
        drawn: list[bytes] = []
        backend.render_yuv420(fit(white, *plan.source_size), plan, request, drawn.append)
        planes = np.stack([np.frombuffer(f, np.uint8) for f in drawn])
        assert planes[:, : 320 * 192].min() >= 233  # white is 235 in tv range; black fill is 16
        assert np.abs(planes[:, 320 * 192 :].astype(int) - 128).max() <= 2


@pytest.mark.parametrize("move", ["pan_right", "tilt_down"])
def test_a_slow_pan_is_sub_pixel_smooth(move: str) -> None:
    # As the slow push-in in test_camera: a pan or tilt at motion 1 over the fine checkerboard
    # moves its centre smoothly. Measured 0.10 px for the pan (the estimate's own floor: the old
    # frame-by-frame path measured the same) and 0.06 for the tilt; zoompan's whole-pixel
    # crops measure 1.0 px on both.
    width, height = 640, 360
    result = animate(
        AnimateRequest(image=checkerboard(width, height), camera=move, motion=1, duration=2,
                       fps=24, width=width, height=height),
        CameraBackend(),
    )  # fmt: skip
    zooms, centres = scale_and_centre(grey_frames(result.video))
    assert len(zooms) == 48
    assert off_smooth(centres) <= 0.2
    assert off_smooth(zooms) * width / 2 <= 0.15
    assert abs(centres[-1] - centres[0]) > 5  # it did move


@pytest.mark.parametrize("move", ["pan_left", "pan_right", "tilt_up", "tilt_down"])
def test_a_pan_keeps_its_sizes_so_swscale_is_set_up_once(move: str) -> None:
    # swscale is set up again for every new crop or scaled size, which costs about as much as
    # the scaling: a pan or tilt (one zoom throughout) moves only the crop's start and the
    # offset, frame after frame, and still lands within a tenth of a pixel (the geometry test
    # above). Only the slowest frames of the ease, whose tolerance is a tenth of their own
    # travel, may need other sizes: 0-4 of 119 here; the earlier planner changed them in 92-94.
    source = texture(960, 540)
    views = camera_path(move, 5, 120, aspect=960 / 540)
    clip = drawn_move(source, views, (640, 360), 24.0)
    lines = Path(clip.filters.split("sendcmd=f='")[1].split("'")[0]).read_text().splitlines()
    assert len(lines) >= 110  # the crops move in (nearly) every frame
    names = ("crop@cam_yin", "crop@cam_uin", "scale@cam_y", "scale@cam_u")
    sizes = [f"{name} {side} " for name in names for side in "wh"]
    resized = [line for line in lines if any(size in line for size in sizes)]
    assert len(resized) <= 5, f"{len(resized)} of {len(lines)} frames set swscale up again"


def _jpeg(image: Image.Image, **save: object) -> bytes:
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=92, **save)
    return out.getvalue()


def test_exif_orientation_is_respected() -> None:
    # Upright, the photo is red on the left and blue on the right; the file holds it turned a
    # quarter to the left and says so in EXIF (orientation 6: rotate 90° clockwise to view).
    upright = Image.new("RGB", (480, 320), (30, 60, 220))
    upright.paste((220, 40, 40), (0, 0, 240, 320))
    stored = upright.transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6
    data = _jpeg(stored, exif=exif)
    result = animate(
        AnimateRequest(image=data, camera="zoom_in", duration=0.5, width=240, height=160),
        CameraBackend(),
    )
    first = decode_frames(result.video)[0][0].astype(float)
    assert (result.width, result.height) == (240, 160)
    left, right = first[40:120, 20:100].mean(axis=(0, 1)), first[40:120, 140:220].mean(axis=(0, 1))
    assert left[0] > 150 and left[2] < 110, left  # red
    assert right[2] > 150 and right[0] < 110, right  # blue


def test_a_twelve_megapixel_phone_photo(tmp_path: Path) -> None:
    # 4032×3024, as phones take them: fitted once to the move's source (no larger than the
    # deepest view needs), drawn by ffmpeg, decoded back at the clip's size and length.
    phone = texture(1008, 756, seed=3).resize((4032, 3024), Image.Resampling.BICUBIC)
    data = _jpeg(phone)
    request = AnimateRequest(image=data, camera="zoom_in", duration=1, fps=24, width=640, height=360)
    plan = CameraBackend().plan(request, (4032, 3024))
    assert plan.source_size is not None and plan.source_size[0] < 640 * 1.3  # deepest 1.28, just under 1:1
    out = tmp_path / "phone.mp4"
    result = animate(request, CameraBackend(), out_path=out)
    info = probe(out)
    assert (info["width"], info["height"], info["frames"], info["fps"]) == (640, 360, 24, 24.0)
    assert info["codec"] == "h264" and info["pix_fmt"] == "yuv420p" and info["faststart"]
    assert result.frames == 24 and out.read_bytes() == result.video


def test_without_an_ffmpeg_program_pillow_draws_the_frames(monkeypatch: pytest.MonkeyPatch) -> None:
    # Where only PyAV's libraries encode (no ffmpeg program: pipeline.ffmpeg.have_program),
    # nothing can run the filter graph: every frame is drawn by Pillow and handed over as a
    # frame, even to a sink that would take a whole drawn clip.
    import pipeline.ffmpeg

    monkeypatch.setattr(pipeline.ffmpeg, "have_program", lambda: False)

    class Whole(list):  # type: ignore[type-arg]
        def __call__(self, frame: bytes) -> None:
            self.append(frame)

        def drawn(self, clip: Drawn) -> None:
            raise AssertionError("a drawn clip where no ffmpeg program can draw it")

    backend = CameraBackend()
    photo = texture(640, 362)
    for move in ("pan_left", "orbit"):
        request = AnimateRequest(image=b"-", camera=move, duration=0.5, width=320, height=180)
        plan = backend.plan(request, photo.size)
        image = fit(photo, *plan.source_size)
        source, views = _source_and_views(image, plan, request, even=True)
        sink = Whole()
        backend.render_yuv420(image, plan, request, sink.append)
        backend.render_yuv420(image, plan, request, sink)
        assert len(sink) == 2 * plan.num_frames == 24
        rolled = move == "orbit"
        expected = yuv420_planes(draw_view(source, views[3], (320, 180), affine=rolled))
        assert sink[3] == sink[15] == b"".join(plane.tobytes() for plane in expected)


def test_a_cancel_stops_ffmpeg_while_it_draws() -> None:
    """The whole clip is one ffmpeg run after its still; a Cancel during it kills ffmpeg within
    a poll instead of waiting for the last frame (and its byte-limit retries)."""
    asked: list[float] = []

    def should_stop() -> bool:
        now = time.monotonic()
        asked.append(now)
        return now - asked[0] > 0.5  # the first look is before ffmpeg starts

    request = AnimateRequest(
        image=photo_path("coffee").read_bytes(), camera="zoom_in", duration=20, width=1280, height=720
    )
    started = time.monotonic()
    with pytest.raises(Cancelled):
        animate(request, CameraBackend(), should_stop=should_stop)
    # 20 s of 720p takes this machine several seconds of x264; the Cancel lands in well under one.
    assert time.monotonic() - started < asked[0] - started + 0.5 + 1.5
    assert len(asked) >= 3  # looked at again while ffmpeg ran


def test_a_still_refuses_odd_sides() -> None:
    # yuv420p chroma is half the size each way: an odd side would leave the still's planes a
    # row short (it used to make a frame of the wrong length without a word).
    from pipeline.backends.camera_graph import _copies, _still

    with pytest.raises(ValueError, match="even sides"):
        _still(Image.new("RGB", (63, 47)), _copies(Image.new("RGB", (63, 47))))
