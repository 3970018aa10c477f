"""The member's progress line: edits throttled to Discord's pace, an ETA from measured steps."""

from __future__ import annotations

import pytest

from bot.progress_bar import EDIT_INTERVAL, Tracker, bar, describe, format_eta, fraction
from contract import Progress


def denoise(step: int, total: int = 20) -> Progress:
    return Progress("denoise", step, total)


def test_edits_are_throttled_to_one_per_interval_but_forced_ones_pass() -> None:
    tracker = Tracker()
    times = [i * 0.25 for i in range(41)]  # 10 s of events, four a second
    edits = [t for t in times if tracker.should_edit(t)]
    assert edits == [t for t in times if t % EDIT_INTERVAL == 0]
    assert len(edits) == 6  # 0, 2, 4, 6, 8, 10
    assert tracker.should_edit(10.1, force=True)  # a stage change or the result shows at once
    assert not tracker.should_edit(10.2)  # and restarts the interval


def test_eta_is_the_median_step_time_times_the_steps_left() -> None:
    tracker = Tracker()
    tracker.observe(Progress("load"), 0.0)
    assert tracker.eta(denoise(0)) is None
    # Steps take 2 s, with one hiccup of 9 s that the median ignores.
    t = 10.0
    for step, seconds in zip(range(1, 7), (0, 2, 2, 9, 2, 2)):
        t += seconds
        tracker.observe(denoise(step), t)
        if step == 1:
            assert tracker.eta(denoise(step)) is None  # one step says nothing yet
    assert tracker.eta(denoise(6)) == pytest.approx(2.0 * (20 - 6))


def test_a_new_stage_forgets_the_old_step_times() -> None:
    tracker = Tracker()
    for step in range(1, 5):
        tracker.observe(denoise(step), step * 3.0)
    assert tracker.eta(denoise(4)) == pytest.approx(3.0 * 16)
    tracker.observe(Progress("decode", 0, 1), 20.0)
    assert tracker.stage == "decode" and tracker.eta(Progress("decode", 0, 1)) is None
    tracker.observe(denoise(1), 21.0)  # a second pass (e.g. a two-expert model) starts over
    assert tracker.eta(denoise(1)) is None


def test_the_line_a_member_reads() -> None:
    assert fraction(Progress("queued")) == 0.0
    assert fraction(denoise(10)) == pytest.approx(0.05 + 0.85 * 0.5)
    assert fraction(Progress("encode", 1, 1)) == pytest.approx(0.99)
    assert bar(0.5, width=10) == "█████░░░░░  50%"
    assert format_eta(42.4) == "about 42 s left" and format_eta(125) == "about 2 min 05 s left"
    line = describe(denoise(10), 28.0)
    assert line.splitlines() == [bar(fraction(denoise(10))), "Rendering · step 10/20 · about 28 s left"]
    assert describe(Progress("intake"), None).splitlines()[1] == "Preparing your photo"


def test_a_delayed_save_says_why_and_what_happens_next() -> None:
    text = describe(Progress("saving", message="storage unavailable"), None)
    assert "Saving is delayed" in text and "delivered, or your credits refunded" in text
