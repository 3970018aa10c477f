"""The command line's grammar: subcommands, options and their value types.

Every mistake in it becomes one line (``UsageError``) rather than argparse's usage block and
exit, so scripts get the same one-line error contract as every other failure.
"""

from __future__ import annotations

import argparse
import re
from typing import Any

from contract import CAMERA_MOVES, VARIATIONS, LoraSpec, card_for, identical_takes
from contract.loras import FORMAT as LORA_FORMAT
from contract.workers import WEIGHTS


class UsageError(Exception):
    """A command-line mistake; becomes one line on stderr and exit 2."""


class _Parser(argparse.ArgumentParser):
    """argparse prints usage plus a message over several lines and exits; we want one line."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{message} (see `python -m pipeline {self._sub_name()}--help`)")

    def parse_known_args(self, args: Any = None, namespace: Any = None) -> Any:
        parsed, extras = super().parse_known_args(args, namespace)
        if getattr(parsed, "command", None) == "animate":
            _check_animate(parsed)
        return parsed, extras

    def _sub_name(self) -> str:
        parts = self.prog.split()
        return f"{parts[-1]} " if len(parts) > 1 and parts[-1] != "pipeline" else ""


def _check_animate(args: argparse.Namespace) -> None:
    """What no single option can say: takes of a model whose card says the seed changes
    nothing (the camera move) would be identical files. ``auto`` is judged once it has
    picked (pipeline.takes)."""
    card = card_for(args.model)
    if args.variations > 1 and not card.uses_seed:
        raise UsageError(identical_takes(card.name, is_ai=card.is_ai))


def _size(text: str) -> tuple[int, int]:
    match = re.fullmatch(r"\s*(\d+)\s*[xX×]\s*(\d+)\s*", text)
    if not match:
        raise argparse.ArgumentTypeError(f"size must look like 768x512, not {text!r}")
    return int(match.group(1)), int(match.group(2))


def _byte_count(text: str) -> int:
    """10000000, 10MB (decimal) or 8MiB (binary), as pydantic's ByteSize reads them."""
    from pydantic import ByteSize, TypeAdapter, ValidationError

    try:
        return int(TypeAdapter(ByteSize).validate_python(text.strip()))
    except ValidationError:
        raise argparse.ArgumentTypeError(
            f"byte limit must look like 10000000, 10MB or 8MiB, not {text!r}"
        ) from None


def _lora(text: str) -> LoraSpec:
    try:
        return LoraSpec.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{exc} (a LoRA is {LORA_FORMAT})") from None


def _variations(text: str) -> int:
    """1, 2 or 4 takes: the same choice the bot offers (contract.VARIATIONS)."""
    try:
        value = int(text)
    except ValueError:
        value = None
    if value not in VARIATIONS:
        raise argparse.ArgumentTypeError(f"variations must be 1, 2 or 4 takes, not {text!r}")
    return value


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
        dest="command", parser_class=_Parser, metavar="{animate,models,download}"
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
    run.add_argument("--loop", action="store_true", help="a seamless loop: the last frame leads back into the first (no ping-pong)")
    run.add_argument(
        "--audio",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="keep the sound a model with audio makes (ltx2), as AAC in the MP4; "
        "--no-audio: a silent MP4 (default: keep it)",
    )
    run.add_argument(
        "--variations", type=_variations, default=1, metavar="N",
        help="render N takes (1, 2 or 4) with seeds seed, seed+1, ...: take 1 goes to --out "
        "(clip.mp4), take n to the same name with -n (clip-2.mp4, clip-4.mp4); one path per "
        "line on stdout; --max-bytes applies to each file; not with the camera move, which "
        "draws the same clip for every seed (exit 2)",
    )
    finish = run.add_argument_group("finish (after the render)")
    finish.add_argument(
        "--interpolate", type=int, default=1, choices=(1, 2), metavar="2",
        help="smooth: a learned (RIFE) in-between frame between each pair, at twice the rate",
    )
    finish.add_argument(
        "--fps-out", type=int, default=None, choices=(48, 60), metavar="48|60",
        help="smooth to this frame rate instead (RIFE in-between frames)",
    )
    finish.add_argument(
        "--upscale", type=int, default=1, choices=(1, 2), metavar="2",
        help="double width and height with Real-ESRGAN x2plus (needs a GPU for full clips)",
    )
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
    speed.add_argument(
        "--offload", default="auto", choices=("auto", "none", "model", "group"),
        help="where the weights live (default: the memory planner's choice for this GPU)",
    )
    speed.add_argument(
        "--weights", default="auto", choices=WEIGHTS,
        help="how the denoiser's weights are stored: bf16, fp8 or a GGUF quantization "
        "(default: the memory planner's choice)",
    )
    speed.add_argument("--compile", action="store_true", help="torch.compile the denoiser (CUDA)")
    speed.add_argument(
        "--cache", action="store_true", help="first-block cache (faster, slightly softer)"
    )
    speed.add_argument(
        "--half-frames", action="store_true",
        help="render every other frame and let RIFE draw the rest (needs `download rife`)",
    )
    speed.add_argument(
        "--attention",
        default="auto",
        help="attention kernel: auto (FlashAttention when installed, else SDPA), native, or a "
        "diffusers backend name such as _native_cudnn",
    )
    speed.add_argument("--low-memory", action="store_true", help="force offload and VAE tiling")
    speed.add_argument(
        "--lora",
        type=_lora,
        action="append",
        default=[],
        metavar=LORA_FORMAT,
        help="a LoRA fused into the model's denoiser (repeatable): a local .safetensors file or "
        "folder, or a Hugging Face repo id and the file in it; strength 1 unless @STRENGTH",
    )
    run.add_argument("-q", "--quiet", action="store_true", help="no progress bar or log lines")
    run.add_argument("-v", "--verbose", action="store_true", help="debug logs and tracebacks")

    models = commands.add_parser(
        "models",
        help="list the models and how this machine (or one described by --vram/--ram) runs them",
    )
    _machine_arguments(models)
    models.add_argument("--json", action="store_true", help="machine-readable output")
    models.add_argument(
        "--table", action="store_true",
        help="a Markdown table of every preset on 8/12/16/24/48/80 GB cards (with --ram, default 32)",
    )
    models.add_argument("-v", "--verbose", action="store_true")

    fetch = commands.add_parser(
        "download",
        help="fetch the weights presets need on this machine into the hub cache (resumable)",
    )
    fetch.add_argument(
        "names", nargs="+", metavar="NAME",
        help="presets to download (e.g. ltx-2b wan-14b-fast), or the finishing models: rife "
        "(Smooth), upscale (Upscale 2×) and ltx-upscale (Upscale 2× inside ltx and ltx-2b renders)",
    )
    _machine_arguments(fetch)
    fetch.add_argument(
        "--weights", default="auto", choices=WEIGHTS,
        help="which weights: the plan's (auto), the preset's own (bf16, fp8) or a GGUF quantization",
    )
    fetch.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    fetch.add_argument("-v", "--verbose", action="store_true")
    return parser


def _machine_arguments(parser: argparse.ArgumentParser) -> None:
    """--vram/--ram: plan for another machine than this one."""
    parser.add_argument(
        "--vram", type=_positive_gb, default=None, metavar="GB",
        help="plan for a GPU with this much memory (default: this machine's GPU)",
    )
    parser.add_argument(
        "--ram", type=_positive_gb, default=None, metavar="GB",
        help="plan for this much host RAM (default: this machine's)",
    )


def _positive_gb(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of GB") from None
    if not 0 < value <= 4096:
        raise argparse.ArgumentTypeError(f"{text!r} GB is out of range (0 to 4096)")
    return value
