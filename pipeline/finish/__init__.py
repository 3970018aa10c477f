"""Finishing a rendered clip: learned frame interpolation ("Smooth") and 2× upscaling.

Both run after the render (and after a loop's dissolve or an extension's join), before the
MP4 is encoded: :func:`check` before the render, so a job that cannot be finished on this
machine fails in a second instead of after minutes of rendering, and :func:`apply` after.

- Smooth: RIFE 4.26 (:mod:`pipeline.finish.rife`, our own torch code for Practical-RIFE's
  published network) adds in-between frames: ``interpolate=2`` turns n frames into 2n − 1
  at twice the rate, ``fps_out=48|60`` reaches that rate. The first and last frames stay the
  originals. On a GPU it runs at full resolution in fp16. On a CPU it first times itself on
  this machine: within :data:`CPU_BUDGET_PER_SECOND` it runs at full resolution, else the
  motion is estimated on a smaller copy of the frames (:data:`PROXY_SIDE` pixels on the long
  side) and the full frames are warped with it, else the job is refused
  (:class:`~contract.FinishUnavailable`).
- Upscale: Real-ESRGAN x2plus through spandrel (:mod:`pipeline.finish.upscale`), tiled,
  fp16 on a GPU; on a CPU only where it fits the same budget (small clips). An LTX preset
  whose latent upsampler is downloaded upscales inside the render instead
  (:mod:`pipeline.finish.latent`): its plan says so (``RenderPlan.upscaled``) and
  :meth:`FinishPlan.of` leaves that factor out, so nothing here runs twice.

Weights come from the hub through the download step (``python -m pipeline download rife
upscale ltx-upscale``) or a local file named by ``RIFE_WEIGHTS`` / ``UPSCALE_WEIGHTS`` (a
local folder by ``LTX_UPSCALER_WEIGHTS``); a job never downloads them. Nothing here imports torch until a finish is actually asked for.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from contract import MAX_UPSCALED_SIDE, FinishUnavailable, InputError, JobSpec, Progress
from pipeline.presets import LTX_SPATIAL_UPSCALER

if TYPE_CHECKING:
    import numpy as np

CPU_BUDGET_PER_SECOND = 12.0
"""Seconds of CPU time a finish may take per second of video: a 5 s clip gets a minute,
about what ffmpeg's ``minterpolate`` needs for 5 s of 720p 24 → 48 fps on 2 cores (32.6 s)
plus room. Past it, a member would wait longer for the smoothing than for the camera move."""
PROXY_SIDE = 480
"""Long side, in pixels, of the copy a slow CPU estimates the motion on."""
TRIVIAL_PIXELS = 200_000
"""Below this many output pixels of network work a finish is never timed first: even a slow
CPU does it in seconds (tests and thumbnails-sized clips)."""


@dataclass(frozen=True)
class FinishWeights:
    """One published weight file a finish needs, and where the download step gets it."""

    name: str
    """What ``python -m pipeline download`` calls it."""
    label: str
    repo_id: str
    filename: str
    env: str
    """Environment variable naming a local copy instead (e.g. the GitHub release file)."""
    license: str
    source: str
    """Where the weights were first published."""
    extra_files: tuple[str, ...] = ()
    """Files of the same repo the loader reads beside the weights (a diffusers model's
    ``config.json``)."""

    @property
    def files(self) -> tuple[str, ...]:
        """Everything the download step fetches for it."""
        return (self.filename, *self.extra_files)


RIFE = FinishWeights(
    name="rife",
    label="RIFE 4.26 frame interpolation",
    repo_id="Comfy-Org/frame_interpolation",
    filename="frame_interpolation/rife_v4.26.safetensors",
    env="RIFE_WEIGHTS",
    license="MIT",
    source="hzwer/Practical-RIFE v4.26 (flownet.pkl), converted to safetensors by Comfy-Org",
)
UPSCALER = FinishWeights(
    name="upscale",
    label="Real-ESRGAN x2plus upscaling",
    repo_id="Comfy-Org/Real-ESRGAN_repackaged",
    filename="RealESRGAN_x2plus.safetensors",
    env="UPSCALE_WEIGHTS",
    license="BSD-3-Clause",
    source="xinntao/Real-ESRGAN release v0.2.1 (RealESRGAN_x2plus.pth), repackaged by Comfy-Org",
)
LTX_UPSCALER = FinishWeights(
    name="ltx-upscale",
    label="LTX-Video spatial latent upsampler",
    repo_id=LTX_SPATIAL_UPSCALER.repo_id,
    filename=LTX_SPATIAL_UPSCALER.files[1],
    extra_files=LTX_SPATIAL_UPSCALER.files[:1],
    env="LTX_UPSCALER_WEIGHTS",
    license="LTX-Video open weights license (the repo's LICENSE)",
    source="Lightricks/ltxv-spatial-upscaler-0.9.7 (diffusers format; the 0.9.8 file is the same)",
)
"""Upscale 2× for the LTX presets in the model's latent space (:mod:`pipeline.finish.latent`);
only its ``latent_upsampler`` folder is fetched (the VAE beside it is the model's own)."""
FINISH_WEIGHTS: Mapping[str, FinishWeights] = {
    RIFE.name: RIFE, UPSCALER.name: UPSCALER, LTX_UPSCALER.name: LTX_UPSCALER,
}


@dataclass(frozen=True)
class FinishPlan:
    """What to do to a rendered clip (from a JobSpec's ``interpolate``, ``fps_out`` and
    ``upscale``)."""

    interpolate: int = 1
    fps_out: int | None = None
    upscale: int = 1

    @classmethod
    def of(cls, spec: JobSpec, *, upscaled: int = 1, interpolated: int = 1) -> FinishPlan:
        """`upscaled`: the factor the backend already rendered at (``RenderPlan.upscaled``,
        LTX's latent upsampler); only what is left is asked of the finish step.
        `interpolated`: the model drew only every n-th frame (``RenderPlan.interpolated``),
        so RIFE makes n times the frames, and the member's own smoothing on top."""
        upscale = getattr(spec, "upscale", 1) or 1
        fps_out = getattr(spec, "fps_out", None)
        interpolate = getattr(spec, "interpolate", 1) or 1
        return cls(
            interpolate=1 if fps_out else interpolate * max(1, interpolated),
            fps_out=fps_out,
            upscale=max(1, upscale // max(1, upscaled)),
        )

    @property
    def smooth(self) -> bool:
        return self.interpolate > 1 or self.fps_out is not None

    @property
    def active(self) -> bool:
        return self.smooth or self.upscale > 1


@dataclass(frozen=True)
class Method:
    """How a finish will run on this machine, decided by :func:`check`."""

    device: str
    flow_side: int | None = None
    """Smooth: estimate the motion at this long side (None: at full size)."""
    seconds: float | None = None
    """The estimate the decision was made on (CPU only)."""


def weights_path(weights: FinishWeights) -> Path:
    """The local weight file: the environment's override, else the hub cache. Never
    downloads; raises FinishUnavailable with what to run when it is not here."""
    override = os.environ.get(weights.env, "").strip()
    if override:
        path = Path(override).expanduser()
        if not path.is_file():
            raise FinishUnavailable(
                f"{weights.env} names {override!r}, which is not a file; point it at the "
                f"{weights.label} weights or unset it."
            )
        return path
    from pipeline.backends.hub import cached_file

    found = cached_file(weights.repo_id, weights.filename)
    if found is None:
        raise FinishUnavailable(
            f"The {weights.label} weights are not downloaded on this machine; run "
            f"`python -m pipeline download {weights.name}` (or set {weights.env} to a local file)."
        )
    return Path(found)


def require_weights(plan: FinishPlan, *, model: str | None = None) -> None:
    """Raise FinishUnavailable now when a finish `plan` asks for has no weights here. With
    `model` (a preset name, or ``auto``) an LTX preset whose latent upsampler is downloaded
    needs no Real-ESRGAN: it upscales inside the render."""
    if plan.upscale > 1 and not _latent_upscale_here(model):
        weights_path(UPSCALER)
    if plan.smooth:
        weights_path(RIFE)


def timeline(
    count: int, fps: float, *, interpolate: int = 1, fps_out: int | None = None
) -> tuple[list[float], float]:
    """(each output frame's place in input-frame units, the output rate).

    ``interpolate=k`` puts k − 1 frames between each pair: (n − 1)·k + 1 frames at k × fps.
    ``fps_out`` spreads round((n − 1)·fps_out / fps) + 1 frames evenly from the first frame
    to the last, so both ends stay originals and the length changes by under half a frame."""
    if count < 2:
        return [0.0] * count, float(fps)
    if fps_out is not None:
        if fps_out <= fps:
            raise InputError(
                f"Smoothing to {fps_out} fps needs a clip below that rate; this one already "
                f"plays at {fps:g} fps."
            )
        steps = max(1, round((count - 1) * fps_out / fps))
        return [k * (count - 1) / steps for k in range(steps + 1)], float(fps_out)
    if interpolate <= 1:
        return [float(k) for k in range(count)], float(fps)
    steps = (count - 1) * interpolate
    return [k / interpolate for k in range(steps + 1)], float(fps) * interpolate


def new_frames(positions: list[float]) -> int:
    """How many of `positions` fall between two frames (the ones the network makes)."""
    return sum(1 for p in positions if abs(p - round(p)) > 1e-6)


def _device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def check(
    plan: FinishPlan, *, frames: int, width: int, height: int, fps: float, device: str | None = None
) -> dict[str, Method]:
    """Decide how each asked-for finish runs here, before anything is rendered.

    Raises InputError when the clip cannot take it (already at the asked rate, too large to
    upscale) and FinishUnavailable when this machine cannot (weights not downloaded, a CPU
    too slow for the clip's length)."""
    if not plan.active:
        return {}
    device = device or _device()
    seconds = max(frames / max(fps, 1e-6), 1.0)
    budget = CPU_BUDGET_PER_SECOND * seconds
    methods: dict[str, Method] = {}
    if plan.upscale > 1:
        side = max(width, height) * plan.upscale
        if side > MAX_UPSCALED_SIDE:
            raise InputError(
                f"Upscaling {width}×{height} by {plan.upscale} would make its long side {side} "
                f"pixels; the most is {MAX_UPSCALED_SIDE}. Choose a smaller size or no upscaling."
            )
        weights_path(UPSCALER)
        method = Method(device)
        if device == "cpu" and frames * width * height > TRIVIAL_PIXELS:
            from pipeline.finish.upscale import estimate_seconds

            cost = estimate_seconds(frames, width, height)
            if cost > budget:
                raise FinishUnavailable(
                    f"Upscaling needs a GPU: this machine's CPU would take about "
                    f"{_duration(cost)} for this {seconds:.0f} s clip."
                )
            method = Method(device, seconds=cost)
        methods["upscale"] = method
        width, height = width * plan.upscale, height * plan.upscale
        budget -= method.seconds or 0.0
    if plan.smooth:
        positions, _ = timeline(frames, fps, interpolate=plan.interpolate, fps_out=plan.fps_out)
        weights_path(RIFE)
        methods["smooth"] = _smooth_method(
            new_frames(positions), width, height, device, budget, seconds
        )
    return methods


def _smooth_method(
    made: int, width: int, height: int, device: str, budget: float, seconds: float
) -> Method:
    if device != "cpu" or made * width * height <= TRIVIAL_PIXELS:
        return Method(device)
    from pipeline.finish.interpolate import estimate_seconds

    full = estimate_seconds(made, width, height)
    if full <= budget:
        return Method(device, seconds=full)
    if max(width, height) > PROXY_SIDE:
        cheap = estimate_seconds(made, width, height, flow_side=PROXY_SIDE)
        if cheap <= budget:
            return Method(device, flow_side=PROXY_SIDE, seconds=cheap)
    else:
        cheap = full
    raise FinishUnavailable(
        f"Smoothing needs a GPU for this clip: this machine's CPU would take about "
        f"{_duration(cheap)} for its {seconds:.0f} s (the limit is {_duration(budget)})."
    )


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{math.ceil(seconds)} s"
    if seconds < 5400:
        return f"{math.ceil(seconds / 60)} min"
    return f"{seconds / 3600:.1f} h"


def apply(
    frames: np.ndarray,
    fps: float,
    plan: FinishPlan,
    methods: Mapping[str, Method],
    *,
    emit: Callable[[Progress], None] = lambda p: None,
    should_stop: Callable[[], bool] = lambda: False,
) -> tuple[np.ndarray, float, list[str]]:
    """The finished frames, their rate and notes for the member. Upscaling runs first: it
    costs per frame, so it does fewer of them."""
    notes: list[str] = []
    if plan.upscale > 1:
        from pipeline.finish.upscale import upscale_frames

        method = methods.get("upscale") or Method(_device())
        frames = upscale_frames(
            frames, weights_path(UPSCALER), scale=plan.upscale, device=method.device,
            emit=emit, should_stop=should_stop,
        )
    if plan.smooth:
        from pipeline.finish.interpolate import interpolate_frames

        method = methods.get("smooth") or Method(_device())
        positions, fps = timeline(
            len(frames), fps, interpolate=plan.interpolate, fps_out=plan.fps_out
        )
        frames = interpolate_frames(
            frames, positions, weights_path(RIFE), device=method.device,
            flow_side=method.flow_side, emit=emit, should_stop=should_stop,
        )
        if method.flow_side:
            notes.append(
                "Smoothed with motion estimated at reduced size (no GPU here): fine, fast "
                "motion may look softer."
            )
    return frames, fps, notes


def _latent_upscale_here(model: str | None) -> bool:
    if not model:
        return False
    from pipeline.finish.latent import latent_upscale_available

    return latent_upscale_available(model)


def support(
    seconds: float = 5.0,
    fps: int = 24,
    size: tuple[int, int] = (1280, 720),
    *,
    model: str | None = None,
) -> dict[str, str | None]:
    """For a worker to tell the job layer at start: "smooth" and "upscale" → None when this
    machine can finish a typical clip (`seconds` at `fps`, `size`), else the sentence why not,
    so a job asking for it can be refused before it is charged. A worker of an LTX preset
    (`model`) whose latent upsampler is downloaded can always upscale: on its GPU, in the
    render."""
    frames = round(seconds * fps) + 1
    answers: dict[str, str | None] = {}
    for name, plan, weights in (
        ("smooth", FinishPlan(interpolate=2), RIFE), ("upscale", FinishPlan(upscale=2), UPSCALER)
    ):
        if name == "upscale" and _latent_upscale_here(model):
            answers[name] = None
            continue
        try:
            # Missing weights first: that answer needs no torch, so a worker without them
            # starts as fast as before.
            weights_path(weights)
            check(plan, frames=frames, width=size[0], height=size[1], fps=fps)
            answers[name] = None
        except (FinishUnavailable, InputError) as exc:
            answers[name] = exc.message
    return answers


def render_support(
    models: Iterable[str], answers: Mapping[str, str | None]
) -> dict[str, dict[str, str | None]]:
    """Per model a worker serves, the answers that differ from `answers` (:func:`support`:
    what the machine can finish on frames) for a job rendered on it: an LTX preset whose
    latent upsampler is downloaded upscales inside the render, without Real-ESRGAN. A
    delivered clip's MP4 (the Upscale 2× button) still needs Real-ESRGAN: `answers` alone.
    No torch."""
    if answers.get("upscale") is None:
        return {}
    return {model: {"upscale": None} for model in models if _latent_upscale_here(model)}


def costs_here(seconds: float = 5.0, fps: int = 24, size: tuple[int, int] = (1280, 720)) -> list[str]:
    """Lines for ``python -m pipeline models``: what Smooth and Upscale 2× cost on this
    machine for a `seconds` clip of `size` at `fps` (timed with random weights: the same work
    as the real ones), how they would run, and whether their weights are here."""
    device = _device()
    frames = round(seconds * fps) + 1
    width, height = size
    clip = f"{seconds:g} s of {width}×{height}"
    lines = []
    for plan, weights in ((FinishPlan(interpolate=2), RIFE), (FinishPlan(upscale=2), UPSCALER)):
        label = f"smooth {fps}→{fps * 2} fps" if plan.smooth else "upscale 2×"
        try:
            weights_path(weights)
            have = ""
        except FinishUnavailable:
            have = f"; not downloaded (python -m pipeline download {weights.name})"
        if device != "cpu":
            lines.append(f"{label}: on the GPU (fp16){have}")
            continue
        budget = CPU_BUDGET_PER_SECOND * seconds
        if plan.smooth:
            from pipeline.finish.interpolate import estimate_seconds as smooth_cost

            made = frames - 1
            full = smooth_cost(made, width, height)
            cheap = smooth_cost(made, width, height, flow_side=PROXY_SIDE)
            if full <= budget:
                how = f"yes on the CPU, about {_duration(full)} for {clip}"
            elif cheap <= budget:
                how = (f"yes on the CPU with motion at {PROXY_SIDE} px, about {_duration(cheap)} "
                       f"for {clip} (full size: {_duration(full)})")
            else:
                how = (f"no on this CPU: about {_duration(full)} for {clip} "
                       f"({_duration(cheap)} with motion at {PROXY_SIDE} px; limit "
                       f"{_duration(budget)}): needs a GPU")
        else:
            from pipeline.finish.upscale import estimate_seconds as upscale_cost

            cost = upscale_cost(frames, width, height)
            how = (f"yes on the CPU, about {_duration(cost)} for {clip}" if cost <= budget else
                   f"no on this CPU: about {_duration(cost)} for {clip} (limit "
                   f"{_duration(budget)}): needs a GPU")
        lines.append(f"{label}: {how}{have}")
    from pipeline.finish.latent import latent_upscale_available
    from pipeline.presets import PRESETS

    ltx = [name for name, preset in PRESETS.items() if preset.latent_upscale is not None]
    have = (
        "downloaded" if ltx and latent_upscale_available(ltx[0])
        else f"not downloaded (python -m pipeline download {LTX_UPSCALER.name})"
    )
    lines.append(
        f"upscale 2× on {' and '.join(ltx)}: inside the render (LTX's latent upsampler, then 3 "
        f"steps at twice the size), Real-ESRGAN where it is missing; {have}"
    )
    return lines
