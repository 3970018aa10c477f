"""What the job layer needs from the operator's settings, as plain data.

The bot reads and validates the environment (``bot.settings``) and hands this down, so the
job layer never learns about Discord settings and its tests need no environment at all.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from contract import BackendOptions


@dataclass(frozen=True)
class Pricing:
    """Credits per second of video, per model; rounded up per clip, at least 1."""

    per_second: dict[str, float] = field(default_factory=dict)
    default_per_second: float = 2.0
    finish_per_second: dict[str, float] = field(default_factory=dict)
    """Smooth and Upscale 2×: credits per second of video on top of the model's price."""

    def rate(self, model: str) -> float:
        return self.per_second.get(model, self.default_per_second)

    def cost(self, model: str, duration: float) -> int:
        return max(1, math.ceil(self.rate(model) * duration - 1e-9))

    def finish_cost(self, finishes: tuple[str, ...], duration: float) -> int:
        """What the asked-for finishes ("smooth", "upscale") add to one clip, rounded up."""
        rate = sum(self.finish_per_second.get(name, 0.0) for name in finishes)
        return math.ceil(rate * duration - 1e-9) if rate else 0


@dataclass(frozen=True)
class JobsConfig:
    models: tuple[str, ...] = ("auto",)
    """Enabled models in order; the first is the default."""
    output_dir: Path = Path("data/outputs")
    ray_address: str | None = None
    cpu_workers: int = 1
    backend: BackendOptions = field(default_factory=BackendOptions)
    pricing: Pricing = field(default_factory=Pricing)
    max_queued_per_user: int = 3
    max_queue: int = 100
    max_jobs_per_day: int | None = None
    max_extensions: int = 4
    """How many times a clip (and what extends it) may be extended in a row."""
    """Videos one member may start in any 24 hours (None: no limit)."""
    max_attempts: int = 2
    job_timeout_seconds: float = 900.0
    keep_outputs_days: float = 30.0
    """Days a delivered clip's MP4 is kept before the bot forgets it as a Delete would (the
    photo, the prompts and the file go; the row stays for the ledger); 0: forever."""
    keep_favourites_days: float = 0.0
    """The same for the clips members marked as favourites; 0: forever. Never shorter than
    `keep_outputs_days` (a favourite outlives the clips around it)."""
    retention_interval_seconds: float = 3600.0
    """How often the retention sweep runs (it also runs at start)."""
    write_patience_seconds: float = 120.0
    """How long a job's final write (its MP4, its end in the database) is retried while the
    disk or the database refuses it, before the job is left for the next start to finish."""

    def kept_seconds(self, *, favourite: bool) -> float | None:
        """How long after delivery a clip's MP4 is kept; None: forever."""
        days = self.keep_outputs_days
        if favourite:
            if days <= 0 or self.keep_favourites_days <= 0:
                return None
            days = max(days, self.keep_favourites_days)
        return days * 86_400.0 if days > 0 else None
