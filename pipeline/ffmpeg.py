"""One ffmpeg run: raw rgb24 (or ready yuv420p) frames piped in, an H.264 MP4 (yuv420p, BT.709,
faststart) out.

imageio-ffmpeg's binary is the same build on every machine, so no system ffmpeg is needed.
:mod:`pipeline.encode` decides sizes and bitrates (the byte-limit loop); this module only
spells one attempt as an ffmpeg command line, feeds it the frames and reports failure as a
PipelineError with the log tail kept for operators.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import logging
import os
import select
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

from contract import Cancelled, PipelineError
from pipeline import pyav_encode

if TYPE_CHECKING:
    import numpy as np

log = logging.getLogger(__name__)

CRF = 19
"""x264 constant quality for the first attempt: visually transparent for generated video."""
PRESET = "veryfast"
"""Fast enough for the camera preset's 2-second budget at 720p; `superfast` saves ~20 % of the
time but makes files several times larger, slower presets save little."""
NVENC_CQ = 21
"""NVENC's constant-quality level, roughly matching x264 CRF 19."""
_TIMEOUT_S = 600
_POLL_S = 0.25
"""How often a running encode looks for a Cancel."""

FrameInput: TypeAlias = "np.ndarray | Sequence[np.ndarray]"
"""RGB frames as one (N, H, W, 3) array or a sequence of (H, W, 3) ones; numpy is imported
only where such frames are handled, so the camera's path (yuv420p, drawn by ffmpeg) skips it."""


def even(n: int) -> int:
    """H.264 in yuv420p needs even sides."""
    return n - n % 2


NVIDIA_DRIVER = "/dev/nvidiactl"
"""Present where an NVIDIA driver is: NVENC is probed only then."""


@functools.cache
def nvenc_available() -> bool:
    """Whether this machine's ffmpeg can really encode with NVENC (driver + GPU), probed once."""
    if not os.path.exists(NVIDIA_DRIVER):  # no NVIDIA driver: skip spawning ffmpeg
        return False
    if not have_program():
        return pyav_encode.nvenc_available()
    cmd = [
        ffmpeg_exe(),
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

@dataclass(frozen=True)
class Clip:
    """Frames to encode, validated once."""

    frames: Sequence[np.ndarray]
    width: int
    height: int
    pix_fmt: str = "rgb24"
    """rgb24 (H, W, 3) arrays, or yuv420p: flat BT.709 tv-range planes (Y, U, V) per frame,
    which need no colour conversion here (see pipeline.stream.Yuv420Frames)."""
    drawn: Any = None
    """yuv420p only: a clip ffmpeg draws itself (pipeline.stream.Drawn): only its still is
    piped, and its filters make every frame from it; None: every frame is piped."""

    @property
    def count(self) -> int:
        return len(self.frames)

    @classmethod
    def of(cls, frames: FrameInput) -> Clip:
        if getattr(frames, "pix_fmt", None) == "yuv420p":
            # Drawn as yuv420p (e.g. pipeline.stream.Yuv420Frames, possibly still being drawn:
            # iterating waits for each frame), so the size comes from the sequence itself.
            width, height = frames.width, frames.height  # type: ignore[union-attr]
            if len(frames) == 0 or width % 2 or height % 2:
                raise ValueError("yuv420p frames need a frame count and even sides")
            drawn = frames if hasattr(frames, "still") else None
            return cls(frames=frames, width=width, height=height, pix_fmt="yuv420p", drawn=drawn)
        if len(frames) == 0:
            raise ValueError("no frames to encode")
        import numpy as np

        first = np.asarray(frames[0])
        if first.ndim != 3 or first.shape[2] != 3:
            raise ValueError(f"frames must be (H, W, 3) RGB, got {first.shape}")
        height, width = first.shape[:2]
        for frame in frames:
            if frame.shape != first.shape or frame.dtype != np.uint8:
                raise ValueError("all frames must be uint8 and the same (H, W, 3) shape")
        return cls(frames=frames, width=width, height=height)

    def chunks(self) -> Iterator[memoryview]:
        if self.drawn is not None:
            yield memoryview(self.drawn.still).cast("B")
            return
        if self.pix_fmt == "yuv420p":
            for planes in self.frames:
                yield memoryview(planes).cast("B")
            return
        import numpy as np

        for frame in self.frames:
            yield memoryview(np.ascontiguousarray(frame)).cast("B")


YUV420_INPUT_TAGS = ("-color_range", "tv", "-colorspace", "bt709")
"""What yuv420p frames are: a resize for a byte limit then keeps their colours as they are."""


@dataclass(frozen=True)
class Track:
    """A sound track to mux beside the frames: a WAV file, encoded to AAC at `bitrate` bit/s."""

    wav: Path
    bitrate: int


def run(
    clip: Clip,
    fps: float,
    dest: Path,
    size: tuple[int, int],
    codec: str,
    bitrate: int | None,
    metadata: dict[str, str] | None,
    audio: Track | None = None,
) -> int:
    """One ffmpeg run writing `dest`; returns its size. NVENC failures fall back to libx264.

    audio: muxed as AAC-LC (what Discord's and browsers' players take in MP4); None: no track.
    Without the ffmpeg program, PyAV's libraries write the same stream (pipeline.pyav_encode)."""
    if not have_program():
        return pyav_encode.run(clip, fps, dest, size, codec, bitrate, metadata, audio)
    rate = Fraction(fps).limit_denominator(1001)
    width, height = size
    if (width, height) == (clip.width, clip.height):
        geometry = []
    elif (width, height) == (even(clip.width), even(clip.height)):
        geometry = [f"crop={width}:{height}:0:0"]  # odd → even: drop the last row/column
    else:
        geometry = [f"scale={width}:{height}:flags=lanczos"]
    convert = [] if clip.pix_fmt == "yuv420p" else ["scale=out_color_matrix=bt709:out_range=tv"]
    drawn = [clip.drawn.filters] if clip.drawn is not None else []
    filters = ",".join([*drawn, *geometry, *convert, "format=yuv420p"])
    piped = clip.drawn.size if clip.drawn is not None else (clip.width, clip.height)
    cmd = [
        ffmpeg_exe(),
        "-hide_banner",
        "-loglevel",
        "error",
        "-y",
        "-f",
        "rawvideo",
        "-pix_fmt",
        clip.pix_fmt,
        *(YUV420_INPUT_TAGS if clip.pix_fmt == "yuv420p" else ()),
        "-s",
        f"{piped[0]}x{piped[1]}",
        "-framerate",
        f"{rate.numerator}/{rate.denominator}",
        "-i",
        "pipe:0",
        *_audio_input(audio),
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
    try:
        _execute(cmd, clip, codec)
    except PipelineError:
        if codec == "libx264":
            raise
        log.warning("%s failed; falling back to libx264", codec)
        return run(clip, fps, dest, size, "libx264", bitrate, metadata, audio)
    return dest.stat().st_size


def _execute(cmd: list[str], clip: Clip, codec: str) -> None:
    """Run `cmd` with the clip's frames on its stdin; a PipelineError (log tail kept) on failure."""
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
        # A clip ffmpeg draws itself is all drawing after its one still: a Cancel must reach it.
        stop = getattr(clip.drawn, "should_stop", None) or (lambda: False)
        deadline = time.monotonic() + _TIMEOUT_S
        while (code := _wait(proc, _POLL_S)) is None:
            if stop():
                proc.kill()
                proc.wait()
                raise Cancelled()
            if time.monotonic() > deadline:
                proc.kill()
                proc.wait()
                raise PipelineError("Encoding the video took too long and was stopped.")
        if code != 0 or broken:
            errors.seek(0)
            tail = errors.read()[-2000:].decode("utf-8", "replace").strip()
            log.error("ffmpeg (%s) exited with %s: %s", codec, code, tail)
            raise PipelineError("The video could not be encoded (ffmpeg failed).")


def _wait(proc: subprocess.Popen[bytes], timeout: float) -> int | None:
    """`proc`'s exit code once it ends within `timeout` seconds, else None.

    Popen.wait(timeout) sleeps in steps of up to 50 ms, so a clip that ends just after a step
    waits for the next; a pidfd wakes the moment the process exits (Linux 5.3+)."""
    try:
        fd = os.pidfd_open(proc.pid)
    except (AttributeError, OSError):  # another OS, or the process is already reaped
        try:
            return proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None
    try:
        # poll, not select: a worker holding over 1024 files gets descriptors select refuses.
        exited = select.poll()
        exited.register(fd, select.POLLIN)
        exited.poll(timeout * 1000)
    finally:
        os.close(fd)
    return proc.poll()


def _audio_input(audio: Track | None) -> list[str]:
    """The WAV as the second input, mapped beside the piped frames; `-an` without one."""
    if audio is None:
        return ["-an"]
    return [
        "-i",
        os.fspath(audio.wav),
        "-map",
        "0:v:0",
        "-map",
        "1:a:0",
        "-c:a",
        "aac",
        "-b:a",
        str(audio.bitrate),
    ]


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


def resolve_encoder(encoder: str) -> str:
    if encoder == "auto":
        return "h264_nvenc" if nvenc_available() else "libx264"
    if encoder not in ("libx264", "h264_nvenc"):
        raise ValueError(f"unknown encoder {encoder!r}; use libx264, h264_nvenc or auto")
    return encoder


@functools.cache
def ffmpeg_exe() -> str:
    """imageio-ffmpeg's binary, else an ffmpeg on the PATH (PipelineError: neither).

    The bundled binary is taken as it is: imageio-ffmpeg's own lookup runs ``ffmpeg -version``
    to vet it, a process start (~40 ms) that a camera clip of well under a second notices, and
    the first real run reports a broken binary anyway (its exit code and log)."""
    try:
        import imageio_ffmpeg

        if explicit := os.environ.get("IMAGEIO_FFMPEG_EXE"):
            return explicit
        try:  # its table of binary names is private: a release without it takes the lookup
            from imageio_ffmpeg._definitions import FNAME_PER_PLATFORM, get_platform

            bundled = Path(imageio_ffmpeg.__file__).parent / "binaries"
            bundled /= FNAME_PER_PLATFORM.get(get_platform(), "ffmpeg")
            if bundled.is_file() and os.access(bundled, os.X_OK):
                return os.fspath(bundled)
        except ImportError:
            pass
        return imageio_ffmpeg.get_ffmpeg_exe()
    except (ImportError, RuntimeError):
        if found := shutil.which("ffmpeg"):
            return found
    raise PipelineError(
        "No ffmpeg program here: install imageio-ffmpeg (pip install imageio-ffmpeg) or put "
        "ffmpeg on the PATH."
    )


@functools.cache
def have_program() -> bool:
    """Whether an ffmpeg program can run here (else PyAV encodes: pipeline.pyav_encode)."""
    try:
        ffmpeg_exe()
    except PipelineError:
        log.warning("no ffmpeg program; encoding with PyAV's bundled libraries")
        return False
    return True

def _tag(key: str) -> str:
    cleaned = "".join(ch if ch.isalnum() or ch in "_-" else "_" for ch in key.strip())
    return cleaned or "comment"


def _clean(value: object) -> str:
    """Tags are one line of printable text, bounded so a long prompt can't bloat the file."""
    text = " ".join(str(value).split())
    return text[:1000]


def metadata_size(metadata: dict[str, str] | None) -> int:
    return sum(len(k) + len(_clean(v).encode()) + 32 for k, v in (metadata or {}).items())
