"""What Discord infers about an uploaded file: content type from the extension, image size.

Discord's `content_type` reflects only the file name (a PNG named `photo.jpg` is served as
image/jpeg), which is why the bot must sniff the bytes itself.
"""

from __future__ import annotations

import io
import mimetypes


def content_type_for(filename: str) -> str | None:
    guessed = mimetypes.guess_type(filename)[0]
    if guessed is None and filename.lower().endswith(".webp"):
        return "image/webp"
    return guessed


def image_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) of an image Pillow can read, else None."""
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - Pillow is a project dependency
        return None
    try:
        with Image.open(io.BytesIO(data)) as image:
            return image.size
    except Exception:
        return None


def sniff_filename(data: bytes) -> str:
    """A plausible file name for raw bytes a test attaches without naming them."""
    if data.startswith(b"\x89PNG"):
        return "image.png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image.jpg"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image.webp"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "image.gif"
    if data[4:8] == b"ftyp":
        return "video.mp4"
    return "file.bin"
