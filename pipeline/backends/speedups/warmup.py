"""Speed-ups fail safe: each one is proven by a short warm-up render at load, and taken off
again if that render fails.

An attention kernel that refuses this card or dtype, a cache hook that clashes with a model, a
compile that cannot trace: each would otherwise surface at the first member's job, and at
every job after it. The speed-ups go on one at a time, each followed by two steps of a tiny
clip; one that makes the render fail is removed, with one log line naming it, and the next is
tried on the model as it then is. A job never fails because a speed-up did.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from contract import PipelineError, is_out_of_memory, one_line

logger = logging.getLogger("pipeline")


@dataclass
class SpeedUp:
    """One speed-up: how to put it on (False: nothing to do here) and take it off again."""

    name: str
    """As the log names it, e.g. "attention kernel _flash_3"."""
    apply: Callable[[], bool]
    remove: Callable[[], None]


def remove_attention_kernel(modules: Sequence[Any]) -> Callable[[], None]:
    def remove() -> None:
        for module in modules:
            if hasattr(module, "reset_attention_backend"):
                module.reset_attention_backend()

    return remove


def remove_cache(modules: Sequence[Any]) -> Callable[[], None]:
    def remove() -> None:
        for module in modules:
            if getattr(module, "is_cache_enabled", False):
                module.disable_cache()

    return remove


def remove_compile(modules: Sequence[Any]) -> Callable[[], None]:
    def remove() -> None:
        import torch

        for module in modules:
            for sub in module.modules():
                if getattr(sub, "_compiled_call_impl", None) is not None:
                    sub._compiled_call_impl = None  # what nn.Module.compile() set
        torch._dynamo.reset()

    return remove


def prove_each(speed_ups: Sequence[SpeedUp], render: Callable[[], Any]) -> list[str]:
    """Put each speed-up on and `render` (a two-step warm-up); take off one whose render fails.
    Returns the names kept. Running out of memory (or another error of the pipeline's own)
    proves nothing either way: that speed-up comes off and no further one is tried."""
    kept: list[str] = []
    for speed_up in speed_ups:
        if not speed_up.apply():
            continue
        try:
            render()
        except Exception as exc:
            speed_up.remove()
            if isinstance(exc, PipelineError) or is_out_of_memory(exc):
                logger.warning(
                    "warm-up render failed (%s); %s and the speed-ups after it are off",
                    one_line(exc, 200), speed_up.name,
                )
                return kept
            logger.warning(
                "%s dropped: the warm-up render failed with it (%s); carrying on without it",
                speed_up.name, one_line(exc, 200),
            )
            continue
        kept.append(speed_up.name)
    return kept
