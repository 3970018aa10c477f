"""What a preset occupies, component by component: counted once on the `meta` device, stored.

Why stored: weights are exact from the configs in milliseconds, but the activation peaks come
from running each stage at the preset's default clip under a live-tensor counter, and a tiled
VAE decode on `meta` takes tens of seconds. ``python -m bench memory`` counts everything from
``pipeline/configs/`` and writes ``footprints.json`` beside this module; the tests recount the
weights (and one activation peak) and compare, so the file cannot drift from the configs.

Nothing here imports torch: the bot and ``python -m pipeline models`` read the file as plain data.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from functools import cache
from pathlib import Path
from typing import Any, Literal

FOOTPRINTS = Path(__file__).with_name("footprints.json")
CONFIGS = Path(__file__).parent.parent / "configs"
"""Full-size component configs per checkpoint (sources in configs/SOURCES.md)."""

Role = Literal["denoiser", "text_encoder", "image_encoder", "vae", "text_connector", "audio_decoder"]
"""What a component does, which is all the planner needs to know of it: denoisers change with
the storage tier, the text encoder may move to the CPU, the VAE stays whole on the GPU under
group offload. The rest (an image encoder, LTX-2's text connectors, its audio VAE and vocoder)
are placed like any module: on the GPU, swapped in by model offload, streamed by group offload."""


@dataclass(frozen=True)
class ComponentFootprint:
    """One component of a pipeline, in the dtype the preset runs it in."""

    name: str
    role: Role
    weight_bytes: int
    """Parameters and buffers."""
    largest_leaf_bytes: int
    """The largest module without children: what leaf-level group offload moves at once."""
    activation_bytes: int
    """Peak bytes of live tensors (not weights) while this component runs its stage of the
    default clip, flash attention assumed (no N×N score matrix): counted on `meta`."""
    tiled_activation_bytes: int | None = None
    """VAE only: the same with tiled decoding, which every offloading placement turns on."""
    fp8_bytes: int | None = None
    """Denoisers only: weight bytes with fp8 storage (diffusers' layerwise casting: linear,
    conv and embedding layers in float8, the model's skip patterns such as norms kept)."""
    quantizable_params: int = 0
    """Denoisers only: parameters a GGUF file stores quantized (2-D linear weights)."""

    @property
    def decode_activation_bytes(self) -> int:
        return self.tiled_activation_bytes if self.tiled_activation_bytes is not None else self.activation_bytes


@dataclass(frozen=True)
class Footprint:
    """A preset's pipeline at its default clip."""

    preset: str
    configs: str
    """The folder under pipeline/configs/ it was counted from."""
    clip: str
    """The default clip the activations were counted at, e.g. "832×480, 81 frames"."""
    components: tuple[ComponentFootprint, ...]
    denoise_pflop: float | None = None
    """Denoising work per default clip (``python -m bench flops``), when counted."""

    def by_role(self, role: Role) -> list[ComponentFootprint]:
        return [c for c in self.components if c.role == role]

    @property
    def weight_bytes(self) -> int:
        return sum(c.weight_bytes for c in self.components)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Footprint:
        components = tuple(ComponentFootprint(**c) for c in data["components"])
        return cls(**{**data, "components": components})


@cache
def footprints() -> dict[str, Footprint]:
    """Every counted preset's footprint, by preset name (empty when the file is missing)."""
    if not FOOTPRINTS.is_file():
        return {}
    data = json.loads(FOOTPRINTS.read_text())
    return {name: Footprint.from_json(entry) for name, entry in data["presets"].items()}


def footprint_for(preset: str) -> Footprint | None:
    return footprints().get(preset)


def write_footprints(entries: Mapping[str, Footprint], *, how: str) -> None:
    """Write the file (sorted, stable) that :func:`footprints` reads."""
    data = {
        "how": how,
        "presets": {name: entries[name].to_json() for name in sorted(entries)},
    }
    FOOTPRINTS.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n")
    footprints.cache_clear()
