"""Count every preset's memory footprint on the `meta` device and store it for the planner.

    python -m bench memory          # rewrites pipeline/memory/footprints.json

For each preset with committed full-size configs (pipeline/configs/), the pipeline is built
on `meta` in the dtypes it runs in, and for each component this counts exactly:

- its weight bytes (parameters and buffers), its largest leaf module (what leaf-level group
  offload moves at once), its bytes with fp8 storage (diffusers' layerwise-casting rules) and
  the parameters a GGUF file quantizes (2-D linear weights, the llama.cpp converters' rule);
- the peak bytes of live tensors while its stage of the default clip runs (a 16:9 photo at
  the preset's size and frame count): a dispatch mode adds each new tensor storage's bytes
  and subtracts them when the storage dies, and attention is counted as a fused kernel
  (FlashAttention/SDPA on a GPU never holds the N×N scores). The VAE is counted untiled and
  tiled (what every offloading placement uses). A part that runs once per clip besides the
  usual four (LTX-2's text connectors, audio VAE and vocoder) is counted in its own stage.

Counts are exact for eager execution; what the CUDA caching allocator adds (fragmentation,
workspaces) is the planner's reserve, to be calibrated on a GPU.
"""

from __future__ import annotations

import re
import weakref
from collections.abc import Callable
from typing import Any

from bench import Figure
from bench.flops import flops, stages
from bench.random_weights import CONFIGS, build_pipeline
from contract.sizes import choose_size, size_for_area, snap_size
from pipeline.memory.footprint import (
    ComponentFootprint,
    Footprint,
    Role,
    footprints,
    write_footprints,
)
from pipeline.presets import PRESETS, Preset

GIB = 2**30
ASPECT = 16 / 9
CFG_BATCHED = {"ltx", "ltx2", "svd", "cogvideox"}
"""Families whose pipelines run CFG's two passes as one batch of 2 (Wan calls twice)."""
ROLES: dict[str, Role] = {
    "transformer": "denoiser",
    "transformer_2": "denoiser",
    "unet": "denoiser",
    "text_encoder": "text_encoder",
    "image_encoder": "image_encoder",
    "vae": "vae",
    "connectors": "text_connector",  # LTX-2: Gemma's hidden states to prompt embeddings, on the GPU
    "audio_vae": "audio_decoder",  # LTX-2: the sound's latents to a mel spectrogram
    "vocoder": "audio_decoder",  # LTX-2: the mel spectrogram to a waveform
}


class LiveTensors:
    """Peak bytes of tensor storages alive at once while ops dispatch (weights excluded:
    only storages created inside count)."""

    def __init__(self) -> None:
        from torch.utils._python_dispatch import TorchDispatchMode

        tracker = self

        class Mode(TorchDispatchMode):
            def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
                out = func(*args, **(kwargs or {}))
                tracker._note(out, (args, kwargs))
                return out

        self.mode = Mode()
        self.live = 0
        self.peak = 0
        self._seen: set[int] = set()

    def _note(self, out: Any, inputs: Any) -> None:
        import torch
        from torch.utils._pytree import tree_leaves

        # A view (a weight's transpose, a reshape) shares its input's storage: nothing new.
        shared = {id(t.untyped_storage()) for t in tree_leaves(inputs) if isinstance(t, torch.Tensor)}
        for tensor in tree_leaves(out):
            if not isinstance(tensor, torch.Tensor):
                continue
            storage = tensor.untyped_storage()
            key = id(storage)
            if key in self._seen or key in shared:
                continue
            size = storage.nbytes()
            self._seen.add(key)
            self.live += size
            self.peak = max(self.peak, self.live)
            weakref.finalize(storage, self._free, key, size)

    def _free(self, key: int, size: int) -> None:
        self._seen.discard(key)
        self.live -= size


def peak_bytes(call: Callable[[], Any]) -> int:
    """Peak live-tensor bytes of one call, with attention as a fused kernel."""
    import torch
    import torch.nn.functional as F
    from torch.overrides import TorchFunctionMode

    class FusedAttention(TorchFunctionMode):
        def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
            kwargs = kwargs or {}
            if func is F.scaled_dot_product_attention:
                names = ("query", "key", "value")
                q, _k, v = [*args[:3], *(kwargs[n] for n in names[len(args[:3]):])]
                return q.new_empty(*q.shape[:-1], v.shape[-1])
            return func(*args, **kwargs)

    tracker = LiveTensors()
    # New tensors made inside a forward without a device (SVD's decoder) land on `meta` too.
    with torch.no_grad(), torch.device("meta"), FusedAttention(), tracker.mode:
        result = call()
        peak = tracker.peak
    del result
    return peak


def default_clip(preset: Preset) -> tuple[int, int, int]:
    """(width, height, frames) of a 16:9 photo at the preset's defaults."""
    if preset.area:
        width, height = size_for_area(ASPECT, preset.area, preset.multiple)
    else:
        width, height = snap_size(*choose_size(ASPECT, preset.buckets), preset.multiple)
    return width, height, preset.default_frames


def _tensor_bytes(module: Any) -> int:
    """Parameters and buffers; a floating buffer counts in the parameters' dtype, as loading
    casts it (CogVideoX builds its position table in float64 but runs it in bf16)."""
    params = list(module.parameters())
    size = sum(p.numel() * p.element_size() for p in params)
    width = params[0].element_size() if params else None
    for b in module.buffers():
        size += b.numel() * (width if width and b.is_floating_point() else b.element_size())
    return size


def largest_leaf(module: Any) -> int:
    return max(
        (_tensor_bytes(m) for m in module.modules() if not list(m.children())), default=0
    )


def fp8_bytes(model: Any) -> int:
    """Weight bytes after ``enable_layerwise_casting(storage_dtype=float8)``: the layers
    diffusers casts (linear, conv, embedding) outside the skip patterns store 1 byte per
    parameter; everything else keeps its dtype."""
    from diffusers.hooks._common import _GO_LC_SUPPORTED_PYTORCH_LAYERS
    from diffusers.hooks.layerwise_casting import DEFAULT_SKIP_MODULES_PATTERN

    patterns = list(DEFAULT_SKIP_MODULES_PATTERN)
    patterns += list(getattr(model, "_keep_in_fp32_modules", None) or [])
    patterns += list(getattr(model, "_skip_layerwise_casting_patterns", None) or [])
    total = _tensor_bytes(model)
    saved = 0
    for name, layer in _cast_layers(model, "", patterns, _GO_LC_SUPPORTED_PYTORCH_LAYERS):
        params = list(layer.parameters(recurse=False))
        saved += sum(p.numel() * (p.element_size() - 1) for p in params)
    return total - saved


def _cast_layers(module: Any, prefix: str, patterns: list[str], kinds: tuple[type, ...]) -> list[tuple[str, Any]]:
    """The layers diffusers' ``_apply_layerwise_casting`` casts: it stops at a skipped name."""
    if prefix and any(re.search(p, prefix) for p in patterns):
        return []
    if isinstance(module, kinds):
        return [(prefix, module)]
    found: list[tuple[str, Any]] = []
    for name, child in module.named_children():
        found += _cast_layers(child, f"{prefix}.{name}" if prefix else name, patterns, kinds)
    return found


def quantizable_params(model: Any) -> int:
    """Parameters a GGUF conversion quantizes: 2-D linear weights whose rows are a whole
    number of 32-wide blocks (city96's converter keeps 1-D tensors, biases and odd shapes)."""
    import torch

    return sum(
        m.weight.numel()
        for m in model.modules()
        if isinstance(m, torch.nn.Linear) and m.weight.shape[1] % 32 == 0
    )


def footprint(preset: Preset) -> Footprint:
    import torch

    assert preset.configs, preset.name
    dtype = getattr(torch, preset.dtype)
    pipe = build_pipeline(
        CONFIGS / preset.configs, device="meta", dtype=dtype, fp32_components=preset.fp32_components
    )
    width, height, frames = default_clip(preset)
    batch = 2 if preset.guidance > 1.0 and preset.family in CFG_BATCHED else 1
    work = stages(pipe, preset.family, width, height, frames, dtype, cfg_batch=batch, fps=preset.fps)
    single = stages(pipe, preset.family, width, height, frames, dtype, fps=preset.fps)
    vae = pipe.vae
    vae_peak = max(peak_bytes(work.vae_encode), peak_bytes(work.vae_decode))
    tiled_peak = vae_peak
    if hasattr(vae, "use_tiling"):
        vae.enable_tiling()
        tiled_peak = max(peak_bytes(work.vae_encode), peak_bytes(work.vae_decode))
        vae.disable_tiling()
    denoiser_peak = peak_bytes(work.denoiser)
    encoder_peak = peak_bytes(work.text_encoder) if work.text_encoder else 0
    # Parts a pipeline runs once per clip besides these (LTX-2's connectors, audio VAE, vocoder).
    own_peaks = {name: peak_bytes(stage) for name, stage in work.extra.items()}
    components = []
    for name, module in pipe.components.items():
        if not hasattr(module, "parameters") or name not in ROLES:
            continue
        role = ROLES[name]
        is_denoiser = role == "denoiser"
        components.append(
            ComponentFootprint(
                name=name,
                role=role,
                weight_bytes=_tensor_bytes(module),
                largest_leaf_bytes=largest_leaf(module),
                activation_bytes=own_peaks.get(name, {"denoiser": denoiser_peak, "vae": vae_peak}.get(role, encoder_peak)),
                tiled_activation_bytes=tiled_peak if role == "vae" else None,
                fp8_bytes=fp8_bytes(module) if is_denoiser else None,
                quantizable_params=quantizable_params(module) if is_denoiser else 0,
            )
        )
    forwards = 2 if preset.guidance > 1.0 else 1
    pflop = flops(single.denoiser) * forwards * preset.steps / 1e15
    return Footprint(
        preset=preset.name,
        configs=preset.configs,
        clip=f"{width}×{height}, {frames} frames",
        components=tuple(components),
        denoise_pflop=round(pflop, 4),
    )


def run(names: list[str] | None = None) -> list[Figure]:
    """Count `names` (default: every preset with configs), update footprints.json, and report
    each preset's weights and peaks."""
    chosen = [PRESETS[n] for n in names] if names else [p for p in PRESETS.values() if p.configs]
    counted = {preset.name: footprint(preset) for preset in chosen}
    write_footprints(
        {**footprints(), **counted},
        how="python -m bench memory: built on the meta device from pipeline/configs/, "
        "activation peaks of live tensors at each preset's default clip (16:9 photo)",
    )
    out: list[Figure] = []
    for name, fp in counted.items():
        parts = ", ".join(f"{c.name} {c.weight_bytes / GIB:.2f}" for c in fp.components)
        out.append(Figure(f"{name}_weights_gib", fp.weight_bytes / GIB, "GiB", detail=parts))
        peaks = ", ".join(
            f"{c.name} {c.activation_bytes / GIB:.2f}"
            + (f" (tiled {c.tiled_activation_bytes / GIB:.2f})" if c.tiled_activation_bytes is not None else "")
            for c in fp.components
        )
        top = max(c.activation_bytes for c in fp.components)
        out.append(Figure(f"{name}_activation_peak_gib", top / GIB, "GiB", detail=f"{fp.clip}: {peaks}"))
    return out


if __name__ == "__main__":
    import sys

    from bench.__main__ import report

    sys.exit(report({"memory": run(sys.argv[1:] or None)}, suffix="-memory"))
