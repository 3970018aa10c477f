"""GPU speed: full-size models from their published configs, plain diffusers vs. our path.

For each model (LTX-Video 2B distilled at 768×512×121, LTX-2.3 22B distilled with its sound
at 768×512×121, Wan 2.2 TI2V-5B at 1280×704×121, Wan 2.2 I2V-A14B at 832×480×81) the pipeline is built from pipeline/configs/ with random weights
in bf16 directly on the GPU, then timed two ways on the same settings (the preset's plan):

- plain: one diffusers pipeline call with default attention (SDPA), then libx264;
- optimised: the project's path, :func:`pipeline.animate.animate` through
  :class:`DiffusionBackend` with regional torch.compile, the fastest installed attention
  kernel, NVENC when ffmpeg has it, and (``--cache``) the first-block cache.

Both include the text encoder and the VAE decode. Reported per model: seconds per clip end to
end (median), seconds per denoising step (denoiser forwards timed with CUDA events, CFG's two
passes counted as one step), peak GPU memory, and model FLOP utilisation: the denoiser's FLOPs
per forward (counted once with torch's FlopCounterMode) times forwards, over the denoiser's
time, against the GPU's dense bf16 peak.

Random weights time the same as trained ones, with one exception: the first-block cache skips
steps when consecutive residuals are close, which depends on the weights, so its figure is
only indicative and it is off unless asked for. `--steps N` times N steps and extrapolates the
clip to the preset's steps with the measured seconds per step (for Wan 14B's 40 CFG steps).

    python -m bench gpu                               # every model the GPU can hold
    python -m bench.gpu --models ltx-2b --repeats 3   # one model, this module alone
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bench import Figure
from bench.random_weights import CONFIGS, build_pipeline

# Dense bf16 tensor-core peaks (no sparsity), from NVIDIA's datasheets; matched in order.
PEAK_BF16_FLOPS: tuple[tuple[str, float], ...] = (
    ("H100 PCIe", 756e12),
    ("H100 NVL", 835e12),
    ("H100", 989e12),
    ("H200", 989e12),
    ("GH200", 989e12),
    ("B200", 2250e12),
    ("A100", 312e12),
    ("L40S", 362e12),
    ("L40", 181e12),
    ("L4", 121e12),
    ("A10G", 70e12),
    ("RTX 4090", 165e12),
    ("RTX 3090", 71e12),
)


@dataclass(frozen=True)
class Case:
    name: str
    preset: str
    configs: Path
    width: int
    height: int
    frames: int
    fps: int
    steps: int
    target_s: float | None = None
    """End-to-end seconds promised for the optimised path on one H100."""
    label: str = ""
    timed_steps: int | None = None
    """Steps actually run when fewer than `steps` (the rest extrapolated), so one model's
    plain and optimised runs fit in minutes: Wan's 50 or 40 CFG steps take minutes per clip."""

    @property
    def duration(self) -> float:
        return (self.frames - 1) / self.fps


CASES: dict[str, Case] = {
    "ltx-2b": Case(
        "ltx-2b", "ltx-2b", CONFIGS / "ltx-2b", 768, 512, 121, 24, 8, 3.0,
        "LTX-Video 0.9.8 2B distilled, 768×512, 121 frames, 8 steps, no CFG",
    ),
    "ltx2": Case(
        "ltx2", "ltx2", CONFIGS / "ltx2-distilled", 768, 512, 121, 24, 8, None,
        "LTX-2.3 22B distilled with sound, 768×512, 121 frames, 8 steps, no guidance passes",
    ),
    "wan-5b": Case(
        "wan-5b", "wan", CONFIGS / "wan-5b", 1280, 704, 121, 24, 50, None,
        "Wan 2.2 TI2V-5B, 1280×704, 121 frames, 50 steps, CFG", timed_steps=10,
    ),
    "wan-14b": Case(
        "wan-14b", "wan-14b", CONFIGS / "wan-14b", 832, 480, 81, 16, 40, 60.0,
        "Wan 2.2 I2V-A14B, 832×480, 81 frames, 40 steps, CFG", timed_steps=8,
    ),
}
RATIO_TARGET = 1.5


@dataclass
class Timing:
    """One variant's measurements, medians over the repeats."""

    clip_s: list[float] = field(default_factory=list)
    denoiser_s: list[float] = field(default_factory=list)
    forwards: int = 0
    steps: int = 0
    peak_gib: float | None = None
    first_call_s: float = 0.0
    note: str = ""

    @property
    def per_step(self) -> float:
        return statistics.median(self.denoiser_s) / max(1, self.steps)


class DenoiserClock:
    """Times every denoiser forward: CUDA events on a GPU (no sync inside the loop), the wall
    clock on a CPU. Hooks sit on the top-level denoiser, which regional compile leaves eager."""

    def __init__(self, pipe: Any) -> None:
        import torch

        self.cuda = torch.cuda.is_available() and _device_of(pipe).type == "cuda"
        self.modules = [
            m for m in (getattr(pipe, n, None) for n in ("transformer", "transformer_2", "unet")) if m is not None
        ]
        self.spans: list[tuple[Any, Any]] = []
        self.first_call: tuple[Any, tuple[Any, ...], dict[str, Any]] | None = None
        self.paused = False
        self._open: Any = None
        self._handles = []
        for module in self.modules:
            self._handles.append(module.register_forward_pre_hook(self._before, with_kwargs=True))
            self._handles.append(module.register_forward_hook(self._after))

    def _stamp(self) -> Any:
        import torch

        if self.cuda:
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            return event
        return time.perf_counter()

    def _before(self, module: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        if self.paused:
            return
        if self.first_call is None:
            self.first_call = (module, args, dict(kwargs))
        self._open = self._stamp()

    def _after(self, module: Any, args: tuple[Any, ...], output: Any) -> None:
        if self.paused or self._open is None:
            return
        self.spans.append((self._open, self._stamp()))
        self._open = None

    def reset(self) -> None:
        self.spans.clear()

    def seconds(self) -> float:
        """Denoiser time since the last reset (synchronises the GPU)."""
        import torch

        if self.cuda:
            torch.cuda.synchronize()
            return sum(start.elapsed_time(end) for start, end in self.spans) / 1000.0
        return sum(end - start for start, end in self.spans)

    def flops_per_forward(self) -> float:
        """The denoiser's FLOPs for one forward of the first call's shapes (run once more)."""
        import torch
        from torch.utils.flop_counter import FlopCounterMode

        if self.first_call is None:
            return 0.0
        module, args, kwargs = self.first_call
        self.paused = True
        try:
            with torch.no_grad(), FlopCounterMode(display=False) as counter:
                module(*args, **kwargs)
        finally:
            self.paused = False
        return float(counter.get_total_flops())

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()


def _device_of(pipe: Any) -> Any:
    import torch

    for name in ("transformer", "unet", "vae"):
        module = getattr(pipe, name, None)
        if module is not None:
            return next(module.parameters()).device
    return torch.device("cpu")


def peak_flops(device_name: str) -> float | None:
    for key, flops in PEAK_BF16_FLOPS:
        if key in device_name:
            return flops
    return None


def sample_photo(width: int = 1024, height: int = 683) -> bytes:
    """A phone-like JPEG: smooth gradients and fine noise, so intake and encoding do real work."""
    from PIL import Image

    rng = np.random.default_rng(0)
    x = np.linspace(0, 1, width, dtype=np.float32)[None, :]
    y = np.linspace(0, 1, height, dtype=np.float32)[:, None]
    x, y = np.broadcast_arrays(x, y)
    rgb = np.stack([200 * x + 30 * y, 150 * y + 40, 120 * (1 - x) + 60 * y], axis=-1)
    rgb += rng.normal(0, 6, rgb.shape)
    buffer = io.BytesIO()
    Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8)).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def _sync() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _reset_peak() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def _peak_gib() -> float | None:
    import torch

    return torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else None


def _planned_peak_gib(preset: str) -> tuple[float, str] | None:
    """(GiB, clip) the memory planner counts for `preset` all on the GPU, without its reserve."""
    from pipeline.memory import Tier, footprint_for, need_for
    from pipeline.memory.planner import GPU_RESERVE

    footprint = footprint_for(preset)
    if footprint is None:
        return None
    need = need_for(footprint, Tier("bf16", "none"))
    return (need.gpu_bytes - GPU_RESERVE) / 2**30, footprint.clip


def plain_call(
    case: Case, pipe: Any, *, device: str, steps: int | None = None
) -> tuple[Any, Any, dict[str, Any]]:
    """The request, the plan and the pipeline call's keyword arguments for `case` (its timed
    steps) on the sample photo: one plain diffusers call as its docs write it (SDPA, nothing
    offloaded), without generator or output type."""
    from contract import AnimateRequest, BackendOptions
    from pipeline.backends.diffusion import DiffusionBackend
    from pipeline.intake import fit, load_photo

    photo = sample_photo()
    request = AnimateRequest(
        image=photo,
        prompt="a woman smiles and her hair moves in a light breeze",
        seed=1,
        duration=case.duration,
        fps=case.fps,
        width=case.width,
        height=case.height,
        steps=steps or case.timed_steps or case.steps,
    )
    backend = DiffusionBackend.from_pipeline(
        pipe,
        preset=case.preset,
        name=case.name,
        options=BackendOptions(device=device, offload="none", attention="native"),
    )
    start = load_photo(photo).image
    plan = backend.plan(request, start.size)
    return request, plan, backend.call_arguments(plan, fit(start, plan.width, plan.height))


def measure_case(
    case: Case,
    pipe: Any,
    *,
    device: str,
    repeats: int = 2,
    steps: int | None = None,
    cache: bool = False,
    compile: bool = True,
    log: Callable[[str], None] = lambda line: None,
) -> list[Figure]:
    """Time `pipe` plainly, then through the project's optimised path; figures for `case`."""
    import torch

    from contract import BackendOptions
    from pipeline.animate import animate
    from pipeline.backends.diffusion import DiffusionBackend
    from pipeline.backends.frames import to_uint8
    from pipeline.encode import encode_mp4, nvenc_available

    clock = DenoiserClock(pipe)

    # --- plain: the pipeline call as the diffusers docs write it, on the same plan ------------
    request, plan, kwargs = plain_call(case, pipe, device=device, steps=steps)
    plain = Timing(steps=plan.steps)

    def plain_clip() -> float:
        started = time.perf_counter()
        output = pipe(**kwargs, generator=torch.Generator("cpu").manual_seed(plan.seed), output_type="np")
        encode_mp4(to_uint8(output.frames[0]), plan.fps, encoder="libx264")
        return time.perf_counter() - started

    log(f"{case.name}: plain warm-up")
    plain.first_call_s = plain_clip()
    flops = clock.flops_per_forward()
    for _ in range(repeats):
        clock.reset()
        _reset_peak()
        plain.clip_s.append(plain_clip())
        plain.denoiser_s.append(clock.seconds())
        plain.forwards = len(clock.spans)
        plain.peak_gib = _peak_gib()
    log(f"{case.name}: plain {statistics.median(plain.clip_s):.2f} s/clip")

    # --- optimised: the project's path (compile, attention kernel, NVENC, optional cache) ----
    fast_backend = DiffusionBackend.from_pipeline(
        pipe,
        preset=case.preset,
        name=case.name,
        options=BackendOptions(
            device=device, offload="none", attention="auto", compile=compile, cache=cache
        ),
    )
    fast = Timing(steps=plan.steps)
    started = time.perf_counter()
    log(f"{case.name}: optimised warm-up (compiles)")
    animate(request, fast_backend)
    fast.first_call_s = time.perf_counter() - started
    for _ in range(repeats):
        clock.reset()
        _reset_peak()
        started = time.perf_counter()
        result = animate(request, fast_backend)
        _sync()
        fast.clip_s.append(time.perf_counter() - started)
        fast.denoiser_s.append(clock.seconds())
        fast.forwards = len(clock.spans)
        fast.peak_gib = _peak_gib()
    clock.remove()
    log(f"{case.name}: optimised {statistics.median(fast.clip_s):.2f} s/clip")
    fast.note = (
        f"attention {fast_backend.attention}, compile {'on' if compile and device != 'cpu' else 'off'}, "
        f"cache {'on' if cache else 'off'}, encoder {'NVENC' if nvenc_available() else 'libx264'}; "
        f"stages {', '.join(f'{k} {v:.2f} s' for k, v in result.timings.items())}"
    )
    return _figures(case, plan.steps, plain, fast, flops, device)


def measure_takes(
    case: Case,
    pipe: Any,
    *,
    device: str,
    takes: int = 2,
    steps: int | None = None,
    log: Callable[[str], None] = lambda line: None,
) -> list[Figure]:
    """Variations (issue 15): `takes` clips of one photo rendered one after another, as the
    worker renders them, against one pipeline call with ``num_videos_per_prompt=takes``; the
    same plan, seeds and steps. Reports batched / back-to-back seconds (below 1: batching is
    faster) with each side's denoiser time and peak memory. Counted on `meta`, batching can
    save only the re-reading of the weights per step (README: at most a few per cent)."""
    import torch


    _, plan, kwargs = plain_call(case, pipe, device=device, steps=steps)
    seeds = [plan.seed + take for take in range(takes)]
    clock = DenoiserClock(pipe)

    def back_to_back() -> int:
        for seed in seeds:
            pipe(**kwargs, generator=torch.Generator("cpu").manual_seed(seed), output_type="np")
        return takes

    def batched() -> int:
        generators = [torch.Generator("cpu").manual_seed(seed) for seed in seeds]
        output = pipe(**kwargs, num_videos_per_prompt=takes, generator=generators, output_type="np")
        return len(output.frames)

    timings: dict[str, tuple[float, float, float | None]] = {}
    try:
        for label, call in (("back to back", back_to_back), ("batched", batched)):
            log(f"{case.name}: {takes} takes {label}, warm-up")
            call()
            clock.reset()
            _reset_peak()
            started = time.perf_counter()
            made = call()
            _sync()
            if made != takes:
                raise RuntimeError(f"{label}: {made} clips from {takes} takes")
            timings[label] = (time.perf_counter() - started, clock.seconds(), _peak_gib())
            log(f"{case.name}: {takes} takes {label} {timings[label][0]:.2f} s")
    finally:
        clock.remove()
    (one, one_denoise, one_peak), (many, many_denoise, many_peak) = (
        timings["back to back"], timings["batched"]
    )
    peaks = (
        f"; peak {one_peak:.1f} GiB back to back, {many_peak:.1f} GiB batched"
        if one_peak is not None and many_peak is not None else ""
    )
    return [
        Figure(
            f"{case.name}_takes{takes}_batched_vs_back_to_back", many / one, "×",
            detail=f"{case.label}; {takes} takes at {plan.steps} steps: back to back {one:.2f} s "
            f"(denoiser {one_denoise:.2f} s), batched {many:.2f} s (denoiser {many_denoise:.2f} s)"
            f"{peaks}",
        )
    ]


def _figures(
    case: Case, steps: int, plain: Timing, fast: Timing, flops: float, device: str
) -> list[Figure]:
    import torch

    name = torch.cuda.get_device_name(0) if device.startswith("cuda") else "cpu"
    peak = peak_flops(name) if device.startswith("cuda") else None
    extrapolate = case.steps - steps
    figures: list[Figure] = []
    clips: dict[str, float] = {}
    for label, timing in (("plain", plain), ("optimised", fast)):
        clip = statistics.median(timing.clip_s)
        if extrapolate:
            clip += extrapolate * timing.per_step
        clips[label] = clip
        how = (
            f"{steps} steps timed, {case.steps} extrapolated at {timing.per_step:.3f} s/step"
            if extrapolate
            else f"median of {len(timing.clip_s)}"
        )
        target = case.target_s if label == "optimised" else None
        figures.append(
            Figure(
                f"{case.name}_{label}_s_per_clip", clip, "s", target,
                detail=f"{case.label}; {how}; first call {timing.first_call_s:.1f} s"
                + (f"; {timing.note}" if timing.note else ""),
            )
        )
        figures.append(
            Figure(
                f"{case.name}_{label}_s_per_step", timing.per_step, "s",
                detail=f"denoiser time / {steps} steps ({timing.forwards} forwards)",
            )
        )
        if timing.peak_gib is not None:
            figures.append(Figure(f"{case.name}_{label}_peak_memory", timing.peak_gib, "GiB"))
            planned = _planned_peak_gib(case.preset)
            if planned is not None and label == "plain":
                # The calibration the memory planner waits for: what it counts on `meta`
                # (weights + the largest stage's live tensors, no reserve) beside this peak.
                figures.append(
                    Figure(
                        f"{case.name}_planner_counted_peak", planned[0], "GiB",
                        detail=f"counted at {planned[1]}; measured / counted = "
                        f"{timing.peak_gib / planned[0]:.2f}",
                    )
                )
        if flops:
            achieved = flops * timing.forwards / statistics.median(timing.denoiser_s)
            detail = f"{flops / 1e12:.1f} TFLOP per denoiser forward, {achieved / 1e12:.0f} TFLOP/s"
            if peak:
                figures.append(
                    Figure(
                        f"{case.name}_{label}_mfu", 100 * achieved / peak, "%",
                        detail=f"{detail} of {peak / 1e12:.0f} peak ({name})",
                    )
                )
            else:
                figures.append(Figure(f"{case.name}_{label}_tflops", achieved / 1e12, "TFLOP/s", detail=detail))
    figures.append(
        Figure(
            f"{case.name}_speedup", clips["plain"] / clips["optimised"], "×", RATIO_TARGET,
            higher_is_better=True, detail="plain s/clip ÷ optimised s/clip, same plan",
        )
    )
    return figures


def fits(case: Case, free_gib: float) -> bool:
    """Whether the bf16 weights (counted from the configs on the meta device) leave room."""
    from bench.random_weights import parameter_counts
    from pipeline.presets import get_preset

    preset = get_preset(case.preset)
    pipe = build_pipeline(case.configs, device="meta", fp32_components=preset.fp32_components)
    weights = sum(
        n * (4 if name in preset.fp32_components else 2) for name, n in parameter_counts(pipe).items()
    )
    return weights / 2**30 + 12 < free_gib


def run(
    names: list[str] | None = None,
    *,
    repeats: int = 2,
    steps: int | None = None,
    cache: bool = False,
    compile: bool = True,
    takes: int = 0,
    takes_only: bool = False,
) -> list[Figure]:
    """Every case (or `names`) that fits the GPU; nothing on a machine without CUDA. `takes`
    (2 or 4): also time that many takes back to back against one batched call."""
    import torch

    from pipeline.presets import get_preset

    if not torch.cuda.is_available():
        print("gpu: no CUDA GPU on this machine; GPU figures not measured", file=sys.stderr)
        return []
    figures: list[Figure] = []
    for name in names or list(CASES):
        case = CASES[name]
        free = torch.cuda.mem_get_info()[0] / 2**30
        if not fits(case, free):
            print(f"gpu: {name} does not fit in {free:.0f} GiB free; skipped", file=sys.stderr)
            continue
        started = time.perf_counter()
        pipe = None
        try:
            pipe = build_pipeline(
                case.configs, device="cuda", fp32_components=get_preset(case.preset).fp32_components
            )
            _sync()
            print(f"gpu: built {name} in {time.perf_counter() - started:.1f} s", file=sys.stderr)
            if not takes_only:
                figures += measure_case(
                    case,
                    pipe,
                    device="cuda",
                    repeats=repeats,
                    steps=steps,
                    cache=cache,
                    compile=compile,
                    log=lambda line: print(f"gpu: {line}", file=sys.stderr, flush=True),
                )
            if takes > 1:
                torch._dynamo.reset()  # the plain pipeline again, not the compiled blocks
                figures += measure_takes(
                    case, pipe, device="cuda", takes=takes, steps=steps,
                    log=lambda line: print(f"gpu: {line}", file=sys.stderr, flush=True),
                )  # fmt: skip
        except Exception as exc:  # noqa: BLE001 - one model's failure must not lose the others
            first = (str(exc).strip().splitlines() or [""])[0][:300]
            print(f"gpu: {name} failed: {type(exc).__name__}: {first}", file=sys.stderr)
        finally:
            del pipe
            torch.cuda.empty_cache()
            torch._dynamo.reset()
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.gpu", description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="*", choices=list(CASES), default=None)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument(
        "--steps", type=int, default=None,
        help="time this many steps and extrapolate the rest (default: all for LTX, 10 for Wan 5B, 8 for Wan 14B)",
    )
    parser.add_argument("--cache", action="store_true", help="also enable the first-block cache")
    parser.add_argument("--no-compile", action="store_true")
    parser.add_argument(
        "--takes", type=int, choices=(2, 4), default=0,
        help="also time that many takes back to back against one batched call (issue 15)",
    )
    parser.add_argument("--takes-only", action="store_true", help="with --takes: only that")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    figures = run(
        args.models, repeats=args.repeats, steps=args.steps, cache=args.cache,
        compile=not args.no_compile, takes=args.takes, takes_only=args.takes_only,
    )  # fmt: skip
    if not figures:
        return 0
    from bench.__main__ import report

    return report({"gpu": figures}, args.out, suffix="-gpu")


if __name__ == "__main__":
    sys.exit(main())
