"""Backends by name: ``camera``, a preset, a model directory or hub id, or ``auto``.

Importing this package is cheap (no torch, no diffusers): the bot lists models and reads
presets from it; only :func:`load_backend` and :func:`available_models` touch the GPU stack,
and only when called.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from contract import AUTO, CAMERA, CARDS, BackendOptions, ModelError
from pipeline.backends.base import Backend, BackendInfo, RenderPlan
from pipeline.presets import AUTO_ORDER, PRESETS, Preset

if TYPE_CHECKING:
    from pipeline.memory.machine import Machine

__all__ = [
    "Backend",
    "BackendInfo",
    "BackendOptions",
    "ModelStatus",
    "RenderPlan",
    "available_models",
    "load_backend",
    "resolve_auto",
]

logger = logging.getLogger("pipeline")

def resolve_auto(options: BackendOptions | None = None) -> str:
    """What ``auto`` means on this machine, in one log line saying why: the camera move
    without CUDA, else the fastest preset this GPU can run (see :func:`choose_auto`)."""
    from pipeline.memory.machine import this_machine

    options = options or BackendOptions()
    wants_cpu = (options.device or "").startswith("cpu")
    machine = None if wants_cpu else this_machine()
    if machine is None or not machine.vram_bytes:
        why = "CPU device requested" if wants_cpu else "no CUDA GPU"
        logger.info("model auto -> %s (%s): camera moves, no AI", CAMERA, why)
        return CAMERA
    from pipeline.backends.hub import hub_reachable

    name, why = choose_auto(machine, is_downloaded, hub_reachable)
    logger.info("model auto -> %s: %s", name, why)
    return name


def is_downloaded(preset: Preset) -> bool:
    """Whether every file the preset needs is in the local hub cache (no network)."""
    from pipeline.backends.hub import cached_file, is_cached

    return all(cached_file(repo, file) if file else is_cached(repo) for repo, file in preset.downloads())


def choose_auto(
    machine: Machine,
    downloaded: Callable[[Preset], bool],
    online: Callable[[], bool],
) -> tuple[str, str]:
    """(model, why) on `machine`: the first preset of AUTO_ORDER that is downloaded and that
    the memory planner fits, else the first that fits and can be downloaded, else the camera
    move, so an offline GPU box still answers."""
    from pipeline.memory import plan

    plans = {name: plan(name, vram_bytes=machine.vram_bytes, ram_bytes=machine.ram_bytes) for name in AUTO_ORDER}
    fitting = [PRESETS[name] for name in AUTO_ORDER if plans[name].runs]
    if not fitting:
        first = plans[AUTO_ORDER[0]]
        return CAMERA, f"no AI preset fits this machine ({AUTO_ORDER[0]} {first.reason})"
    for preset in fitting:
        if downloaded(preset):
            return preset.name, f"fastest downloaded preset for this machine ({plans[preset.name].reason})"
    first = fitting[0]
    if online():
        return first.name, (
            f"fastest preset for this machine ({plans[first.name].reason}); downloads on first use"
        )
    return CAMERA, (
        f"no AI preset is downloaded and the hub is unreachable (to use {first.name}: "
        f"python -m pipeline download {first.name})"
    )


def load_backend(model: str = AUTO, options: BackendOptions | None = None) -> Backend:
    """A ready backend for `model`: "camera", "auto", a preset name (``ltx``, ``wan``,
    ``wan-14b``, ``svd``, ``cogvideox``), a local diffusers directory or a hub repo id.

    Diffusion models are loaded now (weights on the device), so a bad model fails here with a
    ModelError whose message says what to do; the backend then serves any number of jobs.
    """
    name = (model or AUTO).strip()
    if name == AUTO:
        name = resolve_auto(options)
    if name == CAMERA:
        from pipeline.backends.camera import CameraBackend

        if options is not None and options.loras_for(CAMERA):
            raise ModelError("The camera move has no AI model to put a LoRA into; pick an AI model.")
        return CameraBackend()
    from pipeline.backends.diffusion import DiffusionBackend

    return DiffusionBackend(name, options=options)


@dataclass(frozen=True)
class ModelStatus:
    """One row of ``python -m pipeline models``: can this machine run this model, and how?"""

    name: str
    label: str
    family: str
    repo_id: str | None
    is_ai: bool
    runnable: bool
    downloaded: bool
    note: str
    """Why (not), in one line: how it is placed, what memory is missing, what to download."""
    how: str | None = None
    """The memory plan's tier (e.g. "fp8 weights, group offload"); None when it cannot run."""
    gpu_peak_gib: float | None = None
    """Estimated peak GPU memory of the plan."""
    weights_on_gpu_gib: float | None = None
    """Weights that stay on the GPU while the denoiser runs."""
    host_gib: float | None = None
    """Estimated host RAM of the plan."""
    denoise_pflop: float | None = None
    """Denoising work per default clip, counted on the meta device."""


def available_models(machine: Machine | None = None) -> list[ModelStatus]:
    """Every preset (and the camera move) with whether `machine` (default: this one, its
    GPU's total memory and its RAM) can run it and how. No network beyond one short
    reachability probe of the hub, skipped when HF_HUB_OFFLINE is set."""
    from pipeline.backends.hub import hub_reachable
    from pipeline.memory import GIB, plan
    from pipeline.memory.machine import this_machine

    machine = machine or this_machine()
    camera = CARDS[CAMERA]
    rows = [
        ModelStatus(
            name=camera.name,
            label=camera.label,
            family=CAMERA,
            repo_id=None,
            is_ai=camera.is_ai,
            runnable=True,
            downloaded=True,
            note="runs on the CPU; a classic camera move over the photo",
        )
    ]
    online: bool | None = None
    for preset in PRESETS.values():
        memory = plan(preset, vram_bytes=machine.vram_bytes, ram_bytes=machine.ram_bytes)
        downloaded = is_downloaded(preset)
        if not downloaded and online is None:
            online = hub_reachable()
        runnable = memory.runs
        note = memory.reason
        if not downloaded:
            if online:
                note += "; downloads on first use"
            else:
                runnable = False
                note += f"; not downloaded (python -m pipeline download {preset.name})"
        need = memory.need
        rows.append(
            ModelStatus(
                name=preset.name,
                label=preset.card.label,
                family=preset.family,
                repo_id=preset.repo_id,
                is_ai=preset.card.is_ai,
                runnable=runnable,
                downloaded=downloaded,
                note=note,
                how=need.tier.describe() if need else None,
                gpu_peak_gib=round(need.gpu_bytes / GIB, 1) if need else None,
                weights_on_gpu_gib=round(need.weights_on_gpu_bytes / GIB, 1) if need else None,
                host_gib=round(need.host_bytes / GIB, 1) if need else None,
                denoise_pflop=round(memory.flops / 1e15, 3) if memory.flops else None,
            )
        )
    return rows
