"""The operators' half of the store: totals for metrics and hour-by-hour activity for charts,
counted from the queue of record and the ledger, so they survive restarts."""

from __future__ import annotations

import math

from jobs.records import OUTCOMES, Activity, Tallies
from jobs.store.db import Database

_OUTCOME_OF = {"done": "delivered", "delivered": "delivered", "failed": "failed", "cancelled": "cancelled"}


class Reports:
    db: Database

    async def tallies(self) -> Tallies:
        """Jobs by model and status, failures by kind, and credits moved by ledger kind."""
        async with self.db.read() as tx:
            jobs = await tx.fetchall("SELECT model, status, COUNT(*) AS n FROM jobs WHERE action != 'take'"
                " GROUP BY model, status")
            failures = await tx.fetchall(
                "SELECT model, COALESCE(failure_kind, 'internal') AS kind, COUNT(*) AS n FROM jobs"
                " WHERE status = 'failed' GROUP BY model, kind"
            )
            credits = await tx.fetchall("SELECT kind, SUM(ABS(delta)) AS n FROM ledger GROUP BY kind")
        return Tallies(
            jobs={(r["model"], r["status"]): r["n"] for r in jobs},
            credits={r["kind"]: r["n"] or 0 for r in credits},
            failures={(r["model"], r["kind"]): r["n"] for r in failures},
        )

    async def activity(self, since: float, until: float, bucket_seconds: float = 3600.0) -> Activity:
        """Jobs ended by outcome and credits spent per bucket, and render times by model,
        for the window [since, until)."""
        buckets = max(1, math.ceil((until - since) / bucket_seconds))
        ended = {outcome: [0] * buckets for outcome in OUTCOMES}
        spent = [0] * buckets
        render: dict[str, list[float]] = {}
        window = (since, until)
        async with self.db.read() as tx:
            jobs = await tx.fetchall(
                "SELECT model, status, started_at, finished_at FROM jobs"
                " WHERE finished_at >= ? AND finished_at < ? AND action != 'take'"  # counted with their job
                " ORDER BY finished_at",
                *window,
            )
            moves = await tx.fetchall(
                "SELECT delta, created_at FROM ledger WHERE kind IN ('debit', 'refund')"
                " AND created_at >= ? AND created_at < ?",
                *window,
            )
        for row in jobs:
            bucket = min(buckets - 1, int((row["finished_at"] - since) // bucket_seconds))
            outcome = _OUTCOME_OF.get(row["status"])
            if outcome is None:  # requeued after it had ended: cannot happen, but no crash
                continue
            ended[outcome][bucket] += 1
            if outcome == "delivered" and row["started_at"] is not None:
                render.setdefault(row["model"], []).append(row["finished_at"] - row["started_at"])
        for row in moves:
            spent[min(buckets - 1, int((row["created_at"] - since) // bucket_seconds))] -= row["delta"]
        return Activity(
            since=since, until=until, bucket_seconds=bucket_seconds,
            ended=ended, render_seconds=render, credits_spent=spent,
        )
