"""Without the ffmpeg program, PyAV's bundled libraries write the same MP4 (pipeline.pyav_encode).

A GPU machine reached only with the wheels one can carry has no ffmpeg binary (imageio-ffmpeg's
is 170 MB). Each case encodes the same frames through the ffmpeg program and through PyAV and
reads both back with a real decoder: the same stream (H.264 yuv420p, BT.709, faststart, the
tags, an AAC track), the same pictures, and the byte limit kept.
"""

from __future__ import annotations

import io
import wave
from pathlib import Path

import av
import numpy as np
import pytest

from contract import PipelineError
from pipeline import ffmpeg, pyav_encode
from pipeline.encode import encode_mp4
from pipeline.ffmpeg import Clip, Track
from pipeline.probe import probe
from pipeline.stream import Yuv420Frames


def frames(count: int = 24, width: int = 96, height: int = 64) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:height, 0:width]
    out = []
    for n in range(count):
        base = np.stack([(x * 2 + n * 5) % 256, (y * 3) % 256, np.full_like(x, 128)], -1)
        out.append(np.clip(base + rng.integers(-8, 8, base.shape), 0, 255).astype(np.uint8))
    return out


def tone_wav(path: Path, seconds: float = 1.0, rate: int = 16000) -> Path:
    t = np.arange(int(seconds * rate)) / rate
    samples = (np.sin(2 * np.pi * 440 * t) * 12000).astype(np.int16)
    with wave.open(str(path), "wb") as out:
        out.setnchannels(2)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(np.stack([samples, samples], 1).tobytes())
    return path


def decoded(data: bytes) -> np.ndarray:
    with av.open(io.BytesIO(data)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


def streams(data: bytes) -> dict:
    with av.open(io.BytesIO(data)) as container:
        video = container.streams.video[0].codec_context
        audio = container.streams.audio[0] if container.streams.audio else None
        return {
            "colour": (str(video.colorspace), str(video.color_range)),
            "audio": None if audio is None else (audio.codec_context.name, audio.rate, audio.channels),
        }


def yuv420(rgb: list[np.ndarray]) -> Yuv420Frames:
    """The same pictures as flat BT.709 tv-range planes, as the camera's streamed path draws them."""
    height, width = rgb[0].shape[:2]
    clip = Yuv420Frames(width, height, len(rgb))
    for frame in rgb:
        picture = av.VideoFrame.from_ndarray(frame, format="rgb24").reformat(
            format="yuv420p", dst_colorspace="ITU709", dst_color_range="MPEG"
        )
        clip.put(picture.to_ndarray().tobytes())
    return clip


@pytest.mark.parametrize(
    ("case", "size", "bitrate"),
    [
        ("rgb", (96, 64), None),
        ("rgb, odd sides cropped", (94, 62), None),  # frames 95×63
        ("rgb, scaled down, bitrate cap", (48, 32), 200_000),
        ("yuv420p planes", (96, 64), None),
    ],
)
def test_pyav_writes_what_the_ffmpeg_program_writes(
    tmp_path: Path, case: str, size: tuple[int, int], bitrate: int | None
) -> None:
    rgb = frames()
    if "odd" in case:
        rgb = [f[:63, :95] for f in rgb]
    wav = tone_wav(tmp_path / "tone.wav")
    tags = {"seed": "7", "model": "camera"}
    outputs = {}
    for name, encode in (("program", ffmpeg.run), ("pyav", pyav_encode.run)):
        clip = Clip.of(yuv420(rgb) if "yuv" in case else rgb)
        dest = tmp_path / f"{name}.mp4"
        written = encode(clip, 24.0, dest, size, "libx264", bitrate, tags, Track(wav, 64_000))
        assert written == dest.stat().st_size
        outputs[name] = dest.read_bytes()
    program, pyav = (probe(outputs[n]) for n in ("program", "pyav"))
    keys = ("codec", "pix_fmt", "width", "height", "frames", "fps", "faststart")
    assert {k: pyav[k] for k in keys} == {k: program[k] for k in keys}
    assert (pyav["width"], pyav["height"], pyav["frames"], pyav["faststart"]) == (*size, 24, True)
    assert {k: pyav["metadata"][k] for k in tags} == tags
    assert streams(outputs["pyav"]) == streams(outputs["program"])
    assert streams(outputs["pyav"])["colour"] == ("1", "1")  # BT.709, tv range
    assert streams(outputs["pyav"])["audio"] == ("aac", 16000, 2)
    ours, theirs = (decoded(outputs[n]).astype(int) for n in ("pyav", "program"))
    # Two lossy encodes of the same pictures (x264's threads make each run differ a little).
    assert np.abs(ours - theirs).mean() < 3, np.abs(ours - theirs).mean()
    if "scaled" not in case:
        # As faithful to the frames as ffmpeg's own: no colour shift, no lost row or column.
        source = np.stack(rgb)[:, : size[1], : size[0]].astype(int)
        error, reference = np.abs(ours - source).mean(), np.abs(theirs - source).mean()
        assert error <= reference + 0.5, (error, reference)
    if bitrate is not None:
        assert len(outputs["pyav"]) < 1.5 * len(outputs["program"])


def test_encode_mp4_without_the_program_keeps_the_byte_limit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ffmpeg, "have_program", lambda: False)
    called = []
    real = pyav_encode.run
    monkeypatch.setattr(pyav_encode, "run", lambda *a, **k: called.append(1) or real(*a, **k))
    noisy = [np.random.default_rng(n).integers(0, 256, (240, 320, 3), dtype=np.uint8) for n in range(48)]
    result = encode_mp4(noisy, 24.0, max_bytes=60_000)
    assert called and len(result.data) <= 60_000
    info = probe(result.data)
    assert (info["codec"], info["frames"], info["faststart"]) == ("h264", 48, True)


def test_a_clip_ffmpeg_draws_itself_needs_the_program(tmp_path: Path) -> None:
    class Drawn:  # what the camera's filter-graph path hands over: a still and filters
        still = bytes(96 * 64 * 3 // 2)
        filters = "null"
        size = (96, 64)

    clip = Clip(frames=[b""] * 3, width=96, height=64, pix_fmt="yuv420p", drawn=Drawn())
    with pytest.raises(PipelineError, match="needs the ffmpeg program"):
        pyav_encode.run(clip, 24.0, tmp_path / "x.mp4", (96, 64), "libx264", None, None)
    assert not (tmp_path / "x.mp4").exists()
