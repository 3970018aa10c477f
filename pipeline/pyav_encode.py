"""The same MP4 as :func:`pipeline.ffmpeg.run`, written through PyAV when no ffmpeg program exists.

imageio-ffmpeg's static binary (170 MB) is the normal encoder. Where it cannot be installed —
a GPU machine reached only with the wheels one can carry, a slim image — PyAV's wheel (whose
bundled FFmpeg libraries include libx264, NVENC and AAC) encodes the same stream: H.264
yuv420p with BT.709 tags, the same x264 preset and CRF or bitrate cap, faststart, the same
metadata tags and an AAC track. Only clips that ffmpeg draws itself with its filter graph
(the camera move's fast path) need the program; those are refused with a sentence.
"""

from __future__ import annotations

import functools
import logging
import os
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING

from contract import PipelineError

if TYPE_CHECKING:
    from pipeline.ffmpeg import Clip, Track

log = logging.getLogger(__name__)

COLOUR_OPTIONS = {
    "colorspace": "bt709", "color_primaries": "bt709", "color_trc": "bt709", "color_range": "tv",
}
"""AVCodecContext options: the stream says what its pixels are, as ffmpeg's -colorspace … do."""


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
    """One encode of `clip` to `dest` (see :func:`pipeline.ffmpeg.run`); returns its size.
    NVENC failures fall back to libx264."""
    import av

    if clip.drawn is not None:
        raise PipelineError(
            "This clip is drawn by ffmpeg's filters and needs the ffmpeg program; install "
            "imageio-ffmpeg (pip install imageio-ffmpeg) or put ffmpeg on the PATH."
        )
    from pipeline.ffmpeg import CRF, NVENC_CQ, PRESET, _clean, _tag

    rate = Fraction(fps).limit_denominator(1001)
    width, height = size
    options: dict[str, str] = dict(COLOUR_OPTIONS)
    if codec == "h264_nvenc":
        options.update(preset="p5", tune="hq", rc="vbr")
        options.update({"cq": str(NVENC_CQ), "b": "0"} if bitrate is None else _capped(bitrate))
    else:
        options["preset"] = PRESET
        options.update({"crf": str(CRF)} if bitrate is None else _capped(bitrate))
    try:
        with av.open(os.fspath(dest), "w", format="mp4",
                     container_options={"movflags": "+faststart+use_metadata_tags"}) as out:
            for key, value in (metadata or {}).items():
                out.metadata[_tag(key)] = _clean(value)
            video = out.add_stream(codec, rate=rate, options=options)
            video.width, video.height, video.pix_fmt = width, height, "yuv420p"
            video.time_base = Fraction(rate.denominator, rate.numerator)
            sound = _add_audio(out, audio) if audio is not None else None
            for n, frame in enumerate(_frames(clip, width, height)):
                frame.pts = n
                for packet in video.encode(frame):
                    out.mux(packet)
            for packet in video.encode():
                out.mux(packet)
            if sound is not None:
                assert audio is not None
                _mux_audio(out, sound, audio)
    except (av.FFmpegError, ValueError) as exc:
        dest.unlink(missing_ok=True)
        if codec != "libx264":
            log.warning("%s failed in PyAV (%s); falling back to libx264", codec, exc)
            return run(clip, fps, dest, size, "libx264", bitrate, metadata, audio)
        log.error("PyAV could not encode the video: %s", exc)
        raise PipelineError("The video could not be encoded (PyAV failed).") from exc
    return dest.stat().st_size


def _capped(bitrate: int) -> dict[str, str]:
    """VBV caps every second at the target, so the whole file can't drift far above it."""
    return {"b": str(bitrate), "maxrate": str(bitrate), "bufsize": str(bitrate)}


def _frames(clip: Clip, width: int, height: int):  # type: ignore[no-untyped-def]
    """The clip's frames as yuv420p VideoFrames of `width`×`height`: an odd side loses its last
    row or column (as ffmpeg's crop does), another size is scaled with Lanczos."""
    import av
    import numpy as np
    from av.video.reformatter import ColorRange, Colorspace, Interpolation

    crop = (width, height) != (clip.width, clip.height) and width <= clip.width and height <= clip.height \
        and clip.width - width <= 1 and clip.height - height <= 1
    for data in clip.frames:
        if clip.pix_fmt == "yuv420p":
            planes = np.frombuffer(memoryview(data).cast("B"), np.uint8)
            frame = av.VideoFrame.from_ndarray(planes.reshape(clip.height * 3 // 2, clip.width), format="yuv420p")
            source = {"src_colorspace": Colorspace.ITU709, "src_color_range": ColorRange.MPEG}
        else:
            pixels = np.asarray(data)
            if crop:
                pixels = pixels[:height, :width]
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(pixels), format="rgb24")
            source = {}
        yield frame.reformat(
            width=width, height=height, format="yuv420p", dst_colorspace=Colorspace.ITU709,
            dst_color_range=ColorRange.MPEG, interpolation=Interpolation.LANCZOS, **source,
        )


def _add_audio(out, audio: Track):  # type: ignore[no-untyped-def]
    import av

    with av.open(os.fspath(audio.wav)) as wav:
        rate = wav.streams.audio[0].rate
        channels = wav.streams.audio[0].channels
    # A WAV's layout has no channel order ("2 channels"); AAC wants a named one.
    stream = out.add_stream("aac", rate=rate, layout="mono" if channels == 1 else "stereo")
    stream.bit_rate = audio.bitrate
    return stream


def _mux_audio(out, stream, audio: Track) -> None:  # type: ignore[no-untyped-def]
    import av

    resampler = av.AudioResampler(format=stream.codec_context.format, layout=stream.layout, rate=stream.rate)
    with av.open(os.fspath(audio.wav)) as wav:
        for frame in wav.decode(audio=0):
            frame.pts = None
            for ready in resampler.resample(frame):
                for packet in stream.encode(ready):
                    out.mux(packet)
    for ready in resampler.resample(None):
        for packet in stream.encode(ready):
            out.mux(packet)
    for packet in stream.encode(None):
        out.mux(packet)


@functools.cache
def nvenc_available() -> bool:
    """Whether PyAV's FFmpeg can open NVENC here (driver + GPU), probed once with one frame."""
    if not os.path.exists("/dev/nvidiactl"):
        return False
    try:
        import av

        context = av.CodecContext.create("h264_nvenc", "w")
        context.width, context.height, context.pix_fmt = 256, 256, "yuv420p"
        context.time_base = Fraction(1, 24)
        context.open()
        frame = av.VideoFrame(256, 256, "yuv420p")
        frame.pts = 0
        context.encode(frame)
        context.encode(None)
        return True
    except Exception:  # noqa: BLE001 - any failure means: not here
        return False
