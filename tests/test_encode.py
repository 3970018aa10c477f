"""MP4 encoding, checked by a real decoder (PyAV) reading the file back."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import imageio_ffmpeg
import numpy as np
import pytest

import pipeline.ffmpeg as ffmpeg_module
from contract import PipelineError
from pipeline.encode import decode_frames, encode_mp4
from pipeline.probe import probe


def levels(count: int, width: int = 320, height: int = 192) -> np.ndarray:
    """Flat frames whose brightness encodes their index (robust to compression)."""
    values = (np.arange(count) * (220 // max(1, count - 1)) + 16).astype(np.uint8)
    frames = np.empty((count, height, width, 3), np.uint8)
    frames[:] = values[:, None, None, None]
    return frames


def moving(count: int, width: int = 320, height: int = 192) -> np.ndarray:
    """A smooth gradient sliding sideways: ordinary, compressible content."""
    x = np.arange(width)[None, None, :] + 3 * np.arange(count)[:, None, None]
    y = np.arange(height)[None, :, None]
    red = (128 + 100 * np.sin(x / 23.0)) * np.ones_like(y)
    green = (128 + 100 * np.cos(y / 17.0)) * np.ones_like(x)
    blue = np.full_like(red, 60.0)
    return np.stack([red, np.broadcast_to(green, red.shape), blue], axis=-1).astype(np.uint8)


def brightness(mp4: bytes) -> np.ndarray:
    frames, _ = decode_frames(mp4)
    return frames.reshape(len(frames), -1).mean(axis=1)


def test_mp4_reads_back_as_expected() -> None:
    metadata = {
        "title": "a cat waving, élan ✓",
        "comment": "prompt=a cat waving; seed=1234",
        "prompt": "a cat waving",
        "seed": "1234",
        "model": "camera",
    }
    video = encode_mp4(moving(24), 24, metadata=metadata)
    info = probe(video.data)
    assert info["codec"] == "h264"
    assert info["pix_fmt"] == "yuv420p"
    assert (info["width"], info["height"]) == (320, 192) == (video.width, video.height)
    assert info["frames"] == 24 == video.frames
    assert info["fps"] == pytest.approx(24.0)
    assert info["duration"] == pytest.approx(1.0, abs=0.05)
    assert info["faststart"] is True
    for key, value in metadata.items():
        assert info["metadata"][key] == value
    assert video.path is None and video.bitrate_used is None


def test_frames_survive_the_round_trip() -> None:
    frames = moving(12)
    decoded, fps = decode_frames(encode_mp4(frames, 12).data)
    assert decoded.shape == frames.shape and decoded.dtype == np.uint8
    assert fps == pytest.approx(12.0)
    assert np.abs(decoded.astype(int) - frames.astype(int)).mean() < 3


def test_sequence_input_and_fractional_fps() -> None:
    video = encode_mp4(list(moving(10)), 24000 / 1001)
    info = probe(video.data)
    assert info["frames"] == 10
    assert info["fps"] == pytest.approx(23.976, abs=1e-3)


def test_odd_dimensions_become_even() -> None:
    video = encode_mp4(moving(6, width=321, height=193), 24)
    info = probe(video.data)
    assert (info["width"], info["height"]) == (320, 192) == (video.width, video.height)
    assert info["frames"] == 6


def test_out_path_is_written_atomically(tmp_path: Path) -> None:
    out = tmp_path / "clips" / "clip.mp4"
    video = encode_mp4(moving(8), 24, out_path=out)
    assert video.path == os.fspath(out)
    assert out.read_bytes() == video.data
    assert os.listdir(out.parent) == ["clip.mp4"]  # no temporary left beside it
    # Created like any new file (umask applies), not 0600 like a mkstemp temporary.
    umask = int(Path("/proc/self/status").read_text().split("Umask:")[1].split()[0], 8)
    assert stat.S_IMODE(out.stat().st_mode) == 0o666 & ~umask
    assert probe(out)["frames"] == 8


def test_byte_limit_is_kept_on_a_noisy_clip(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    noise = rng.integers(0, 256, size=(96, 192, 320, 3), dtype=np.uint8)  # 4 s of pure noise
    limit = 400_000
    unlimited = encode_mp4(noise, 24)
    assert len(unlimited.data) > 2 * limit  # so the limit path really has to work
    out = tmp_path / "small.mp4"
    video = encode_mp4(noise, 24, max_bytes=limit, out_path=out)
    assert len(video.data) <= limit
    assert out.stat().st_size == len(video.data)
    assert video.bitrate_used is not None
    info = probe(video.data)
    assert info["frames"] == 96 and info["codec"] == "h264" and info["faststart"]
    assert info["width"] % 2 == 0 and info["height"] % 2 == 0
    assert os.listdir(tmp_path) == ["small.mp4"]


def test_tight_byte_limit_trades_pixels_for_quality() -> None:
    # 16 KiB for 2 s is ~0.02 bits per pixel at 320×192: fewer, cleaner pixels instead.
    noise = np.random.default_rng(3).integers(0, 256, size=(48, 192, 320, 3), dtype=np.uint8)
    video = encode_mp4(noise, 24, max_bytes=16 * 1024)
    assert len(video.data) <= 16 * 1024
    info = probe(video.data)
    assert (info["width"], info["height"]) == (video.width, video.height)
    assert video.width < 320 and video.width % 2 == 0 and video.height % 2 == 0
    assert info["frames"] == 48


def test_limit_path_downscales_when_the_encoder_overshoots(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[tuple[int, int], int | None, int]] = []

    def stubborn_encoder(clip, fps, dest, size, codec, bitrate, metadata, audio=None):  # noqa: ANN001
        # Never below 0.5 bytes per pixel per frame, whatever bitrate it is asked for.
        floor = int(0.5 * size[0] * size[1] * clip.count)
        n = 3 * floor if bitrate is None else max(floor, int(bitrate * clip.count / fps / 8))
        dest.write_bytes(bytes(n))
        calls.append((size, bitrate, n))
        return n

    monkeypatch.setattr(ffmpeg_module, "run", stubborn_encoder)
    video = encode_mp4(moving(24), 24, max_bytes=200_000, out_path=tmp_path / "c.mp4")
    assert len(video.data) <= 200_000
    assert calls[0][:2] == ((320, 192), None)  # quality first
    assert calls[1][0] == (320, 192) and calls[1][1] is not None  # then a bitrate at full size
    assert calls[-1][0][0] < 320  # then smaller frames
    assert all(w % 2 == 0 and h % 2 == 0 for (w, h), _, _ in calls)
    assert (video.width, video.height) == calls[-1][0]
    assert os.listdir(tmp_path) == ["c.mp4"]


def test_byte_limit_that_fits_keeps_the_quality_encode() -> None:
    video = encode_mp4(moving(24), 24, max_bytes=10 * 1024 * 1024)
    assert video.bitrate_used is None and (video.width, video.height) == (320, 192)


def test_impossible_byte_limit_raises_and_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(PipelineError) as caught:
        encode_mp4(moving(48), 24, max_bytes=2_000, out_path=tmp_path / "x.mp4")
    assert "can't fit" in caught.value.message
    assert os.listdir(tmp_path) == []


def test_failed_encoder_leaves_no_partial_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A stand-in ffmpeg that writes half a file to its output, then fails.
    fake = tmp_path / "fake-ffmpeg"
    fake.write_text(
        "#!/bin/sh\nfor last; do :; done\nhead -c 1000 /dev/zero > \"$last\"\n"
        "cat > /dev/null\necho 'boom' >&2\nexit 1\n"
    )
    fake.chmod(0o755)
    monkeypatch.setattr(ffmpeg_module, "ffmpeg_exe", lambda: os.fspath(fake))
    out_dir = tmp_path / "out"
    with pytest.raises(PipelineError) as caught:
        encode_mp4(moving(8), 24, out_path=out_dir / "clip.mp4")
    assert caught.value.message == "The video could not be encoded (ffmpeg failed)."
    assert os.listdir(out_dir) == []


def test_nvenc_request_falls_back_to_libx264_when_unusable() -> None:
    # On a machine without NVENC (like CI) the explicit and the auto choice still produce H.264.
    for encoder in ("auto", "h264_nvenc"):
        info = probe(encode_mp4(moving(6), 24, encoder=encoder).data)
        assert info["codec"] == "h264" and info["pix_fmt"] == "yuv420p" and info["frames"] == 6


def test_probe_detects_moov_after_mdat(tmp_path: Path) -> None:
    raw = tmp_path / "slow.mp4"
    cmd = [
        imageio_ffmpeg.get_ffmpeg_exe(), "-loglevel", "error", "-y", "-f", "lavfi",
        "-i", "testsrc=s=128x96:r=24:d=0.5", "-c:v", "libx264", "-pix_fmt", "yuv420p",
        os.fspath(raw),
    ]
    subprocess.run(cmd, check=True)
    info = probe(raw)
    assert info["faststart"] is False
    assert info["boxes"].index("mdat") < info["boxes"].index("moov")
    assert info["frames"] == 12 and info["codec"] == "h264"


def test_decode_frames_rejects_non_video() -> None:
    from contract import InputError

    with pytest.raises(InputError) as caught:
        decode_frames(b"definitely not an mp4" * 10)
    assert "isn't a readable MP4 video" in caught.value.message


def test_decode_frames_refuses_clips_too_big_to_hold() -> None:
    from contract import InputError

    mp4 = encode_mp4(moving(12), 12).data
    frames, _ = decode_frames(mp4, max_memory=12 * 320 * 192 * 3)
    assert len(frames) == 12
    with pytest.raises(InputError) as caught:
        decode_frames(mp4, max_memory=11 * 320 * 192 * 3)
    assert "too long to extend" in caught.value.message


def test_bad_frames_are_a_programming_error() -> None:
    with pytest.raises(ValueError):
        encode_mp4(np.zeros((3, 16, 16), np.uint8), 24)
    with pytest.raises(ValueError):
        encode_mp4(np.zeros((3, 16, 16, 3), np.float32), 24)
    with pytest.raises(ValueError):
        encode_mp4(np.zeros((3, 16, 16, 3), np.uint8), 0)
