"""Random histories of the credits ledger checked against an independent model.

Hypothesis drives users, grants, takes, job creations (with repeated idempotency keys),
claims, finishes, failures, cancels, requeues, recoveries and clock jumps (lazy refills).
After every step: each balance equals the model's, equals Σ of the user's ledger rows and is
never negative; each job has exactly one debit, and a refund exactly when it failed or was
cancelled — never two.
"""

from __future__ import annotations

import asyncio
import math
import os
import sqlite3
import tempfile
from collections import Counter

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from contract import JobSpec
from jobs import CreditPolicy, InsufficientCredits, InvalidAmount, Store, TooManyQueued

USERS = st.integers(min_value=1, max_value=4)
POLICY = CreditPolicy(welcome=5, refill_amount=2, refill_period=50.0, refill_cap=8)
MAX_QUEUED = 3
MAX_ATTEMPTS = 2
HISTORIES = int(os.environ.get("LEDGER_HISTORIES", "1000"))


class LedgerMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.dir = tempfile.TemporaryDirectory()
        self.path = os.path.join(self.dir.name, "ledger.db")
        self.now = 1000.0
        self.store: Store | None = None
        # The model: what balances and job states must be, computed without the store.
        self.balances: dict[int, int] = {}
        self.refilled_at: dict[int, float] = {}
        self.jobs: dict[int, dict] = {}  # id -> {user, cost, status, attempts}
        self.keys: dict[str, int] = {}

    def run(self, coro):
        return self.loop.run_until_complete(coro)

    def clock(self) -> float:
        return self.now

    @initialize()
    def open_store(self) -> None:
        self.store = self.run(Store.open(self.path, POLICY, clock=self.clock))

    def teardown(self) -> None:
        if self.store is not None:
            self.run(self.store.close())
        self.loop.close()
        self.dir.cleanup()

    # ---- the model's own arithmetic ----------------------------------------------------

    def touch(self, user: int) -> None:
        if user not in self.balances:
            self.balances[user] = POLICY.welcome
            self.refilled_at[user] = self.now
            return
        periods = math.floor((self.now - self.refilled_at[user]) / POLICY.refill_period)
        if periods > 0:
            top_up = min(periods * POLICY.refill_amount, POLICY.refill_cap - self.balances[user])
            self.balances[user] += max(0, top_up)
            self.refilled_at[user] += periods * POLICY.refill_period

    def active(self, user: int) -> int:
        return sum(
            1 for j in self.jobs.values() if j["user"] == user and j["status"] in ("queued", "running")
        )

    def end(self, job_id: int, status: str) -> None:
        job = self.jobs[job_id]
        job["status"] = status
        self.balances[job["user"]] += job["cost"]

    # ---- rules -------------------------------------------------------------------------

    @rule(user=USERS)
    def look_at_balance(self, user: int) -> None:
        self.touch(user)
        assert self.run(self.store.balance(user)) == self.balances[user]

    @rule(seconds=st.sampled_from([1.0, 30.0, 50.0, 120.0]))
    def time_passes(self, seconds: float) -> None:
        self.now += seconds

    @rule(user=USERS, amount=st.integers(1, 10))
    def operator_grants(self, user: int, amount: int) -> None:
        self.touch(user)
        self.run(self.store.grant(user, amount, operator_id=999))
        self.balances[user] += amount

    @rule(user=USERS, amount=st.integers(1, 10))
    def operator_takes(self, user: int, amount: int) -> None:
        self.touch(user)
        if amount > self.balances[user]:
            try:
                self.run(self.store.take(user, amount, operator_id=999))
            except InvalidAmount:
                return
            raise AssertionError("take below zero was allowed")
        self.run(self.store.take(user, amount, operator_id=999))
        self.balances[user] -= amount

    @rule(user=USERS, cost=st.integers(0, 6), key=st.one_of(st.none(), st.sampled_from("abcdef")))
    def create_job(self, user: int, cost: int, key: str | None) -> None:
        if key is not None and key in self.keys:
            job = self.run(
                self.store.create_job(
                    user_id=user, spec=JobSpec(model="m"), cost=cost, image=b"i", idempotency_key=key,
                    max_queued_per_user=MAX_QUEUED,
                )
            )
            assert job.id == self.keys[key], "a repeated interaction created a second job"
            return
        self.touch(user)
        call = self.store.create_job(
            user_id=user, spec=JobSpec(model="m"), cost=cost, image=b"i", idempotency_key=key,
            max_queued_per_user=MAX_QUEUED,
        )
        if self.active(user) >= MAX_QUEUED:
            try:
                self.run(call)
            except TooManyQueued:
                return
            raise AssertionError("queued limit not enforced")
        if self.balances[user] < cost:
            try:
                self.run(call)
            except InsufficientCredits as refusal:
                assert refusal.balance == self.balances[user]
                return
            raise AssertionError("overdraft allowed")
        job = self.run(call)
        assert job.id not in self.jobs
        self.jobs[job.id] = {"user": user, "cost": cost, "status": "queued", "attempts": 0}
        self.balances[user] -= cost
        if key is not None:
            self.keys[key] = job.id

    @precondition(lambda self: any(j["status"] == "queued" for j in self.jobs.values()))
    @rule()
    def worker_claims(self) -> None:
        job = self.run(self.store.claim_next("w"))
        assert job is not None and self.jobs[job.id]["status"] == "queued"
        self.jobs[job.id]["status"] = "running"
        self.jobs[job.id]["attempts"] += 1
        assert job.attempts == self.jobs[job.id]["attempts"]

    @rule(data=st.data())
    def job_finishes(self, data) -> None:
        job_id = self.pick(data)
        ok = self.run(self.store.finish(job_id, result_path="x.mp4")) if job_id else None
        if job_id and self.jobs[job_id]["status"] == "running":
            assert ok is not None
            self.jobs[job_id]["status"] = "done"
        else:
            assert ok is None

    @rule(data=st.data())
    def job_delivered(self, data) -> None:
        job_id = self.pick(data)
        if not job_id:
            return
        ok = self.run(self.store.mark_delivered(job_id))
        assert ok == (self.jobs[job_id]["status"] == "done")
        if ok:
            self.jobs[job_id]["status"] = "delivered"

    @rule(data=st.data())
    def job_fails(self, data) -> None:
        job_id = self.pick(data)
        if not job_id:
            return
        ended = self.run(self.store.fail(job_id, "boom"))
        if self.jobs[job_id]["status"] in ("queued", "running"):
            assert ended is not None
            self.end(job_id, "failed")
        else:
            assert ended is None

    @rule(data=st.data())
    def member_cancels(self, data) -> None:
        job_id = self.pick(data)
        if not job_id:
            return
        ended = self.run(self.store.cancel(job_id))
        if self.jobs[job_id]["status"] == "queued":
            assert ended is not None
            self.end(job_id, "cancelled")
        else:
            assert ended is None

    @rule(data=st.data())
    def worker_dies(self, data) -> None:
        job_id = self.pick(data)
        if not job_id:
            return
        back = self.run(self.store.requeue(job_id, low_memory=True))
        assert (back is not None) == (self.jobs[job_id]["status"] == "running")
        if back is not None:
            self.jobs[job_id]["status"] = "queued"

    @rule()
    def bot_restarts(self) -> None:
        self.run(self.store.close())
        self.store = self.run(Store.open(self.path, POLICY, clock=self.clock))
        running = {i: j for i, j in self.jobs.items() if j["status"] == "running"}
        exhausted = {i for i, j in running.items() if j["attempts"] >= MAX_ATTEMPTS}
        undelivered = {i for i, j in self.jobs.items() if j["status"] == "done"}
        report = self.run(self.store.recover(MAX_ATTEMPTS))
        assert {j.id for j in report.failed} == exhausted
        assert {j.id for j in report.requeued} == set(running) - exhausted
        assert {j.id for j in report.undelivered} == undelivered
        for job_id in running:
            if job_id in exhausted:
                self.end(job_id, "failed")
            else:
                self.jobs[job_id]["status"] = "queued"

    def pick(self, data) -> int | None:
        if not self.jobs:
            return None
        return data.draw(st.sampled_from(sorted(self.jobs)))

    # ---- invariants --------------------------------------------------------------------

    @invariant()
    def books_balance(self) -> None:
        if self.store is None:
            return
        conn = sqlite3.connect(self.path)
        try:
            sums = dict(conn.execute("SELECT user_id, SUM(delta) FROM ledger GROUP BY user_id"))
            for user, expected in self.balances.items():
                assert sums.get(user) == expected, (user, sums.get(user), expected)
                assert expected >= 0
            statuses = dict(conn.execute("SELECT id, status FROM jobs"))
            assert statuses == {i: j["status"] for i, j in self.jobs.items()}
            rows = conn.execute("SELECT job_id, kind FROM ledger WHERE job_id IS NOT NULL").fetchall()
            counts = Counter(rows)
            for job_id, job in self.jobs.items():
                assert counts[(job_id, "debit")] == 1
                refunded = job["status"] in ("failed", "cancelled")
                assert counts[(job_id, "refund")] == int(refunded)
        finally:
            conn.close()


LedgerMachine.TestCase.settings = settings(
    max_examples=HISTORIES,
    stateful_step_count=12,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=bool(os.environ.get("CI")),
)
TestLedger = LedgerMachine.TestCase
