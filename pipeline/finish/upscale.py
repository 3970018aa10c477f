"""Upscale 2×: Real-ESRGAN x2plus (or any 2× model spandrel knows) over every frame, in tiles.

spandrel reads the weight file, recognises the architecture from the state dict's keys and
shapes (RRDBNet in the old ESRGAN or the basicsr layout, a ``params_ema`` wrapper, .pth or
safetensors) and builds it, so an operator can swap in another 2× model by file. Frames go
through in overlapping tiles (:data:`TILE`, :data:`OVERLAP`): memory stays flat whatever the
frame size, and each tile keeps only its centre so no seam shows. fp16 on a GPU.

spandrel imports torchvision at import time for two architectures we never use (LaMa,
RestoreFormer). Where torchvision is not installed (the CPU test machines: the only
torchvision wheels there are CUDA builds that cannot load beside a CPU torch) a stand-in
with those two names is put in place for the import and removed right after, so nothing
else in the process sees it; calling them would raise.
"""

from __future__ import annotations

import enum
import importlib.util
import math
import sys
import time
import types
from collections.abc import Callable, Iterator
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch

from contract import Cancelled, ModelError, Progress

TILE = {"cuda": 512, "cpu": 192}
"""Input pixels per tile side."""
OVERLAP = 16
"""Input pixels each tile reads beyond the part it keeps: the receptive edge the model needs
to draw a tile's border like its middle."""
_loaded: dict[tuple[str, str], Any] = {}


def import_spandrel() -> types.ModuleType:
    """spandrel, with a stand-in for torchvision when it is missing (see the module docstring)."""
    if "spandrel" in sys.modules:
        return sys.modules["spandrel"]
    stand_in = importlib.util.find_spec("torchvision") is None
    names = ("torchvision", "torchvision.transforms", "torchvision.transforms.functional")
    if stand_in:
        modules = {name: types.ModuleType(name) for name in names}

        class InterpolationMode(enum.Enum):
            NEAREST = "nearest"
            BILINEAR = "bilinear"
            BICUBIC = "bicubic"

        def missing(*args: object, **kwargs: object) -> Any:
            raise RuntimeError("this spandrel architecture needs torchvision; install it")

        functional = modules[names[2]]
        functional.InterpolationMode = InterpolationMode  # type: ignore[attr-defined]
        functional.rotate = functional.normalize = missing  # type: ignore[attr-defined]
        modules[names[1]].functional = functional  # type: ignore[attr-defined]
        modules[names[0]].transforms = modules[names[1]]  # type: ignore[attr-defined]
        sys.modules.update(modules)
    try:
        import spandrel
    except ImportError as exc:
        raise ModelError(
            f"Upscaling needs the spandrel package ({exc}); install it with "
            "`pip install spandrel`."
        ) from None
    finally:
        if stand_in:
            for name in names:
                sys.modules.pop(name, None)
    return spandrel


def load_upscaler(path: Path, device: str = "cpu", scale: int = 2) -> Any:
    """The image model in `path` (a spandrel ImageModelDescriptor) on `device`, fp16 on a GPU
    where the architecture allows it. Raises ModelError with a sentence."""
    key = (str(path), device)
    if key in _loaded:
        return _loaded[key]
    spandrel = import_spandrel()
    try:
        model = spandrel.ModelLoader(device="cpu").load_from_file(str(path))
    except Exception as exc:  # noqa: BLE001 - unreadable file, unknown architecture
        detail = " ".join(str(exc).split())[:160] or type(exc).__name__
        raise ModelError(
            f"The upscaling weights {path.name!r} are not a model spandrel can load ({detail}); "
            "download them again with `python -m pipeline download upscale`."
        ) from None
    if not isinstance(model, spandrel.ImageModelDescriptor) or model.scale != scale:
        what = f"{getattr(model, 'scale', '?')}× {model.architecture.name}"
        raise ModelError(
            f"The upscaling weights {path.name!r} are a {what} model; Upscale {scale}× needs "
            f"a {scale}× image model."
        )
    model.eval().to(device)
    if device.startswith("cuda") and model.supports_half:
        model.half()
    _loaded.clear()
    _loaded[key] = model
    return model


def tiles(size: int, tile: int, overlap: int) -> Iterator[tuple[int, int, int, int]]:
    """Along one side of `size` pixels: (read from, read to, keep from, keep to) per tile.
    Kept parts cover the side exactly once; each read reaches `overlap` beyond its kept part
    where the frame allows."""
    overlap = min(overlap, tile // 4)
    step = tile - 2 * overlap
    count = max(1, math.ceil(size / step)) if size > tile else 1
    if count == 1:
        yield 0, size, 0, size
        return
    for i in range(count):
        keep0, keep1 = i * step, min(size, (i + 1) * step)
        yield max(0, keep0 - overlap), min(size, keep1 + overlap), keep0, keep1


def upscale_image(model: Any, image: torch.Tensor, tile: int, overlap: int = OVERLAP) -> torch.Tensor:
    """(1, 3, H, W) in [0, 1] → (1, 3, H·s, W·s), tile by tile."""
    scale = model.scale
    _, _, height, width = image.shape
    out = torch.empty(
        (1, 3, height * scale, width * scale), dtype=image.dtype, device=image.device
    )
    for y0, y1, ky0, ky1 in tiles(height, tile, overlap):
        for x0, x1, kx0, kx1 in tiles(width, tile, overlap):
            part = model(image[:, :, y0:y1, x0:x1])
            top, left = (ky0 - y0) * scale, (kx0 - x0) * scale
            out[:, :, ky0 * scale : ky1 * scale, kx0 * scale : kx1 * scale] = part[
                :, :, top : top + (ky1 - ky0) * scale, left : left + (kx1 - kx0) * scale
            ]
    return out


def upscale_frames(
    frames: np.ndarray,
    weights: Path | Any,
    *,
    scale: int = 2,
    device: str = "cpu",
    tile: int | None = None,
    emit: Callable[[Progress], None] = lambda p: None,
    should_stop: Callable[[], bool] = lambda: False,
) -> np.ndarray:
    """(N, H·s, W·s, 3) uint8. `weights`: the model file, or a descriptor already loaded."""
    model = weights if not isinstance(weights, Path) else load_upscaler(weights, device, scale)
    tile = tile or TILE["cuda" if device.startswith("cuda") else "cpu"]
    dtype = torch.float16 if device.startswith("cuda") and model.supports_half else torch.float32
    count, height, width, _ = frames.shape
    out = np.empty((count, height * scale, width * scale, 3), dtype=np.uint8)
    emit(Progress("finish", 0, count, message="Upscaling"))
    for index in range(count):
        if should_stop():
            raise Cancelled()
        image = torch.from_numpy(frames[index]).to(device).permute(2, 0, 1)[None].to(dtype) / 255
        with torch.inference_mode():
            big = upscale_image(model, image, tile)
        out[index] = (big[0].float().clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
        emit(Progress("finish", index + 1, count, message="Upscaling"))
    return out


# --- what it costs here ------------------------------------------------------------------------

PROBE = 32
"""Side of the square the speed probe upscales (about 0.4 s on a loaded 2-core CPU)."""


def x2plus_state_dict(seed: int = 0, blocks: int = 23) -> dict[str, torch.Tensor]:
    """Random weights under the names and shapes of RealESRGAN_x2plus (basicsr's RRDBNet:
    the frame pixel-unshuffled to 12 channels, 64 features, `blocks` residual-in-residual
    dense blocks of 3 × 5 convolutions growing by 32, two 2× nearest upsamplings). He-normal,
    which keeps the activations' scale through 345 convolutions: smaller weights let them
    shrink into denormal floats, which CPUs process up to 30× slower, and the timing would lie."""
    generator = torch.Generator().manual_seed(seed)
    shapes: dict[str, tuple[int, int]] = {"conv_first": (64, 12)}
    for b in range(blocks):
        for r in (1, 2, 3):
            for c in range(1, 6):
                shapes[f"body.{b}.rdb{r}.conv{c}"] = (64 if c == 5 else 32, 64 + 32 * (c - 1))
    shapes |= {
        "conv_body": (64, 64), "conv_up1": (64, 64), "conv_up2": (64, 64), "conv_hr": (64, 64),
        "conv_last": (3, 64),
    }
    state: dict[str, torch.Tensor] = {}
    for name, (out_ch, in_ch) in shapes.items():
        std = math.sqrt(2 / (in_ch * 9))
        state[f"{name}.weight"] = torch.randn(out_ch, in_ch, 3, 3, generator=generator) * std
        state[f"{name}.bias"] = torch.zeros(out_ch)
    return state


def random_x2plus() -> Any:
    """Real-ESRGAN x2plus with random weights, built by spandrel from the published layout:
    the same work as the real one."""
    spandrel = import_spandrel()
    return spandrel.ModelLoader(device="cpu").load_from_state_dict(x2plus_state_dict()).eval()


@lru_cache(maxsize=1)
def _probe() -> float:
    """Seconds per input pixel on this machine's CPU."""
    model = random_x2plus()
    image = torch.rand(1, 3, PROBE, PROBE)
    best = math.inf
    with torch.inference_mode():
        for _ in range(2):
            started = time.perf_counter()
            model(image)
            best = min(best, time.perf_counter() - started)
    return best / PROBE**2


def estimate_seconds(frames: int, width: int, height: int) -> float:
    """Seconds this machine's CPU needs to upscale `frames` frames of width × height."""
    return frames * width * height * _probe()
