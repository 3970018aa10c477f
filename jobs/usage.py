"""How long each worker has had a job, for the busy fraction operators watch.

Exposed as a counter of busy seconds (Prometheus' way: ``rate()`` over any window is the
fraction of that window the worker was busy). A worker counts as busy while at least one
job is on it, from the moment it was handed over until its stream ended; with the pipeline
overlapping one job's intake and another's render, that is never counted twice.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class _Tally:
    device: str
    jobs: int = 0
    since: float = 0.0
    seconds: float = 0.0


class BusyClock:
    """Busy seconds per worker name; kept after a worker is gone, so the counters never fall."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._tallies: dict[str, _Tally] = {}

    def start(self, worker: str, device: str) -> None:
        tally = self._tallies.setdefault(worker, _Tally(device))
        if tally.jobs == 0:
            tally.since = self.clock()
        tally.jobs += 1

    def stop(self, worker: str) -> None:
        tally = self._tallies.get(worker)
        if tally is None or tally.jobs == 0:
            return
        tally.jobs -= 1
        if tally.jobs == 0:
            tally.seconds += self.clock() - tally.since

    def seconds(self) -> dict[tuple[str, str], float]:
        """(worker, device) -> busy seconds so far, the job in progress included."""
        now = self.clock()
        return {
            (name, t.device): t.seconds + (now - t.since if t.jobs else 0.0)
            for name, t in self._tallies.items()
        }
