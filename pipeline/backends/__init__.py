"""Backends by name: ``camera``, a preset, a model directory or hub id, or ``auto``.

Importing this package is cheap (no torch, no diffusers): the bot lists models and reads
presets from it; only :func:`load_backend` and :func:`available_models` touch the GPU stack,
and only when called.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from contract import AUTO, CAMERA, CARDS, BackendOptions, ModelError
from pipeline.backends.base import Backend, BackendInfo, RenderPlan
from pipeline.presets import AUTO_ORDER, PRESETS, Preset

__all__ = [
    "Backend",
    "BackendInfo",
    "BackendOptions",
    "ModelStatus",
    "RenderPlan",
    "available_models",
    "cuda_memory",
    "load_backend",
    "resolve_auto",
]

logger = logging.getLogger("pipeline")

def cuda_memory() -> tuple[float, float] | None:
    """(free GiB, total GiB) of the current CUDA device, or None without CUDA (or torch)."""
    try:
        import torch
    except ImportError:
        return None
    if not torch.cuda.is_available():
        return None
    free, total = torch.cuda.mem_get_info()
    return free / 2**30, total / 2**30


def resolve_auto(options: BackendOptions | None = None) -> str:
    """What ``auto`` means on this machine, in one log line saying why: the camera move
    without CUDA, else the fastest preset this GPU can run (see :func:`choose_auto`)."""
    options = options or BackendOptions()
    wants_cpu = (options.device or "").startswith("cpu")
    memory = None if wants_cpu else cuda_memory()
    if memory is None:
        why = "CPU device requested" if wants_cpu else "no CUDA GPU"
        logger.info("model auto -> %s (%s): camera moves, no AI", CAMERA, why)
        return CAMERA
    from pipeline.backends.hub import cached_file, hub_reachable, is_cached

    def downloaded(preset: Preset) -> bool:
        return all(
            cached_file(repo, file) if file else is_cached(repo) for repo, file in preset.downloads()
        )

    name, why = choose_auto(memory, downloaded, hub_reachable)
    logger.info("model auto -> %s: %s", name, why)
    return name


def choose_auto(
    memory: tuple[float, float],
    downloaded: Callable[[Preset], bool],
    online: Callable[[], bool],
) -> tuple[str, str]:
    """(model, why) for a GPU with `memory` = (free, total) GiB: the first preset of
    AUTO_ORDER that is downloaded and fits (at least with group offload), else the first that
    fits and can be downloaded, else the camera move, so an offline GPU box still answers."""
    free, total = memory
    fitting = [PRESETS[name] for name in AUTO_ORDER if total >= PRESETS[name].min_vram_gib]
    if not fitting:
        smallest = min(PRESETS[name].min_vram_gib for name in AUTO_ORDER)
        return CAMERA, f"no AI preset runs in {total:.0f} GiB of VRAM (the smallest needs {smallest:g})"
    for preset in fitting:
        if downloaded(preset):
            return preset.name, f"fastest downloaded preset for this GPU ({_placement_note(preset, free)})"
    first = fitting[0]
    if online():
        return first.name, (
            f"fastest preset for this GPU ({_placement_note(first, free)}); downloads on first use"
        )
    fetch = " and ".join(
        f"huggingface-cli download {repo}" + (f" {file}" if file else "") for repo, file in first.downloads()
    )
    return CAMERA, f"no AI preset is downloaded and the hub is unreachable (to use {first.name}: {fetch})"


def _placement_note(preset: Preset, free: float) -> str:
    if free >= preset.vram_gib:
        return f"all on the GPU, {free:.0f} GiB free"
    if free >= preset.offload_vram_gib:
        return f"model CPU offload, {free:.0f} of {preset.vram_gib:g} GiB free"
    return f"group offload, {free:.0f} of {preset.vram_gib:g} GiB free"


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
    """One row of ``python -m pipeline models``: can this machine run this model now?"""

    name: str
    label: str
    family: str
    repo_id: str | None
    is_ai: bool
    runnable: bool
    downloaded: bool
    note: str
    """Why (not), in one line: offload mode it would use, VRAM missing, download needed."""
    vram_gib: float | None = None
    """Free VRAM the model wants without offload (None for the camera move)."""


def available_models() -> list[ModelStatus]:
    """Every preset (and the camera move) with whether this machine can run it. No network
    beyond one short reachability probe of the hub, skipped when HF_HUB_OFFLINE is set."""
    from pipeline.backends.hub import cached_file, hub_reachable, is_cached

    memory = cuda_memory()
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
        missing = [
            f"{repo} {file}" if file else repo
            for repo, file in preset.downloads()
            if not (cached_file(repo, file) if file else is_cached(repo))
        ]
        downloaded = not missing
        if not downloaded and online is None:
            online = hub_reachable()
        runnable = memory is not None and memory[1] >= preset.min_vram_gib
        if memory is None:
            note = f"needs a CUDA GPU (>= {preset.min_vram_gib:g} GiB VRAM)"
        elif memory[1] < preset.min_vram_gib:
            note = f"needs >= {preset.min_vram_gib:g} GiB VRAM; this GPU has {memory[1]:.0f} GiB"
        elif memory[0] >= preset.vram_gib:
            note = "fits in VRAM"
        elif memory[0] >= preset.offload_vram_gib:
            note = f"runs with model CPU offload ({memory[0]:.0f} of {preset.vram_gib:g} GiB free)"
        else:
            note = (
                f"runs with group offload, slowly ({memory[0]:.0f} of {preset.vram_gib:g} GiB free)"
            )
        if not downloaded:
            if online:
                note += "; downloads on first use"
            else:
                runnable = False
                note += "; not downloaded (" + "; ".join(
                    f"huggingface-cli download {item}" for item in missing
                ) + ")"
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
                vram_gib=preset.vram_gib,
            )
        )
    return rows
