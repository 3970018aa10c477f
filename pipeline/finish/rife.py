"""RIFE 4.25/4.26 (Practical-RIFE's IFNet) in plain torch, shaped so its published weights load.

RIFE estimates the optical flow from an in-between moment ``t`` to both neighbours, warps both
frames there and blends them with a learned mask. The 4.2x networks do it coarse to fine in
five blocks, each seeing the frames at 1/16 … 1/1 of their size, plus a small encoder whose
features travel along with the warp; ``t`` is an input channel, so any moment between two
frames can be asked for (2× frames, 24 → 60 fps …) by one network.

Module and parameter names follow the published checkpoints (``encode.cnn0``,
``block0.conv0.0.0``, ``block0.convblock.3.beta``, ``block0.lastconv.0``) so their state
dicts load without renaming; :func:`read_state_dict` only strips the wrappers the various
publications add (``module.`` from training with DistributedDataParallel, ``flownet.``, and
``blocks.N.`` in the ComfyUI conversions). The widths are read from the weights, so 4.25,
4.26 and their "heavy"/"lite" variants build from one class.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from contract import ModelError

SCALES = (16, 8, 4, 2, 1)
"""How much smaller than the frame each block sees it, first block first."""
PAD = 64
"""Frames are padded to a multiple of this: the coarsest block halves a 1/16 frame twice."""
FLOW, MASK = 4, 1
"""Each block predicts 4 flow channels (to frame 0, to frame 1) and 1 blend mask, then features."""


@dataclass(frozen=True)
class RifeShape:
    """The widths of one published RIFE network, read from its weights."""

    head: int
    """Feature channels of the encoder per frame (4 in 4.25/4.26)."""
    widths: tuple[int, ...]
    """Channels inside each block (192, 128, 96, 64, 32 in 4.25/4.26)."""
    carried: int
    """Feature channels a block hands to the next (8 in 4.25/4.26)."""

    def block_inputs(self, index: int) -> int:
        # Both frames (3+3), both encodings, the timestep; later blocks also get the previous
        # mask, its features and (inside the block) the flow so far.
        first = 7 + 2 * self.head
        return first if index == 0 else first + MASK + self.carried + FLOW


STANDARD = RifeShape(head=4, widths=(192, 128, 96, 64, 32), carried=8)
"""RIFE 4.25 / 4.26 as published."""


def _act() -> nn.Module:
    return nn.LeakyReLU(0.2, inplace=True)


class _Encoder(nn.Module):
    """Per-frame features at full resolution that are warped with the flow at every block."""

    def __init__(self, out: int) -> None:
        super().__init__()
        self.cnn0 = nn.Conv2d(3, 16, 3, 2, 1)
        self.cnn1 = nn.Conv2d(16, 16, 3, 1, 1)
        self.cnn2 = nn.Conv2d(16, 16, 3, 1, 1)
        self.cnn3 = nn.ConvTranspose2d(16, out, 4, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.leaky_relu(self.cnn0(x), 0.2)
        x = F.leaky_relu(self.cnn1(x), 0.2)
        x = F.leaky_relu(self.cnn2(x), 0.2)
        return self.cnn3(x)


class _Residual(nn.Module):
    """A 3×3 convolution added back onto its input with a learned per-channel gain."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(width, width, 3, 1, 1)
        self.beta = nn.Parameter(torch.ones(1, width, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.leaky_relu(torch.addcmul(x, self.conv(x), self.beta), 0.2)


class _Block(nn.Module):
    """One coarse-to-fine stage: sees its inputs `scale` times smaller, predicts flow
    (a correction after the first stage), the blend mask and features for the next stage."""

    def __init__(self, inputs: int, width: int, carried: int) -> None:
        super().__init__()
        self.conv0 = nn.Sequential(
            nn.Sequential(nn.Conv2d(inputs, width // 2, 3, 2, 1), _act()),
            nn.Sequential(nn.Conv2d(width // 2, width, 3, 2, 1), _act()),
        )
        self.convblock = nn.Sequential(*(_Residual(width) for _ in range(8)))
        self.lastconv = nn.Sequential(
            nn.ConvTranspose2d(width, 4 * (FLOW + MASK + carried), 4, 2, 1), nn.PixelShuffle(2)
        )

    def forward(
        self, x: torch.Tensor, flow: torch.Tensor | None, scale: float
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if scale != 1:
            x = F.interpolate(x, scale_factor=1.0 / scale, mode="bilinear", align_corners=False)
        if flow is not None:
            if scale != 1:
                flow = F.interpolate(
                    flow, scale_factor=1.0 / scale, mode="bilinear", align_corners=False
                ) / scale
            x = torch.cat((x, flow), 1)
        out = self.lastconv(self.convblock(self.conv0(x)))
        if scale != 1:
            out = F.interpolate(out, scale_factor=scale, mode="bilinear", align_corners=False)
        return out[:, :FLOW] * scale, out[:, FLOW : FLOW + MASK], out[:, FLOW + MASK :]


class IFNet(nn.Module):
    """The flow network. ``forward(img0, img1, t)`` takes frames in [0, 1] (N, 3, H, W), H and W
    multiples of :data:`PAD`, and ``t`` (N,) in (0, 1); returns the frames at ``t``."""

    def __init__(self, shape: RifeShape = STANDARD) -> None:
        super().__init__()
        if len(shape.widths) > len(SCALES):
            raise ValueError(f"RIFE has at most {len(SCALES)} blocks, not {len(shape.widths)}")
        self.shape = shape
        self.encode = _Encoder(shape.head)
        for index, width in enumerate(shape.widths):
            self.add_module(f"block{index}", _Block(shape.block_inputs(index), width, shape.carried))
        self.scales = SCALES[len(SCALES) - len(shape.widths) :]
        self._grids: dict[tuple[int, int, str], torch.Tensor] = {}

    def blocks(self) -> list[_Block]:
        return [getattr(self, f"block{i}") for i in range(len(self.shape.widths))]

    def warp(self, image: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
        """Sample `image` at each pixel moved by `flow` (pixels), clamping at the borders."""
        n, _, h, w = image.shape
        key = (h, w, str(image.device))
        if len(self._grids) > 8:
            self._grids.clear()
        if key not in self._grids:
            ys = torch.linspace(-1.0, 1.0, h, device=image.device)
            xs = torch.linspace(-1.0, 1.0, w, device=image.device)
            grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
            self._grids[key] = torch.stack((grid_x, grid_y), -1).unsqueeze(0)
        # Pixels to grid_sample's [-1, 1] coordinates (align_corners: -1 and 1 are pixel centres).
        step = torch.tensor([(w - 1) / 2, (h - 1) / 2], device=image.device)
        grid = self._grids[key] + flow.float().permute(0, 2, 3, 1) / step
        warped = F.grid_sample(
            image.float(), grid, mode="bilinear", padding_mode="border", align_corners=True
        )
        return warped.to(image.dtype)

    def motion(
        self,
        img0: torch.Tensor,
        img1: torch.Tensor,
        t: torch.Tensor,
        features: tuple[torch.Tensor, torch.Tensor] | None = None,
        flow_scale: float = 1.0,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(flow in pixels, 4 channels: to frame 0, to frame 1; blend mask logits) at `t`.

        `features`: both frames' :meth:`encode` (a frame is shared by two pairs, so it is
        encoded once). `flow_scale` 0.5 runs every block on half-size inputs (Practical-RIFE's
        ``--scale``); frames are then padded to ``PAD / flow_scale``."""
        n, _, h, w = img0.shape
        time = t.to(img0.dtype).view(n, 1, 1, 1).expand(n, 1, h, w)
        f0, f1 = features if features is not None else (self.encode(img0), self.encode(img1))
        flow: torch.Tensor | None = None
        mask = carried = None
        warped0, warped1 = img0, img1
        blocks = self.blocks()
        for index, (block, scale) in enumerate(zip(blocks, self.scales, strict=True)):
            scale = scale / flow_scale
            if flow is None:
                flow, mask, carried = block(torch.cat((img0, img1, f0, f1, time), 1), None, scale)
            else:
                assert mask is not None and carried is not None
                x = torch.cat(
                    (
                        warped0, warped1,
                        self.warp(f0, flow[:, :2]), self.warp(f1, flow[:, 2:4]),
                        time, mask, carried,
                    ),
                    1,
                )
                delta, mask, carried = block(x, flow, scale)
                flow = flow + delta
            if index < len(blocks) - 1:  # the last warp is the caller's, at any resolution
                warped0 = self.warp(img0, flow[:, :2])
                warped1 = self.warp(img1, flow[:, 2:4])
        assert flow is not None and mask is not None
        return flow, mask

    def synthesize(
        self, img0: torch.Tensor, img1: torch.Tensor, flow: torch.Tensor, mask: torch.Tensor
    ) -> torch.Tensor:
        """Both frames warped to the in-between moment and blended by the mask."""
        blend = torch.sigmoid(mask)
        return torch.lerp(self.warp(img1, flow[:, 2:4]), self.warp(img0, flow[:, :2]), blend)

    def forward(self, img0: torch.Tensor, img1: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        flow, mask = self.motion(img0, img1, t)
        return self.synthesize(img0, img1, flow, mask)


# --- loading the published files ---------------------------------------------------------------

_BLOCKS = re.compile(r"^blocks\.(\d+)\.")
_DROPPED = ("teacher.", "caltime.")
"""Training-only parts some checkpoints carry (a distillation teacher, a time estimator)."""


def normalise_keys(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Published RIFE state dicts under this module's names (see the module docstring)."""
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        for prefix in ("module.", "flownet."):
            if key.startswith(prefix):
                key = key[len(prefix) :]
        if key.startswith(_DROPPED):
            continue
        out[_BLOCKS.sub(lambda m: f"block{m.group(1)}.", key)] = value
    return out


def shape_of(state: Mapping[str, torch.Tensor]) -> RifeShape:
    """Read the widths of the network a normalised state dict belongs to."""
    try:
        head = int(state["encode.cnn3.weight"].shape[1])  # ConvTranspose2d: (in, out, kh, kw)
        widths: list[int] = []
        while f"block{len(widths)}.conv0.1.0.weight" in state:
            widths.append(int(state[f"block{len(widths)}.conv0.1.0.weight"].shape[0]))
        carried = int(state["block0.lastconv.0.weight"].shape[1]) // 4 - FLOW - MASK
    except (KeyError, IndexError):
        raise ValueError("not a RIFE 4.x IFNet state dict") from None
    if not widths or len(widths) > len(SCALES) or carried < 1:
        raise ValueError(f"not a RIFE 4.x IFNet with 1 to 5 blocks ({len(widths)} found)")
    return RifeShape(head=head, widths=tuple(widths), carried=carried)


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """A RIFE weight file as published: safetensors, or a pickled state dict (``flownet.pkl``,
    ``rife4xx.pth``), read without running pickled code."""
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(path))
    else:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
        if isinstance(state, Mapping) and isinstance(state.get("state_dict"), Mapping):
            state = state["state_dict"]
    if not isinstance(state, Mapping):
        raise ValueError("the file holds no state dict")
    return normalise_keys(state)


def load_ifnet(path: Path, device: str = "cpu", dtype: torch.dtype = torch.float32) -> IFNet:
    """The network in `path`, in eval mode on `device`. Raises ModelError with a sentence."""
    try:
        state = read_state_dict(path)
        net = IFNet(shape_of(state))
        net.load_state_dict(state, strict=True)
    except (ValueError, RuntimeError, OSError, EOFError) as exc:
        # safetensors and torch.load raise many types for a damaged or foreign file.
        detail = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
        raise ModelError(
            f"The frame interpolation weights {path.name!r} are not a RIFE 4.x model ({detail}); "
            "download them again with `python -m pipeline download rife`."
        ) from None
    return net.eval().to(device=device, dtype=dtype)


def random_ifnet(shape: RifeShape = STANDARD, seed: int = 0) -> IFNet:
    """A RIFE network with random weights: the same work as the real one, for timing and tests.

    torch's default initialisation, not small Gaussian noise: tiny weights shrink the
    activations into denormal floats, which CPUs process many times slower, and the timing
    would lie."""
    state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        return IFNet(shape).eval()
    finally:
        torch.random.set_rng_state(state)


def pad_to(x: torch.Tensor, multiple: int = PAD) -> torch.Tensor:
    """Pad (N, C, H, W) on the right and bottom to multiples of `multiple` by repeating edges."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    return F.pad(x, (0, pw, 0, ph), mode="replicate") if ph or pw else x

