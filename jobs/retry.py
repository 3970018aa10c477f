"""What happens to a job whose render failed: run it again, or end it with its refund.

Pure functions of the failure and the job's history, so the policy is tested without Ray.
"""

from __future__ import annotations

from dataclasses import dataclass

from contract import Failed


@dataclass(frozen=True)
class Retry:
    """Queue the job again, on a fresh worker."""

    low_memory: bool
    """After running out of memory: the next try offloads and tiles."""
    count_attempt: bool


@dataclass(frozen=True)
class GiveUp:
    """End the job (failed, or cancelled) with its refund; `reason` is the member's sentence."""

    reason: str
    cancelled: bool = False


def decide(
    failed: Failed,
    *,
    attempts: int,
    max_attempts: int,
    cost: int,
    count_attempt: bool = True,
    on_gpu: bool = False,
) -> Retry | GiveUp:
    """A retryable failure (out of memory, a crash) runs again while attempts remain; an
    attempt not counted (the job was a bystander of another job's crash) always does."""
    if failed.retryable and (attempts < max_attempts or not count_attempt):
        return Retry(low_memory=failed.kind == "oom" and count_attempt, count_attempt=count_attempt)
    return GiveUp(final_reason(failed, attempts=attempts, cost=cost, on_gpu=on_gpu),
                  cancelled=failed.kind == "cancelled")


def final_reason(failed: Failed, *, attempts: int, cost: int, on_gpu: bool = False) -> str:
    """The member's sentence for a job that ends without a clip, refund included."""
    times = {1: "", 2: " twice"}.get(attempts, f" {attempts} times")
    if failed.kind == "oom":
        memory = "GPU memory" if on_gpu else "memory"
        text = f"The renderer ran out of {memory}{times}"
    elif failed.kind == "crash":
        text = f"The renderer stopped unexpectedly{times} while making this video"
    else:
        return failed.reason + refund_note(cost)
    return text + ("; your credits were refunded." if cost > 0 else ".")


def refund_note(cost: int) -> str:
    return " Your credits were refunded." if cost > 0 else ""


def timeout_reason(seconds: float) -> str:
    return f"This video took longer than {duration_text(seconds)} to make, so it was stopped."


def duration_text(seconds: float) -> str:
    """900 → "15 minutes", 90 → "1.5 minutes", 1 → "1 second"."""
    if seconds >= 60:
        minutes = seconds / 60
        if minutes == int(minutes):
            return f"{minutes:g} minute{'' if minutes == 1 else 's'}"
        return f"{minutes:.1f} minutes"
    return f"{seconds:g} second{'' if seconds == 1 else 's'}"
