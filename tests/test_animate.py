"""The orchestrator end to end: photo bytes in, an MP4 a real decoder accepts out."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from photos import photo_bytes, photos_dir
from PIL import Image

import pipeline.ffmpeg as ffmpeg_module
from contract import AnimateRequest, Cancelled, InputError, PipelineError, Progress
from pipeline.animate import END_IMAGE_IGNORED, PROMPT_IGNORED, animate
from pipeline.backends.base import BackendInfo, RenderPlan
from pipeline.backends.camera import CameraBackend
from pipeline.encode import decode_frames, encode_mp4
from pipeline.intake import load_photo
from pipeline.probe import probe


def level(index: int) -> int:
    """Brightness of the LevelsBackend's frame `index` (frame 0 is the start image)."""
    return (170 + 12 * index) % 256


class LevelsBackend:
    """A test double whose frames are flat greys that encode their index, so the order of
    frames in the MP4 can be read back exactly; frame 0 is the start image it was given."""

    info = BackendInfo(
        name="levels", label="Levels (test)", family="test", is_ai=False,
        supports_prompt=True, supports_end_image=True,
    )

    def __init__(self) -> None:
        self.images: list[np.ndarray] = []
        self.end_images: list[Image.Image | None] = []

    def plan(self, request: AnimateRequest, image_size: tuple[int, int]) -> RenderPlan:
        fps = request.fps or 12
        frames = round(request.duration * fps) + (1 if request.previous_clip else 0)
        return RenderPlan(
            width=request.width or 160, height=request.height or 96, num_frames=frames,
            fps=fps, steps=1, guidance=1.0, seed=request.seed or 99,
        )

    def render(self, image, plan, request, *, end_image=None, emit=lambda p: None,  # noqa: ANN001
               should_stop=lambda: False):
        self.images.append(np.asarray(image))
        self.end_images.append(end_image)
        frames = np.empty((plan.num_frames, plan.height, plan.width, 3), np.uint8)
        frames[0] = np.asarray(image)
        for index in range(1, plan.num_frames):
            frames[index] = level(index)
        emit(Progress("denoise", 1, 1))
        return frames

    def close(self) -> None:
        pass


def brightness(mp4: bytes) -> np.ndarray:
    frames, _ = decode_frames(mp4)
    return frames.reshape(len(frames), -1).mean(axis=1)


def test_camera_end_to_end(tmp_path: Path) -> None:
    events: list[Progress] = []
    out = tmp_path / "clip.mp4"
    request = AnimateRequest(
        image=photo_bytes("chelsea"), camera="pan_right", duration=2, fps=12, width=320,
        height=192, prompt="the cat looks around", seed=5,
    )
    result = animate(request, CameraBackend(), emit=events.append, out_path=out)

    info = probe(out)
    assert info["codec"] == "h264" and info["pix_fmt"] == "yuv420p" and info["faststart"]
    assert (info["width"], info["height"]) == (320, 192) == (result.width, result.height)
    assert info["frames"] == 24 == result.frames
    assert info["fps"] == pytest.approx(12.0) and result.fps == pytest.approx(12.0)
    assert result.duration == pytest.approx(2.0)
    assert out.read_bytes() == result.video and result.path == os.fspath(out)
    assert os.listdir(tmp_path) == ["clip.mp4"]
    tags = info["metadata"]
    assert tags["seed"] == "5" == str(result.seed)
    assert tags["model"] == "camera" == result.model
    assert tags["camera"] == "pan_right" and tags["motion"] == "5"
    assert tags["title"] == tags["prompt"] == "the cat looks around"
    assert "seed=5" in tags["comment"]
    assert set(result.timings) == {"intake", "render", "encode", "total"}
    assert result.timings["total"] >= result.timings["render"] + result.timings["encode"]
    # The camera can't read prompts: the member is told, once, in a sentence.
    assert PROMPT_IGNORED in result.warnings
    assert not any("upscaled" in w for w in result.warnings)  # 451×300 covers 320×192
    stages = [e.stage for e in events]
    assert stages[0] == "intake" and stages[-1] == "encode" and "denoise" in stages


def test_default_size_warns_when_upscaling() -> None:
    result = animate(AnimateRequest(image=photo_bytes("astronaut"), duration=0.5), CameraBackend())
    assert (result.width, result.height) == (960, 960) and result.frames == 12
    assert any(w.startswith("Your photo is 512×512; the model works at 960×960") for w in result.warnings)
    assert PROMPT_IGNORED not in result.warnings  # no prompt given


def test_extend_appends_without_repeating_the_seam_frame() -> None:
    previous = np.empty((10, 96, 160, 3), np.uint8)
    for index in range(10):
        previous[index] = 20 + 15 * index
    previous_mp4 = encode_mp4(previous, 12).data
    backend = LevelsBackend()
    request = AnimateRequest(
        image=photo_bytes("coffee"), duration=0.5, fps=30, width=640, height=480,
        previous_clip=previous_mp4,
    )
    result = animate(request, backend)

    # M = 0.5 s × 12 fps + 1 = 7 new frames (fps and size come from the previous clip).
    assert result.frames == 10 + 7 - 1 and (result.width, result.height) == (160, 96)
    assert result.fps == pytest.approx(12.0)
    # The backend started from the previous clip's last frame, not from the photo.
    assert backend.images[0].shape == (96, 160, 3)
    assert abs(backend.images[0].mean() - (20 + 15 * 9)) < 2
    expected = [20 + 15 * i for i in range(10)] + [level(k) for k in range(1, 7)]
    assert np.allclose(brightness(result.video), expected, atol=2.5)
    assert not any("upscaled" in w for w in result.warnings)


def test_camera_extend_keeps_size_and_rate() -> None:
    first = animate(
        AnimateRequest(image=photo_bytes("astronaut"), camera="zoom_in", duration=1, fps=12,
                       width=192, height=192),
        CameraBackend(),
    )
    second = animate(
        AnimateRequest(image=photo_bytes("coffee"), camera="pan_left", duration=1,
                       previous_clip=first.video),
        CameraBackend(),
    )
    info = probe(second.video)
    assert info["frames"] == second.frames == 12 + 13 - 1
    assert (info["width"], info["height"]) == (192, 192) and info["fps"] == pytest.approx(12.0)
    # The first 12 frames are the first clip's (re-encoded, so within compression error).
    old, _ = decode_frames(first.video)
    new, _ = decode_frames(second.video)
    assert np.abs(new[:12].astype(int) - old.astype(int)).mean() < 3
    # The continuation moves on from the seam instead of cutting to another view: the step
    # across the seam is one of the clip's slow (eased) steps, not a jump.
    steps = np.abs(np.diff(new.astype(np.float32), axis=0)).mean(axis=(1, 2, 3))
    assert 0 < steps[11] <= np.median(steps)


def test_loop_and_end_image() -> None:
    backend = LevelsBackend()
    end = Image.new("RGB", (300, 300), (0, 255, 0))
    buffer = io.BytesIO()
    end.save(buffer, format="PNG")
    result = animate(
        AnimateRequest(image=photo_bytes("coffee"), duration=0.5, loop=True, end_image=buffer.getvalue()),
        backend,
    )
    # The member's own end image: the loop is a crossfade, rendered half a second longer
    # (12 frames), less the dissolve (4 frames, a third of the clip at most); no ping-pong.
    assert (result.loop, result.frames) == ("crossfade", 12 - 4)
    assert backend.end_images[0] is not None and backend.end_images[0].size == (160, 96)
    assert np.asarray(backend.end_images[0])[0, 0].tolist() == [0, 255, 0]
    # No end image: the model is asked to end on the photo itself.
    looped = animate(AnimateRequest(image=photo_bytes("coffee"), duration=0.5, loop=True), backend)
    assert (looped.loop, looped.frames) == ("end frame", 6)
    assert np.array_equal(np.asarray(backend.end_images[1]), backend.images[1])
    camera = animate(
        AnimateRequest(image=photo_bytes("coffee"), duration=0.5, width=160, height=96,
                       end_image=buffer.getvalue()),
        CameraBackend(),
    )
    assert END_IMAGE_IGNORED in camera.warnings


def test_cancellation_raises_and_leaves_no_file(tmp_path: Path) -> None:
    polls = 0

    def stop_during_render() -> bool:
        nonlocal polls
        polls += 1
        return polls > 3  # intake and planning pass, the render is stopped part way

    out = tmp_path / "clip.mp4"
    events: list[Progress] = []
    with pytest.raises(Cancelled):
        animate(
            AnimateRequest(image=photo_bytes("chelsea"), duration=5, width=320, height=192),
            CameraBackend(), emit=events.append, should_stop=stop_during_render, out_path=out,
        )
    assert any(e.stage == "denoise" for e in events)
    assert not any(e.stage == "encode" for e in events)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize(
    "image",
    [b"just some text, renamed to photo.png\n", b"\xff\xd8\xff\xe0" + bytes(100), b""],
)
def test_bad_input_fails_cleanly_and_leaves_no_file(tmp_path: Path, image: bytes) -> None:
    with pytest.raises(InputError):
        animate(AnimateRequest(image=image), CameraBackend(), out_path=tmp_path / "clip.mp4")
    assert os.listdir(tmp_path) == []


def test_unreadable_previous_clip_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError) as caught:
        animate(
            AnimateRequest(image=photo_bytes("coffee"), previous_clip=b"not a video at all"),
            CameraBackend(), out_path=tmp_path / "clip.mp4",
        )
    assert "clip to extend" in caught.value.message
    assert os.listdir(tmp_path) == []


def test_encoder_failure_leaves_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ffmpeg_module, "ffmpeg_exe", lambda: "/bin/false")
    with pytest.raises(PipelineError):
        animate(
            AnimateRequest(image=photo_bytes("coffee"), duration=0.5, width=160, height=96),
            CameraBackend(), out_path=tmp_path / "clip.mp4",
        )
    assert os.listdir(tmp_path) == []


def test_byte_limit_reaches_the_encoder() -> None:
    result = animate(
        AnimateRequest(image=photo_bytes("astronaut"), camera="zoom_in", duration=2,
                       width=320, height=320, max_bytes=16 * 1024),
        CameraBackend(),
    )
    assert len(result.video) <= 16 * 1024
    assert probe(result.video)["frames"] == 48


def test_camera_path_never_imports_torch(tmp_path: Path) -> None:
    script = textwrap.dedent(
        f"""
        import sys
        from pathlib import Path
        from pipeline.animate import animate
        from pipeline.backends.camera import CameraBackend
        from contract import AnimateRequest
        data = (Path({os.fspath(photos_dir())!r}) / "coffee.png").read_bytes()
        animate(AnimateRequest(image=data, duration=0.5, width=160, height=96), CameraBackend())
        assert "torch" not in sys.modules, "torch was imported"
        assert "diffusers" not in sys.modules, "diffusers was imported"
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def test_a_big_jpeg_is_decoded_only_as_large_as_the_clip_needs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A phone photo for a small clip: the orchestrator plans from the header, then asks
    libjpeg for the smallest DCT-scaled decode that still covers the plan's fit (a worker
    decoding 12 MP for a 720p camera move spent most of its intake there). The clip is the
    one the whole decode gives but for the downscale's own filter: libjpeg's scaled IDCT here
    (1/4), LANCZOS after a whole decode; measured 2.1 levels apart on average (the two
    encodes themselves are deterministic: 0.0 between two whole-decode runs)."""
    from PIL import JpegImagePlugin

    picture = Image.open(io.BytesIO(photo_bytes("astronaut"))).convert("RGB").resize((2048, 1536))
    out = io.BytesIO()
    picture.save(out, format="JPEG", quality=92)
    request = AnimateRequest(
        image=out.getvalue(), camera="zoom_in", duration=0.5, fps=8, width=320, height=240
    )
    asked: list[tuple[int, int]] = []
    draft = JpegImagePlugin.JpegImageFile.draft

    def spy(self, mode, size):  # noqa: ANN001, ANN202
        asked.append(size)
        return draft(self, mode, size)

    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "draft", spy)
    small = animate(request, CameraBackend())
    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "draft", draft)
    plan = CameraBackend().plan(request, (2048, 1536))
    need = plan.source_size or (plan.width, plan.height)
    assert len(asked) == 1 and need[0] <= asked[0][0] < 2048 and need[1] <= asked[0][1] < 1536
    whole, _ = decode_frames(animate(request, CameraBackend(), photo=load_photo(request.image)).video)
    scaled, _ = decode_frames(small.video)
    assert np.abs(scaled.astype(int) - whole.astype(int)).mean() < 3.0
