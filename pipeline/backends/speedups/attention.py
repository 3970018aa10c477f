"""The attention kernel the denoiser's self-attention runs on (diffusers' attention dispatch)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from contract import one_line

if TYPE_CHECKING:
    import torch

logger = logging.getLogger("pipeline")

NATIVE = "native"
"""PyTorch SDPA, diffusers' default backend."""


@dataclass(frozen=True)
class AttentionConfig:
    """A diffusers attention backend name; None keeps SDPA."""

    backend: str | None = None
    masked_cross_attention: bool = True
    """Keep cross-attention on SDPA: it carries a text padding mask (LTX) that fused kernels
    refuse. Models whose cross-attention is unmasked (Wan) run it on the kernel too."""


def choose_attention(wanted: str, device: torch.device) -> str | None:
    """The attention backend to set, or None to keep PyTorch SDPA.

    "auto" takes FlashAttention 3 (Hopper) or 2 when the package is installed on a CUDA machine;
    elsewhere SDPA already picks a fused kernel itself.
    """
    if wanted == NATIVE:
        return None
    if wanted != "auto":
        return wanted
    if device.type != "cuda":
        return None
    try:
        from diffusers.models import attention_dispatch as dispatch
    except ImportError:
        return None
    if getattr(dispatch, "_CAN_USE_FLASH_ATTN_3", False):
        return "_flash_3"
    if getattr(dispatch, "_CAN_USE_FLASH_ATTN", False):
        return "flash"
    return None


def set_attention_backend(module: Any, backend: str, *, masked_cross_attention: bool) -> None:
    """`module.set_attention_backend`, without changing diffusers' process-wide default, and
    for self-attention only when the cross-attention carries a padding mask (see
    :class:`AttentionConfig`)."""
    from diffusers.models.attention_dispatch import (
        AttentionBackendName,
        _AttentionBackendRegistry,
    )

    # set_attention_backend also makes the kernel diffusers' process-wide default, which every
    # other model in this worker (the next one loaded, a benchmark's plain baseline) would
    # then use unasked, masked cross-attention included: keep the default where it was.
    default = _AttentionBackendRegistry._active_backend
    try:
        module.set_attention_backend(backend)
    finally:
        _AttentionBackendRegistry.set_active_backend(default)
    if not masked_cross_attention:
        return
    for name, sub in module.named_modules():
        processor = getattr(sub, "processor", None)
        if processor is None or not hasattr(processor, "_attention_backend"):
            continue
        if getattr(sub, "is_cross_attention", False) or name.rsplit(".", 1)[-1] == "attn2":
            processor._attention_backend = AttentionBackendName.NATIVE


def apply_attention(modules: Sequence[Any], config: AttentionConfig) -> str:
    """Set the backend on every module's attention (see AttentionConfig); the one in use.

    A kernel that is missing or refuses these modules resets them to SDPA with a warning: a
    speed-up must never stop a job.
    """
    if config.backend is None:
        return NATIVE
    try:
        for module in modules:
            set_attention_backend(
                module, config.backend, masked_cross_attention=config.masked_cross_attention
            )
    except Exception as exc:  # noqa: BLE001 - a missing kernel must never stop a job
        for module in modules:
            if hasattr(module, "reset_attention_backend"):
                module.reset_attention_backend()
        logger.warning(
            "Attention backend %r not used (%s); PyTorch SDPA instead", config.backend, one_line(exc)
        )
        return NATIVE
    if not any(config.backend in dispatched_backends(module).values() for module in modules):
        # SVD's UNet and CogVideoX's processors do not go through diffusers' dispatch.
        logger.info("%s does not use attention backends; PyTorch SDPA as before",
                    ", ".join(type(m).__name__ for m in modules))
        return NATIVE
    return config.backend


def dispatched_backends(module: Any) -> dict[str, str | None]:
    """Attention module name -> the backend its processor dispatches to."""
    found = {}
    for name, sub in module.named_modules():
        processor = getattr(sub, "processor", None)
        if processor is not None and hasattr(processor, "_attention_backend"):
            backend = processor._attention_backend
            found[name] = getattr(backend, "value", backend)
    return found
