"""Regional torch.compile: compile a denoiser's repeated block once instead of the whole graph.

Regional compile reuses one compiled block for every layer, so the first call compiles in
seconds rather than minutes; models without ``_repeated_blocks`` are compiled whole.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

logger = logging.getLogger("pipeline")


@dataclass(frozen=True)
class CompileConfig:
    """torch.compile settings for the repeated blocks."""

    fullgraph: bool = True


def apply_regional_compile(
    modules: Sequence[Any], device: torch.device, config: CompileConfig
) -> None:
    """Compile each module's repeated blocks (or the module); skipped off CUDA, where it does
    not pay for its compile time."""
    if device.type != "cuda":
        logger.info("torch.compile skipped: it only pays off on CUDA")
        return
    for module in modules:
        if getattr(module, "_repeated_blocks", None):
            module.compile_repeated_blocks(fullgraph=config.fullgraph)
        else:
            module.compile()
