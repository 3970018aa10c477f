"""GPU smoke: every family renders in every setting the README documents, without a download.

Tiny random-weight pipelines of each family (``tests/tiny_models.py``: LTX, an LTX 0.9.x
directory saved as ``LTXImageToVideoPipeline`` with a timestep-conditioned VAE, LTX-2 with
its sound, Wan 2.1, Wan
2.2 A14B and TI2V, SVD, CogVideoX) are saved in the published layout and loaded through the
production loader, then each renders a short clip in every combination of offload
(none / model / group) × torch.compile (off / on) × first-block cache (off / on) × attention
(native / auto), plus low-memory mode. A row passes when it raises nothing and its frames
are not constant (NaNs decode to a flat picture). Also: the NVENC probe, and on CUDA the
number of recompilations across five resolutions with compile on.

Rows that need CUDA (offload model/group, compile, the recompile count) are reported as
skipped on a machine without it, never as passed; rows past `--budget` seconds are skipped
too, so the run fits the short windows in which a GPU is lent. A speed-up that the warm-up
render at load dropped is named in the row's detail.

    python -m bench smoke [--families ltx,svd] [--budget 540]
"""

from __future__ import annotations

import argparse
import itertools
import logging
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench import Figure

TESTS = Path(__file__).resolve().parents[1] / "tests"
FAMILIES = ("ltx", "ltx_i2v", "ltx2", "wan", "wan_a14b", "wan_ti2v", "svd", "cogvideox")
BUDGET_S = 540.0
RESOLUTIONS = ((64, 64), (96, 64), (64, 96), (128, 64), (96, 96))


@dataclass
class Row:
    family: str
    setting: str
    status: str
    """passed, failed or skipped."""
    seconds: float = 0.0
    detail: str = ""


@dataclass(frozen=True)
class Setting:
    offload: str = "none"
    compile: bool = False
    cache: bool = False
    attention: str = "native"
    low_memory: bool = False

    def __str__(self) -> str:
        if self.low_memory:
            return "low-memory"
        return (f"offload {self.offload}, compile {'on' if self.compile else 'off'}, "
                f"cache {'on' if self.cache else 'off'}, attention {self.attention}")

    def needs_cuda(self) -> bool:
        return self.offload != "none" or self.compile


def settings() -> list[Setting]:
    grid = [
        Setting(offload, compile_, cache, attention)
        for offload, compile_, cache, attention in itertools.product(
            ("none", "model", "group"), (False, True), (False, True), ("native", "auto")
        )
    ]
    return [*grid, Setting(low_memory=True)]


class Warnings(logging.Handler):
    """What the pipeline logged at WARNING during one row (e.g. a speed-up dropped)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def render_row(directory: Path, setting: Setting, *, size: tuple[int, int] = (64, 64)) -> str:
    """Load `directory` with `setting`, render two steps; the detail line. Raises on failure."""
    from PIL import Image

    from contract import AnimateRequest, BackendOptions
    from pipeline.backends.diffusion import DiffusionBackend

    options = BackendOptions(
        offload=setting.offload, compile=setting.compile, cache=setting.cache,
        attention=setting.attention, low_memory=setting.low_memory,
    )
    warnings = Warnings()
    logger = logging.getLogger("pipeline")
    logger.addHandler(warnings)
    try:
        backend = DiffusionBackend(str(directory), options=options)
        width, height = size
        request = AnimateRequest(
            image=b"", prompt="a slow push-in", seed=1, duration=1.0, fps=8,
            width=width, height=height, steps=2,
        )
        plan = backend.plan(request, (width, height))
        picture = Image.fromarray(
            np.random.default_rng(0).integers(0, 255, (plan.height, plan.width, 3), dtype=np.uint8)
        )
        rendered = backend.render(picture, plan, request)
        attention = backend.attention
        backend.close()
    finally:
        logger.removeHandler(warnings)
    frames = getattr(rendered, "frames", rendered)
    if frames.shape[1:3] != (plan.height, plan.width) or float(frames.std()) == 0.0:
        raise AssertionError(f"constant or misshapen frames {frames.shape}")
    sound = getattr(rendered, "audio", None)
    if sound is not None and not np.isfinite(sound.samples).all():
        raise AssertionError("the sound track has NaNs")
    detail = f"{frames.shape[0]} frames, attention {attention}" + (
        f", {sound.seconds:.2f} s of sound" if sound is not None else ""
    )
    dropped = [w for w in warnings.lines if "dropped" in w or "not used" in w]
    return detail + ("; " + " | ".join(dropped) if dropped else "")


def recompiles(directory: Path) -> str:
    """Render with compile on at five resolutions; Dynamo's count of compiled frames."""
    import torch._dynamo.utils as dynamo_utils

    before = sum(dynamo_utils.counters["stats"].values())
    for size in RESOLUTIONS:
        render_row(directory, Setting(compile=True), size=size)
    after = sum(dynamo_utils.counters["stats"].values())
    return f"{len(RESOLUTIONS)} resolutions, Dynamo stats grew by {after - before}"


def smoke(families: tuple[str, ...] = FAMILIES, *, budget: float = BUDGET_S, say: Any = None) -> list[Row]:
    import torch

    sys.path.insert(0, str(TESTS))
    from tiny_models import build  # noqa: PLC0415 - the tiny builders live with the tests

    from pipeline.ffmpeg import nvenc_available

    say = say or (lambda text: print(text, file=sys.stderr, flush=True))
    cuda = torch.cuda.is_available()
    started = time.monotonic()
    rows: list[Row] = []
    rows.append(Row("all", "NVENC probe", "passed", detail="available" if nvenc_available() else "not available (libx264 is used)"))
    with tempfile.TemporaryDirectory(prefix="smoke") as folder:
        for family in families:
            directory = build(family, Path(folder) / family)
            for setting in settings():
                if setting.needs_cuda() and not cuda:
                    rows.append(Row(family, str(setting), "skipped", detail="needs CUDA"))
                    continue
                if time.monotonic() - started > budget:
                    rows.append(Row(family, str(setting), "skipped", detail="past the time budget"))
                    continue
                t0 = time.monotonic()
                try:
                    detail = render_row(directory, setting)
                    rows.append(Row(family, str(setting), "passed", time.monotonic() - t0, detail))
                except Exception as exc:  # noqa: BLE001 - a row's failure is its result
                    rows.append(Row(family, str(setting), "failed", time.monotonic() - t0,
                                    f"{type(exc).__name__}: {exc}"[:300]))
                say(f"{family}: {rows[-1].setting}: {rows[-1].status}")
            if cuda and family == "ltx" and time.monotonic() - started <= budget:
                try:
                    rows.append(Row(family, "recompiles", "passed", detail=recompiles(directory)))
                except Exception as exc:  # noqa: BLE001
                    rows.append(Row(family, "recompiles", "failed", detail=f"{type(exc).__name__}: {exc}"[:300]))
            elif family == "ltx":
                rows.append(Row(family, "recompiles", "skipped", detail="needs CUDA"))
    return rows


def figures(rows: list[Row]) -> list[Figure]:
    out = []
    for family in dict.fromkeys(r.family for r in rows):
        mine = [r for r in rows if r.family == family]
        passed = [r for r in mine if r.status == "passed"]
        failed = [r for r in mine if r.status == "failed"]
        skipped = [r for r in mine if r.status == "skipped"]
        detail = "; ".join(f"FAILED {r.setting}: {r.detail}" for r in failed)
        notes = sorted({r.detail for r in passed if "dropped" in r.detail or "not used" in r.detail or r.family == "all"})
        detail = " ".join(filter(None, [detail, f"{len(skipped)} skipped ({', '.join(sorted({r.detail for r in skipped}))})" if skipped else "", "; ".join(notes)]))
        out.append(Figure(f"{family}: rows passed", len(passed), "rows", target=len(passed) + len(failed), higher_is_better=True, detail=detail))
    return out


def run(families: tuple[str, ...] = FAMILIES, budget: float = BUDGET_S) -> list[Figure]:
    return figures(smoke(families, budget=budget))


def main(argv: list[str] | None = None) -> int:
    from bench.__main__ import report

    parser = argparse.ArgumentParser(prog="python -m bench.smoke", description=__doc__.split("\n")[0])
    parser.add_argument("--families", default=",".join(FAMILIES))
    parser.add_argument("--budget", type=float, default=BUDGET_S)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    families = tuple(f for f in args.families.split(",") if f)
    unknown = sorted(set(families) - set(FAMILIES))
    if unknown:
        print(f"smoke: unknown family {', '.join(unknown)}; choose from {', '.join(FAMILIES)}", file=sys.stderr)
        return 2
    return report({"smoke": run(families, args.budget)}, args.out, suffix="-smoke")


if __name__ == "__main__":
    sys.exit(main())
