"""Turning the worker's event stream into a progress line a member can read.

The pipeline reports (stage, step, total); members want one bar, what is happening and how
long is left. ETAs come from measured step times, not guesses, and edits are throttled so a
fast model cannot run the bot into Discord's rate limits.
"""

from __future__ import annotations

import statistics
from collections import deque
from dataclasses import dataclass, field

from contract import Progress

STAGE_LABELS: dict[str, str] = {
    "queued": "Waiting in the queue",
    "download": "Downloading the model",
    "intake": "Preparing your photo",
    "load": "Loading the model",
    "denoise": "Rendering",
    "decode": "Decoding frames",
    "finish": "Smoothing and upscaling",
    "encode": "Encoding the video",
    "saving": (
        "Saving is delayed: the bot's storage is unavailable. Your video will be delivered, "
        "or your credits refunded, as soon as it is back"
    ),
    "upload": "Uploading",
}
# Share of the whole job each stage covers, in order; rendering dominates. A download (the
# worker fetching the model's weights, once) gets no share of the job's bar: how long it
# takes says nothing about the render, and its own percentage is in the text.
_SPANS: dict[str, tuple[float, float]] = {
    "queued": (0.0, 0.0),
    "download": (0.0, 0.0),
    "intake": (0.0, 0.03),
    "load": (0.03, 0.05),
    "denoise": (0.05, 0.90),
    "decode": (0.90, 0.93),
    "finish": (0.93, 0.97),
    "encode": (0.97, 0.99),
    "saving": (0.99, 0.99),
    "upload": (0.99, 1.0),
}
EDIT_INTERVAL = 2.0
"""Seconds between progress edits of one message (Discord allows ~5 edits per 5 s)."""


def fraction(progress: Progress) -> float:
    """How far the whole job is; with variations each take is an equal share of the bar."""
    start, end = _SPANS.get(progress.stage, (0.0, 0.0))
    inner = progress.step / progress.total if progress.total else 0.0
    within = start + (end - start) * min(max(inner, 0.0), 1.0)
    if progress.takes > 1 and progress.take >= 1:
        return (progress.take - 1 + within) / progress.takes
    return within


def bar(value: float, width: int = 20) -> str:
    value = min(max(value, 0.0), 1.0)
    filled = round(value * width)
    return "█" * filled + "░" * (width - filled) + f" {value * 100:3.0f}%"


def format_eta(seconds: float | None) -> str:
    if seconds is None:
        return ""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"about {seconds} s left"
    return f"about {seconds // 60} min {seconds % 60:02d} s left"


@dataclass
class Tracker:
    """Per-job memory of step times (for the ETA) and of the last edit (for throttling)."""

    interval: float = EDIT_INTERVAL
    _steps: deque[tuple[float, int]] = field(default_factory=lambda: deque(maxlen=12))
    _last_edit: float | None = None
    stage: str | None = None
    """The stage of the last event observed."""
    message: str = ""
    """Its text (a queue position, "waiting for a GPU worker")."""

    def news(self, progress: Progress) -> bool:
        """Whether the member must see this event even inside the edit interval: a new
        stage, or a new position or state while waiting (those come rarely)."""
        return progress.stage != self.stage or (
            progress.stage == "queued" and progress.message != self.message
        )

    def observe(self, progress: Progress, now: float) -> None:
        self.message = progress.message
        if progress.stage != self.stage:
            self._steps.clear()
            self.stage = progress.stage
        if progress.stage == "denoise" and progress.total:
            self._steps.append((now, progress.step))

    def eta(self, progress: Progress) -> float | None:
        """Median seconds per step so far × steps left; None until two steps were seen."""
        if progress.stage != "denoise" or len(self._steps) < 2 or not progress.total:
            return None
        pairs = list(self._steps)
        rates = [
            (t2 - t1) / (s2 - s1) for (t1, s1), (t2, s2) in zip(pairs, pairs[1:]) if s2 > s1
        ]
        if not rates:
            return None
        return statistics.median(rates) * (progress.total - progress.step)

    def should_edit(self, now: float, *, force: bool = False) -> bool:
        """True at most once per interval; `force` (stage changes, results) always passes."""
        if force or self._last_edit is None or now - self._last_edit >= self.interval:
            self._last_edit = now
            return True
        return False


def describe(progress: Progress, eta: float | None) -> str:
    label = STAGE_LABELS.get(progress.stage, progress.stage)
    parts = [label]
    if progress.stage == "download":
        parts = [progress.message or label]  # "Downloading the model: 43 %"
    elif progress.total:
        parts.append(f"step {progress.step}/{progress.total}")
    if progress.takes > 1 and progress.take >= 1:
        parts.insert(0, f"Take {progress.take} of {progress.takes}")
    text = " · ".join(parts)
    line = f"{bar(fraction(progress))}\n{text}"
    if eta is not None:
        line += f" · {format_eta(eta)}"
    return line
