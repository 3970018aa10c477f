"""What a preset needs on this machine's disk: the memory plan decides which weights.

A machine whose plan stores the denoisers as GGUF fetches only that quantization's files and
none of the repo's own denoiser weights (28 GB each for the Wan A14B experts); every other
plan fetches the preset's own weights. A machine without a GPU (preparing a cache, or a CPU
worker) gets the preset's own weights.
"""

from __future__ import annotations

from contract import ModelError
from contract.workers import WEIGHTS
from pipeline.downloads import Wanted, wanted_for_preset
from pipeline.memory import LADDER, plan
from pipeline.memory.machine import Machine
from pipeline.presets import Preset


def chosen_weights(
    preset: Preset, machine: Machine, weights: str = "auto", offload: str = "auto"
) -> tuple[str, str]:
    """(storage, why): the weights to fetch for `preset` on `machine` ("auto": the plan's,
    within the operator's OFFLOAD as the loader's plan is)."""
    if weights not in WEIGHTS:
        raise ValueError(f"weights must be one of {', '.join(WEIGHTS)}, not {weights!r}")
    if weights != "auto":
        return weights, f"weights {weights} as asked"
    if not machine.vram_bytes:
        return "bf16", "no CUDA GPU here: the preset's own weights"
    allowed = [t for t in LADDER if offload in ("auto", t.placement)]
    memory = plan(preset, vram_bytes=machine.vram_bytes, ram_bytes=machine.ram_bytes, allowed=allowed)
    if not memory.runs:
        return "bf16", f"it {memory.reason}; fetching the preset's own weights anyway"
    return memory.tier.storage, f"planned as {memory.tier.describe()}"


def wanted_for_machine(
    preset: Preset, machine: Machine, *, weights: str = "auto", offload: str = "auto"
) -> tuple[list[Wanted], str]:
    """The hub files `preset` loads on `machine`, and one line saying which weights and why."""
    storage, why = chosen_weights(preset, machine, weights, offload)
    gguf = None
    if storage not in ("bf16", "fp8"):
        if preset.gguf is None or storage not in preset.gguf.quants:
            raise ValueError(f"{preset.name} has no {storage} GGUF files")
        gguf = preset.gguf.for_quant(storage)
    return wanted_for_preset(preset, gguf=gguf), why


def fetch_attention_kernel() -> str | None:
    """Fetch the hub attention kernel for this GPU (FlashAttention 3 on Hopper, SageAttention
    on Ampere to Hopper) when the `kernels` package is installed, so ``ATTENTION_BACKEND=auto``
    finds it in the cache at load: jobs never wait for a kernel download. The repo fetched, or
    None where none applies (no `kernels`, no CUDA GPU, another architecture)."""
    import importlib.util

    if importlib.util.find_spec("kernels") is None:
        return None
    import torch

    if not torch.cuda.is_available():
        return None
    from pipeline.backends.speedups.attention import HUB_KERNELS

    capability = torch.cuda.get_device_capability()
    for _backend, repo, lowest, highest in HUB_KERNELS:
        if lowest <= capability <= highest:
            from kernels import get_kernel

            try:
                get_kernel(repo)  # the build for this torch and CUDA only, into the hub cache
            except Exception as exc:  # noqa: BLE001 - a missing kernel costs speed, not jobs
                raise ModelError(
                    f"Cannot fetch the attention kernel {repo!r} ({type(exc).__name__}); "
                    "attention falls back to PyTorch SDPA until it is downloaded."
                ) from None
            return repo
    return None
