"""First-block cache: skip a step's remaining blocks when its first block barely changed."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from contract import one_line

logger = logging.getLogger("pipeline")


@dataclass(frozen=True)
class CacheConfig:
    """diffusers' FirstBlockCacheConfig threshold; higher skips more (and blurs more)."""

    threshold: float = 0.05


def apply_first_block_cache(modules: Sequence[Any], config: CacheConfig) -> None:
    """Enable the cache on each module that has diffusers' cache hooks; others are logged."""
    from diffusers import FirstBlockCacheConfig

    for module in modules:
        if not hasattr(module, "enable_cache"):
            logger.info("%s has no cache hooks; cache not applied", type(module).__name__)
            continue
        try:
            module.enable_cache(FirstBlockCacheConfig(threshold=config.threshold))
        except Exception as exc:  # noqa: BLE001 - a speed-up must never stop a job
            logger.warning(
                "First-block cache not applied to %s: %s", type(module).__name__, one_line(exc)
            )
