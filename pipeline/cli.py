"""``python -m pipeline``: animate a photo offline, or list the models this machine can run.

The CLI is the pipeline without Discord: the same request type, the same orchestrator, the
same backends. Its contract is scriptable: the output path on stdout, a progress bar on
stderr, exit 0 on success; a problem the user can fix (bad input, unusable model) exits 2 with
one line on stderr saying what is wrong and what to do, never a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import re
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from contract import (
    CAMERA,
    AnimateRequest,
    AnimateResult,
    Cancelled,
    Failed,
    InputError,
    PipelineError,
    Progress,
    Takes,
    random_seed,
)
from pipeline.cli_args import UsageError, build_parser

if TYPE_CHECKING:
    from pipeline.memory.machine import Machine

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_CANCELLED = 130

logger = logging.getLogger("pipeline")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit status (0 ok, 1 failed, 2 bad input/model, 130 cancelled)."""
    parser = build_parser()
    try:
        args = parser.parse_args(list(argv) if argv is not None else None)
    except UsageError as exc:
        return _fail(str(exc), EXIT_USAGE)
    except SystemExit as exc:  # --help
        return int(exc.code or 0)
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    handler = _log_to_stderr(
        logging.DEBUG
        if args.verbose
        else logging.WARNING
        if getattr(args, "quiet", False)
        else logging.INFO
    )
    redirect: contextlib.AbstractContextManager[Any] = contextlib.nullcontext()
    if not getattr(args, "quiet", False):  # quiet draws no bar (and skips tqdm's import)
        from tqdm.contrib.logging import logging_redirect_tqdm

        # Log lines are printed above the progress bar instead of through it.
        redirect = logging_redirect_tqdm(loggers=[logger])
    try:
        with redirect:
            if args.command == "models":
                return _models(args)
            if args.command == "download":
                return _download(args)
            return _animate(args)
    except KeyboardInterrupt:
        return _fail("Cancelled.", EXIT_CANCELLED)
    finally:
        logger.removeHandler(handler)


def _animate(args: argparse.Namespace) -> int:
    if args.model == CAMERA:
        # A plain camera clip never imports numpy; a loop's dissolve, a finish or a machine
        # without the ffmpeg program does, and then OpenBLAS would start a spinning thread per
        # core (~40 ms of CPU on two) for linear algebra the camera never does. An explicit
        # setting wins.
        os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    from pipeline.backends import BackendOptions, load_backend

    try:
        image = _read(args.image, "Image")
        end_image = _read(args.end_image, "End image") if args.end_image else None
        width, height = args.size if args.size else (None, None)
        seed = args.seed if args.seed is not None else random_seed()
        request = AnimateRequest(
            image=image,
            prompt=args.prompt,
            negative_prompt=args.negative,
            seed=seed,
            camera=args.camera,
            motion=args.motion,
            duration=args.duration,
            fps=args.fps,
            model=args.model,
            width=width,
            height=height,
            steps=args.steps,
            loop=args.loop,
            audio=args.audio,
            end_image=end_image,
            max_bytes=args.max_bytes,
            variations=args.variations,
            interpolate=args.interpolate,
            fps_out=args.fps_out,
            upscale=args.upscale,
        )
        options = BackendOptions(
            device=args.device,
            dtype=args.dtype,
            offload=args.offload,
            weights=args.weights,
            compile=args.compile,
            cache=args.cache,
            half_frames=args.half_frames,
            attention=args.attention,
            low_memory=args.low_memory,
            loras=(("*", tuple(args.lora)),) if args.lora else (),
        )
    except UsageError as exc:
        return _fail(str(exc), EXIT_USAGE)
    except InputError as exc:
        return _fail(exc.message, EXIT_USAGE)
    except ValueError as exc:
        return _fail(str(exc), EXIT_USAGE)

    try:
        # Judge the photo before loading a model that may take a minute and tens of GB.
        from pipeline.intake import load_photo, open_photo

        photo = open_photo(image)
        if args.model != CAMERA:  # the camera loads nothing: its photo is decoded once planned
            photo.decode()
        if end_image is not None:
            load_photo(end_image)
        from pipeline.finish import FinishPlan, require_weights

        # Before a model load that may take minutes (an LTX preset may upscale in its latents).
        require_weights(FinishPlan.of(request), model=args.model)
    except PipelineError as exc:
        return _fail(exc.message, _exit_code(exc.kind))

    if args.out:
        problem = _out_problem(Path(args.out))
        if problem:
            return _fail(problem, EXIT_USAGE)
    try:
        backend = load_backend(args.model, options)
        if args.model == CAMERA:
            # Its photo judged now, decoded at the size its plan covers (the same decode
            # animate() then takes): a broken photo is still one line, before anything else.
            plan = backend.plan(request, photo.size)
            photo.decode(cover=plan.source_size or (plan.width, plan.height))
    except PipelineError as exc:
        return _fail(exc.message, _exit_code(exc.kind))
    except ImportError as exc:
        return _fail(f"{exc}; install the pipeline dependencies (pip install -e .).", EXIT_USAGE)

    out = (
        Path(args.out)
        if args.out
        else Path.cwd() / _default_name(args.image, backend.info.name, seed)
    )
    if backend.info.is_ai is False:
        logger.info("%s: a camera move over the photo, not an AI video", backend.info.label)

    stop = threading.Event()
    bar = _ProgressBar(enabled=not args.quiet)
    previous = _catch_sigint(stop)
    result: AnimateResult | Takes | Failed | None = None
    failure: tuple[str, int] | None = None
    try:
        from pipeline.animate import animate
        from pipeline.takes import animate_takes

        if request.variations > 1:
            result = animate_takes(
                request, backend, emit=bar, should_stop=stop.is_set, out_path=str(out), photo=photo
            )
        else:
            result = animate(
                request, backend, emit=bar, should_stop=stop.is_set, out_path=str(out), photo=photo
            )
    except Cancelled:
        failure = ("Cancelled.", EXIT_CANCELLED)
    except PipelineError as exc:
        failure = (exc.message, _exit_code(exc.kind))
    except Exception as exc:  # noqa: BLE001 - the CLI promises one line, not a traceback
        if args.verbose:
            logger.exception("internal error")
        failure = (
            f"Internal error: {exc.__class__.__name__}: {exc} (run with --verbose for the traceback).",
            EXIT_FAILED,
        )
    finally:
        bar.close()  # before any message, so the error is the last line
        _restore_sigint(previous)
        _close(backend)
    if failure is not None:
        return _fail(*failure)

    if isinstance(result, Failed):
        return _fail(result.reason, _exit_code(result.kind))
    if isinstance(result, Takes):
        return _print_takes(result)
    assert isinstance(result, AnimateResult)
    for warning in result.warnings:
        logger.warning("note: %s", warning)
    print(result.path or str(out), flush=True)
    return EXIT_OK


def _print_takes(takes: Takes) -> int:
    """Each take's path on stdout (take order), a failed take as a warning: exit 0 when at
    least one take was made (animate_takes returns a Failed when none was)."""
    for number, made in takes.made:
        for warning in made.warnings:
            logger.warning("note (take %d): %s", number, warning)
        logger.info("take %d: seed %d", number, made.seed)
        print(made.path, flush=True)
    for number, failed in takes.failed:
        logger.warning("take %d failed: %s", number, failed.reason)
    return EXIT_OK


def _models(args: argparse.Namespace) -> int:
    from pipeline.backends import available_models

    if args.table:
        print(_models_table(ram_gib=args.ram or 32))
        return EXIT_OK
    rows = available_models(_described_machine(args))
    if args.json:
        print(json.dumps([row.__dict__ for row in rows], indent=2))
        return EXIT_OK
    table = [("NAME", "RUNS", "HOW", "GPU PEAK", "PFLOP", "NOTE")]
    for r in rows:
        peak = f"{r.gpu_peak_gib:.1f} GiB" if r.gpu_peak_gib is not None else "-"
        pflop = f"{r.denoise_pflop:.3g}" if r.denoise_pflop is not None else "-"
        how = r.how or ("CPU" if not r.is_ai else "-")
        note = r.note if not r.runnable or not r.is_ai else r.note.split(": ", 1)[-1]
        table.append((r.name, "yes" if r.runnable else "no", how, peak, pflop, note))
    widths = [max(len(row[i]) for row in table) for i in range(5)]
    for row in table:
        print("  ".join(cell.ljust(width) for cell, width in zip(row[:5], widths)) + "  " + row[5])
    from pipeline.finish import costs_here

    print()
    for line in costs_here():  # on this machine, whatever --vram/--ram describe
        print(line)
    print(_encoder_line())
    return EXIT_OK


def _encoder_line() -> str:
    """Which H.264 encoder clips get on this machine (pipeline.ffmpeg probes NVENC once)."""
    from pipeline.ffmpeg import NVIDIA_DRIVER, nvenc_available

    if nvenc_available():
        return "video encoder: NVENC (h264_nvenc) on the GPU"
    if os.path.exists(NVIDIA_DRIVER):
        return (
            "video encoder: libx264 on the CPU (NVENC does not open here: a GPU without it, "
            "such as A100, H100 or H200, or a container without the NVIDIA video capability)"
        )
    return "video encoder: libx264 on the CPU (no NVENC on this machine)"


def _described_machine(args: argparse.Namespace) -> Machine | None:
    """The machine --vram/--ram describe (what is not given: this machine's), or None."""
    from pipeline.memory.machine import GIB, Machine, host_ram, this_machine

    if args.vram is None and args.ram is None:
        return None
    vram = int(args.vram * GIB) if args.vram is not None else this_machine().vram_bytes
    ram = int(args.ram * GIB) if args.ram is not None else host_ram(available=False)
    return Machine(vram, ram)


def _download(args: argparse.Namespace) -> int:
    from pipeline.downloads import Wanted, download, progress_bar
    from pipeline.fetch import fetch_attention_kernel, wanted_for_machine
    from pipeline.finish import FINISH_WEIGHTS
    from pipeline.memory.machine import this_machine
    from pipeline.presets import get_preset

    names = list(dict.fromkeys(args.names))
    try:
        presets = [get_preset(name) for name in names if name not in FINISH_WEIGHTS]
    except PipelineError as exc:
        finishing = ", ".join(FINISH_WEIGHTS)
        return _fail(f"{exc.message} The finishing models are {finishing}.", EXIT_USAGE)
    for name in (n for n in names if n in FINISH_WEIGHTS):
        finish = FINISH_WEIGHTS[name]
        wanted = [Wanted(finish.repo_id, files=finish.files)]
        try:
            if args.quiet:
                download(wanted)
            else:
                with progress_bar(desc=name) as report:
                    download(wanted, progress=report)
        except PipelineError as exc:
            return _fail(exc.message, EXIT_USAGE)
        print(f"{name}: downloaded", flush=True)
    machine = _described_machine(args) or this_machine()
    for preset in presets:
        try:
            wanted, why = wanted_for_machine(preset, machine, weights=args.weights)
        except ValueError as exc:
            return _fail(f"{exc}; choose bf16, fp8 or auto.", EXIT_USAGE)
        logger.info("%s: %s", preset.name, why)
        try:
            if args.quiet:
                download(wanted)
            else:
                with progress_bar(desc=preset.name) as report:
                    download(wanted, progress=report)
        except PipelineError as exc:
            return _fail(exc.message, EXIT_USAGE)
        print(f"{preset.name}: downloaded", flush=True)
    try:
        kernel = fetch_attention_kernel()
    except PipelineError as exc:
        logger.warning("%s", exc.message)
    else:
        if kernel:
            print(f"attention kernel {kernel}: downloaded", flush=True)
    return EXIT_OK


CARDS_GB = (8, 12, 16, 24, 48, 80)
"""The GPUs people own, for the README's table."""


def _models_table(ram_gib: float) -> str:
    """Each AI preset on each card size with `ram_gib` of RAM: how it runs and its peak."""
    from pipeline.memory import GIB, plan
    from pipeline.presets import PRESETS

    head = "| preset | PFLOP per clip | " + " | ".join(f"{gb} GB" for gb in CARDS_GB) + " |"
    lines = [head, "|" + "---|" * (len(CARDS_GB) + 2)]
    for name in PRESETS:
        cells = []
        flops = None
        for gb in CARDS_GB:
            chosen = plan(name, vram_bytes=gb * GIB, ram_bytes=int(ram_gib * GIB))
            flops = chosen.flops
            if chosen.need is None:
                cells.append("—")
            else:
                cells.append(f"{chosen.need.tier.describe()} ({chosen.need.gpu_bytes / GIB:.1f})")
        work = f"{flops / 1e15:.3g}" if flops else "—"
        lines.append(f"| `{name}` | {work} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


# --- helpers -----------------------------------------------------------------------------------


def _read(path_text: str, what: str) -> bytes:
    path = Path(path_text).expanduser()
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise UsageError(f"{what} file {path_text!r} not found; check the path.") from None
    except IsADirectoryError:
        raise UsageError(f"{what} {path_text!r} is a directory; pass an image file.") from None
    except PermissionError:
        raise UsageError(
            f"{what} file {path_text!r} is not readable (permission denied)."
        ) from None
    except OSError as exc:
        raise UsageError(
            f"Cannot read {what.lower()} file {path_text!r}: {exc.strerror or exc}."
        ) from None


def _out_problem(out: Path) -> str | None:
    if out.is_dir():
        return f"--out {str(out)!r} is a directory; give a file name ending in .mp4."
    if not out.parent.is_dir():
        return f"The folder for --out ({str(out.parent)!r}) does not exist; create it first."
    return None


def _default_name(image_path: str, model_name: str, seed: int) -> str:
    stem = Path(image_path).stem or "video"
    model = Path(model_name.rstrip("/\\")).name or model_name
    clean = lambda s: re.sub(r"[^A-Za-z0-9._-]+", "_", s).strip("._") or "x"  # noqa: E731
    return f"{clean(stem)}-{clean(model)}-{seed}.mp4"


def _exit_code(kind: str) -> int:
    if kind in ("bad_input", "model"):
        return EXIT_USAGE
    if kind == "cancelled":
        return EXIT_CANCELLED
    return EXIT_FAILED


def _fail(message: str, code: int) -> int:
    line = " ".join(str(message).split())
    print(f"error: {line}" if code != EXIT_CANCELLED else line, file=sys.stderr, flush=True)
    return code


def _log_to_stderr(level: int) -> logging.Handler:
    """Log lines on stderr at `level`. A filter, not the handler's level, holds the threshold:
    tqdm's redirect copies a handler's filters (not its level) onto the handler it substitutes."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    handler.addFilter(lambda record: record.levelno >= level)
    logger.addHandler(handler)
    if logger.level == logging.NOTSET or logger.level > level:
        logger.setLevel(level)
    return handler


def _catch_sigint(stop: threading.Event) -> Any:
    """First Ctrl-C asks the job to stop at the next step; a second one interrupts at once."""
    if threading.current_thread() is not threading.main_thread():
        return None

    def handler(signum: int, frame: Any) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()
        logger.warning("Stopping after this step (Ctrl-C again to abort now)...")

    return signal.signal(signal.SIGINT, handler)


def _restore_sigint(previous: Any) -> None:
    if previous is not None:
        signal.signal(signal.SIGINT, previous)


def _close(backend: Any) -> None:
    try:
        backend.close()
    except Exception:  # noqa: BLE001 - freeing memory at exit must not mask the result
        logger.debug("backend.close() failed", exc_info=True)


class _ProgressBar:
    """A tqdm bar on stderr fed by Progress events: one bar whose total follows the stage,
    created at the first event so nothing is drawn before there is something to show."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self._bar: Any = None
        self._stage = ""

    def __call__(self, progress: Progress) -> None:
        if not self.enabled:
            return
        if self._bar is None:
            from tqdm import tqdm

            self._bar = tqdm(
                total=progress.total or 1,
                desc=progress.stage,
                file=sys.stderr,
                dynamic_ncols=True,
                bar_format="{desc:<7} {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}]",
            )
            self._stage = progress.stage
        bar = self._bar
        if progress.stage != self._stage or (progress.total and bar.total != progress.total):
            bar.reset(total=progress.total or 1)
            bar.set_description_str(progress.stage, refresh=False)
            self._stage = progress.stage
        if progress.total:
            bar.n = min(progress.step, progress.total)
        bar.refresh()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
