"""Why the job layer said no: typed refusals the bot turns into sentences in one place.

Each carries the numbers a sentence needs; its str() is a plain fallback for logs and the CLI.
Nothing was charged when one of these is raised.
"""

from __future__ import annotations


class Refused(Exception):
    """A request the job layer will not carry out; nothing was charged."""


class InsufficientCredits(Refused):
    def __init__(self, balance: int, cost: int, next_refill_at: float | None) -> None:
        super().__init__(f"This costs {cost} credits and you have {balance}.")
        self.balance = balance
        self.cost = cost
        self.next_refill_at = next_refill_at


class TooManyQueued(Refused):
    def __init__(self, limit: int) -> None:
        super().__init__(
            f"You already have {limit} videos waiting or rendering; wait for one to finish."
        )
        self.limit = limit


class QueueFull(Refused):
    def __init__(self, limit: int) -> None:
        super().__init__(f"The queue is full ({limit} videos waiting); please try again later.")
        self.limit = limit


class DailyLimit(Refused):
    def __init__(self, limit: int, next_at: float) -> None:
        videos = "video" if limit == 1 else "videos"
        super().__init__(f"You have made {limit} {videos} in the last 24 hours, the most allowed here.")
        self.limit = limit
        self.next_at = next_at
        """When the member may start the next one."""


class UnknownJob(Refused):
    def __init__(self, job_id: int) -> None:
        super().__init__(f"There is no job #{job_id}.")
        self.job_id = job_id


class InvalidAmount(Refused):
    pass


class ModelUnavailable(Refused):
    def __init__(self, model: str, available: list[str]) -> None:
        super().__init__(
            f"The model `{model}` isn't available here; choose one of: {', '.join(available)}."
        )
        self.model = model
        self.available = available


class DurationNotOffered(Refused):
    def __init__(self, model: str, durations: tuple[float, ...]) -> None:
        listed = ", ".join(f"{d:g}" for d in durations)
        super().__init__(f"`{model}` makes clips of {listed} seconds; pick one of those lengths.")
        self.model = model
        self.durations = durations


class NotSupported(Refused):
    """The model cannot do this (extend, end on an image)."""


class NotFinished(Refused):
    def __init__(self) -> None:
        super().__init__("This video isn't finished yet, so it can't be extended.")



class CannotFinish(Refused):
    """Smooth or Upscale 2× on a clip that cannot take it; `why` says which case for the
    bot's sentence: "unfinished" (no clip yet), "gone" (its MP4 is no longer kept) or
    "at_most" (already as smooth or as large as the button makes it)."""

    def __init__(
        self, finish: str, why: str, *, fps: float = 0.0, width: int = 0, height: int = 0,
        most: int = 0,
    ) -> None:
        done = "smoothed" if finish == "smooth" else "upscaled"
        if why == "at_most" and finish == "smooth":
            text = f"This video already plays at {fps:g} fps, as smooth as Smooth makes it."
        elif why == "at_most":
            text = (f"This video is already {width}×{height}; twice that would pass {most} "
                    "pixels, the most here.")
        elif why == "gone":
            text = f"This video is no longer kept by the bot, so it can't be {done}."
        else:
            text = f"This video isn't finished yet, so it can't be {done}."
        super().__init__(text)
        self.finish = finish
        self.why = why
        self.fps = fps
        self.width = width
        self.height = height
        self.most = most
