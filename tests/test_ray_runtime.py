"""The Ray runtime under the bot dies (its raylet SIGKILLed, as the kernel's OOM killer does
while a model loads): the bot keeps answering Discord, brings Ray back, and every job is
delivered once with no attempt used and no credit lost.

No `ray_instance` fixture here: the bot starts (and owns) its own local Ray, exactly as
`python -m bot` without RAY_ADDRESS does, so it may restart it.
"""

from __future__ import annotations

import asyncio
import gc
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
import ray
from loopback import Upload
from world import Gate, World, all_jobs, bot_world, small_png, wait_status

PHOTO = small_png()


def ray_process(name: str) -> psutil.Process:
    """One of the Ray processes this test process started (raylet, gcs_server)."""
    found = [p for p in psutil.Process().children(recursive=True) if p.name().startswith(name)]
    assert len(found) == 1, [p.name() for p in psutil.Process().children(recursive=True)]
    return found[0]


async def balance_seconds(w: World) -> float:
    """How long /balance takes to be answered, end to end through the loopback gateway."""
    started = time.monotonic()
    run = await w.discord.slash("balance", {})
    answer = await run.original(timeout=15)
    assert "credit" in answer.text()
    return time.monotonic() - started


@pytest.fixture
def frozen_heap() -> Iterator[None]:
    """`python -m bot` freezes its start-up heap (bot/app.py) so that a full garbage
    collection never stalls its event loop; this test process carries the heap of every test
    before it, which such a collection would crawl mid-test. Freeze it the same way."""
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


@pytest.mark.asyncio
@pytest.mark.usefixtures("frozen_heap")
async def test_raylet_killed_mid_render_ray_comes_back_and_nothing_is_lost(tmp_path: Path) -> None:
    assert not ray.is_initialized(), "another test module left Ray running in this process"
    gate = Gate(tmp_path / "gate")
    async with bot_world(tmp_path, backend_factory=gate.factory) as w:
        d = w.discord
        assert w.dispatcher.runtime.owned
        values = {"image": Upload(PHOTO, "photo.png"), "duration": 2.0, "seed": 3}
        first = await d.slash("animate", values)
        await first.message(lambda m: not m.ephemeral and m.card, timeout=15)
        second = await d.slash("animate", {**values, "prompt": "second"})
        second_message = await second.message(lambda m: not m.ephemeral and m.card, timeout=15)
        a, b = await all_jobs(w.store, d.member.id)
        await gate.wait_started(a.id)
        assert (await w.store.get_job(b.id)).status == "queued"
        balance_before = await w.store.balance(d.member.id)
        old_raylet = ray_process("raylet")

        os.kill(old_raylet.pid, signal.SIGKILL)
        killed = time.monotonic()
        # A clip that Discord found too large goes to a worker for re-encoding in the moment
        # between the runtime's death and its detection: Ray holds the call for the actor's
        # restart, which never comes once that Ray session is shut down. The call must end,
        # so that the delivery tries again, rather than wait forever.
        await asyncio.sleep(0.5)
        assert w.dispatcher.runtime.up and w.dispatcher.workers  # not noticed yet
        refit = asyncio.create_task(w.dispatcher.fit_upload(b"\0" * 300_000, 100_000))

        # Discord is answered all along, while Ray is detected dead, shut down and restarted.
        latencies: list[float] = []
        while w.dispatcher.runtime.up:
            latencies.append(await balance_seconds(w))
            assert time.monotonic() - killed < 20, "the dead runtime was not noticed"
        job = await wait_status(w.store, a.id, "queued", timeout=10)  # right after the loss
        assert job.attempts == 0, job  # back in line, its attempt given back
        with pytest.raises(Exception) as ended:
            await asyncio.wait_for(refit, 30)
        assert not isinstance(ended.value, TimeoutError), "the re-encode call never ended"
        operator = d.add_member(d.app_owner)
        queue = await (await d.slash("queue", {}, user=operator)).original(timeout=15)
        assert "DOWN" in queue.embeds[0]["description"], queue.embeds
        while not w.dispatcher.workers:
            latencies.append(await balance_seconds(w))
            assert time.monotonic() - killed < 90, "Ray and its worker did not come back"
        assert ray_process("raylet").pid != old_raylet.pid
        assert latencies and max(latencies) < 1.0, latencies

        # The waiting member was told why nothing moves, on the job's own message.
        statuses = [text for version in second_message.history for text in version.texts()]
        assert any("waiting for a GPU worker" in s for s in statuses), statuses

        gate.open()
        for job_id in (a.id, b.id):
            done = await wait_status(w.store, job_id, "delivered", "failed", timeout=60)
            assert done.status == "delivered", done
        assert (await w.store.get_job(a.id)).attempts == 1
        assert await w.store.balance(d.member.id) == balance_before  # charged once, no refund
        kinds = [e.kind for e in await w.store.history(d.member.id, limit=20)]
        assert "refund" not in kinds, kinds
        assert w.dispatcher.runtime.up


_BIG_CALL_AFTER_RAYLET_DEATH = """
import asyncio, os, signal, sys, psutil, ray
from jobs.ray_runtime import connect_ray

@ray.remote
class Echo:
    def size(self, data):
        return len(data)

async def main():
    await connect_ray(None, cpu_workers=1)
    echo = Echo.remote()
    assert await echo.size.remote(b"x") == 1
    raylet = next(p for p in psutil.Process().children(recursive=True) if p.name() == "raylet")
    os.kill(raylet.pid, signal.SIGKILL)
    raylet.wait(10)
    photo = os.urandom(3 * 2**20)  # a photo-sized argument, as every job sends
    for _ in range(3):
        try:
            await asyncio.wait_for(echo.size.remote(photo), 20)
        except Exception as exc:
            print("call failed:", type(exc).__name__, flush=True)
    print("the driver survived", flush=True)
    os._exit(0)

asyncio.run(main())
"""


def test_the_bot_process_survives_a_big_call_to_a_dead_raylet() -> None:
    """Ray terminates a driver that uses its broken plasma connection ("The connection to the
    plasma store is failed. Terminate the process."), and a job's photo went through plasma:
    a raylet dying under the bot took the bot, and Discord, down with it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env["RAY_TMPDIR"] = temp = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # short socket paths
    try:
        done = subprocess.run(
            [sys.executable, "-c", _BIG_CALL_AFTER_RAYLET_DEATH],
            env=env, capture_output=True, text=True, timeout=120,
            cwd=Path(__file__).resolve().parents[1],
        )
    finally:
        shutil.rmtree(temp, ignore_errors=True)
    assert "the driver survived" in done.stdout, (done.returncode, done.stdout, done.stderr[-2000:])


_LISTENING = """
import json, psutil, ray
from jobs.ray_runtime import _init
_init(None, 1)  # what connect_ray runs (in a thread) without RAY_ADDRESS
@ray.remote
def one():
    return 1
ray.get(one.remote())  # a worker process too
mine = {p.pid for p in [psutil.Process(), *psutil.Process().children(recursive=True)]}
print(json.dumps(sorted({c.laddr.ip for c in psutil.net_connections("inet")
                         if c.status == "LISTEN" and c.pid in mine})))
ray.shutdown()
"""


def test_the_private_ray_listens_on_the_loopback_only() -> None:
    """Without RAY_ADDRESS the bot's Ray is its own: its GCS, raylet, object manager and
    workers accept connections from this machine only (Ray on Linux would otherwise bind
    0.0.0.0, :: and the external address)."""
    import json

    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    done = subprocess.run(
        [sys.executable, "-c", _LISTENING], capture_output=True, text=True, timeout=180, env=env,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert done.returncode == 0, done.stderr[-2000:]
    addresses = json.loads(done.stdout.strip().splitlines()[-1])
    assert addresses and all(a in ("127.0.0.1", "::ffff:127.0.0.1", "::1") for a in addresses), addresses
