"""The dispatcher and its Ray workers, on a real local Ray instance (CPU only).

One private Ray instance serves the whole module (``address="local"``: it never joins
another Ray on this machine). Most tests use :class:`dispatch_support.SleepBackend`, a test
double with a fixed per-step cost that obeys (or, "stubborn", ignores) should_stop and can
kill its own process; it reaches the workers through the dispatcher's ``backend_factory``
seam and logs what it did (start, end, pid, low-memory mode) to a directory the tests read.
One test runs the real camera backend through the production ``load_backend`` path.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from dispatch_support import (
    COST,
    PHOTO,
    WELCOME,
    Recorder,
    eventually,
    interval,
    ledger,
    make_dispatcher,
    render_log,
    settings_for,
    submit,
)

from bot.settings import Settings
from contract import AnimateResult, Failed, InputError, Progress
from jobs import CreditPolicy, Dispatcher, JobService, Origin, RayUnavailable, Store
from pipeline.probe import probe
from pipeline.worker import create_worker

pytestmark = [pytest.mark.asyncio, pytest.mark.usefixtures("ray_instance")]


@contextlib.asynccontextmanager
async def dispatcher(
    settings: Settings,
    store: Store,
    log_dir: Path | None,
    *,
    workers: int,
    stop_grace: float = 30.0,
    release: bool = True,
) -> AsyncIterator[tuple[Dispatcher, Recorder]]:
    d = make_dispatcher(settings.jobs_config(), store, log_dir, tick=0.2, stop_grace=stop_grace)
    recorder = Recorder()
    d.subscribe(recorder)
    recorder.recovery = await JobService(store, d, d.config).start()
    try:
        deadline = time.monotonic() + 60
        while len(d.workers) < workers:
            assert time.monotonic() < deadline, "workers did not come up"
            await asyncio.sleep(0.05)
        yield d, recorder
    finally:
        await d.stop(release=release)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    s = await Store.open(tmp_path / "bot.sqlite3", CreditPolicy(welcome=WELCOME))
    yield s
    await s.close()


@pytest.fixture
def log_dir(tmp_path: Path) -> Path:
    path = tmp_path / "renders"
    path.mkdir()
    return path


# ---- tests -----------------------------------------------------------------------------------


async def test_two_workers_run_at_once_and_a_third_waits(
    tmp_path: Path, store: Store, log_dir: Path
) -> None:
    async with dispatcher(settings_for(tmp_path, cpu_workers=2), store, log_dir, workers=2) as (d, rec):
        assert d.models == ["sleep"]
        assert {w.device for w in d.workers} == {"cpu"} and len({w.pid for w in d.workers}) == 2
        slow = "step=0.3 steps=6"
        a, b, c = [await submit(d, user, slow) for user in (1, 2, 3)]
        await rec.wait(lambda: rec.rendering(a.id) and rec.rendering(b.id))
        # Both workers are mid-render: the third job is still in the queue, first in line.
        assert await d.position(c.id) == 1
        assert (await store.get_job(c.id)).status == "queued"
        queued = [e for e in rec.of(c.id) if isinstance(e, Progress) and e.stage == "queued"]
        assert queued and queued[-1].step == 1
        await rec.finished(a.id, b.id, c.id)
    (a0, a1), (b0, b1) = interval(log_dir, a.id), interval(log_dir, b.id)
    assert max(a0, b0) < min(a1, b1), "the two renders did not overlap"
    for job in (a, b, c):
        [final] = rec.final(job.id)
        assert isinstance(final, AnimateResult) and final.path and Path(final.path).is_file()
        assert probe(final.path)["width"] == 64
        assert (await store.get_job(job.id)).status == "done"


async def test_next_job_overlaps_the_last_ones_encode(
    tmp_path: Path, store: Store, log_dir: Path
) -> None:
    """One worker, two jobs: the second renders as soon as the first leaves the model; its
    intake ran beside the first render, and the first is encoded beside its render."""
    async with dispatcher(settings_for(tmp_path), store, log_dir, workers=1) as (d, rec):
        first = await submit(d, 1, "step=0.4 steps=3")
        second = await submit(d, 2, "step=0.4 steps=3")
        await rec.finished(first.id, second.id)
    (_, first_end), (second_start, _) = interval(log_dir, first.id), interval(log_dir, second.id)
    first_result_at = rec.first_time(first.id, lambda e: isinstance(e, AnimateResult))
    assert first_result_at is not None
    # The second render began before the first clip was encoded and delivered...
    assert second_start < first_result_at
    # ...and right after the first render released the model: no intake in between.
    assert second_start - first_end < 0.2
    assert (await store.get_job(second.id)).worker == (await store.get_job(first.id)).worker


async def test_kill_9_mid_job_retries_on_a_fresh_worker(
    tmp_path: Path, store: Store, log_dir: Path
) -> None:
    async with dispatcher(settings_for(tmp_path), store, log_dir, workers=1) as (d, rec):
        job = await submit(d, 1, "step=0.3 steps=6")
        await rec.wait(lambda: rec.rendering(job.id))
        [info] = d.workers
        killed = info.pid
        os.kill(killed, signal.SIGKILL)
        await rec.finished(job.id, timeout=45)
        [final] = rec.final(job.id)
        assert isinstance(final, AnimateResult)
        done = await store.get_job(job.id)
        assert done.status == "done" and done.attempts == 2
        starts = [pid for what, _, pid, _ in render_log(log_dir, job.id) if what == "start"]
        assert starts[0] == killed and starts[-1] != killed
        # Charged once, never refunded; the next job runs on the replacement worker.
        assert await ledger(store, 1) == sorted([("welcome", None), ("debit", job.id)])
        assert await store.balance(1) == WELCOME - COST
        after = await submit(d, 1)
        await rec.finished(after.id)
        assert isinstance(rec.final(after.id)[0], AnimateResult)
        [(_, _, pid, _), *_] = render_log(log_dir, after.id)
        assert pid != killed and pid == d.workers[0].pid


async def test_a_prefetched_job_keeps_its_attempt_when_the_worker_dies_under_another(
    tmp_path: Path, store: Store, log_dir: Path
) -> None:
    """The second slot's job had only read its photo, waiting for the model, when the job in
    the model killed the worker: it did nothing wrong, so the retry must not cost it an
    attempt (with MAX_ATTEMPTS=1 it would otherwise fail and be refunded instead of running)."""
    async with dispatcher(settings_for(tmp_path, max_attempts=1), store, log_dir, workers=1) as (d, rec):
        first = await submit(d, 1, "steps=2 step=0.1 decode=30")
        second = await submit(d, 2, "steps=2 step=0.1")
        await rec.wait(lambda: any(isinstance(e, Progress) and e.stage == "decode" for e in rec.of(first.id)))
        await rec.wait(lambda: any(isinstance(e, Progress) and e.stage == "intake" for e in rec.of(second.id)))
        assert (await store.get_job(second.id)).status == "running" and not rec.rendering(second.id)
        os.kill(d.workers[0].pid, signal.SIGKILL)
        await rec.finished(first.id, timeout=45)
        await rec.finished(second.id, timeout=45)
        # The job in the model used its only attempt: failed and refunded.
        [failed] = rec.final(first.id)
        assert isinstance(failed, Failed) and failed.kind == "crash"
        assert await store.balance(1) == WELCOME
        # The one waiting for the model ran again, with its attempt given back.
        [done] = rec.final(second.id)
        assert isinstance(done, AnimateResult)
        job = await store.get_job(second.id)
        assert job.status == "done" and job.attempts == 1 and not job.low_memory
        assert [what for what, *_ in render_log(log_dir, second.id)] == ["start", "end"]
        assert await store.balance(2) == WELCOME - COST


async def test_a_job_that_keeps_crashing_its_worker_is_refunded(
    tmp_path: Path, store: Store, log_dir: Path
) -> None:
    async with dispatcher(settings_for(tmp_path), store, log_dir, workers=1) as (d, rec):
        job = await submit(d, 1, "crash")
        await rec.finished(job.id, timeout=45)
        [final] = rec.final(job.id)
        assert isinstance(final, Failed) and final.kind == "crash"
        assert final.reason == (
            "The renderer stopped unexpectedly twice while making this video; "
            "your credits were refunded."
        )
        failed = await store.get_job(job.id)
        assert failed.status == "failed" and failed.attempts == 2
        assert len([r for r in render_log(log_dir, job.id) if r[0] == "start"]) == 2
        assert await store.balance(1) == WELCOME
        assert ("refund", job.id) in await ledger(store, 1)
        # Out of memory: retried once in low-memory mode, which works.
        oom = await submit(d, 2, "oom")
        await rec.finished(oom.id, timeout=45)
        assert isinstance(rec.final(oom.id)[0], AnimateResult)
        assert [low for what, _, _, low in render_log(log_dir, oom.id) if what == "start"] == [False, True]
        assert (await store.get_job(oom.id)).low_memory
        assert await store.balance(2) == WELCOME - COST


async def test_stop_mid_job_and_restart_runs_it_exactly_once(tmp_path: Path, log_dir: Path) -> None:
    settings = settings_for(tmp_path)
    async with await Store.open(settings.database_path, CreditPolicy(welcome=WELCOME)) as store:
        async with dispatcher(settings, store, log_dir, workers=1, release=False) as (d, first):
            job = await submit(d, 1, "step=0.3 steps=6")
            await first.wait(lambda: first.rendering(job.id))
        assert (await store.get_job(job.id)).status == "running"  # as if the bot had died
    # A new process: the same database file, opened again.
    async with await Store.open(settings.database_path, CreditPolicy(welcome=WELCOME)) as again:
        async with dispatcher(settings, again, log_dir, workers=1) as (_, second):
            assert second.recovery is not None
            assert [j.id for j in second.recovery.requeued] == [job.id]
            await second.finished(job.id)
        assert first.final(job.id) == []
        [final] = second.final(job.id)
        assert isinstance(final, AnimateResult)
        done = await again.get_job(job.id)
        assert done.status == "done" and done.attempts == 2
        ends = [row for row in render_log(log_dir, job.id) if row[0] == "end"]
        assert len(ends) == 1, "the job ran to completion more than once"
        assert sorted(os.listdir(settings.output_dir)) == [f"{job.id}.mp4"]
        assert await ledger(again, 1) == sorted([("welcome", None), ("debit", job.id)])
        # Once delivered, a restart neither reruns nor redelivers it.
        assert await again.mark_delivered(job.id)
        async with dispatcher(settings, again, log_dir, workers=1) as (_, rec3):
            await asyncio.sleep(0.5)
        assert rec3.recovery is not None
        assert rec3.recovery.requeued == rec3.recovery.undelivered == []
        assert rec3.of(job.id) == []
        assert (await again.get_job(job.id)).status == "delivered"
        assert len([row for row in render_log(log_dir, job.id) if row[0] == "start"]) == 2


async def test_cancel_queued_and_running_jobs(tmp_path: Path, store: Store, log_dir: Path) -> None:
    async with dispatcher(settings_for(tmp_path), store, log_dir, workers=1) as (d, rec):
        running = await submit(d, 1, "step=0.3 steps=20")
        waiting = await submit(d, 2, "step=0.05")
        await rec.wait(lambda: rec.rendering(running.id))
        assert await d.position(waiting.id) == 1
        assert await d.cancel(waiting.id)
        assert not await d.cancel(waiting.id)
        assert (await store.get_job(waiting.id)).status == "cancelled"
        assert await store.balance(2) == WELCOME
        # A running job can be cancelled too: it stops at once, refunded.
        started = time.monotonic()
        assert await d.cancel(running.id)
        await rec.finished(running.id)
        assert time.monotonic() - started < 2
        await asyncio.sleep(1.0)  # the worker is free again: nothing may pick the cancelled job
        final = rec.final(running.id)
        assert len(final) == 1 and isinstance(final[0], Failed) and final[0].kind == "cancelled"
        assert (await store.get_job(running.id)).status == "cancelled"
        assert await store.balance(1) == WELCOME
        await eventually(lambda: "cancelled" in [row[0] for row in render_log(log_dir, running.id)])
    assert render_log(log_dir, waiting.id) == []
    progress = [e for e in rec.of(waiting.id) if isinstance(e, Progress)]
    assert {e.stage for e in progress} == {"queued"}
    [final] = rec.final(waiting.id)
    assert isinstance(final, Failed) and final.kind == "cancelled"
    assert not (tmp_path / "out" / f"{waiting.id}.mp4").exists()
    assert not (tmp_path / "out" / f"{running.id}.mp4").exists()


async def test_fair_order_one_member_cannot_starve_another(
    tmp_path: Path, store: Store, log_dir: Path
) -> None:
    async with dispatcher(settings_for(tmp_path), store, log_dir, workers=1) as (d, rec):
        a_jobs = [await submit(d, 1, "step=0.05 steps=2") for _ in range(5)]
        b_job = await submit(d, 2, "step=0.05 steps=2")
        await rec.finished(*(j.id for j in a_jobs), b_job.id)
    order = sorted(a_jobs + [b_job], key=lambda j: interval(log_dir, j.id)[0])
    assert order[-1].id != b_job.id
    assert order.index(b_job) <= 2, [j.id for j in order]


async def test_timeout_stops_fails_and_refunds(tmp_path: Path, store: Store, log_dir: Path) -> None:
    settings = settings_for(tmp_path, job_timeout_seconds=1.0)
    # A grace of 3 s: on a loaded 2-core machine the stop request can take over a second to
    # reach the worker, and a worker restarted before that never logs its own stop.
    async with dispatcher(settings, store, log_dir, workers=1, stop_grace=3.0) as (d, rec):
        slow = await submit(d, 1, "step=0.2 steps=50")
        await rec.finished(slow.id, timeout=10)
        [final] = rec.final(slow.id)
        assert isinstance(final, Failed) and final.kind == "timeout"
        assert "longer than 1 second to make" in final.reason and "refunded" in final.reason
        assert (await store.get_job(slow.id)).status == "failed"
        assert await store.balance(1) == WELCOME
        # The worker was told to stop: the render ends well before its 10 s.
        await eventually(lambda: "cancelled" in [row[0] for row in render_log(log_dir, slow.id)])
        # A backend that ignores the stop request: its worker is restarted after the grace.
        stubborn = await submit(d, 2, "stubborn step=0.2 steps=40")
        await rec.finished(stubborn.id, timeout=10)
        assert isinstance(rec.final(stubborn.id)[0], Failed)
        assert await store.balance(2) == WELCOME
        quick = await submit(d, 3)
        await rec.finished(quick.id, timeout=30)
        assert isinstance(rec.final(quick.id)[0], AnimateResult)
        assert [r[0] for r in render_log(log_dir, stubborn.id)] == ["start"]  # killed mid-render


async def test_camera_backend_end_to_end_and_extend(tmp_path: Path, store: Store) -> None:
    """The production path: load_backend("camera") in the worker, a real MP4 on disk, and an
    extension that continues the parent clip."""
    settings = settings_for(tmp_path, model="camera")
    async with dispatcher(settings, store, None, workers=1) as (d, rec):
        assert d.models == ["camera"]
        service = JobService(store, d, d.config)
        spec = service.spec(model="camera", duration=2.0, camera="zoom_in", fps=8, width=128, height=96)
        parent = await service.submit(spec, Origin(user_id=1), image=PHOTO)
        await rec.finished(parent.id)
        [result] = rec.final(parent.id)
        assert isinstance(result, AnimateResult), result
        stages = {e.stage for e in rec.of(parent.id) if isinstance(e, Progress)}
        assert {"intake", "denoise", "encode"} <= stages
        assert any(isinstance(e, Progress) and e.preview for e in rec.of(parent.id))
        info = probe(result.path)
        assert (info["width"], info["height"]) == (128, 96)
        child = await service.extend(parent.id, Origin(user_id=1))
        await rec.finished(child.id)
        [extended] = rec.final(child.id)
        assert isinstance(extended, AnimateResult), extended
        assert extended.frames > result.frames
        with pytest.raises(InputError, match="Motion strength"):
            service.spec(model="camera", motion=11)
        assert await store.balance(1) == WELCOME - 2 * service.cost("camera", 2.0)


async def test_unreachable_ray_address_is_one_line_and_fast(tmp_path: Path, store: Store) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    for address, expect in ((f"127.0.0.1:{port}", "Cannot reach"), ("ray://head:10001", "Ray Client")):
        d = Dispatcher(settings_for(tmp_path, ray_address=address).jobs_config(), store, spawn=create_worker)
        started = time.monotonic()
        with pytest.raises(RayUnavailable) as info:
            await d.start()
        assert time.monotonic() - started < 5
        message = str(info.value)
        assert expect in message and address in message and "\n" not in message


async def test_a_shutdown_mid_job_gives_the_attempt_back(tmp_path: Path, log_dir: Path) -> None:
    settings = settings_for(tmp_path)
    async with await Store.open(settings.database_path, CreditPolicy(welcome=WELCOME)) as store:
        async with dispatcher(settings, store, log_dir, workers=1) as (d, first):
            job = await submit(d, 1, "step=0.3 steps=6")
            await first.wait(lambda: first.rendering(job.id))
        stopped = await store.get_job(job.id)
        assert (stopped.status, stopped.attempts) == ("queued", 0)
        async with dispatcher(settings, store, log_dir, workers=1) as (_, second):
            await second.finished(job.id)
        done = await store.get_job(job.id)
        assert done.status == "done" and done.attempts == 1  # the shutdown cost no attempt
        assert await ledger(store, 1) == sorted([("welcome", None), ("debit", job.id)])


def _unimportable_factory(model: str, options: Any) -> Any:
    """Pickled by reference, so the workers (which cannot import this test module) fail to
    create their actor, as they do when the package is missing on a cluster node."""
    raise AssertionError("never called")


async def test_a_worker_that_cannot_start_is_given_up_and_tried_again_later(
    tmp_path: Path, store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    config = settings_for(tmp_path).jobs_config()
    d = Dispatcher(config, store, spawn=create_worker, backend_factory=_unimportable_factory, tick=0.2)
    await d.start()
    try:
        await eventually(lambda: "could not start" in caplog.text, timeout=60)
        assert d.workers == [] and d.pool.workers == []
        assert d.pool._retry_at > time.monotonic()  # a pause before the next try, not a loop
    finally:
        await d.stop()


async def test_a_database_that_turns_read_only_as_a_render_ends_is_waited_out(
    tmp_path: Path, store: Store, log_dir: Path
) -> None:
    """The job is recorded once the database takes writes again: delivered once, charged
    once, never left "running" with nobody to finish it."""
    async with dispatcher(settings_for(tmp_path), store, log_dir, workers=1) as (d, rec):
        job = await submit(d, 1, "step=0.2 steps=4")
        await rec.wait(lambda: rec.rendering(job.id))
        async with store.db._lock:  # fault injection: the file becomes read-only
            await store.db._conn.execute("PRAGMA query_only = ON")
        await eventually(lambda: any(r[0] == "end" for r in render_log(log_dir, job.id)), 10)
        await asyncio.sleep(1.0)  # its result cannot be written meanwhile
        assert rec.final(job.id) == [] and (await store.get_job(job.id)).status == "running"
        # The member hears why the video is not there yet (once), not a frozen "Encoding".
        saving = [e for e in rec.of(job.id) if isinstance(e, Progress) and e.stage == "saving"]
        assert len(saving) == 1, rec.of(job.id)
        async with store.db._lock:
            await store.db._conn.execute("PRAGMA query_only = OFF")
        await rec.finished(job.id, timeout=30)
        [final] = rec.final(job.id)
        assert isinstance(final, AnimateResult)
        assert (await store.get_job(job.id)).status == "done"
        assert await ledger(store, 1) == sorted([("welcome", None), ("debit", job.id)])


async def test_a_worker_that_died_idle_costs_the_next_job_no_attempt(
    tmp_path: Path, store: Store, log_dir: Path
) -> None:
    """The worker is killed between jobs and still looks ready: the next job finds it dead.
    With MAX_ATTEMPTS=1 that job must still render (on the restarted worker), not fail."""
    settings = settings_for(tmp_path, max_attempts=1)
    async with dispatcher(settings, store, log_dir, workers=1) as (d, rec):
        [info] = d.workers
        os.kill(info.pid, signal.SIGKILL)
        await asyncio.sleep(0.05)
        job = await submit(d, 1, "step=0.05 steps=2")
        await rec.finished(job.id, timeout=60)
        [final] = rec.final(job.id)
        assert isinstance(final, AnimateResult), final
        [(_, _, pid, _), *_] = render_log(log_dir, job.id)
        assert pid != info.pid
        assert await ledger(store, 1) == sorted([("welcome", None), ("debit", job.id)])
