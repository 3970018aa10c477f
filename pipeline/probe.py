"""What an MP4 really contains, as a decoder sees it: for tests, benchmarks and checks.

Kept apart from :mod:`pipeline.encode` so that nothing that writes a clip can also grade it:
frames are counted by decoding every one (PyAV/FFmpeg), and the top-level box order is read
from the bytes, so a broken stream or a moov atom after mdat cannot pass.
"""

from __future__ import annotations

import io
import os
from typing import Any


def probe(mp4: bytes | str | os.PathLike[str]) -> dict[str, Any]:
    """Describe an MP4 as a real decoder (PyAV/FFmpeg) sees it, plus whether moov precedes mdat.

    Frames are counted by decoding every one, not read from the header, so a broken stream
    can't pass.
    """
    import av

    if isinstance(mp4, (bytes, bytearray, memoryview)):
        blob = bytes(mp4)
        source: Any = io.BytesIO(blob)
        boxes = _top_level_boxes(io.BytesIO(blob), len(blob))
        size = len(blob)
    else:
        source = os.fspath(mp4)
        size = os.path.getsize(source)
        with open(source, "rb") as handle:
            boxes = _top_level_boxes(handle, size)
    with av.open(source) as container:
        stream = container.streams.video[0]  # default slice threading: see decode_frames
        codec = stream.codec_context
        frames = sum(1 for _ in container.decode(stream))
        fps = float(stream.average_rate or stream.guessed_rate or 0)
        if stream.duration is not None and stream.time_base is not None:
            duration = float(stream.duration * stream.time_base)
        elif container.duration is not None:
            duration = container.duration / av.time_base
        else:
            duration = frames / fps if fps else 0.0
        info = {
            "codec": codec.name,
            "pix_fmt": codec.pix_fmt,
            "width": codec.width,
            "height": codec.height,
            "frames": frames,
            "fps": fps,
            "duration": duration,
            "metadata": dict(container.metadata),
        }
    order = [name for name in boxes if name in ("moov", "mdat")]
    info["faststart"] = order[:1] == ["moov"] and "mdat" in order
    info["boxes"] = boxes
    info["size"] = size
    return info


def _top_level_boxes(handle: Any, total: int) -> list[str]:
    """Names of the top-level ISO-BMFF boxes in file order (ftyp, moov, mdat, ...)."""
    names: list[str] = []
    offset = 0
    while offset + 8 <= total:
        handle.seek(offset)
        header = handle.read(16)
        if len(header) < 8:
            break
        size = int.from_bytes(header[:4], "big")
        kind = header[4:8].decode("latin-1")
        if size == 1 and len(header) == 16:
            size = int.from_bytes(header[8:16], "big")
        elif size == 0:
            size = total - offset
        if size < 8:
            break
        names.append(kind)
        offset += size
    return names
