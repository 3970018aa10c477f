"""MP4 encoding that every player and Discord accept, and reading clips back.

Frames go through one ffmpeg run per attempt (:mod:`pipeline.ffmpeg`) and come out as
H.264 / yuv420p / BT.709 with the moov atom first, so Discord can start playback before the
download ends. A byte limit is a promise:
quality first (CRF), then a bitrate computed from the limit, then smaller frames; a file over
the limit is never returned. Output appears atomically (temporary name, then ``os.replace``).
Reading back uses PyAV, so tests and the extend feature trust a real decoder, not our writer.
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from contract import InputError, PipelineError
from pipeline import ffmpeg
from pipeline.ffmpeg import (
    Clip,
    FrameInput,
    Track,
    even,
    metadata_size,
    nvenc_available,
)

if TYPE_CHECKING:
    import numpy as np

    from pipeline.audio import Soundtrack

__all__ = ["EncodedVideo", "decode_frames", "encode_mp4", "nvenc_available"]

log = logging.getLogger(__name__)

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
AUDIO_BITRATES: tuple[int, ...] = (128_000, 96_000, 64_000, 48_000, 32_000)
"""AAC-LC rates from transparent stereo down to still-clear speech; a byte limit takes the
highest whose bytes stay under AUDIO_SHARE of it, and the picture gets the rest."""
AUDIO_SHARE = 0.2


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


def encode_mp4(
    frames: FrameInput,
    fps: float,
    *,
    max_bytes: int | None = None,
    metadata: dict[str, str] | None = None,
    out_path: str | os.PathLike[str] | None = None,
    encoder: str = "libx264",
    audio: Soundtrack | None = None,
) -> EncodedVideo:
    """Encode uint8 RGB frames (T, H, W, 3) to an H.264 MP4 at `fps`.

    max_bytes: never exceed this many bytes (None: no limit). metadata: MP4 tags such as
    title, comment, prompt, seed, model (a loop is made before encoding: pipeline.loops). out_path: also write the file there,
    atomically. encoder: "libx264", "h264_nvenc", or "auto" (NVENC when a probe finds it
    working, else libx264). audio: a sound track, cut or padded to the frames' duration and
    muxed as AAC; its bytes are budgeted inside `max_bytes` with the picture's.
    """
    clip = Clip.of(frames)
    if not fps or fps <= 0 or not math.isfinite(fps):
        raise ValueError(f"fps must be positive, got {fps!r}")
    codec = ffmpeg.resolve_encoder(encoder)
    width, height = even(clip.width), even(clip.height)
    if width < 2 or height < 2:
        raise ValueError("frames must be at least 2×2 pixels to encode")
    duration = clip.count / fps
    overhead = CONTAINER_OVERHEAD + PER_FRAME_OVERHEAD * clip.count + metadata_size(metadata)
    audio_bitrate = _audio_bitrate(max_bytes, duration) if audio is not None else 0
    if audio is not None:
        overhead += _audio_bytes(audio_bitrate, audio.rate, duration)
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
    tmp = Path(dest_dir or tempfile.gettempdir()) / f".{stem}.{os.urandom(6).hex()}.part.mp4"
    track: Track | None = None
    try:
        if audio is not None:
            wav = audio.fitted(duration).write_wav(tmp.with_suffix(".wav"))
            track = Track(wav, audio_bitrate)
        bitrate: int | None = None
        correction = 1.0
        size = ffmpeg.run(clip, fps, tmp, (width, height), codec, None, metadata, track)
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
            size = ffmpeg.run(clip, fps, tmp, (width, height), codec, bitrate, metadata, track)
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
        if track is not None:
            with contextlib.suppress(FileNotFoundError):
                track.wav.unlink()


def decode_frames(
    mp4: bytes, *, max_memory: int = 3 * 1024**3
) -> tuple[np.ndarray, float]:
    """All frames of a clip as uint8 RGB (T, H, W, 3), and its frame rate (to extend a clip).

    max_memory: refuse clips whose decoded frames would need more bytes than this (default
    3 GiB, about 7 minutes of 720p): a worker must not run out of memory on a member's upload.
    """
    import av
    import numpy as np

    try:
        with av.open(io.BytesIO(mp4)) as container:
            if not container.streams.video:
                raise InputError("The clip to extend has no video in it.")
            stream = container.streams.video[0]
            # PyAV's default slice threading: frame threading ("AUTO"/"FRAME") deadlocks in a
            # process that imported torch (PyAV issues 1849, 1861); seen here as a test worker
            # stuck for minutes in this loop, and the Ray workers that extend clips import torch.
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


# -- internals --------------------------------------------------------------------------------


def _audio_bitrate(max_bytes: int | None, duration: float) -> int:
    """The highest AAC rate whose bytes stay under AUDIO_SHARE of the limit (the lowest one
    when none does: speech at 32 kbit/s beats a slightly sharper silent picture)."""
    if max_bytes is None:
        return AUDIO_BITRATES[0]
    for rate in AUDIO_BITRATES:
        if rate / 8 * duration <= AUDIO_SHARE * max_bytes:
            return rate
    return AUDIO_BITRATES[-1]


def _audio_bytes(bitrate: int, rate: int, duration: float) -> int:
    """What the track adds to the file: its bitstream (AAC's rate control overshoots a few
    percent) and one sample-table entry per 1024-sample AAC frame."""
    return int(bitrate / 8 * duration * 1.05) + 16 * math.ceil(rate * duration / 1024)


def _size_for_bitrate(width: int, height: int, bitrate: int, fps: float) -> tuple[int, int]:
    """Shrink the frames until `bitrate` gives each pixel MIN_BITS_PER_PIXEL (not below MIN_SIDE)."""
    bpp = bitrate / (width * height * fps)
    if bpp >= MIN_BITS_PER_PIXEL:
        return width, height
    factor = max(MIN_SIDE / min(width, height), math.sqrt(bpp / MIN_BITS_PER_PIXEL))
    smaller = _shrink(width, height, min(1.0, factor))
    return smaller if min(smaller) >= MIN_SIDE else (width, height)


def _shrink(width: int, height: int, factor: float) -> tuple[int, int]:
    return even(int(width * factor)), even(int(height * factor))


def _too_long_to_extend() -> str:
    return "The clip is too long to extend any further; start a new one instead."


def _cannot_fit(max_bytes: int) -> str:
    return (
        f"The video can't be made small enough for the {max_bytes / (1024 * 1024):.1f} MiB limit; "
        "try a shorter clip."
    )
