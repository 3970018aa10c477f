"""Photo intake: turn untrusted upload bytes into one upright RGB image, or refuse clearly.

Members upload anything: renamed text files, half-downloaded JPEGs, 16-bit scans, animated
GIFs, crafted "decompression bombs". Everything is judged from the bytes (never the file name
or the declared content type), checked against cheap limits before any pixel is decoded, and
every refusal is an :class:`~contract.InputError` with one sentence a member can act
on. The fitting helpers then map the photo onto what a model renders (buckets or a pixel
budget) without letterboxing.
"""

from __future__ import annotations

import io
import logging
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from PIL import ExifTags, Image, UnidentifiedImageError

from contract import InputError
from contract.sizes import choose_size, low_resolution_warning, size_for_area

if TYPE_CHECKING:
    import numpy as np

__all__ = [
    "OpenedPhoto",
    "Photo",
    "choose_size",
    "fit",
    "jpeg_thumbnail",
    "load_photo",
    "low_resolution_warning",
    "open_photo",
    "size_for_area",
    "to_rgb",
]


log = logging.getLogger(__name__)

BACKGROUND = (128, 128, 128)
"""Transparent areas are composited onto neutral mid-grey: it biases no model towards light or
dark and reads as "nothing here" in a video."""

_FORMATS = ["JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF", "AVIF"]
"""Pillow plugins we let judge the bytes. Restricting them keeps odd parsers (and EPS, which
runs Ghostscript) away from untrusted uploads. Multi-picture JPEGs (MPO) come through the JPEG
opener."""

try:  # Optional extra (pyproject: animate-bot[heif]); iPhone photos are HEIC by default.
    from pillow_heif import register_heif_opener

    register_heif_opener()
    _FORMATS.append("HEIF")
except ImportError:  # pragma: no cover - depends on the environment
    pass

_SNIFF: tuple[tuple[int, bytes, str], ...] = (
    (0, b"%PDF", "a PDF document"),
    (0, b"PK\x03\x04", "a ZIP archive (or an Office document)"),
    (0, b"\x1aE\xdf\xa3", "a WebM/MKV video"),
    (0, b"OggS", "an Ogg audio or video file"),
    (0, b"ID3", "an MP3 audio file"),
    (0, b"fLaC", "a FLAC audio file"),
    (0, b"8BPS", "a Photoshop document"),
    (0, b"\x00\x00\x01\x00", "a Windows icon"),
    (0, b"Rar!", "a RAR archive"),
    (0, b"\x1f\x8b", "a gzip archive"),
    (0, b"7z\xbc\xaf", "a 7-Zip archive"),
    (0, b"\x7fELF", "a program"),
    (0, b"MZ", "a Windows program"),
)
_HEIF_BRANDS = {b"heic", b"heix", b"hevc", b"heim", b"heis", b"mif1", b"msf1"}


@dataclass
class Photo:
    """A decoded, upright RGB photo and what the member should be told about it."""

    image: Image.Image
    format: str
    """Pillow's name for the container the bytes really are (JPEG, PNG, ...)."""
    original_size: tuple[int, int]
    """Width and height after EXIF orientation, before any fitting."""
    warnings: list[str] = field(default_factory=list)


MAX_BYTES = 20 * 1024 * 1024
"""Largest photo file taken: above Discord's default 10 MiB upload."""
MAX_PIXELS = 50_000_000
"""Largest photo taken: a 48 MP phone photo passes; decoding it needs ~150 MB."""
MIN_SIDE = 64
"""Shortest side taken, in pixels: a smaller photo has nothing left to animate."""


def load_photo(
    data: bytes,
    *,
    max_bytes: int = MAX_BYTES,
    max_pixels: int = MAX_PIXELS,
    min_side: int = MIN_SIDE,
) -> Photo:
    """Decode `data` into an upright RGB :class:`Photo`, or raise :class:`InputError`."""
    return open_photo(data, max_bytes=max_bytes, max_pixels=max_pixels, min_side=min_side).decode()


def open_photo(
    data: bytes,
    *,
    max_bytes: int = MAX_BYTES,
    max_pixels: int = MAX_PIXELS,
    min_side: int = MIN_SIDE,
) -> OpenedPhoto:
    """The photo's header judged (:func:`load_photo`'s limits) and its upright size known, so
    a caller can plan before choosing how much of a JPEG to decode (other formats are decoded
    here already: see :class:`OpenedPhoto`)."""
    if not data:
        raise InputError("The file is empty; please upload a photo.")
    if len(data) > max_bytes:
        raise InputError(
            f"The file is {_mib(len(data))}; photos can be at most {_mib(max_bytes)}."
        )
    try:
        # Pillow refuses over 179 megapixels itself (and only warns from 89); our own cap
        # below is checked on the header too. No warnings-filter juggling: it is process-wide
        # state and jobs run in threads.
        image = Image.open(io.BytesIO(data), formats=_FORMATS)
    except Image.DecompressionBombError:
        raise InputError(_too_many_pixels_message(None, max_pixels)) from None
    except UnidentifiedImageError:
        raise InputError(_not_an_image_message(data)) from None
    except Exception as exc:  # noqa: BLE001 - any parser failure on hostile bytes
        log.debug("image header rejected: %r", exc)
        raise InputError(_corrupt_message()) from None

    width, height = image.size
    if width * height > max_pixels:  # header only: nothing decoded yet
        raise InputError(_too_many_pixels_message((width, height), max_pixels))
    if min(width, height) < min_side:
        raise InputError(
            f"The image is only {width}×{height} pixels; it needs to be at least "
            f"{min_side}×{min_side}."
        )
    return OpenedPhoto(data, image, max_pixels)


class OpenedPhoto:
    """A photo whose header passed :func:`open_photo`; :meth:`decode` makes the :class:`Photo`.

    A JPEG carries its EXIF orientation in its header, so its upright size is known before a
    pixel is decoded. Other formats may keep EXIF after the pixels (PNG's eXIf chunk), and
    gain nothing from a planned decode: they are decoded here, once."""

    _DRAFTS = ("JPEG", "MPO")

    def __init__(self, data: bytes, image: Image.Image, max_pixels: int) -> None:
        self._data, self._image, self._max_pixels = data, image, max_pixels
        self.format = image.format or "unknown"
        self._whole: Photo | None = None
        self._covering: dict[tuple[int, int], Photo] = {}
        if self.format in self._DRAFTS:
            self.turned = _orientation(image) in _TURNED
            width, height = image.size
            self.size = (height, width) if self.turned else (width, height)
            """Width and height after EXIF orientation."""
        else:
            self._whole = self._decode(None)
            self.turned, self.size = False, self._whole.original_size

    def decode(self, *, cover: tuple[int, int] | None = None) -> Photo:
        """Decode, orient and convert to sRGB RGB (InputError for broken data); each decode
        is kept, and a whole one serves every later call.

        cover: the size the caller will fit the photo to (a cover fit, upright). A JPEG is
        then decoded by libjpeg's DCT scaling at the smallest of 1/2, 1/4 or 1/8 that still
        covers it, before any resampling: a 12 MP phone photo for a 720p camera move decodes
        at half its sides, in a third of the time, and its fit resamples a quarter of the
        pixels. The Photo's `original_size` stays the photo's own."""
        if self._whole is not None:
            return self._whole
        if cover is None:
            self._whole = self._decode(None)
            return self._whole
        if cover not in self._covering:
            self._covering[cover] = self._decode(cover)
        return self._covering[cover]

    def _decode(self, cover: tuple[int, int] | None) -> Photo:
        image, self._image = self._image, None  # a Pillow image decodes once: reopen after
        if image is None:
            image = Image.open(io.BytesIO(self._data), formats=_FORMATS)
        notes: list[str] = []
        try:
            # Multi-picture JPEGs (MPO) hold a preview or depth map, not an animation.
            if self.format != "MPO" and getattr(image, "is_animated", False):
                kind = "has several pages" if self.format == "TIFF" else "is animated"
                notes.append(f"Your image {kind}; only its first frame was used.")
                image.seek(0)
            if cover is not None:
                width, height = self.size
                scale = max(cover[0] / width, cover[1] / height)
                wanted = (math.ceil(width * scale), math.ceil(height * scale))
                image.draft(None, wanted[::-1] if self.turned else wanted)
            image.load()
            rgb = to_rgb(_upright(image))
        except InputError:
            raise
        except Image.DecompressionBombError:
            raise InputError(_too_many_pixels_message(image.size, self._max_pixels)) from None
        except Exception as exc:  # noqa: BLE001 - truncated data, bad chunks, broken codecs
            log.debug("image decode failed: %r", exc)
            raise InputError(_corrupt_message()) from None
        size = self.size if self.format in self._DRAFTS else rgb.size
        return Photo(image=rgb, format=self.format, original_size=size, warnings=notes)


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert any Pillow mode to 8-bit sRGB, compositing transparency onto mid-grey."""
    icc = image.info.get("icc_profile")
    if icc and image.mode in ("RGB", "RGBA", "CMYK", "L", "LA"):
        managed = _to_srgb(image, icc)
        if managed is not None:
            image = managed
    mode = image.mode
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        return Image.fromarray(_deep_to_8bit(image), "L").convert("RGB")
    if ("transparency" in image.info and mode in ("P", "L", "RGB", "1")) or mode in (
        "PA",
        "LA",
        "La",
        "RGBa",
    ):
        image = image.convert("RGBA")
        mode = "RGBA"
    if mode == "RGBA":
        if image.getchannel("A").getextrema() == (255, 255):
            return image.convert("RGB")
        background = Image.new("RGBA", image.size, (*BACKGROUND, 255))
        return Image.alpha_composite(background, image).convert("RGB")
    if mode == "RGB":
        return image
    try:
        return image.convert("RGB")
    except ValueError:
        raise InputError(
            f"This image uses a colour mode ({mode}) that can't be converted; "
            "please send it as JPEG or PNG."
        ) from None


def jpeg_thumbnail(
    image: Image.Image | np.ndarray, side: int, *, quality: int = 80
) -> bytes:
    """A small JPEG for a Discord message: the photo while the job waits, a frame while it
    renders. `image` is a PIL image or a (height, width, 3) uint8 array."""
    picture = image.copy() if isinstance(image, Image.Image) else Image.fromarray(image)
    picture.thumbnail((side, side))
    out = io.BytesIO()
    picture.convert("RGB").save(out, format="JPEG", quality=quality)
    return out.getvalue()


def fit(image: Image.Image, width: int, height: int) -> Image.Image:
    """Resize and centre-crop minimally to exactly width×height (cover, never letterbox).

    The crop box is fractional and passed to one LANCZOS resize, so cropping and scaling are a
    single resampling step and the crop stays exactly centred.
    """
    if image.size == (width, height):
        return image.copy()
    src_w, src_h = image.size
    target = width / height
    if src_w / src_h > target:  # too wide: use the full height
        box_w, box_h = src_h * target, float(src_h)
    else:  # too tall: use the full width
        box_w, box_h = float(src_w), src_w / target
    left = (src_w - box_w) / 2
    top = (src_h - box_h) / 2
    box = (left, top, left + box_w, top + box_h)
    # reducing_gap=3 pre-shrinks big photos by whole factors first: "indistinguishable"
    # from plain LANCZOS per Pillow's docs and several times faster for 12 MP phone photos.
    return image.resize((width, height), Image.Resampling.LANCZOS, box=box, reducing_gap=3.0)


_TURNED = frozenset({5, 6, 7, 8})
"""EXIF orientations that turn the picture a quarter (transpose, 90°, transverse, 270°)."""


def _orientation(image: Image.Image) -> int:
    """The EXIF orientation tag (1: as stored); a broken EXIF block reads as 1."""
    try:
        return int(image.getexif().get(ExifTags.Base.Orientation, 1))
    except Exception as exc:  # noqa: BLE001 - malformed EXIF must not sink a good photo
        log.debug("ignoring unusable EXIF orientation: %r", exc)
        return 1


def _upright(image: Image.Image) -> Image.Image:
    """Apply the EXIF orientation; a broken EXIF block is ignored rather than fatal. A photo
    already upright is used as it is (exif_transpose would copy it: 20 ms for 12 MP)."""
    if _orientation(image) == 1:
        return image
    from PIL import ImageOps

    try:
        return ImageOps.exif_transpose(image)
    except Exception as exc:  # noqa: BLE001 - malformed EXIF must not sink a good photo
        log.debug("ignoring unusable EXIF orientation: %r", exc)
        return image


def _to_srgb(image: Image.Image, icc: bytes) -> Image.Image | None:
    """Colour-manage an embedded ICC profile (CMYK, Display P3, ...) to sRGB; None if we can't."""
    try:
        from PIL import ImageCms

        source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        if image.mode == "RGB" and "srgb" in ImageCms.getProfileDescription(source).lower():
            return None  # already sRGB: skip a costly identity transform
        srgb = ImageCms.createProfile("sRGB")
        if image.mode in ("RGBA", "LA"):
            alpha = image.getchannel("A")
            base = image.convert("RGB" if image.mode == "RGBA" else "L")
            out = ImageCms.profileToProfile(base, source, srgb, outputMode="RGB")
            if out is None:
                return None
            out.putalpha(alpha)
            return out
        return ImageCms.profileToProfile(image, source, srgb, outputMode="RGB")
    except Exception as exc:  # noqa: BLE001 - a bad profile falls back to a plain convert
        log.debug("ignoring unusable ICC profile: %r", exc)
        return None


def _deep_to_8bit(image: Image.Image) -> np.ndarray:
    """Scale 16/32-bit integer or float greyscale to 0..255 (Pillow's convert would clip)."""
    import numpy as np

    pixels = np.asarray(image).astype(np.float64)
    if image.mode.startswith("I;16"):
        scale = 65535.0
    else:
        finite = pixels[np.isfinite(pixels)]
        low = float(finite.min()) if finite.size else 0.0
        high = float(finite.max()) if finite.size else 0.0
        if image.mode == "F" and low >= 0.0 and high <= 1.0:
            scale = 1.0
        elif low >= 0.0 and high <= 255.0:
            scale = 255.0
        elif low >= 0.0 and high <= 65535.0:
            scale = 65535.0
        else:  # arbitrary range: stretch it
            pixels = pixels - low
            scale = max(high - low, 1e-12)
    pixels = np.nan_to_num(pixels, nan=0.0, posinf=scale, neginf=0.0)
    return np.clip(np.rint(pixels * (255.0 / scale)), 0, 255).astype(np.uint8)


def _not_an_image_message(data: bytes) -> str:
    head = data[:64]
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand in _HEIF_BRANDS:
            return (
                "This looks like a HEIC photo, which this bot can't read; "
                "please send it as JPEG or PNG."
            )
        return "This looks like a video, not a photo; please upload a JPEG, PNG or WebP image."
    for offset, magic, what in _SNIFF:
        if head[offset : offset + len(magic)] == magic:
            return f"This isn't an image: it looks like {what}. Please upload a JPEG, PNG or WebP photo."
    if head[:4] == b"RIFF" and head[8:12] in (b"WAVE", b"AVI "):
        what = "a WAV audio file" if head[8:12] == b"WAVE" else "an AVI video"
        return f"This isn't an image: it looks like {what}. Please upload a JPEG, PNG or WebP photo."
    text = _as_text(data[:4096])
    if text is not None:
        lowered = text.lstrip().lower()
        if lowered.startswith("<svg") or ("<svg" in lowered[:512] and lowered.startswith("<?xml")):
            return "SVG drawings aren't supported; please export it as PNG or JPEG."
        if lowered.startswith(("<!doctype html", "<html")):
            what = "a web page (HTML)"
        elif lowered.startswith(("{", "[")):
            what = "JSON text"
        else:
            what = "text"
        return f"This isn't an image: it looks like {what}. Please upload a JPEG, PNG or WebP photo."
    return (
        "This file isn't an image this bot can read; please upload a JPEG, PNG, WebP, GIF, "
        "BMP or TIFF photo."
    )


def _as_text(sample: bytes) -> str | None:
    if b"\x00" in sample:
        return None
    for cut in range(4):  # a multi-byte character cut at the sample's end is still text
        try:
            text = sample[: len(sample) - cut].decode("utf-8")
            break
        except UnicodeDecodeError:
            continue
    else:
        return None
    printable = sum(ch.isprintable() or ch in "\r\n\t" for ch in text)
    return text if text and printable / len(text) > 0.95 else None


def _corrupt_message() -> str:
    return (
        "The image file is damaged or incomplete (it may have been cut off while uploading); "
        "please upload it again."
    )


def _too_many_pixels_message(size: tuple[int, int] | None, max_pixels: int) -> str:
    limit = f"{max_pixels / 1e6:g} megapixels"
    if size is None:
        return f"The image has far too many pixels to process safely; the limit is {limit}."
    w, h = size
    return f"The image is {w}×{h} pixels ({w * h / 1e6:.0f} megapixels); the limit is {limit}."


def _mib(n: int) -> str:
    return f"{n / (1024 * 1024):.1f} MiB" if n >= 1024 * 1024 else f"{math.ceil(n / 1024)} KiB"
