"""MP4 encoding that every player and Discord accept, and reading clips back.

Frames are piped as raw rgb24 into imageio-ffmpeg's ffmpeg binary (the same build on every
machine, no system ffmpeg needed) and come out as H.264 / yuv420p / BT.709 with the moov atom
first, so Discord can start playback before the download ends. A byte limit is a promise:
quality first (CRF), then a bitrate computed from the limit, then smaller frames; a file over
the limit is never returned. Output appears atomically (temporary name, then ``os.replace``).
Reading back uses PyAV, so tests and the extend feature trust a real decoder, not our writer.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import io
import logging
import math
import os
import secrets
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from contract import InputError, PipelineError

log = logging.getLogger(__name__)

CRF = 19
"""x264 constant quality for the first attempt: visually transparent for generated video."""
PRESET = "veryfast"
"""Fast enough for the camera preset's 2-second budget at 720p; `superfast` saves ~20 % of the
time but makes files several times larger, slower presets save little."""
NVENC_CQ = 21
"""NVENC's constant-quality level, roughly matching x264 CRF 19."""
CONTAINER_OVERHEAD = 8 * 1024
"""Bytes reserved for ftyp/moov/metadata when a bitrate is computed from a byte limit."""
PER_FRAME_OVERHEAD = 24
"""Sample-table bytes per frame (stsz, ctts, stss ...) on top of the video bitstream."""
RATE_MARGIN = 0.9
"""Single-pass rate control lands within a few percent; aim 10 % under the budget."""
MIN_SIDE = 16
"""Downscaling for a byte limit stops here: smaller frames are useless to a member."""
MIN_BITS_PER_PIXEL = 0.03
"""Below this H.264 turns to blocks; fewer, sharper pixels look better, so shrink first."""
MAX_ATTEMPTS = 8

_TIMEOUT_S = 600


@dataclass
class EncodedVideo:
    """An encoded MP4: its bytes, where it was written (if anywhere), and what it contains."""

    data: bytes
    path: str | None
    width: int
    height: int
    frames: int
    fps: float
    bitrate_used: int | None
    """Video bitrate in bit/s when a byte limit forced one; None for the quality (CRF) encode."""


FrameInput = np.ndarray | Sequence[np.ndarray]


def encode_mp4(
    frames: FrameInput,
    fps: float,
    *,
    max_bytes: int | None = None,
    loop: bool = False,
    metadata: dict[str, str] | None = None,
    out_path: str | os.PathLike[str] | None = None,
    encoder: str = "libx264",
) -> EncodedVideo:
    """Encode uint8 RGB frames (T, H, W, 3) to an H.264 MP4 at `fps`.

    max_bytes: never exceed this many bytes (None: no limit). loop: ping-pong, the frames then
    the frames reversed without repeating either turning frame (2T-2 frames). metadata: MP4
    tags such as title, comment, prompt, seed, model. out_path: also write the file there,
    atomically. encoder: "libx264", "h264_nvenc", or "auto" (NVENC when a probe finds it
    working, else libx264).
    """
    clip = _Clip.of(frames, loop=loop)
    if not fps or fps <= 0 or not math.isfinite(fps):
        raise ValueError(f"fps must be positive, got {fps!r}")
    codec = _resolve_encoder(encoder)
    width, height = _even(clip.width), _even(clip.height)
    if width < 2 or height < 2:
        raise ValueError("frames must be at least 2×2 pixels to encode")
    duration = clip.count / fps
    overhead = CONTAINER_OVERHEAD + PER_FRAME_OVERHEAD * clip.count + _metadata_size(metadata)
    if max_bytes is not None and max_bytes < overhead + 64 * clip.count:
        raise PipelineError(
            f"A {duration:.1f}-second video can't fit in {max_bytes} bytes; "
            "raise the size limit or shorten the clip."
        )

    dest_dir = Path(out_path).resolve().parent if out_path is not None else None
    if dest_dir is not None:
        dest_dir.mkdir(parents=True, exist_ok=True)
    # ffmpeg creates the temporary file itself, so it gets normal permissions (umask), and it
    # lives beside the destination so os.replace is an atomic rename on one filesystem.
    stem = Path(out_path).name if out_path is not None else "encode"
    tmp = Path(dest_dir or tempfile.gettempdir()) / f".{stem}.{secrets.token_hex(6)}.part.mp4"
    try:
        bitrate: int | None = None
        correction = 1.0
        size = _run_ffmpeg(clip, fps, tmp, (width, height), codec, None, metadata)
        attempts = 1
        while max_bytes is not None and size > max_bytes:
            if attempts >= MAX_ATTEMPTS:
                raise PipelineError(_cannot_fit(max_bytes))
            if bitrate is not None:
                # A bitrate encode missed: the encoder can't honour that rate at this size
                # (even its coarsest quantiser is too fine). Shrink the frames, and aim lower
                # by the overshoot just seen.
                ratio = max_bytes / size
                correction = max(0.5, correction * ratio)
                width, height = _shrink(width, height, min(0.9, max(0.5, 0.9 * ratio**0.5)))
                if min(width, height) < MIN_SIDE:
                    raise PipelineError(_cannot_fit(max_bytes))
            budget_bits = (max_bytes - overhead) * 8 * RATE_MARGIN * correction
            bitrate = max(8_000, int(budget_bits / duration))
            width, height = _size_for_bitrate(width, height, bitrate, fps)
            size = _run_ffmpeg(clip, fps, tmp, (width, height), codec, bitrate, metadata)
            attempts += 1
            log.info(
                "byte limit %d: attempt %d at %dx%d, %d bit/s -> %d bytes",
                max_bytes,
                attempts,
                width,
                height,
                bitrate,
                size,
            )
        data = tmp.read_bytes()
        final: str | None = None
        if out_path is not None:
            os.replace(tmp, out_path)
            final = os.fspath(out_path)
        return EncodedVideo(
            data=data,
            path=final,
            width=width,
            height=height,
            frames=clip.count,
            fps=float(fps),
            bitrate_used=bitrate,
        )
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def decode_frames(
    mp4: bytes, *, max_memory: int = 3 * 1024**3
) -> tuple[np.ndarray, float]:
    """All frames of a clip as uint8 RGB (T, H, W, 3), and its frame rate (to extend a clip).

    max_memory: refuse clips whose decoded frames would need more bytes than this (default
    3 GiB, about 7 minutes of 720p): a worker must not run out of memory on a member's upload.
    """
    import av

    try:
        with av.open(io.BytesIO(mp4)) as container:
            if not container.streams.video:
                raise InputError("The clip to extend has no video in it.")
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            fps = float(stream.average_rate or stream.guessed_rate or 0)
            frame_bytes = stream.codec_context.width * stream.codec_context.height * 3
            if stream.frames and stream.frames * frame_bytes > max_memory:
                raise InputError(_too_long_to_extend())
            frames: list[np.ndarray] = []
            for frame in container.decode(stream):
                frames.append(frame.to_ndarray(format="rgb24"))
                if len(frames) * frame_bytes > max_memory:
                    raise InputError(_too_long_to_extend())
    except InputError:
        raise
    except Exception as exc:  # noqa: BLE001 - av raises many types on bad data
        log.debug("decode_frames failed: %r", exc)
        raise InputError("The clip to extend isn't a readable MP4 video.") from None
    if not frames or fps <= 0:
        raise InputError("The clip to extend has no readable frames.")
    return np.stack(frames), fps


@functools.cache
def nvenc_available() -> bool:
    """Whether this machine's ffmpeg can really encode with NVENC (driver + GPU), probed once."""
    if not os.path.exists("/dev/nvidiactl"):  # no NVIDIA driver: skip spawning ffmpeg
        return False
    cmd = [
        _ffmpeg(),
        "-hide_banner",
        "-loglevel",
        "error",
        "-f",
        "lavfi",
        "-i",
        "color=c=gray:s=256x256:r=24:d=0.25",
        "-c:v",
        "h264_nvenc",
        "-f",
        "null",
        "-",
    ]
    try:
        ok = subprocess.run(cmd, capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        ok = False
    log.info("NVENC H.264 encoder %s", "available" if ok else "not available; using libx264")
    return ok


# -- internals --------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Clip:
    """Frames to encode, validated once; `order` ping-pongs without copying any pixels."""

    frames: Sequence[np.ndarray]
    order: tuple[int, ...]
    width: int
    height: int

    @property
    def count(self) -> int:
        return len(self.order)

    @classmethod
    def of(cls, frames: FrameInput, *, loop: bool) -> _Clip:
        if len(frames) == 0:
            raise ValueError("no frames to encode")
        first = np.asarray(frames[0])
        if first.ndim != 3 or first.shape[2] != 3:
            raise ValueError(f"frames must be (H, W, 3) RGB, got {first.shape}")
        height, width = first.shape[:2]
        for frame in frames:
            if frame.shape != first.shape or frame.dtype != np.uint8:
                raise ValueError("all frames must be uint8 and the same (H, W, 3) shape")
        n = len(frames)
        order = tuple(range(n))
        if loop and n > 2:
            order += tuple(range(n - 2, 0, -1))
        return cls(frames=frames, order=order, width=width, height=height)

    def chunks(self) -> Iterator[memoryview]:
        for index in self.order:
            yield memoryview(np.ascontiguousarray(self.frames[index])).cast("B")


def _run_ffmpeg(
    clip: _Clip,
    fps: float,
    dest: Path,
    size: tuple[int, int],
    codec: str,
    bitrate: int | None,
    metadata: dict[str, str] | None,
) -> int:
    """One ffmpeg run writing `dest`; returns its size. NVENC failures fall back to libx264."""
    try:
        _ffmpeg_once(clip, fps, dest, size, codec, bitrate, metadata)
    except PipelineError:
        if codec == "libx264":
            raise
        log.warning("%s failed; falling back to libx264", codec)
        _ffmpeg_once(clip, fps, dest, size, "libx264", bitrate, metadata)
    return dest.stat().st_size


def _ffmpeg_once(
    clip: _Clip,
    fps: float,
    dest: Path,
    size: tuple[int, int],
    codec: str,
    bitrate: int | None,
    metadata: dict[str, str] | None,
) -> None:
    rate = Fraction(fps).limit_denominator(1001)
    width, height = size
    if (width, height) == (clip.width, clip.height):
        geometry = []
    elif (width, height) == (_even(clip.width), _even(clip.height)):
        geometry = [f"crop={width}:{height}:0:0"]  # odd → even: drop the last row/column
    else:
        geometry = [f"scale={width}:{height}:flags=lanczos"]
    filters = ",".join([*geometry, "scale=out_color_matrix=bt709:out_range=tv", "format=yuv420p"])
    cmd = [
        _ffmpeg(),
        "-hide_banner",
        "-loglevel",
        "error",
        "-y",
        "-f",
        "rawvideo",
        "-pix_fmt",
        "rgb24",
        "-s",
        f"{clip.width}x{clip.height}",
        "-framerate",
        f"{rate.numerator}/{rate.denominator}",
        "-i",
        "pipe:0",
        "-an",
        "-vf",
        filters,
        *_codec_args(codec, bitrate),
        "-pix_fmt",
        "yuv420p",
        "-colorspace",
        "bt709",
        "-color_primaries",
        "bt709",
        "-color_trc",
        "bt709",
        "-color_range",
        "tv",
        "-movflags",
        "+faststart+use_metadata_tags",
    ]
    for key, value in (metadata or {}).items():
        cmd += ["-metadata", f"{_tag(key)}={_clean(value)}"]
    cmd += ["-f", "mp4", os.fspath(dest)]

    with tempfile.TemporaryFile() as errors:
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=errors)
        assert proc.stdin is not None
        with contextlib.suppress(OSError):  # bigger pipe: fewer wake-ups per 2.7 MB frame
            fcntl.fcntl(proc.stdin.fileno(), getattr(fcntl, "F_SETPIPE_SZ", 1031), 1 << 20)
        broken = False
        try:
            for chunk in clip.chunks():
                proc.stdin.write(chunk)
        except BrokenPipeError:
            broken = True  # ffmpeg died early; its exit code and stderr say why
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        finally:
            with contextlib.suppress(OSError):
                proc.stdin.close()
        try:
            code = proc.wait(timeout=_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise PipelineError("Encoding the video took too long and was stopped.") from None
        if code != 0 or broken:
            errors.seek(0)
            tail = errors.read()[-2000:].decode("utf-8", "replace").strip()
            log.error("ffmpeg (%s) exited with %s: %s", codec, code, tail)
            raise PipelineError("The video could not be encoded (ffmpeg failed).")


def _codec_args(codec: str, bitrate: int | None) -> list[str]:
    if codec == "h264_nvenc":
        args = ["-c:v", "h264_nvenc", "-preset", "p5", "-tune", "hq", "-rc", "vbr"]
        if bitrate is None:
            return [*args, "-cq", str(NVENC_CQ), "-b:v", "0"]
        return [*args, "-b:v", str(bitrate), "-maxrate", str(bitrate), "-bufsize", str(bitrate)]
    args = ["-c:v", "libx264", "-preset", PRESET]
    if bitrate is None:
        return [*args, "-crf", str(CRF)]
    # VBV caps every second at the target, so the whole file can't drift far above it.
    return [*args, "-b:v", str(bitrate), "-maxrate", str(bitrate), "-bufsize", str(bitrate)]


def _resolve_encoder(encoder: str) -> str:
    if encoder == "auto":
        return "h264_nvenc" if nvenc_available() else "libx264"
    if encoder not in ("libx264", "h264_nvenc"):
        raise ValueError(f"unknown encoder {encoder!r}; use libx264, h264_nvenc or auto")
    return encoder


@functools.cache
def _ffmpeg() -> str:
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def _even(n: int) -> int:
    return n - n % 2


def _size_for_bitrate(width: int, height: int, bitrate: int, fps: float) -> tuple[int, int]:
    """Shrink the frames until `bitrate` gives each pixel MIN_BITS_PER_PIXEL (not below MIN_SIDE)."""
    bpp = bitrate / (width * height * fps)
    if bpp >= MIN_BITS_PER_PIXEL:
        return width, height
    factor = max(MIN_SIDE / min(width, height), math.sqrt(bpp / MIN_BITS_PER_PIXEL))
    smaller = _shrink(width, height, min(1.0, factor))
    return smaller if min(smaller) >= MIN_SIDE else (width, height)


def _shrink(width: int, height: int, factor: float) -> tuple[int, int]:
    return _even(int(width * factor)), _even(int(height * factor))


def _tag(key: str) -> str:
    cleaned = "".join(ch if ch.isalnum() or ch in "_-" else "_" for ch in key.strip())
    return cleaned or "comment"


def _clean(value: object) -> str:
    """Tags are one line of printable text, bounded so a long prompt can't bloat the file."""
    text = " ".join(str(value).split())
    return text[:1000]


def _metadata_size(metadata: dict[str, str] | None) -> int:
    return sum(len(k) + len(_clean(v).encode()) + 32 for k, v in (metadata or {}).items())


def _too_long_to_extend() -> str:
    return "The clip is too long to extend any further; start a new one instead."


def _cannot_fit(max_bytes: int) -> str:
    return (
        f"The video can't be made small enough for the {max_bytes / (1024 * 1024):.1f} MiB limit; "
        "try a shorter clip."
    )
