"""Acknowledgement latency: 200 members run /animate at the same moment.

The bot runs exactly as in production — `python -m bot` in its own process, settings from the
environment, its own local Ray with a camera worker — against the loopback Discord of the test
suite, which runs here in the benchmark's process. The loopback measures, per interaction, the
real seconds from sending INTERACTION_CREATE on the gateway to receiving the bot's callback.
Discord kills an interaction not acknowledged within 3 s; the target is p99 ≤ 100 ms.
Afterwards every one of the 200 must be accepted, charged once and queued (read from the bot's
SQLite file, which is safe to open from a second process).

    python -m bench ack
"""

from __future__ import annotations

import asyncio
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import Figure

TESTS = Path(__file__).resolve().parents[1] / "tests"
MEMBERS = 200
TARGET_P99_S = 0.100


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


async def _measure(tmp: Path) -> list[Figure]:
    sys.path.insert(0, str(TESTS))
    from loopback import LoopbackDiscord  # noqa: PLC0415 - the loopback lives with the tests
    from photos import photo_path  # noqa: PLC0415

    from jobs import CreditPolicy, Store  # noqa: PLC0415

    database = tmp / "bot.sqlite3"
    async with LoopbackDiscord() as d:
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("DISCORD_", "RAY_"))},
            **d.env(),
            "DATABASE_PATH": str(database),
            "OUTPUT_DIR": str(tmp / "outputs"),
            "MODEL": "camera",
            "GUILD_IDS": str(d.guild.id),
            "MAX_QUEUE": "1000",
            "WELCOME_CREDITS": "10",
            "LOG_LEVEL": "WARNING",
        }
        bot = subprocess.Popen(
            [sys.executable, "-m", "bot"], env=env, cwd=tmp,
            stdout=subprocess.DEVNULL, stderr=open(tmp / "bot.log", "wb"),
        )
        try:
            await d.wait_for_commands("animate", guild=d.guild, timeout=120)
            await d.wait_until_connected(timeout=120)
            photo = d.upload(photo_path("chelsea").read_bytes(), "chelsea.png")
            members = [d.add_member(f"member{i}") for i in range(MEMBERS)]
            await asyncio.sleep(1.0)  # let the bot finish start-up work (Ray workers) first
            started = time.perf_counter()
            options = {"image": photo, "prompt": "a slow push-in", "duration": 2.0}
            runs = await d.slash_burst("animate", [(m, options) for m in members])
            acks = await asyncio.gather(*(run.acknowledged(timeout=30) for run in runs))
            await asyncio.gather(
                *(run.message(lambda m: "Queued as job" in m.content, timeout=120) for run in runs)
            )
            all_queued_s = time.perf_counter() - started
        finally:
            bot.send_signal(signal.SIGINT)
            try:
                bot.wait(timeout=30)
            except subprocess.TimeoutExpired:
                bot.kill()
    latencies = [ack.latency for ack in acks]
    async with await Store.open(database, CreditPolicy(welcome=10)) as store:
        jobs = await store.jobs(statuses=("queued", "running", "done", "delivered"))
        debits = [e for m in members for e in await store.history(m.id, limit=10) if e.kind == "debit"]
    assert all(ack.accepted for ack in acks), "an acknowledgement was refused"
    assert len(jobs) == MEMBERS and len(debits) == MEMBERS, (len(jobs), len(debits))
    assert len({e.job_id for e in debits}) == MEMBERS, "a job was charged twice"
    detail = f"{MEMBERS} members at once against `python -m bot`; all accepted, charged once, queued"
    return [
        Figure("ack_p50", statistics.median(latencies) * 1000, "ms", detail=detail),
        Figure("ack_p99", _percentile(latencies, 0.99) * 1000, "ms", TARGET_P99_S * 1000, detail=detail),
        Figure("ack_max", max(latencies) * 1000, "ms", detail=detail),
        Figure(
            "all_queued",
            all_queued_s,
            "s",
            detail=f"first INTERACTION_CREATE until all {MEMBERS} members saw 'Queued as job'",
        ),
    ]


def run() -> list[Figure]:
    with tempfile.TemporaryDirectory() as tmp:
        return asyncio.run(_measure(Path(tmp)))


if __name__ == "__main__":
    from bench.__main__ import main

    sys.exit(main(["ack"]))
