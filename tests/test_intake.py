"""Photo intake against hostile and unusual uploads: each gets its specific answer, none crash."""

from __future__ import annotations

import io
import math
import struct
import time
import zlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from photos import NAMES, photo_bytes
from PIL import Image

from contract import InputError
from pipeline.intake import (
    BACKGROUND,
    choose_size,
    fit,
    load_photo,
    low_resolution_warning,
    open_photo,
    size_for_area,
)


def encode(image: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def gradient(width: int = 160, height: int = 120) -> Image.Image:
    x = np.linspace(0, 255, width, dtype=np.float32)[None, :]
    y = np.linspace(0, 255, height, dtype=np.float32)[:, None]
    rgb = np.stack([np.broadcast_to(x, (height, width)), np.broadcast_to(y, (height, width)),
                    np.full((height, width), 90.0)], axis=-1)
    return Image.fromarray(rgb.astype(np.uint8), "RGB")


def png_claiming(width: int, height: int) -> bytes:
    """A PNG whose IHDR (valid CRC) claims width×height, followed by a tiny IDAT."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + chunk(b"IEND", b"")
    )


def refusal(data: bytes, **limits: int) -> str:
    with pytest.raises(InputError) as caught:
        load_photo(data, **limits)
    message = caught.value.message
    assert message.endswith(".") and "\n" not in message and "Traceback" not in message
    return message


# -- formats -------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF", "AVIF"])
def test_decodes_each_supported_format(fmt: str) -> None:
    photo = load_photo(encode(gradient(), fmt))
    assert photo.format == fmt
    assert photo.image.mode == "RGB"
    assert photo.image.size == photo.original_size == (160, 120)
    assert photo.warnings == []
    # Colour survives (lossy formats within a margin; GIF is paletted).
    top_right = np.asarray(photo.image)[5, 150].astype(int)
    assert abs(top_right[0] - 240) < 25 and top_right[1] < 40


@pytest.mark.parametrize("name", NAMES)
def test_sample_photos_load_unchanged(name: str) -> None:
    data = photo_bytes(name)
    photo = load_photo(data)
    reference = Image.open(io.BytesIO(data)).convert("RGB")
    assert photo.format == "PNG"
    assert photo.image.size == reference.size
    assert np.array_equal(np.asarray(photo.image), np.asarray(reference))


# -- not an image ---------------------------------------------------------------------------------


def test_text_file_named_png_is_refused_as_text() -> None:
    # The name and declared type never reach intake: only these bytes do.
    message = refusal(b"Hello! This is my holiday photo.png, honest.\nSecond line.\n")
    assert "isn't an image" in message and "text" in message


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Type /Catalog >>\nendobj\n", "PDF"),
        (b"<!DOCTYPE html><html><body>not a photo</body></html>", "web page"),
        (b"PK\x03\x04\x14\x00\x00\x00\x08\x00" + bytes(40), "ZIP"),
        (b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom" + bytes(40), "video"),
        (b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"></svg>', "SVG"),
        (bytes(range(256)) * 4, "isn't an image this bot can read"),
    ],
)
def test_other_files_say_what_they_look_like(data: bytes, expected: str) -> None:
    assert expected in refusal(data)


def test_heic_without_plugin_says_heic() -> None:
    data = b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + bytes(64)
    try:
        import pillow_heif  # noqa: F401
    except ImportError:
        assert "HEIC" in refusal(data)
    else:  # with the plugin these bytes are a broken HEIC file
        assert "damaged" in refusal(data)


def test_empty_file() -> None:
    assert "empty" in refusal(b"")


# -- damaged --------------------------------------------------------------------------------------


def test_truncated_jpeg_is_refused_as_damaged() -> None:
    data = encode(gradient(400, 300), "JPEG", quality=90)
    message = refusal(data[: len(data) // 2])
    assert "damaged or incomplete" in message


def test_png_with_broken_crc_is_refused_as_damaged() -> None:
    data = bytearray(encode(gradient(), "PNG"))
    idat = data.index(b"IDAT")
    data[idat + 10] ^= 0xFF  # flip bits inside the compressed pixels: CRC no longer matches
    assert "damaged or incomplete" in refusal(bytes(data))


def test_png_header_only_is_refused_as_damaged() -> None:
    data = encode(gradient(), "PNG")
    assert "damaged or incomplete" in refusal(data[:60])


@pytest.mark.filterwarnings("ignore:Corrupt EXIF data")
@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF", "AVIF"])
def test_damaged_files_never_crash(fmt: str) -> None:
    # Cut and bit-flipped variants of a small animated-or-not image: every one either loads
    # or is refused with an InputError; no other exception escapes.
    frames = [Image.effect_noise((160, 120), 40 + 20 * i).convert("RGB") for i in range(3)]
    options: dict[str, object] = {"save_all": True, "append_images": frames[1:]}
    if fmt in ("JPEG", "BMP"):
        options = {}
    data = encode(frames[0], fmt, **options)
    rng = np.random.default_rng(len(data))
    cuts = [*np.linspace(8, len(data) - 1, 48).astype(int)]
    cuts += range(len(data) // 3 - 2000, len(data) // 3, 100)  # the end of the first frame
    variants = [data[:cut] for cut in cuts]
    for _ in range(12):
        flipped = bytearray(data)
        for index in rng.integers(16, len(data), size=3):
            flipped[index] ^= int(rng.integers(1, 256))
        variants.append(bytes(flipped))
    for variant in variants:
        try:
            photo = load_photo(variant, min_side=16)
        except InputError as refused:
            assert refused.message.endswith(".")
        else:
            assert photo.image.mode == "RGB"


# -- limits ---------------------------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
@pytest.mark.parametrize("side", [8_000, 10_000, 30_000])
def test_decompression_bomb_refused_from_header_without_decoding(side: int) -> None:
    # 8000² is over our 50 MP cap only; 10000² trips Pillow's warning; 30000² its error.
    data = png_claiming(side, side)
    assert len(data) < 200
    started = time.perf_counter()
    message = refusal(data)
    assert time.perf_counter() - started < 1.0
    assert "limit is 50 megapixels" in message


def test_pixel_cap_is_configurable_and_names_the_size() -> None:
    message = refusal(encode(gradient(300, 200), "PNG"), max_pixels=10_000)
    assert "300×200" in message and "0.01 megapixels" in message


def test_over_the_byte_cap_is_refused_before_decoding() -> None:
    data = encode(gradient(), "PNG")
    message = refusal(data, max_bytes=len(data) - 1)
    assert "photos can be at most" in message
    assert load_photo(data, max_bytes=len(data)).image.size == (160, 120)


def test_byte_cap_message_uses_mib() -> None:
    data = bytes(3 * 1024 * 1024)
    assert "3.0 MiB; photos can be at most 2.0 MiB" in refusal(data, max_bytes=2 * 1024 * 1024)


@pytest.mark.parametrize("size", [(1, 1), (63, 500), (500, 40)])
def test_too_small_says_the_minimum(size: tuple[int, int]) -> None:
    message = refusal(encode(Image.new("RGB", size, "red"), "PNG"))
    assert f"{size[0]}×{size[1]}" in message and "at least 64×64" in message


def test_minimum_side_is_configurable() -> None:
    data = encode(Image.new("RGB", (40, 40), "red"), "PNG")
    assert load_photo(data, min_side=32).image.size == (40, 40)
    assert "at least 48×48" in refusal(data, min_side=48)


# -- animation ------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["GIF", "WEBP", "PNG"])
def test_animated_input_uses_first_frame_with_a_warning(fmt: str) -> None:
    colours = [(200, 30, 30), (30, 200, 30), (30, 30, 200)]
    frames = [Image.new("RGB", (96, 80), colour) for colour in colours]
    options = {"lossless": True} if fmt == "WEBP" else {}
    data = encode(frames[0], fmt, save_all=True, append_images=frames[1:], duration=100, **options)
    photo = load_photo(data)
    assert photo.image.size == (96, 80)
    red, green, blue = np.asarray(photo.image).reshape(-1, 3).mean(axis=0)
    assert red > 150 and green < 80 and blue < 80  # the first frame, not a later one
    assert photo.warnings == ["Your image is animated; only its first frame was used."]


def test_single_frame_gif_has_no_warning() -> None:
    assert load_photo(encode(gradient(), "GIF")).warnings == []


# -- colour modes ---------------------------------------------------------------------------------


def test_cmyk_jpeg_becomes_rgb_with_the_right_colour() -> None:
    cyan = Image.new("CMYK", (96, 96), (255, 0, 0, 0))
    data = encode(cyan, "JPEG", quality=95)
    assert Image.open(io.BytesIO(data)).mode == "CMYK"
    photo = load_photo(data)
    assert photo.image.mode == "RGB"
    r, g, b = np.asarray(photo.image).reshape(-1, 3).mean(axis=0)
    assert r < 30 and g > 225 and b > 225


def test_16_bit_png_is_scaled_not_clipped() -> None:
    ramp = np.tile(np.linspace(0, 65535, 256).astype(np.uint16), (80, 1))
    data = encode(Image.fromarray(ramp), "PNG")
    assert Image.open(io.BytesIO(data)).mode.startswith("I")
    pixels = np.asarray(load_photo(data).image).astype(int)
    row = pixels[40, :, 0]
    assert row[0] == 0 and row[-1] == 255
    assert abs(row[128] - 128) <= 1  # Pillow's plain convert would clip this to 255
    assert np.all(np.diff(row) >= 0)
    assert np.array_equal(pixels[..., 0], pixels[..., 2])


@pytest.mark.parametrize("mode", ["L", "1", "LA", "P", "I", "F"])
def test_every_mode_becomes_rgb(mode: str) -> None:
    base = gradient(128, 96)
    if mode == "I":
        image = Image.fromarray((np.asarray(base.convert("L")).astype(np.int32) * 257))
    elif mode == "F":
        image = Image.fromarray(np.asarray(base.convert("L")).astype(np.float32) / 255)
    else:
        image = base.convert(mode)
    assert image.mode == mode
    fmt = "TIFF" if mode in ("I", "F") else "PNG"
    photo = load_photo(encode(image, fmt))
    assert photo.image.mode == "RGB" and photo.image.size == (128, 96)
    grey = np.asarray(photo.image).astype(int)
    if mode in ("L", "LA", "I", "F"):  # the luminance ramp survives, at 8 bits
        expected = np.asarray(base.convert("L")).astype(int)
        assert np.abs(grey[..., 1] - expected).max() <= 1


def test_exif_orientation_is_applied() -> None:
    image = Image.new("RGB", (120, 80), (40, 40, 40))
    image.paste((255, 0, 0), (0, 0, 20, 20))  # a red marker top-left
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    data = encode(image, "JPEG", quality=95, exif=exif.tobytes())
    photo = load_photo(data)
    assert photo.image.size == photo.original_size == (80, 120)  # width and height swapped
    pixels = np.asarray(photo.image).astype(int)
    assert pixels[5, 75, 0] > 200 and pixels[5, 75, 1] < 60  # marker now top-right
    assert pixels[5, 5, 0] < 80


def test_rgba_transparency_is_composited_on_grey() -> None:
    image = Image.new("RGBA", (100, 100), (255, 0, 0, 0))  # fully transparent red
    image.paste((0, 0, 255, 255), (0, 0, 50, 100))  # opaque blue left half
    image.paste((255, 255, 255, 128), (50, 50, 100, 100))  # half-transparent white
    pixels = np.asarray(load_photo(encode(image, "PNG")).image).astype(int)
    assert tuple(pixels[10, 10]) == (0, 0, 255)
    assert tuple(pixels[10, 90]) == BACKGROUND  # not red, not black
    half = (255 * 128 + BACKGROUND[0] * 127) / 255
    assert np.all(np.abs(pixels[90, 90] - half) <= 1)


def test_palette_transparency_is_composited_on_grey() -> None:
    image = Image.new("P", (80, 80), 0)
    image.putpalette([255, 0, 0, 0, 255, 0] + [0] * 762)
    image.paste(1, (0, 0, 40, 80))
    data = encode(image, "PNG", transparency=0)
    assert Image.open(io.BytesIO(data)).info.get("transparency") == 0
    pixels = np.asarray(load_photo(data).image).astype(int)
    assert tuple(pixels[40, 10]) == (0, 255, 0)
    assert tuple(pixels[40, 70]) == BACKGROUND


def test_la_transparency_is_composited_on_grey() -> None:
    image = Image.new("LA", (80, 80), (255, 0))
    pixels = np.asarray(load_photo(encode(image, "PNG")).image)
    assert tuple(pixels[0, 0]) == BACKGROUND


# -- fitting --------------------------------------------------------------------------------------


def test_choose_size_picks_closest_aspect_in_log_ratio() -> None:
    buckets = [(1280, 720), (720, 1280), (960, 960)]
    assert choose_size(1.5, buckets) == (1280, 720)
    assert choose_size(0.6, buckets) == (720, 1280)
    assert choose_size(1.1, buckets) == (960, 960)
    # 2:1 and 1:2 are equally far from square in log-ratio; the tie goes to the larger area.
    assert choose_size(1.0, [(400, 200), (300, 600)]) == (300, 600)
    assert choose_size(1.0, [(600, 300), (200, 400)]) == (600, 300)


def test_size_for_area_example() -> None:
    assert size_for_area(451 / 300, 1280 * 720, 16) == (1184, 784)
    assert size_for_area(1.0, 512 * 512, 32) == (512, 512)
    width, height = size_for_area(16 / 9, 1280 * 720, 32, max_side=640)
    assert max(width, height) <= 640 and width % 32 == 0 and height % 32 == 0


@settings(max_examples=150, deadline=None)
@given(
    aspect=st.floats(min_value=0.25, max_value=4.0),
    side=st.integers(min_value=256, max_value=1920),
    multiple=st.sampled_from([8, 16, 32, 64]),
)
def test_size_for_area_properties(aspect: float, side: int, multiple: int) -> None:
    area = side * side
    width, height = size_for_area(aspect, area, multiple)
    assert width % multiple == 0 and height % multiple == 0
    assert width >= multiple and height >= multiple
    ideal_w, ideal_h = math.sqrt(area * aspect), math.sqrt(area / aspect)
    if min(ideal_w, ideal_h) >= 4 * multiple:
        # Each side is within one multiple of the ideal, so the area is close...
        assert abs(width - ideal_w) < multiple and abs(height - ideal_h) < multiple
        # ...and the aspect is at least as good as naive per-side rounding.
        naive = (round(ideal_w / multiple) * multiple, round(ideal_h / multiple) * multiple)
        error = abs(math.log(width / height / aspect))
        assert error <= abs(math.log(naive[0] / naive[1] / aspect)) + 1e-12


def test_fit_covers_and_centre_crops() -> None:
    # Left half red, right half blue; a square crop from the centre keeps both halves equal.
    image = Image.new("RGB", (400, 100), (255, 0, 0))
    image.paste((0, 0, 255), (200, 0, 400, 100))
    out = fit(image, 64, 64)
    assert out.size == (64, 64)
    pixels = np.asarray(out).astype(int)
    assert pixels[32, 10, 0] > 200 and pixels[32, 53, 2] > 200
    assert np.abs(pixels[:, :32, 0].mean() - pixels[:, 32:, 2].mean()) < 2


def test_fit_upscales_tall_images_without_letterbox() -> None:
    image = Image.new("RGB", (100, 300), (0, 200, 0))
    out = fit(image, 320, 192)
    assert out.size == (320, 192)
    assert np.asarray(out).reshape(-1, 3).min(axis=0)[1] > 190  # no black bars anywhere


def test_fit_same_size_is_identity() -> None:
    image = gradient(96, 64)
    assert np.array_equal(np.asarray(fit(image, 96, 64)), np.asarray(image))


def test_low_resolution_warning() -> None:
    assert low_resolution_warning((451, 300), (704, 480)) == (
        "Your photo is 451×300; the model works at 704×480, so it was upscaled and the video "
        "may look soft. A larger photo gives a sharper result."
    )
    assert low_resolution_warning((1024, 768), (704, 480)) is None
    assert low_resolution_warning((480, 2000), (704, 480)) is None  # shorter sides compared


@pytest.mark.parametrize("orientation", [1, 6])
def test_a_jpeg_decodes_only_as_much_as_its_fit_needs(orientation: int) -> None:
    # A 12 MP phone photo for a 720p camera move: libjpeg's DCT scaling decodes it at half its
    # sides, still covering the fit, and the fitted picture is the whole decode's within a
    # level or so. The photo's own size (the low-resolution note) is the header's.
    big = gradient(1600, 1200).resize((1600, 1200))
    exif = Image.Exif()
    exif[0x0112] = orientation
    data = encode(big, "JPEG", quality=95, exif=exif.tobytes())
    upright = (1200, 1600) if orientation == 6 else (1600, 1200)
    cover = (500, 280) if orientation == 1 else (280, 500)

    opened = open_photo(data)
    assert opened.size == upright  # from the header: nothing decoded yet
    small = opened.decode(cover=cover)
    whole = load_photo(data)
    assert small.original_size == whole.original_size == whole.image.size == upright
    assert small.image.size == (upright[0] // 2, upright[1] // 2)  # 1/4 would not cover
    fitted = [np.asarray(fit(p.image, *cover)).astype(int) for p in (small, whole)]
    assert np.abs(fitted[0] - fitted[1]).mean() < 1.5

    # Each decode is kept; a PNG (EXIF may follow its pixels) decodes once, whole.
    assert opened.decode(cover=cover) is small
    png = open_photo(encode(big, "PNG"))
    assert png.decode(cover=cover).image.size == (1600, 1200)

