"""The credits ledger and job queue: lifecycle, refusals, idempotency, refills, recovery."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from contract import JobSpec
from jobs import (
    ClipSummary,
    CreditPolicy,
    DailyLimit,
    InsufficientCredits,
    InvalidAmount,
    QueueFull,
    Store,
    TooManyQueued,
)
from jobs.store.queue import DAY
from jobs.store.schema import SCHEMA_VERSION

pytestmark = pytest.mark.asyncio


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def store(tmp_path: Path):
    s = await Store.open(tmp_path / "bot.sqlite3", CreditPolicy(welcome=10))
    yield s
    await s.close()


async def new_job(store: Store, user: int = 1, cost: int = 2, **kw):
    return await store.create_job(user_id=user, spec=JobSpec(model="camera"), cost=cost, image=b"photo", **kw)


async def test_welcome_grant_once(store: Store) -> None:
    assert await store.balance(7) == 10
    assert await store.balance(7) == 10
    kinds = [e.kind for e in await store.history(7)]
    assert kinds == ["welcome"]


async def test_schema_settings(store: Store, tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "bot.sqlite3")
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    conn.close()


async def test_ledger_is_append_only(store: Store, tmp_path: Path) -> None:
    await store.balance(1)
    conn = sqlite3.connect(tmp_path / "bot.sqlite3")
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        conn.execute("UPDATE ledger SET delta = 1000")
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        conn.execute("DELETE FROM ledger")
    conn.close()


async def test_create_debits_and_stores_inputs(store: Store) -> None:
    job = await store.create_job(
        user_id=1, spec=JobSpec(model="ltx", prompt="wave"), cost=3, image=b"A", end_image=b"B"
    )
    assert job.status == "queued" and job.cost == 3 and job.spec == JobSpec(model="ltx", prompt="wave")
    assert await store.balance(1) == 7
    assert await store.job_inputs(job.id) == (b"A", b"B")
    debit = (await store.history(1))[0]
    assert (debit.kind, debit.delta, debit.job_id) == ("debit", -3, job.id)


async def test_idempotency_key_charges_once(store: Store) -> None:
    first = await new_job(store, idempotency_key="interaction-1")
    again = await new_job(store, idempotency_key="interaction-1")
    assert first.id == again.id
    assert await store.balance(1) == 8


async def test_insufficient_credits_refuses_without_charge(store: Store) -> None:
    with pytest.raises(InsufficientCredits) as info:
        await new_job(store, cost=11)
    assert (info.value.balance, info.value.cost) == (10, 11)
    assert await store.balance(1) == 10
    assert await store.jobs(user_id=1) == []


async def test_limits(store: Store) -> None:
    for _ in range(2):
        await new_job(store, cost=1, max_queued_per_user=2)
    with pytest.raises(TooManyQueued) as info:
        await new_job(store, cost=1, max_queued_per_user=2)
    assert info.value.limit == 2
    await new_job(store, user=2, cost=1, max_queue=3)
    with pytest.raises(QueueFull):
        await new_job(store, user=3, cost=1, max_queue=3)
    assert await store.balance(1) == 8 and await store.balance(3) == 10


async def test_lifecycle_and_exactly_once_delivery(store: Store) -> None:
    job = await new_job(store)
    running = await store.claim_next("worker-a")
    assert running is not None and running.id == job.id
    assert running.status == "running" and running.attempts == 1 and running.worker == "worker-a"
    assert await store.claim_next("worker-b") is None
    clip = ClipSummary(width=64, height=48, frames=49, fps=24.0, seed=7, model="camera")
    done = await store.finish(job.id, result_path="/tmp/x.mp4", clip=clip)
    assert done is not None and done.status == "done" and done.clip == clip
    assert await store.mark_delivered(job.id, {"message_id": 5})
    assert not await store.mark_delivered(job.id)
    delivered = await store.get_job(job.id)
    assert delivered.status == "delivered" and delivered.delivery == {"message_id": 5}
    assert await store.fail(job.id, "late failure") is None  # ended jobs cannot be refunded
    assert await store.balance(1) == 8


async def test_failure_and_cancel_refund_exactly_once(store: Store) -> None:
    a = await new_job(store, cost=4)
    b = await new_job(store, cost=3)
    await store.claim(a.id, "w")
    assert (await store.fail(a.id, "model crashed")).status == "failed"
    assert await store.fail(a.id, "again") is None
    assert (await store.cancel(b.id)).status == "cancelled"
    assert await store.cancel(b.id) is None
    assert await store.balance(1) == 10
    refunds = [e for e in await store.history(1) if e.kind == "refund"]
    assert sorted(e.job_id for e in refunds) == sorted([a.id, b.id])


async def test_cancel_only_while_queued(store: Store) -> None:
    job = await new_job(store)
    await store.claim(job.id, "w")
    assert await store.cancel(job.id) is None
    assert (await store.get_job(job.id)).status == "running"


async def test_operator_grant_and_take(store: Store) -> None:
    assert await store.grant(5, 15, operator_id=99, reason="contest") == 25
    assert await store.take(5, 20, operator_id=99) == 5
    with pytest.raises(InvalidAmount, match="only 5"):
        await store.take(5, 6, operator_id=99)
    with pytest.raises(InvalidAmount):
        await store.grant(5, 0, operator_id=99)
    entry = (await store.history(5))[0]
    assert (entry.kind, entry.delta, entry.operator_id) == ("take", -20, 99)


async def test_fair_order_and_positions(store: Store) -> None:
    a_jobs = [await new_job(store, user=1, cost=1) for _ in range(5)]
    b_job = await new_job(store, user=2, cost=1)
    order = await store.queue_order()
    assert order.index(b_job.id) == 1  # B's first job goes right after A's first
    assert order[-1] != b_job.id
    assert await store.queue_position(a_jobs[0].id) == 1
    assert await store.queue_position(b_job.id) == 2
    first = await store.claim_next("w")
    assert first.id == a_jobs[0].id
    # A now has one running: B's first job is next, A's second waits behind it.
    assert (await store.claim_next("w")).id == b_job.id
    assert await store.queue_position(first.id) is None


async def test_claim_next_filters_by_model(store: Store) -> None:
    await store.create_job(user_id=1, spec=JobSpec(model="wan"), cost=1, image=b"x")
    ltx = await store.create_job(user_id=1, spec=JobSpec(model="ltx"), cost=1, image=b"x")
    assert (await store.claim_next("w", models={"ltx"})).id == ltx.id
    assert await store.claim_next("w", models={"svd"}) is None


async def test_lazy_refill(tmp_path: Path) -> None:
    clock = Clock()
    policy = CreditPolicy(welcome=5, refill_amount=3, refill_period=100.0, refill_cap=10)
    async with await Store.open(tmp_path / "r.db", policy, clock=clock) as store:
        account = await store.account(1)
        assert account.balance == 5 and account.next_refill_at == clock.now + 100
        clock.now += 250  # two periods due
        account = await store.account(1)
        assert account.balance == 10  # 5 + min(2*3, cap - 5)
        assert account.next_refill_at is None  # at the cap
        await new_job(store, cost=4)
        clock.now += 60  # +310: the third period (due at +300) refills 3
        assert await store.balance(1) == 10 - 4 + 3
        assert (await store.account(1)).next_refill_at == 1_000_000.0 + 400
        kinds = [e.kind for e in await store.history(1)]
        assert kinds.count("refill") == 2


async def test_recovery(tmp_path: Path) -> None:
    path = tmp_path / "crash.db"
    async with await Store.open(path, CreditPolicy(welcome=10)) as store:
        retry = await new_job(store, cost=1)
        exhausted = await new_job(store, cost=2)
        finished = await new_job(store, cost=3)
        delivered = await new_job(store, cost=1)
        for job in (retry, exhausted, finished, delivered):
            await store.claim(job.id, "w")
        await store.requeue(exhausted.id)
        await store.claim(exhausted.id, "w")  # second attempt, still running at the "crash"
        await store.finish(finished.id, result_path="f.mp4")
        await store.finish(delivered.id, result_path="d.mp4")
        await store.mark_delivered(delivered.id)
    # A new process opens the same file after the crash.
    async with await Store.open(path, CreditPolicy(welcome=10)) as store:
        report = await store.recover(max_attempts=2)
        assert [j.id for j in report.requeued] == [retry.id]
        assert [j.id for j in report.failed] == [exhausted.id]
        assert [j.id for j in report.undelivered] == [finished.id]
        assert (await store.get_job(retry.id)).status == "queued"
        assert (await store.get_job(exhausted.id)).status == "failed"
        assert await store.balance(1) == 10 - 1 - 3 - 1  # exhausted refunded
        again = await store.claim_next("w2")
        assert again.id == retry.id and again.attempts == 2
        second = await store.recover(max_attempts=2)
        assert delivered.id not in [j.id for j in second.undelivered]


async def test_requeue_low_memory(store: Store) -> None:
    job = await new_job(store)
    await store.claim(job.id, "w")
    back = await store.requeue(job.id, low_memory=True, reason="out of memory")
    assert back.status == "queued" and back.low_memory and back.error == "out of memory"


async def test_reopen_keeps_data_and_meta(tmp_path: Path) -> None:
    path = tmp_path / "m.db"
    async with await Store.open(path) as store:
        await store.set_meta("commands", "abc")
        await store.grant(1, 5, operator_id=2)
    async with await Store.open(path) as store:
        assert await store.get_meta("commands") == "abc"
        assert await store.balance(1) == 25


async def test_cancelled_while_beginning_leaves_no_open_transaction(store: Store) -> None:
    """A task cancelled while its BEGIN is in flight must not leave the connection in a
    transaction: the next caller on the same connection would fail."""
    import asyncio

    await store.balance(1)
    for _ in range(20):
        task = asyncio.ensure_future(store.balance(1))
        await asyncio.sleep(0)  # let it reach the BEGIN, then cancel it mid-flight
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass
        assert await store.balance(1) == 10  # the connection still works


async def test_daily_limit_is_a_rolling_day_and_refunded_jobs_do_not_count(tmp_path: Path) -> None:
    clock = Clock()
    store = await Store.open(tmp_path / "bot.sqlite3", CreditPolicy(welcome=100), clock=clock)
    try:
        start = clock.now
        await new_job(store, cost=1, max_per_day=3)
        clock.now += 3600
        failed = await new_job(store, cost=1, max_per_day=3)
        await store.fail(failed.id, "broke", kind="crash")  # refunded: gives its turn back
        clock.now += 3600
        await new_job(store, cost=1, max_per_day=3)
        clock.now += 3600
        cancelled = await new_job(store, cost=1, max_per_day=3)
        await store.cancel(cancelled.id)
        await new_job(store, cost=1, max_per_day=3)
        with pytest.raises(DailyLimit) as info:
            await new_job(store, cost=1, max_per_day=3)
        with pytest.raises(DailyLimit):
            await store.check_room(1, 1, max_per_day=3)
        # The oldest counted job (the first) must age out for the next slot.
        assert (info.value.limit, info.value.next_at) == (3, start + DAY)
        assert await store.balance(1) == 100 - 3
        await new_job(store, user=2, cost=1, max_per_day=3)  # another member is not affected
        clock.now = start + DAY + 1
        assert (await new_job(store, cost=1, max_per_day=3)).status == "queued"
        # Lowered to 1 with several made in the day: the newest, not the oldest, must age out.
        with pytest.raises(DailyLimit) as info:
            await new_job(store, cost=1, max_per_day=1)
        assert info.value.next_at == clock.now + DAY
        assert str(info.value).startswith("You have made 1 video in the last 24 hours")
    finally:
        await store.close()


async def test_failures_keep_their_kind_for_metrics_and_activity_buckets_by_hour(tmp_path: Path) -> None:
    clock = Clock(now=100 * 3600.0)
    store = await Store.open(tmp_path / "bot.sqlite3", CreditPolicy(welcome=100), clock=clock)
    try:
        since = clock.now
        made = await new_job(store, cost=5)
        await store.claim(made.id, "w")
        clock.now += 30
        clip = ClipSummary(width=64, height=48, frames=49, fps=24.0, seed=7, model="camera")
        await store.finish(made.id, result_path="/tmp/x.mp4", clip=clip)
        clock.now = since + 2 * 3600 + 10
        oom = await new_job(store, cost=3)
        await store.claim(oom.id, "w")
        await store.fail(oom.id, "out of memory", kind="oom")
        late = await new_job(store, cost=2)
        await store.fail(late.id, "no worker", kind="timeout")
        cancelled = await new_job(store, cost=4)
        await store.cancel(cancelled.id)

        tallies = await store.tallies()
        assert tallies.failures == {("camera", "oom"): 1, ("camera", "timeout"): 1}
        assert tallies.jobs[("camera", "failed")] == 2

        activity = await store.activity(since, since + 4 * 3600)
        assert activity.buckets == 4
        assert activity.ended == {
            "delivered": [1, 0, 0, 0], "failed": [0, 0, 2, 0], "cancelled": [0, 0, 1, 0]
        }
        assert activity.render_seconds == {"camera": [30.0]}
        # Hour 0: 5 debited. Hour 2: 3 + 2 + 4 debited and all refunded.
        assert activity.credits_spent == [5, 0, 0, 0]
        assert activity.total_ended == 4
        later = await store.activity(since + 3600, since + 3 * 3600)
        assert later.ended["delivered"] == [0, 0] and later.ended["failed"] == [0, 2]
    finally:
        await store.close()
