"""A blocked event loop is reported while it happens, naming the code that blocks it."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from bot.loop_watch import LoopWatch

pytestmark = pytest.mark.asyncio


def decode_a_huge_photo_on_the_loop() -> None:
    time.sleep(0.6)  # stands in for any CPU or disk work that should be in a thread


async def test_a_stall_is_logged_with_what_was_running(caplog: pytest.LogCaptureFixture) -> None:
    watch = LoopWatch(threshold=0.25)
    watch.start()
    try:
        await asyncio.sleep(0.3)  # a healthy loop: nothing to report
        assert watch.stalls == 0
        with caplog.at_level(logging.WARNING, logger="bot.loop"):
            decode_a_huge_photo_on_the_loop()
            await asyncio.sleep(0.2)
    finally:
        await watch.stop()
    assert watch.stalls == 1  # one stall, one report
    [record] = [r for r in caplog.records if r.name == "bot.loop"]
    assert "blocked for" in record.getMessage()
    assert "decode_a_huge_photo_on_the_loop" in record.getMessage()
    assert watch.percentile(1.0) >= 0.5 and watch.percentile(0.5) < 0.25
