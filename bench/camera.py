"""The `camera` preset against ffmpeg's zoompan one-liner, whole process, side by side.

Issue 17's promise: `python -m pipeline animate PHOTO --model camera` is no slower than the
zoompan one-liner a member could type for the same 5 s 1280×720 24 fps clip at the same x264
settings (libx264 veryfast CRF 19, yuv420p), for every move and for a 12 MP phone photo. Each
pair runs in turn (ours, zoompan, ours, zoompan ...) after one warm-up of each, so a machine
that slows down mid-run slows both; the figure is the median of the per-pair ratios of wall
time (ours / zoompan), with the medians of wall and CPU seconds beside it. Whole processes:
interpreter start, imports, photo decode and MP4 write included on our side, ffmpeg's start
and the photo decode on theirs. Our packages' bytecode is written first (:func:`_compiled`).

zoompan draws the same eased path (zoom geometric in the eased progress, the centre a
quadratic in it, fitted to our views at the start, middle and end); it cannot roll, so its
orbit is the sweep without the bank. It crops at whole pixels, which is why its slow moves
jitter (tests/test_camera.py measures that); it is here as the speed yardstick.

Ours hands ffmpeg one still and a filter graph that draws every frame
(pipeline.backends.camera_graph), so beside the whole-process figures each row also gives
ffmpeg's own part of ours (the same graph and x264 encode, the still piped from this
process): what the move costs without the Python process around it; and x264 alone encoding
our finished frames from memory, paired with zoompan again: the floor for any producer of
these frames at these settings. Sub-pixel motion costs x264 more than zoompan's whole-pixel
steps on pans and tilts (every frame is resampled at a new phase, so its prediction from the
last one leaves more to code), and there that floor alone reaches zoompan's whole run.

    python -m bench.camera          # this benchmark alone
    python -m bench camera          # through the shared runner (table + bench/results/)
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from PIL import Image

from bench import Figure, machine
from contract import CAMERA_MOVES
from pipeline.backends.camera import _move_view
from pipeline.ffmpeg import ffmpeg_exe

TARGET_RATIO = 1.0
WIDTH, HEIGHT, FPS, DURATION = 1280, 720, 24, 5.0
FRAMES = int(DURATION * FPS)
MOTION = 5
REPEATS = 5
PHONE_SIZE = (4032, 3024)


def _photos_dir() -> Path:
    override = os.environ.get("ANIMATE_SHARED_PHOTOS")
    return Path(override) if override else Path(__file__).resolve().parents[1].parent / "shared" / "photos"


def _phone_photo(folder: Path) -> Path:
    """A 4032×3024 JPEG (a 12 MP phone photo) made from a sample photo."""
    path = folder / "phone.jpg"
    image = Image.open(_photos_dir() / "coffee.png").convert("RGB")
    image.resize(PHONE_SIZE, Image.Resampling.BICUBIC).save(path, format="JPEG", quality=90)
    return path


def ours(photo: Path, move: str, out: Path) -> list[str]:
    return [
        sys.executable, "-m", "pipeline", "animate", os.fspath(photo), "--model", "camera",
        "--camera", move, "--motion", str(MOTION), "--duration", f"{DURATION:g}",
        "--size", f"{WIDTH}x{HEIGHT}", "--fps", str(FPS), "--out", os.fspath(out), "-q",
    ]  # fmt: skip


def zoompan(photo: Path, move: str, out: Path) -> list[str]:
    """The one-liner: cover-fit the photo to 1280×720, then zoompan along our move's path."""
    return [
        ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", "-i", os.fspath(photo),
        "-vf", (f"scale={WIDTH}:{HEIGHT}:force_original_aspect_ratio=increase,"
                f"crop={WIDTH}:{HEIGHT},{zoompan_filter(move)}"),
        "-frames:v", str(FRAMES), "-c:v", "libx264", "-preset", "veryfast", "-crf", "19",
        "-pix_fmt", "yuv420p", "-movflags", "+faststart", os.fspath(out),
    ]  # fmt: skip


def zoompan_filter(move: str) -> str:
    """zoompan expressions for `move` at MOTION: our ease of the frame number `on`, the zoom
    geometric in it and the centre quadratic in it (exact for every move but orbit's roll)."""
    aspect = WIDTH / HEIGHT
    first, middle, last = (_move_view(move, MOTION, e, aspect) for e in (0.0, 0.5, 1.0))
    ease = f"(0.9*(0.5-0.5*cos(PI*on/{FRAMES - 1}))+0.1*on/{FRAMES - 1})"
    phase = f"(2*{ease}-1)"

    def quadratic(start: float, mid: float, end: float) -> str:
        a, b, c = mid, (end - start) / 2, (end + start) / 2 - mid
        return f"({a:.9f}+{b:.9f}*{phase}+{c:.9f}*{phase}*{phase})"

    zoom = f"{first.zoom:.9f}*pow({last.zoom / first.zoom:.9f},{ease})"
    cx = quadratic(first.cx, middle.cx, last.cx)
    cy = quadratic(first.cy, middle.cy, last.cy)
    return (
        f"zoompan=z='{zoom}':x='{cx}*iw-iw/zoom/2':y='{cy}*ih-ih/zoom/2'"
        f":d={FRAMES}:s={WIDTH}x{HEIGHT}:fps={FPS}"
    )


def _timed(command: list[str]) -> tuple[float, float]:
    """Wall and CPU seconds of one whole process (its children included)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run(command, check=True, stdin=subprocess.DEVNULL, capture_output=True)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def _drawn(photo: Path, move: str) -> Any:
    """The clip the CLI would hand ffmpeg for `move` (pipeline.stream.Drawn): one still and
    the move's filter graph."""
    from contract import AnimateRequest
    from pipeline.backends.camera import CameraBackend
    from pipeline.intake import fit, load_photo

    class Keep(list):  # type: ignore[type-arg]
        def __call__(self, frame: object) -> None:
            raise AssertionError("the camera handed frames, not one drawn clip")

        def drawn(self, clip: object) -> None:
            self.append(clip)

    request = AnimateRequest(
        image=photo.read_bytes(), camera=move, motion=MOTION, duration=DURATION, fps=FPS,
        width=WIDTH, height=HEIGHT,
    )  # fmt: skip
    backend = CameraBackend()
    image = load_photo(request.image).image
    plan = backend.plan(request, image.size)
    kept = Keep()
    backend.render_yuv420(fit(image, *plan.source_size), plan, request, kept)
    return kept[0]


def ffmpeg_part(photo: Path, move: str, repeats: int = 3) -> tuple[float, float]:
    """Median wall and CPU seconds of ffmpeg's own part of ours: the clip the CLI would hand
    it (one still and the move's filter graph), encoded as the CLI encodes it."""
    from pipeline.encode import encode_mp4

    drawn = _drawn(photo, move)
    runs = []
    for _ in range(repeats + 1):  # the first warms up
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        encode_mp4(drawn, FPS)
        wall = time.perf_counter() - started
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        runs.append((wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)))
    return statistics.median(r[0] for r in runs[1:]), statistics.median(r[1] for r in runs[1:])


def encode_alone(frames: Path, out: Path) -> list[str]:
    """x264 alone on our move's finished frames (raw yuv420p read from `frames`, in memory):
    what no producer of these frames can go below, at these settings."""
    return [
        ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", "-f", "rawvideo",
        "-pix_fmt", "yuv420p", "-s", f"{WIDTH}x{HEIGHT}", "-framerate", str(FPS),
        "-i", os.fspath(frames), "-c:v", "libx264", "-preset", "veryfast", "-crf", "19",
        "-pix_fmt", "yuv420p", "-movflags", "+faststart", os.fspath(out),
    ]  # fmt: skip


def floor(photo: Path, move: str, folder: Path) -> float:
    """Median, over pairs, of (x264 alone on our frames) / (the whole zoompan one-liner)."""
    from pipeline.backends.camera_graph import frames

    size = WIDTH * HEIGHT * 3 // 2 * FRAMES
    shm = Path("/dev/shm")  # in memory, so the timing is not a disk's (Docker's is 64 MB)
    if not shm.is_dir() or shutil.disk_usage(shm).free < 2 * size:
        shm = folder
    raw = shm / f"bench-camera-{os.getpid()}.yuv"
    try:
        with raw.open("wb") as file:
            for frame in frames(_drawn(photo, move)):
                file.write(frame)
        a, b = encode_alone(raw, folder / "alone.mp4"), zoompan(photo, move, folder / "zoompan.mp4")
        _timed(a), _timed(b)
        return statistics.median(_timed(a)[0] / _timed(b)[0] for _ in range(REPEATS))
    finally:
        raw.unlink(missing_ok=True)


def compare(photo: Path, move: str, folder: Path, label: str) -> Figure:
    a = ours(photo, move, folder / "ours.mp4")
    b = zoompan(photo, move, folder / "zoompan.mp4")
    _timed(a), _timed(b)  # warm-up: page cache, first-touch memory
    runs = [(_timed(a), _timed(b)) for _ in range(REPEATS)]
    ratio = statistics.median(ours_run[0] / theirs[0] for ours_run, theirs in runs)
    wall_a, wall_b = (statistics.median(run[i][0] for run in runs) for i in (0, 1))
    cpu_a, cpu_b = (statistics.median(run[i][1] for run in runs) for i in (0, 1))
    cpu_ratio = statistics.median(ours_run[1] / theirs[1] for ours_run, theirs in runs)
    wall_f, cpu_f = ffmpeg_part(photo, move)
    alone = floor(photo, move, folder)
    detail = (
        f"{label}, {move}: ours {wall_a:.2f} s wall / {cpu_a:.2f} s CPU, zoompan "
        f"{wall_b:.2f} s / {cpu_b:.2f} s (CPU ratio {cpu_ratio:.2f}); ours' ffmpeg alone "
        f"{wall_f:.2f} s / {cpu_f:.2f} s; x264 alone on our frames {alone:.2f}× zoompan; "
        f"median of {REPEATS} pairs, load average {os.getloadavg()[0]:.1f} on "
        f"{os.cpu_count()} CPUs"
    )
    key = "12mp_" if "12 MP" in label else ""
    return Figure(f"ratio_{key}{move}", ratio, "×", TARGET_RATIO, detail=detail)


def _compiled() -> None:
    """Write our packages' bytecode, as an installed package has it. Under
    PYTHONDONTWRITEBYTECODE (set on this project's machines and in many containers) every
    timed run would otherwise compile each module it imports again: about 0.03 s of a 0.6 s
    run that no installed bot or CLI pays after its first."""
    import compileall

    import contract
    import pipeline

    for package in (contract, pipeline):
        compileall.compile_dir(os.path.dirname(package.__file__), quiet=1)


def run() -> list[Figure]:
    figures: list[Figure] = []
    _compiled()
    with tempfile.TemporaryDirectory(prefix="bench-camera-") as name:
        folder = Path(name)
        sample = _photos_dir() / "coffee.png"
        for move in CAMERA_MOVES:
            figures.append(compare(sample, move, folder, "600×400 PNG"))
        phone = _phone_photo(folder)
        for move in ("zoom_in", "pan_left"):
            figures.append(compare(phone, move, folder, "12 MP JPEG"))
    return figures


def main() -> int:
    figures = run()
    for figure in figures:
        target = "" if figure.target is None else f"  (target ≤ {figure.target:g})"
        print(f"{figure.name:22} {figure.value:5.2f}{figure.unit}{target}  {figure.detail}")
    print(json.dumps({"machine": machine(), "figures": [f.as_dict() for f in figures]}, indent=2))
    return 0 if all(f.met is not False for f in figures) else 1


if __name__ == "__main__":
    sys.exit(main())
