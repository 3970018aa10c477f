"""Worker duty cycle: how much of the wall time the model is busy under a 20-job backlog.

One worker, a model of fixed per-job cost (1 s, as `time.sleep` inside the model lock, so it
leaves the CPU to the work that should overlap it) producing an 832×480, 49-frame clip that is
really encoded. The dispatcher keeps two jobs in flight per worker, so the next photo's intake
and the last clip's encode run beside the model. Target: ≥ 97 % of the wall time from the first
render's start to the last render's end is spent inside the model.

    python -m bench duty
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from pathlib import Path

from bench import Figure

TESTS = Path(__file__).resolve().parents[1] / "tests"
JOBS = 20
MODEL_SECONDS = 1.0
TARGET = 97.0


async def _measure(tmp: Path) -> list[Figure]:
    sys.path.insert(0, str(TESTS))
    from dispatch_support import make_dispatcher, settings_for, submit  # noqa: PLC0415

    from jobs import CreditPolicy, Store  # noqa: PLC0415

    log_dir = tmp / "renders"
    log_dir.mkdir()
    settings = settings_for(tmp, max_queued_per_user=JOBS, max_queue=JOBS)
    prompt = f"step={MODEL_SECONDS / 4} steps=4 size=832x480 frames=49"
    async with await Store.open(settings.database_path, CreditPolicy(welcome=1000)) as store:
        dispatcher = make_dispatcher(settings.jobs_config(), store, log_dir, tick=0.2)
        await dispatcher.start()
        try:
            while not dispatcher.workers:
                await asyncio.sleep(0.05)
            jobs = [
                await submit(dispatcher, 1 + i % 4, prompt) for i in range(JOBS)
            ]
            deadline = time.monotonic() + 300
            while True:
                done = await store.jobs(statuses=("done",))
                if len(done) == JOBS:
                    break
                assert time.monotonic() < deadline, "the backlog did not finish"
                await asyncio.sleep(0.1)
        finally:
            await dispatcher.stop()
    intervals = []
    for job in jobs:
        rows = dict(
            (line.split()[0], float(line.split()[1]))
            for line in (log_dir / f"{job.id}.log").read_text().splitlines()
        )
        intervals.append((rows["start"], rows["end"]))
    busy = sum(end - start for start, end in intervals)
    wall = max(end for _, end in intervals) - min(start for start, _ in intervals)
    gaps = sorted(b[0] - a[1] for a, b in zip(sorted(intervals), sorted(intervals)[1:]))
    detail = f"{JOBS} jobs, 1 worker, {MODEL_SECONDS:g} s model each, 832×480×49 encode"
    return [
        Figure("model_duty_cycle", 100.0 * busy / wall, "%", TARGET, higher_is_better=True, detail=detail),
        Figure("median_gap_between_renders", gaps[len(gaps) // 2] * 1000, "ms", detail=detail),
        Figure("max_gap_between_renders", gaps[-1] * 1000, "ms", detail=detail),
    ]


def run() -> list[Figure]:
    sys.path.insert(0, str(TESTS))
    from world import private_ray  # noqa: PLC0415

    with tempfile.TemporaryDirectory() as tmp, private_ray():
        return asyncio.run(_measure(Path(tmp)))


if __name__ == "__main__":
    from bench.__main__ import main

    sys.exit(main(["duty"]))
