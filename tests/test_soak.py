"""The soak, short: 30 jobs through `python -m bot` (as `bench.soak_bot`) with every fault
kind injected at least twice, then the audit. `python -m bench soak` runs 300."""

from __future__ import annotations

import pytest

from bench.soak import FAULTS, soak

pytestmark = pytest.mark.asyncio


async def test_thirty_jobs_through_every_fault_nothing_lost() -> None:
    audit = await soak(30, seed=2, say=lambda text: None)
    assert all(audit.faults.get(kind, 0) >= 2 for kind in FAULTS), audit.faults
    assert audit.jobs == 30 and audit.delivered + audit.refunded == 30, audit
    assert audit.lost == [] and audit.non_terminal == [], audit
    assert audit.double_charged == [] and audit.double_refunded == [], audit
    assert audit.double_delivered == [], audit
    assert audit.orphans == [], audit
    assert audit.balance_mismatch == [], audit
    assert audit.ack_p99_s < 3.0, audit  # Discord drops an interaction not acknowledged in 3 s
