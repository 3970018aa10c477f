"""Stalls of the event loop, caught as they happen, with the code that caused them.

Every member waits while the loop is blocked (Discord even drops the gateway after a while),
so no Ray call, SQLite call, file read or decode may run on it. A heartbeat on the loop and a
watchdog thread beside it find the exceptions: when the heartbeat is late by more than
`threshold`, the watchdog logs the loop thread's stack at that moment, once per stall.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import sys
import threading
import time
import traceback
from collections import deque
from types import FrameType

log = logging.getLogger("bot.loop")

THRESHOLD = 0.25
"""A stall longer than this is logged, with what was running."""
BEAT = 0.05


class LoopWatch:
    def __init__(self, *, threshold: float = THRESHOLD, beat: float = BEAT) -> None:
        self.threshold = threshold
        self.beat = beat
        self.lags: deque[float] = deque(maxlen=4096)
        """Recent lateness of the heartbeat, in seconds (for percentiles)."""
        self.stalls = 0
        self._last = time.monotonic()
        self._loop_thread = 0
        self._task: asyncio.Task[None] | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._loop_thread = threading.get_ident()
        self._last = time.monotonic()
        self._task = asyncio.get_running_loop().create_task(self._heartbeat(), name="loop-watch")
        self._thread = threading.Thread(target=self._watch, name="loop-watch", daemon=True)
        self._thread.start()

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, 1.0)

    def percentile(self, q: float) -> float:
        ordered = sorted(self.lags)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0

    async def _heartbeat(self) -> None:
        while True:
            before = time.monotonic()
            await asyncio.sleep(self.beat)
            now = time.monotonic()
            self.lags.append(max(0.0, now - before - self.beat))
            self._last = now

    def _watch(self) -> None:
        reported = 0.0  # the heartbeat time of the stall already logged
        while not self._stop.wait(self.beat / 2):
            last = self._last
            late = time.monotonic() - last
            if late <= self.threshold or last == reported:
                continue
            reported = last
            self.stalls += 1
            frame = _frame_of(self._loop_thread)
            stack = "".join(traceback.format_stack(frame, limit=12)) if frame else "(no stack)"
            log.warning(
                "the event loop has been blocked for %.0f ms; every member waits. It is running:\n%s",
                late * 1000, stack.rstrip(),
            )


def _frame_of(thread_id: int | None) -> FrameType | None:
    """The thread's current frame. CPython 3.11 builds sys._current_frames() holding the
    interpreter's thread-list lock, and a garbage collection that its allocations start there
    can wait for a lock another thread holds while that thread waits for the GIL: the whole
    process hangs (seen once in CI, the pytest timeout's own thread stuck behind it). No
    collection may start on this thread while it reads the frames."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        return sys._current_frames().get(thread_id) if thread_id is not None else None
    finally:
        if enabled:
            gc.enable()
