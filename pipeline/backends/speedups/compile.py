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
    """One graph per block, no breaks: fastest, but only possible when no hook on the block
    is compiler-disabled."""
    backend: str = "inductor"
    cuda_only: bool = True
    """Skip compiling off CUDA (tests compile on the CPU with backend="eager")."""


def compile_config(*, cache: bool, offload: str) -> CompileConfig:
    """The first-block cache's hook and group offload's hooks are ``torch.compiler.disable``d:
    with either on, a full graph cannot be traced (Dynamo raises at the first forward of every
    job), so the blocks compile with graph breaks around those hooks instead."""
    return CompileConfig(fullgraph=not cache and offload != "group")


def apply_regional_compile(
    modules: Sequence[Any], device: torch.device, config: CompileConfig
) -> bool:
    """Compile each module's repeated blocks (or the module); skipped off CUDA, where it does
    not pay for its compile time. Whether anything was compiled."""
    if config.cuda_only and device.type != "cuda":
        logger.info("torch.compile skipped: it only pays off on CUDA")
        return False
    for module in modules:
        if getattr(module, "_repeated_blocks", None):
            module.compile_repeated_blocks(fullgraph=config.fullgraph, backend=config.backend)
        else:
            module.compile(backend=config.backend)
    return True
