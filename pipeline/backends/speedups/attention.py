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
    """The attention backend to set, or None to keep PyTorch SDPA (see :func:`auto_attention`
    for what "auto" picks on a CUDA GPU; elsewhere SDPA already picks a fused kernel itself)."""
    if wanted == NATIVE:
        return None
    if wanted != "auto":
        return wanted
    if device.type != "cuda":
        return None
    try:
        import torch
        from diffusers.models import attention_dispatch as dispatch
    except ImportError:
        return None
    installed = {
        name
        for name, flag in (("_flash_3", "_CAN_USE_FLASH_ATTN_3"), ("flash", "_CAN_USE_FLASH_ATTN"))
        if getattr(dispatch, flag, False)
    }
    return auto_attention(
        torch.cuda.get_device_capability(device),
        installed=installed,
        hub_kernels=_hub_kernels_usable(),
        cached=_kernel_cached,
    )


HUB_KERNELS: tuple[tuple[str, str, tuple[int, int], tuple[int, int]], ...] = (
    # (diffusers backend, kernel repo, lowest and highest compute capability it runs on)
    ("_flash_3_hub", "kernels-community/flash-attn3", (9, 0), (9, 0)),
    ("sage_hub", "SageAttention/sage-attention", (8, 0), (9, 0)),
)
"""FlashAttention 3 and SageAttention 2 have no PyPI wheels; diffusers loads them from the
hub through the `kernels` package. Only one already in the local cache is used: a job must
never wait for (or depend on) a download, and the hub may be unreachable."""


def auto_attention(
    capability: tuple[int, int],
    *,
    installed: set[str],
    hub_kernels: bool,
    cached: Any,
) -> str | None:
    """"auto" on a CUDA GPU of `capability`: FlashAttention 3 installed (Hopper), then a hub
    kernel in the local cache (FlashAttention 3 on Hopper, SageAttention on Ampere to Hopper),
    then FlashAttention 2 installed, else None (SDPA)."""
    if "_flash_3" in installed and capability >= (9, 0):
        return "_flash_3"
    if hub_kernels:
        for backend, repo, lowest, highest in HUB_KERNELS:
            if lowest <= capability <= highest and cached(repo):
                return backend
    if "flash" in installed and capability >= (8, 0):
        return "flash"
    return None


def _hub_kernels_usable() -> bool:
    import importlib.util

    return importlib.util.find_spec("kernels") is not None


def _kernel_cached(repo_id: str) -> bool:
    """Whether the hub cache holds a snapshot of the kernel repo (no network)."""
    from pathlib import Path

    from pipeline.backends.hub import hub_cache_dir

    snapshots = Path(hub_cache_dir()) / f"models--{repo_id.replace('/', '--')}" / "snapshots"
    return snapshots.is_dir() and any(snapshots.iterdir())


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
