"""Smooth: in-between frames from RIFE, for 2× frames or a target rate.

Each input frame is moved to the device and encoded once (it serves two pairs); the moments
wanted between one pair run as one batch. An output frame that falls on an input frame is
that frame, untouched, so the first and last frames of a smoothed clip are the originals.
With ``flow_side`` the motion is estimated on a copy of the frames scaled to that long side
and the full-size frames are warped and blended with it: on a CPU the network's cost falls
with the pixel count, while the warp stays sharp.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from contract import Cancelled, Progress
from pipeline.finish.rife import PAD, IFNet, load_ifnet, pad_to, random_ifnet

BATCH = {"cuda": 8, "cpu": 2}
"""In-between moments computed at once per pair."""
_loaded: dict[tuple[str, str, str], IFNet] = {}


def _net(path: Path, device: str, dtype: torch.dtype) -> IFNet:
    """The network in `path`, kept for the worker's next job (22 MB: no reason to reload)."""
    key = (str(path), device, str(dtype))
    if key not in _loaded:
        _loaded.clear()
        _loaded[key] = load_ifnet(path, device, dtype)
    return _loaded[key]


def _proxy_size(width: int, height: int, flow_side: int | None) -> tuple[int, int] | None:
    if not flow_side or max(width, height) <= flow_side:
        return None
    ratio = flow_side / max(width, height)
    return max(1, round(width * ratio)), max(1, round(height * ratio))


def interpolate_frames(
    frames: np.ndarray,
    positions: Sequence[float],
    weights: Path | IFNet,
    *,
    device: str = "cpu",
    flow_side: int | None = None,
    emit: Callable[[Progress], None] = lambda p: None,
    should_stop: Callable[[], bool] = lambda: False,
) -> np.ndarray:
    """(len(positions), H, W, 3) uint8: the frame at each place in input-frame units
    (:func:`pipeline.finish.timeline`). `weights`: the RIFE file, or a network already built."""
    count, height, width, _ = frames.shape
    dtype = torch.float16 if device.startswith("cuda") else torch.float32
    net = weights if isinstance(weights, IFNet) else _net(weights, device, dtype)
    net = net.to(device=device, dtype=dtype)
    out = np.empty((len(positions), height, width, 3), dtype=np.uint8)
    wanted: dict[int, list[tuple[int, float]]] = {}
    for k, place in enumerate(positions):
        index = min(max(int(math.floor(place + 1e-6)), 0), count - 1)
        t = place - index
        if t <= 1e-6 or index == count - 1:
            out[k] = frames[index]
        else:
            wanted.setdefault(index, []).append((k, t))
    total = sum(len(v) for v in wanted.values())
    proxy = _proxy_size(width, height, flow_side)
    batch = BATCH["cuda" if device.startswith("cuda") else "cpu"]
    done = 0
    emit(Progress("finish", 0, total, message="Smoothing the motion"))
    cache: dict[int, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}

    def prepared(i: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(full frame, the frame the network sees (padded), its encoding)."""
        if i not in cache:
            full = torch.from_numpy(frames[i]).to(device).permute(2, 0, 1)[None].to(dtype) / 255
            small = full
            if proxy is not None:
                small = F.interpolate(full, size=proxy[::-1], mode="bilinear", antialias=True)
            small = pad_to(small, PAD)
            for old in [k for k in cache if k < i - 1]:
                del cache[old]  # only the current pair is needed again
            cache[i] = (full, small, net.encode(small))
        return cache[i]

    with torch.inference_mode():
        for index in sorted(wanted):
            full0, small0, f0 = prepared(index)
            full1, small1, f1 = prepared(index + 1)
            moments = wanted[index]
            for start in range(0, len(moments), batch):
                if should_stop():
                    raise Cancelled()
                chunk = moments[start : start + batch]
                n = len(chunk)
                t = torch.tensor([m[1] for m in chunk], device=device)
                flow, mask = net.motion(
                    small0.expand(n, -1, -1, -1), small1.expand(n, -1, -1, -1), t,
                    (f0.expand(n, -1, -1, -1), f1.expand(n, -1, -1, -1)),
                )
                if proxy is None:
                    h, w = height, width
                    flow, mask = flow[:, :, :h, :w], mask[:, :, :h, :w]
                else:
                    # The proxy's flow in proxy pixels, brought to the full frame's size.
                    ph, pw = proxy[1], proxy[0]
                    flow = F.interpolate(flow[:, :, :ph, :pw], size=(height, width), mode="bilinear")
                    flow = flow * torch.tensor(
                        [width / pw, height / ph] * 2, device=device, dtype=flow.dtype
                    ).view(1, 4, 1, 1)
                    mask = F.interpolate(mask[:, :, :ph, :pw], size=(height, width), mode="bilinear")
                made = net.synthesize(
                    full0.expand(n, -1, -1, -1), full1.expand(n, -1, -1, -1), flow, mask
                )
                pixels = (made.float().clamp(0, 1) * 255).round().to(torch.uint8)
                pixels = pixels.permute(0, 2, 3, 1).cpu().numpy()
                for (k, _), frame in zip(chunk, pixels, strict=True):
                    out[k] = frame
                done += n
                emit(Progress("finish", done, total, message="Smoothing the motion"))
    return out


# --- what it costs here ------------------------------------------------------------------------

@lru_cache(maxsize=8)
def _seconds_per_frame(width: int, height: int, flow_side: int | None) -> float:
    """Seconds this machine's CPU takes to make one in-between frame of width × height, timed
    on a pair of frames of that size with random weights, the same work as the published
    ones (the first pass at a new size also builds the convolution kernels: not counted; a
    pair encodes both its frames, a clip one per frame: a slight overestimate). Timed at the
    real size, not a small one scaled up: per pixel, a 720p frame costs this CPU several times
    a 256-pixel square (memory, not arithmetic, is the limit)."""
    net = random_ifnet()
    frames = np.random.default_rng(0).integers(0, 256, (2, height, width, 3), dtype=np.uint8)
    best = math.inf
    for _ in range(3):  # the quickest pass: the least disturbed by whatever else runs here
        started = time.perf_counter()
        interpolate_frames(frames, [0.0, 0.5, 1.0], net, flow_side=flow_side)
        best = min(best, time.perf_counter() - started)
    return best


def estimate_seconds(made: int, width: int, height: int, *, flow_side: int | None = None) -> float:
    """Seconds this machine's CPU needs to make `made` in-between frames of width × height."""
    return made * _seconds_per_frame(width, height, flow_side)
