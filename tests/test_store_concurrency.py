"""500 simultaneous job creations against one balance, from two OS processes on one file."""

from __future__ import annotations

import asyncio
import multiprocessing
import random
import sqlite3
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from contract import JobSpec
from jobs import CreditPolicy, InsufficientCredits, Store

USER = 42
BALANCE = 100
PER_PROCESS = 250  # 200 own keys + 50 keys both processes use (double clicks across processes)
SHARED = 50


def _hammer(path: str, name: str, gate: str) -> dict:
    """Runs in a separate process: fire every creation at once, once both processes are
    ready (a file each in `gate`: a loaded machine may take many seconds to import)."""

    async def main() -> dict:
        store = await Store.open(path, CreditPolicy(welcome=0))
        rng = random.Random(name)
        keys = [f"{name}-{n}" for n in range(PER_PROCESS - SHARED)]
        keys += [f"shared-{n}" for n in range(SHARED)]
        (Path(gate) / name).touch()
        deadline = time.monotonic() + 120
        while len(list(Path(gate).iterdir())) < 2 and time.monotonic() < deadline:
            await asyncio.sleep(0.01)

        async def create(key: str):
            # Spread arrivals over a second, like members clicking, so both processes interleave.
            await asyncio.sleep(rng.random())
            try:
                job = await store.create_job(
                    user_id=USER, spec=JobSpec(model="camera"), cost=1, image=b"p", idempotency_key=key
                )
                return key, job.id
            except InsufficientCredits:
                return key, None

        outcomes = await asyncio.gather(*(create(k) for k in keys), return_exceptions=True)
        await store.close()
        errors = [repr(o) for o in outcomes if isinstance(o, BaseException)]
        return {"results": dict(o for o in outcomes if not isinstance(o, BaseException)), "errors": errors}

    return asyncio.run(main())


def test_no_overdraft_across_processes(tmp_path: Path) -> None:
    path = str(tmp_path / "race.sqlite3")

    async def prepare() -> None:
        async with await Store.open(path, CreditPolicy(welcome=0)) as store:
            await store.grant(USER, BALANCE, operator_id=1, reason="race test")

    asyncio.run(prepare())
    gate = tmp_path / "ready"
    gate.mkdir()
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [pool.submit(_hammer, path, name, str(gate)) for name in ("a", "b")]
        outcomes = [f.result(timeout=240) for f in futures]

    for outcome in outcomes:
        assert outcome["errors"] == [], outcome["errors"][:3]  # never 'database is locked'
    a, b = (o["results"] for o in outcomes)
    assert len(a) == len(b) == PER_PROCESS
    for n in range(SHARED):  # the same idempotency key gives the same job in both processes
        key = f"shared-{n}"
        assert a[key] == b[key]
    # Both processes really competed for the same credits.
    assert any(v is not None for k, v in a.items() if k.startswith("a-"))
    assert any(v is not None for k, v in b.items() if k.startswith("b-"))
    created = {v for v in (*a.values(), *b.values()) if v is not None}
    assert len(created) == BALANCE  # every credit spent, not one more

    conn = sqlite3.connect(path)
    debits = conn.execute(
        "SELECT job_id, COUNT(*) FROM ledger WHERE kind = 'debit' GROUP BY job_id"
    ).fetchall()
    assert {job_id for job_id, _ in debits} == created
    assert all(count == 1 for _, count in debits)
    assert conn.execute("SELECT SUM(delta) FROM ledger WHERE user_id = ?", (USER,)).fetchone()[0] == 0
    assert conn.execute("SELECT COUNT(*) FROM jobs").fetchone()[0] == BALANCE
    conn.close()
