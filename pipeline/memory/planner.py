"""The fastest way a preset fits a machine: placement, weight storage, text encoder.

A tier is one way to hold the pipeline; :data:`LADDER` lists them fastest first, and the plan
is the first tier whose GPU and host-memory needs both fit. The needs come from the preset's
:class:`~pipeline.memory.footprint.Footprint` (exact weight bytes, activation peaks counted on
`meta`) by these rules, all in bytes:

- **GPU, everything resident** (``none``): every component's weights on the GPU, plus the
  largest activation peak of any stage (text encoding, VAE encoding, one denoiser forward,
  VAE decoding), plus :data:`GPU_RESERVE`.
- **GPU, model offload** (``model``): one component at a time, so the largest of (that
  component's weights + its stage's peak), plus the reserve. The VAE decodes tiled.
- **GPU, group offload** (``group``, leaf level with CUDA streams): the VAE stays whole on the
  GPU (see ``placement.GROUP_OFFLOAD_EXCLUDE``), plus two of the largest streamed leaves (the
  one running and the one prefetched), plus the largest peak, plus the reserve.
- **Host RAM**: :data:`HOST_BASE` for the worker process, plus the offloaded weights — all of
  them under model offload, twice the streamed ones under group offload (pinned staging
  copies, as diffusers' docs warn), the largest component while loading a resident pipeline
  (safetensors are memory-mapped and moved one component at a time), and the text encoder
  with its peak when it runs on the CPU.

Storage tiers shrink the denoisers' weights: ``fp8`` is diffusers' layerwise casting (weights
stored in float8, computed in bf16), ``Q8_0``/``Q5_K_M``/``Q4_K_M`` are the community's GGUF
files, dequantized layer by layer (one bf16 layer on top, counted in the reserve). GGUF tiers
exist only for presets with published files (:attr:`Preset.gguf`).

The activation peaks are counted, not measured: allocator fragmentation, cuDNN/cuBLAS
workspaces and the CUDA context are what the 1.5 GiB reserve stands for. No GPU run has
calibrated it yet (the README says so).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from contract import ModelError
from pipeline.memory.footprint import ComponentFootprint, Footprint, footprint_for
from pipeline.presets import PRESETS, Preset

GIB = 2**30
GPU_RESERVE = int(1.5 * GIB)
"""CUDA context, allocator fragmentation and kernel workspaces, on top of counted tensors."""
HOST_BASE = 4 * GIB
"""The worker process itself in host RAM: Python, torch and the CUDA libraries."""

Storage = Literal["bf16", "fp8", "Q8_0", "Q5_K_M", "Q4_K_M"]
Placement = Literal["none", "model", "group"]

GGUF_BITS: dict[str, float] = {
    "Q8_0": 8.5,
    # K-quant "medium" files keep the most sensitive tensors in 6-bit (Q6_K), so they average
    # above the base type's 5.5 / 4.5 bits. Calibrated from published sizes:
    # Wan2.2-I2V-A14B-*Noise-Q5_K_M.gguf are a little over 10 GiB each (QuantStack listing,
    # 14.29 B parameters); Wan2.2-TI2V-5B-Q4_K_M.gguf is 3,433,116,000 bytes (5.00 B).
    "Q5_K_M": 6.0,
    "Q4_K_M": 5.4,
}
"""Average bits per quantized parameter of each GGUF type."""


@dataclass(frozen=True)
class Tier:
    """One way to hold a pipeline: where its weights live and how they are stored."""

    storage: Storage = "bf16"
    placement: Placement = "none"
    text_encoder_on_cpu: bool = False
    """Encode prompts on the CPU (the encoder never on the GPU): the last resort."""

    @property
    def is_gguf(self) -> bool:
        return self.storage not in ("bf16", "fp8")

    def describe(self) -> str:
        where = {
            "none": "all on the GPU",
            "model": "model offload",
            "group": "group offload",
        }[self.placement]
        how = {"bf16": "", "fp8": "fp8 weights, "}.get(self.storage, f"GGUF {self.storage}, ")
        cpu = ", text encoder on the CPU" if self.text_encoder_on_cpu else ""
        return f"{how}{where}{cpu}"


def _ladder() -> tuple[Tier, ...]:
    placements: tuple[Placement, ...] = ("none", "model", "group")
    storages: tuple[Storage, ...] = ("bf16", "fp8", "Q8_0", "Q5_K_M", "Q4_K_M")
    tiers = [Tier(storage, where) for storage in storages for where in placements]
    return tuple(tiers + [Tier(t.storage, t.placement, True) for t in tiers])


LADDER: tuple[Tier, ...] = _ladder()
"""Fastest first: everything on the GPU, then model offload, then group offload, first with
the preset's own weights, then fp8 storage, then ever smaller GGUF files; then all of that
again with the text encoder on the CPU (slow prompts, for the smallest cards)."""


@dataclass(frozen=True)
class Need:
    """What one tier of one preset needs."""

    tier: Tier
    gpu_bytes: int
    host_bytes: int
    weights_on_gpu_bytes: int
    """Weights resident on the GPU while the denoiser runs (what stays there between steps)."""


@dataclass(frozen=True)
class MemoryPlan:
    """The chosen tier of a preset on a machine, or why there is none."""

    preset: str
    vram_bytes: int
    ram_bytes: int
    need: Need | None
    """None: nothing fits (see :attr:`reason`)."""
    smallest: Need | None = None
    """The tier needing the least GPU memory, to say what would be enough."""
    flops: float | None = None

    @property
    def runs(self) -> bool:
        return self.need is not None

    @property
    def tier(self) -> Tier:
        if self.need is None:
            raise ModelError(self.reason)
        return self.need.tier

    @property
    def reason(self) -> str:
        """One line: how it runs, or why it cannot."""
        if self.need is not None:
            return (
                f"{self.need.tier.describe()}: peak ~{self.need.gpu_bytes / GIB:.1f} GiB of "
                f"{self.vram_bytes / GIB:.0f} GiB GPU, ~{self.need.host_bytes / GIB:.0f} GiB of "
                f"{self.ram_bytes / GIB:.0f} GiB RAM"
            )
        if self.vram_bytes <= 0:
            return "needs a CUDA GPU"
        smallest = self.smallest
        if smallest is None:
            return "no memory figures for this model"
        return (
            f"does not fit: needs at least ~{smallest.gpu_bytes / GIB:.1f} GiB of GPU memory and "
            f"~{smallest.host_bytes / GIB:.0f} GiB of RAM ({smallest.tier.describe()}); this "
            f"machine has {self.vram_bytes / GIB:.0f} GiB and {self.ram_bytes / GIB:.0f} GiB"
        )


def tiers_for(preset: Preset, footprint: Footprint) -> list[Tier]:
    """The ladder without the GGUF tiers the preset has no published files for, and without
    the text-encoder tiers for a pipeline that has no text encoder (SVD)."""
    quants = preset.gguf.quants if preset.gguf else ()
    has_text = bool(footprint.by_role("text_encoder"))
    return [
        tier
        for tier in LADDER
        if (not tier.is_gguf or tier.storage in quants) and (has_text or not tier.text_encoder_on_cpu)
    ]


def stored_bytes(component: ComponentFootprint, storage: Storage) -> int:
    """A component's weights under `storage` (only denoisers change)."""
    if component.role != "denoiser" or storage == "bf16":
        return component.weight_bytes
    if storage == "fp8":
        return component.fp8_bytes if component.fp8_bytes is not None else component.weight_bytes
    # Denoisers run in a 2-byte dtype; what a GGUF file does not quantize stays there.
    quantized = component.quantizable_params * GGUF_BITS[storage] / 8
    return int(quantized + component.weight_bytes - 2 * component.quantizable_params)


def need_for(footprint: Footprint, tier: Tier) -> Need:
    """GPU and host bytes of `footprint` held as `tier` (rules in the module docstring)."""
    on_cpu = [c for c in footprint.components if tier.text_encoder_on_cpu and c.role == "text_encoder"]
    parts = [c for c in footprint.components if c not in on_cpu]
    weights = {c.name: stored_bytes(c, tier.storage) for c in parts}
    cpu_bytes = sum(c.weight_bytes + c.activation_bytes for c in on_cpu)
    offloading = tier.placement != "none"

    def peak(c: ComponentFootprint) -> int:
        return c.decode_activation_bytes if offloading else c.activation_bytes

    largest_peak = max((peak(c) for c in parts), default=0)
    if tier.placement == "none":
        gpu = sum(weights.values()) + largest_peak
        host = max(weights.values(), default=0)
        resident = sum(weights.values())
    elif tier.placement == "model":
        gpu = max((weights[c.name] + peak(c) for c in parts), default=0)
        host = sum(weights.values())
        resident = max((weights[c.name] for c in parts if c.role == "denoiser"), default=0)
    else:
        kept = sum(weights[c.name] for c in parts if c.role == "vae")
        streamed = [c for c in parts if c.role != "vae"]
        leaf = max((_leaf_bytes(c, tier.storage) for c in streamed), default=0)
        gpu = kept + 2 * leaf + largest_peak
        host = 2 * sum(weights[c.name] for c in streamed)
        resident = kept + 2 * leaf
    return Need(tier, gpu + GPU_RESERVE, host + cpu_bytes + HOST_BASE, resident)


def _leaf_bytes(component: ComponentFootprint, storage: Storage) -> int:
    """The largest leaf under `storage`: a quantized linear layer shrinks with its weights."""
    if component.role != "denoiser" or storage == "bf16":
        return component.largest_leaf_bytes
    ratio = stored_bytes(component, storage) / max(1, component.weight_bytes)
    return int(component.largest_leaf_bytes * ratio)


def plan(
    preset: Preset | str,
    *,
    vram_bytes: int,
    ram_bytes: int,
    skip: int = 0,
    allowed: Iterable[Tier] | None = None,
) -> MemoryPlan:
    """The first tier of the ladder that fits `vram_bytes` of GPU and `ram_bytes` of RAM.

    `skip` (the retry after running out of memory: the estimate was too low) steps that many
    times to the next fitting tier that needs less GPU memory than the one before, stopping
    at the last such tier. `allowed` narrows the ladder
    (an operator's OFFLOAD or WEIGHTS setting)."""
    preset = PRESETS[preset] if isinstance(preset, str) else preset
    footprint = footprint_for(preset.name)
    if footprint is None:
        return MemoryPlan(preset.name, vram_bytes, ram_bytes, None)
    tiers = tiers_for(preset, footprint)
    if allowed is not None:
        wanted = set(allowed)
        tiers = [t for t in tiers if t in wanted]
    needs = [need_for(footprint, tier) for tier in tiers]
    flops = footprint.denoise_pflop * 1e15 if footprint.denoise_pflop is not None else None
    smallest = min(needs, key=lambda n: (n.gpu_bytes, n.host_bytes), default=None)
    if vram_bytes <= 0:
        return MemoryPlan(preset.name, 0, ram_bytes, None, smallest, flops)
    fitting = [n for n in needs if n.gpu_bytes <= vram_bytes and n.host_bytes <= ram_bytes]
    chosen = fitting[0] if fitting else None
    for _ in range(skip):
        smaller = [n for n in fitting if chosen is not None and n.gpu_bytes < chosen.gpu_bytes]
        if not smaller:
            break
        chosen = smaller[0]
    return MemoryPlan(preset.name, vram_bytes, ram_bytes, chosen, smallest, flops)
