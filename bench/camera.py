"""The `camera` preset's speed: a 5 s 1280×720 clip at 24 fps, photo bytes to MP4 bytes.

Target (issue 3): ≤ 2 s on the 2-core CI machine, encoding included. Measured through the real
orchestrator (intake, render, encode), median of 3 after a warm-up, with the per-stage
breakdown, once for a small sample photo (upscaled, the common Discord case) and once for a
12-megapixel phone-sized JPEG (decode and a larger, sharper source). Every move is timed once
as well: orbit rolls the view, which needs Pillow's slower general affine sampler.

    python -m bench.camera          # this benchmark alone
    python -m bench camera          # through the shared runner (table + bench/results/)
"""

from __future__ import annotations

import io
import json
import os
import statistics
import sys
import time
from pathlib import Path

from PIL import Image

from bench import Figure, machine
from contract import CAMERA_MOVES, AnimateRequest, AnimateResult
from pipeline.animate import animate
from pipeline.backends.camera import CameraBackend

TARGET_S = 2.0
WIDTH, HEIGHT, FPS, DURATION = 1280, 720, 24, 5.0
REPEATS = 3


def _photos_dir() -> Path:
    override = os.environ.get("ANIMATE_SHARED_PHOTOS")
    return Path(override) if override else Path(__file__).resolve().parents[1].parent / "shared" / "photos"


def _phone_photo() -> bytes:
    """A 4032×3024 JPEG (a 12 MP phone photo) made from a sample photo."""
    image = Image.open(_photos_dir() / "coffee.png").convert("RGB").resize((4032, 3024), Image.BICUBIC)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def _clip(image: bytes, camera: str = "static") -> AnimateResult:
    request = AnimateRequest(
        image=image, camera=camera, duration=DURATION, fps=FPS, width=WIDTH, height=HEIGHT
    )
    return animate(request, CameraBackend())


def _median_run(image: bytes, camera: str = "static") -> tuple[dict[str, float], list[float]]:
    _clip(image, camera)  # warm-up: first-touch memory, thread pool, ffmpeg page cache
    runs = [_clip(image, camera).timings for _ in range(REPEATS)]
    stages = {stage: statistics.median(run[stage] for run in runs) for stage in runs[0]}
    return stages, [run["total"] for run in runs]


def run() -> list[Figure]:
    figures: list[Figure] = []
    sample = (_photos_dir() / "chelsea.png").read_bytes()
    for label, image in (("sample photo 451×300", sample), ("12 MP JPEG", _phone_photo())):
        stages, totals = _median_run(image)
        key = "small" if image is sample else "12mp"
        detail = (
            f"{label}, static push-in, {int(DURATION * FPS)} frames; median of {REPEATS} "
            f"(runs {', '.join(f'{t:.2f}' for t in totals)} s; load average "
            f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)"
        )
        figures.append(Figure(f"5s_720p_{key}_total", stages["total"], "s", TARGET_S, detail=detail))
        for stage in ("intake", "render", "encode"):
            figures.append(Figure(f"5s_720p_{key}_{stage}", stages[stage], "s", detail=label))
    for move in CAMERA_MOVES:
        started = time.perf_counter()
        result = _clip(sample, move)
        total = time.perf_counter() - started
        figures.append(
            Figure(
                f"5s_720p_move_{move}",
                total,
                "s",
                detail=f"one run; render {result.timings['render']:.2f} s, "
                f"encode {result.timings['encode']:.2f} s",
            )
        )
    return figures


def main() -> int:
    figures = run()
    for figure in figures:
        target = "" if figure.target is None else f"  (target ≤ {figure.target:g} {figure.unit})"
        print(f"{figure.name:28} {figure.value:6.3f} {figure.unit}{target}  {figure.detail}")
    print(json.dumps({"machine": machine(), "figures": [f.as_dict() for f in figures]}, indent=2))
    return 0 if all(f.met is not False for f in figures) else 1


if __name__ == "__main__":
    sys.exit(main())
