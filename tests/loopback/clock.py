"""The loopback's notion of "now": real time plus an offset the test controls.

Discord enforces three deadlines that bot tests need to cross without waiting for them:
the 3 s acknowledgement window, the 15 min interaction-token lifetime and the expiry of
signed CDN URLs. All of them, and every snowflake the server mints, read this clock, so a
test can `clock.advance(16 * 60)` instead of sleeping. Real time keeps flowing too, so a bot
that is genuinely slow still misses the 3 s window.
"""

from __future__ import annotations

import datetime as dt
import time


class Clock:
    """Wall clock in epoch seconds that only moves forward."""

    def __init__(self) -> None:
        self._offset = 0.0

    def time(self) -> float:
        """Seconds since the epoch, as the loopback server sees them."""
        return time.time() + self._offset

    def advance(self, seconds: float) -> None:
        """Jump forward (never back: snowflakes must stay monotonic)."""
        if seconds < 0:
            raise ValueError("the loopback clock cannot go backwards")
        self._offset += seconds

    @property
    def offset(self) -> float:
        """How far ahead of real time the test has pushed the clock."""
        return self._offset

    def datetime(self) -> dt.datetime:
        return dt.datetime.fromtimestamp(self.time(), dt.UTC)

    def iso(self, at: float | None = None) -> str:
        """ISO 8601 timestamp as Discord writes them (`...+00:00`)."""
        moment = self.time() if at is None else at
        return dt.datetime.fromtimestamp(moment, dt.UTC).isoformat()
