"""``python -m pipeline``: animate a photo offline, or list the models this machine can run.

The CLI is the pipeline without Discord: the same request type, the same orchestrator, the
same backends. Its contract is scriptable: the output path on stdout, a progress bar on
stderr, exit 0 on success; a problem the user can fix (bad input, unusable model) exits 2 with
one line on stderr saying what is wrong and what to do, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import secrets
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from contract import (
    CAMERA_MOVES,
    AnimateRequest,
    AnimateResult,
    Cancelled,
    Failed,
    InputError,
    PipelineError,
    Progress,
)

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_CANCELLED = 130

logger = logging.getLogger("pipeline")


class UsageError(Exception):
    """A command-line mistake; becomes one line on stderr and exit 2."""


class _Parser(argparse.ArgumentParser):
    """argparse prints usage plus a message over several lines and exits; we want one line."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{message} (see `python -m pipeline {self._sub_name()}--help`)")

    def _sub_name(self) -> str:
        parts = self.prog.split()
        return f"{parts[-1]} " if len(parts) > 1 and parts[-1] != "pipeline" else ""


def _size(text: str) -> tuple[int, int]:
    match = re.fullmatch(r"\s*(\d+)\s*[xX×]\s*(\d+)\s*", text)
    if not match:
        raise argparse.ArgumentTypeError(f"size must look like 768x512, not {text!r}")
    return int(match.group(1)), int(match.group(2))


def _byte_count(text: str) -> int:
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kKmMgG]?)(i?[bB])?\s*", text)
    if not match:
        raise argparse.ArgumentTypeError(
            f"byte limit must look like 10000000, 10MB or 8MiB, not {text!r}"
        )
    number, prefix, unit = float(match.group(1)), match.group(2).lower(), match.group(3) or ""
    base = 1024 if unit.lower().startswith("i") else 1000
    return int(number * base ** {"": 0, "k": 1, "m": 2, "g": 3}[prefix])


def _motion(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"motion must be a whole number from 1 to 10, not {text!r}"
        ) from None
    if not 1 <= value <= 10:
        raise argparse.ArgumentTypeError(f"motion must be from 1 to 10, not {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="python -m pipeline",
        description="Turn a photo into a short video, offline (no Discord).",
    )
    commands = parser.add_subparsers(
        dest="command", parser_class=_Parser, metavar="{animate,models}"
    )

    run = commands.add_parser("animate", help="animate one photo into an MP4")
    run.add_argument("image", help="the photo (JPEG, PNG, WebP, GIF, BMP, TIFF...)")
    run.add_argument("--prompt", default="", help="what should happen in the video")
    run.add_argument("--negative", default="", help="what to avoid (negative prompt)")
    run.add_argument(
        "--model",
        default="auto",
        help="auto (default: ltx with a CUDA GPU, else camera), camera, a preset "
        "(ltx, wan, wan-14b, svd, cogvideox), a diffusers model directory or a hub repo id",
    )
    run.add_argument(
        "--camera", default="static", choices=CAMERA_MOVES, help="camera move (default static)"
    )
    run.add_argument("--motion", type=_motion, default=5, help="motion strength 1-10 (default 5)")
    run.add_argument("--duration", type=float, default=3.0, help="seconds of video (default 3)")
    run.add_argument(
        "--fps", type=int, default=None, help="frames per second (default: the model's)"
    )
    run.add_argument(
        "--seed", type=int, default=None, help="random seed (default: random, printed in the name)"
    )
    run.add_argument(
        "--size", type=_size, default=None, metavar="WxH", help="output size (default: the model's)"
    )
    run.add_argument(
        "--steps", type=int, default=None, help="denoising steps (default: the model's)"
    )
    run.add_argument(
        "--end-image", default=None, help="last frame to aim for (models that support it)"
    )
    run.add_argument("--loop", action="store_true", help="ping-pong the clip so it loops")
    run.add_argument(
        "--max-bytes", type=_byte_count, default=None, help="MP4 size limit, e.g. 10MB or 8MiB"
    )
    run.add_argument(
        "--out", default=None, help="output MP4 (default: <image>-<model>-<seed>.mp4 here)"
    )
    speed = run.add_argument_group("machine (diffusion models)")
    speed.add_argument(
        "--device", default=None, help="cuda, cuda:1 or cpu (default: cuda when available)"
    )
    speed.add_argument("--dtype", default=None, choices=("bfloat16", "float16", "float32"))
    speed.add_argument("--offload", default="auto", choices=("auto", "none", "model", "group"))
    speed.add_argument("--compile", action="store_true", help="torch.compile the denoiser (CUDA)")
    speed.add_argument(
        "--cache", action="store_true", help="first-block cache (faster, slightly softer)"
    )
    speed.add_argument(
        "--attention",
        default="auto",
        help="attention kernel: auto (FlashAttention when installed, else SDPA), native, or a "
        "diffusers backend name such as _native_cudnn",
    )
    speed.add_argument("--low-memory", action="store_true", help="force offload and VAE tiling")
    run.add_argument("-q", "--quiet", action="store_true", help="no progress bar or log lines")
    run.add_argument("-v", "--verbose", action="store_true", help="debug logs and tracebacks")

    models = commands.add_parser(
        "models", help="list the models and whether this machine can run them"
    )
    models.add_argument("--json", action="store_true", help="machine-readable output")
    models.add_argument("-v", "--verbose", action="store_true")
    return parser


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
    try:
        if args.command == "models":
            return _models(args)
        return _animate(args)
    except KeyboardInterrupt:
        return _fail("Cancelled.", EXIT_CANCELLED)
    finally:
        logger.removeHandler(handler)


def _animate(args: argparse.Namespace) -> int:
    from pipeline.backends import BackendOptions, load_backend

    try:
        image = _read(args.image, "Image")
        end_image = _read(args.end_image, "End image") if args.end_image else None
        width, height = args.size if args.size else (None, None)
        seed = args.seed if args.seed is not None else secrets.randbelow(2**31)
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
            end_image=end_image,
            max_bytes=args.max_bytes,
        )
        options = BackendOptions(
            device=args.device,
            dtype=args.dtype,
            offload=args.offload,
            compile=args.compile,
            cache=args.cache,
            attention=args.attention,
            low_memory=args.low_memory,
        )
    except UsageError as exc:
        return _fail(str(exc), EXIT_USAGE)
    except InputError as exc:
        return _fail(exc.message, EXIT_USAGE)
    except ValueError as exc:
        return _fail(str(exc), EXIT_USAGE)

    try:
        # Judge the photo before loading a model that may take a minute and tens of GB.
        from pipeline.intake import load_photo

        load_photo(image)
        if end_image is not None:
            load_photo(end_image)
    except PipelineError as exc:
        return _fail(exc.message, _exit_code(exc.kind))

    if args.out:
        problem = _out_problem(Path(args.out))
        if problem:
            return _fail(problem, EXIT_USAGE)
    try:
        backend = load_backend(args.model, options)
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
    result: AnimateResult | Failed | None = None
    failure: tuple[str, int] | None = None
    try:
        from pipeline.animate import animate

        result = animate(request, backend, emit=bar, should_stop=stop.is_set, out_path=str(out))
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
    assert isinstance(result, AnimateResult)
    for warning in result.warnings:
        logger.warning("note: %s", warning)
    print(result.path or str(out), flush=True)
    return EXIT_OK


def _models(args: argparse.Namespace) -> int:
    from pipeline.backends import available_models

    rows = available_models()
    if args.json:
        print(json.dumps([row.__dict__ for row in rows], indent=2))
        return EXIT_OK
    name_w = max(len(r.name) for r in rows)
    label_w = max(len(r.label) for r in rows)
    print(f"{'NAME':<{name_w}}  RUNS  {'MODEL':<{label_w}}  NOTE")
    for r in rows:
        runs = "yes" if r.runnable else "no"
        print(f"{r.name:<{name_w}}  {runs:<4}  {r.label:<{label_w}}  {r.note}")
    return EXIT_OK


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
    handler = _TqdmHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    handler.setLevel(level)
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


class _TqdmHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Log lines printed above the progress bar instead of through it."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            from tqdm import tqdm

            tqdm.write(self.format(record), file=sys.stderr)
        except Exception:  # noqa: BLE001 - logging must never raise
            self.handleError(record)
