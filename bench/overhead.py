"""Non-model overhead: everything a member waits for except the model itself.

A zero-cost backend returns a 5 s 1280×720 clip's frames at once (a pan across the photo, so
the encoder has real motion to code); everything else is the product: /animate through the
loopback Discord and the real bot, the store, the dispatcher and a Ray worker, intake, H.264
encode, the atomic write and the upload onto the member's message. Target: ≤ 1.5 s on two
cores from the member's command to the MP4 on their message, broken down by stage.

    python -m bench overhead
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import ray
from PIL import Image

from bench import Figure
from contract import AnimateRequest, Progress
from pipeline.backends.base import BackendInfo, RenderPlan

TESTS = Path(__file__).resolve().parents[1] / "tests"
WIDTH, HEIGHT, FPS, SECONDS = 1280, 720, 24, 5
RUNS = 3
TARGET_S = 1.5


class ZeroCostBackend:
    """Frames at no model cost: the fitted photo panned 4 px per frame."""

    info = BackendInfo(name="zero", label="Zero-cost (benchmark)", family="test", durations=(5.0,))

    def plan(self, request: AnimateRequest, image_size: tuple[int, int]) -> RenderPlan:
        return RenderPlan(WIDTH, HEIGHT, FPS * SECONDS, FPS, steps=1, guidance=0.0, seed=request.seed or 0)

    def render(
        self, image: Image.Image, plan: RenderPlan, request: AnimateRequest, *,
        end_image: Image.Image | None = None,
        emit: Callable[[Progress], None] = lambda p: None,
        should_stop: Callable[[], bool] = lambda: False,
    ) -> np.ndarray:
        frame = np.asarray(image.convert("RGB"))
        emit(Progress("denoise", 1, 1))
        return np.stack([np.roll(frame, 4 * i, axis=1) for i in range(plan.num_frames)])

    def close(self) -> None:
        pass


def zero_cost(model: str, options: Any) -> ZeroCostBackend:
    return ZeroCostBackend()


async def _measure(tmp: Path) -> list[Figure]:
    sys.path.insert(0, str(TESTS))
    from loopback import Upload  # noqa: PLC0415 - the loopback lives with the tests
    from photos import photo_path  # noqa: PLC0415
    from world import bot_world, has_video  # noqa: PLC0415

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    photo = Upload(photo_path("astronaut").read_bytes(), "astronaut.png")
    rows: list[dict[str, float]] = []
    async with bot_world(tmp, model="zero", backend_factory=zero_cost, welcome_credits=100) as world:
        d = world.discord
        for i in range(RUNS + 1):  # the first run warms the worker up and is not counted
            started = time.perf_counter()
            run = await d.slash("animate", {"image": photo, "prompt": f"pan {i}", "duration": 5.0})
            ack = await run.acknowledged()
            await run.message(has_video, timeout=120)
            total = time.perf_counter() - started
            job = (await world.store.jobs(statuses=("delivered",)))[-1]
            timings = job.clip.timings if job.clip else {}
            rows.append(
                {
                    "total": total,
                    "acknowledge": ack.latency,
                    "queue_to_worker": (job.started_at or job.created_at) - job.created_at,
                    "intake": timings.get("intake", 0.0),
                    "model": timings.get("render", 0.0),
                    "encode": timings.get("encode", 0.0),
                    "upload": (job.delivered_at or 0.0) - (job.finished_at or 0.0),
                }
            )
    rows = rows[1:]
    median = {key: statistics.median(r[key] for r in rows) for key in rows[0]}
    detail = f"{SECONDS} s {WIDTH}×{HEIGHT} at {FPS} fps; median of {RUNS} after a warm-up"
    figures = [Figure("end_to_end_overhead", median["total"], "s", TARGET_S, detail=detail)]
    for stage in ("acknowledge", "queue_to_worker", "intake", "model", "encode", "upload"):
        figures.append(Figure(f"stage_{stage}", median[stage], "s", detail=detail))
    return figures


def run() -> list[Figure]:
    sys.path.insert(0, str(TESTS))
    from world import private_ray  # noqa: PLC0415

    with tempfile.TemporaryDirectory() as tmp, private_ray():
        return asyncio.run(_measure(Path(tmp)))


if __name__ == "__main__":
    from bench.__main__ import main

    sys.exit(main(["overhead"]))
