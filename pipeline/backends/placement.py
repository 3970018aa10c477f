"""Where a pipeline's weights live: device, precision, CPU offload and VAE tiling.

In the style of diffusers' ``hooks``: each lever is a frozen config plus an ``apply_*``
function, and the ``choose_*`` functions turn the operator's :class:`BackendOptions` and the
machine into those configs. Offload is chosen from free VRAM against what the checkpoint needs,
so one worker image runs a 13B model on an 80 GB card and on a 24 GB one.
"""

from __future__ import annotations

import gc
import logging
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from contract import BackendOptions, ModelError
from pipeline.memory.planner import Storage, Tier
from pipeline.presets import Preset

if TYPE_CHECKING:
    import torch

    from pipeline.memory.machine import Machine

logger = logging.getLogger("pipeline")

Placement = Literal["none", "model", "group"]

TILING_PIXELS = 1024 * 576
"""Decode with VAE tiling above this many pixels per frame (and always when offloading)."""
ACTIVATION_GIB = 6.0
"""Headroom for activations and the VAE decode on top of the weights, for video sizes."""


def choose_device(options: BackendOptions) -> torch.device:
    """The requested device, or CUDA when present; asking for CUDA without one is a ModelError."""
    import torch

    if options.device:
        device = torch.device(options.device)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ModelError("CUDA was requested but no CUDA GPU is available; use --device cpu.")
        return device
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def choose_dtype(options: BackendOptions, preset: Preset, device: torch.device) -> torch.dtype:
    """The preset's dtype on CUDA (float16 where bf16 is missing), float32 on a CPU."""
    import torch

    name = options.dtype or (preset.dtype if device.type == "cuda" else "float32")
    if name == "bfloat16" and device.type == "cuda" and not native_bf16(device):
        name = "float16"
    return getattr(torch, name)


def native_bf16(device: torch.device) -> bool:
    """bf16 in hardware (compute capability 8.0, Ampere, and newer). torch's
    is_bf16_supported() also says yes on a V100 or T4, where bf16 is emulated and slow."""
    import torch

    return torch.cuda.get_device_capability(device) >= (8, 0)


def dtype_argument(preset: Preset, dtype: torch.dtype) -> Any:
    """Per-component dtypes: the docs keep e.g. Wan's VAE in float32 for decode quality."""
    import torch

    if dtype == torch.float32 or not preset.fp32_components:
        return dtype
    return {"default": dtype, **{name: torch.float32 for name in preset.fp32_components}}


def memory_need_gib(
    parameters: Mapping[str, int], preset: Preset, dtype_bytes: int = 2
) -> tuple[float, float]:
    """(GiB to keep everything on the GPU, GiB with model offload) of a checkpoint that is not
    a preset, from its per-component parameter counts; the family preset's counted footprint
    when the counts are unknown (files not on disk)."""
    if not parameters:
        from pipeline.memory import footprint_for, need_for

        footprint = footprint_for(preset.name)
        if footprint is None:
            return 0.0, 0.0
        full = need_for(footprint, Tier("bf16", "none")).gpu_bytes
        offloaded = need_for(footprint, Tier("bf16", "model")).gpu_bytes
        return full / 2**30, offloaded / 2**30
    sizes = {
        name: n * (4 if name in preset.fp32_components else dtype_bytes) / 2**30
        for name, n in parameters.items()
    }
    return sum(sizes.values()) + ACTIVATION_GIB, max(sizes.values()) + ACTIVATION_GIB


def choose_offload(
    free_gib: float, full_gib: float, offloaded_gib: float, *, low_memory: bool = False
) -> Placement:
    """ "none" when the whole pipeline fits in free VRAM, "model" (one component on the GPU at a
    time) when the largest component fits, else "group" (layers streamed in). `low_memory`
    (the retry after an OOM) never keeps everything resident."""
    if free_gib >= full_gib and not low_memory:
        return "none"
    if free_gib >= offloaded_gib:
        return "model"
    return "group"


def choose_tier(
    options: BackendOptions,
    preset: Preset,
    device: torch.device,
    *,
    is_preset: bool,
    label: str,
    machine: Callable[[], Machine] | None = None,
    avoid: frozenset[str] = frozenset(),
) -> tuple[Tier, bool]:
    """How the weights are stored and placed, and whether the placement is decided (False:
    the free-VRAM rule of :func:`offload_config` places it — a checkpoint that is not a
    preset, with OFFLOAD=auto; it has no counted footprint to plan with).

    On a CPU the weights stay where they are, stored as asked. On CUDA with ``auto`` settings
    the planner picks the first tier of its ladder that fits the GPU's free memory and the
    host's available RAM; an operator's OFFLOAD or WEIGHTS narrows the ladder; the retry after
    running out of memory (`low_memory`) takes the next fitting tier. A preset that fits
    nowhere is refused in one line.

    avoid: what failed its warm-up render on this machine ("fp8", "model", "group": see
    DiffusionBackend.load): no tier uses it, whatever OFFLOAD or WEIGHTS ask."""
    from pipeline.memory import LADDER, plan
    from pipeline.memory.footprint import footprint_for
    from pipeline.memory.machine import this_machine

    storage = options.weights
    place = options.offload
    if storage in avoid:
        storage = "auto"
    if place in avoid:
        place = "auto"
    asked: Storage = "bf16" if storage == "auto" else storage  # type: ignore[assignment]
    if asked not in ("bf16", "fp8"):
        published = preset.gguf.quants if preset.gguf and is_preset else ()
        if asked not in published:
            raise ModelError(
                f"{label} has no {asked} GGUF files; set WEIGHTS to auto, bf16 or fp8."
            )
    if device.type != "cuda":
        return Tier(asked, "none"), True
    if storage != "auto" and place != "auto":
        return Tier(asked, place), True  # forced: the retry keeps it (tiling is on by then)
    if not is_preset or footprint_for(preset.name) is None:
        decided = place != "auto" and not options.low_memory
        return Tier(asked, place if decided else "none"), decided  # type: ignore[arg-type]
    here = (machine or (lambda: this_machine(free=True)))()
    allowed = [
        tier
        for tier in LADDER
        if storage in ("auto", tier.storage)
        and place in ("auto", tier.placement)
        and tier.storage not in avoid
        and tier.placement not in avoid
    ]
    memory = plan(
        preset,
        vram_bytes=here.vram_bytes,
        ram_bytes=here.ram_bytes,
        allowed=allowed,
        skip=1 if options.low_memory else 0,
    )
    if not memory.runs:
        failed = f"; {' and '.join(sorted(avoid))} failed a warm-up render here" if avoid else ""
        raise ModelError(f"{label} cannot run on this machine: it {memory.reason}{failed}.")
    logger.info("memory plan for %s: %s", label, memory.reason)
    return memory.tier, True


@dataclass(frozen=True)
class OffloadConfig:
    """How the pipeline sits on `device`: whole ("none"), a component at a time, or streamed."""

    device: Any
    """A torch.device."""
    mode: Placement = "none"


def offload_config(
    options: BackendOptions,
    device: torch.device,
    need_gib: Callable[[], tuple[float, float]],
    *,
    name: str = "the model",
    avoid: frozenset[str] = frozenset(),
) -> OffloadConfig:
    """The placement for `device`: the requested mode, or (``auto``, or ``none`` in low-memory
    mode) one chosen from free VRAM against `need_gib()` (full, with model offload), logged.
    The need is only estimated when a choice is made: it reads every weight file's header.
    avoid: offload modes that failed their warm-up render here (see :func:`choose_tier`); the
    other offload mode stands in for one, everything on the GPU for both."""
    if device.type != "cuda":
        return OffloadConfig(device=device)
    mode = "auto" if options.offload in avoid else options.offload
    if mode == "auto" or (options.low_memory and mode == "none"):
        import torch

        free = torch.cuda.mem_get_info(device)[0] / 2**30
        full, offloaded = need_gib()
        mode = choose_offload(free, full, offloaded, low_memory=options.low_memory)
        logger.info(
            "%.1f GiB VRAM free; %s needs ~%.0f GiB on the GPU, ~%.0f GiB with model offload -> %s",
            free,
            name,
            full,
            offloaded,
            mode,
        )
    if mode in avoid:
        mode = next((m for m in ("model", "group") if m not in avoid), "none")  # type: ignore[assignment]
    return OffloadConfig(device=device, mode=mode)


GROUP_OFFLOAD_EXCLUDE = ("vae",)
"""Kept whole on the GPU under group offload. The VAE is small and runs once per clip; streamed,
it would reload its stored half-precision weights over the float32 copy that SVD's pipeline
upcasts it to for decoding (a dtype clash at decode), and keep per-layer tracker hooks that
are never removed (it decodes through `decode`, not `forward`)."""


def apply_offload(pipe: Any, config: OffloadConfig) -> None:
    """Move the pipeline to the device, or install diffusers' model or group offload hooks."""
    if config.mode == "none":
        pipe.to(config.device)
    elif config.mode == "model":
        pipe.enable_model_cpu_offload(device=config.device)
    else:
        import torch

        pipe.enable_group_offload(
            onload_device=config.device,
            offload_device=torch.device("cpu"),
            offload_type="leaf_level",
            use_stream=config.device.type == "cuda",
            exclude_modules=[m for m in GROUP_OFFLOAD_EXCLUDE if getattr(pipe, m, None) is not None],
        )


def free_device_memory() -> None:
    """Give back what a dropped model held: unreachable tensors, the GPU's cached blocks, and
    the pinned host memory that offloading staged weights in (``empty_cache`` is device-only;
    without the host cache, a worker that switches models grows until the host runs out).
    Call it only once the model is unreachable: blocks still referenced stay "used"."""
    gc.collect()
    torch = sys.modules.get("torch")
    if torch is None or not torch.cuda.is_available():
        return
    torch.cuda.empty_cache()
    empty_host_cache = getattr(getattr(torch, "accelerator", None), "empty_host_cache", None)
    if empty_host_cache is not None:
        empty_host_cache()


@dataclass(frozen=True)
class TilingConfig:
    """When the VAE decodes in tiles: always (`force`), or above `max_pixels` per frame."""

    force: bool = False
    max_pixels: int = TILING_PIXELS


def tiling_config(options: BackendOptions, offload: OffloadConfig) -> TilingConfig:
    """Tiles whenever memory is short: low-memory mode, or any offload."""
    return TilingConfig(force=options.low_memory or offload.mode != "none")


def apply_vae_tiling(pipe: Any, config: TilingConfig, width: int, height: int) -> None:
    """Switch the VAE's tiled decode on or off for frames of `width`×`height`."""
    vae = getattr(pipe, "vae", None)
    # Every diffusers VAE has enable_tiling(); those without a tiled decode (SVD's temporal
    # decoder) raise NotImplementedError from it and lack `use_tiling`.
    if vae is None or not hasattr(vae, "use_tiling"):
        return
    if config.force or width * height > config.max_pixels:
        vae.enable_tiling()
    elif hasattr(vae, "disable_tiling"):
        vae.disable_tiling()
