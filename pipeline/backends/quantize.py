"""How the diffusion transformer(s) store their weights: fp8 in memory, or a GGUF-quantized file.

Two levers of the memory planner for 8-24 GB GPUs, in the style of diffusers' ``hooks`` (as in
:mod:`pipeline.backends.placement`): each is a frozen config plus an ``apply_*``/``load_*``
function.

- fp8 storage keeps each linear/conv weight as float8_e4m3fn and upcasts it, layer by layer,
  for its forward (diffusers' layerwise casting): half the bytes of bf16, the same arithmetic.
- GGUF reads a transformer from a community-quantized file (Q8_0 ... Q4_K_M) in the original,
  non-diffusers key layout; its linear weights stay quantized and are dequantized per forward.

Both act on the denoisers only: they run at every step, while the text encoder and VAE run once
per clip, where offloading them costs little.
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from contract import ModelError, is_out_of_memory, one_line

logger = logging.getLogger("pipeline")

DENOISERS = ("transformer", "transformer_2")
"""The diffusion transformers of a pipeline (Wan 2.2 A14B has two experts)."""


def _torch_dtype(dtype: Any) -> Any:
    """A torch dtype from a torch dtype or its name ("bfloat16")."""
    import torch

    if isinstance(dtype, torch.dtype):
        return dtype
    found = getattr(torch, str(dtype), None)
    if isinstance(found, torch.dtype):
        return found
    raise ValueError(f"{dtype!r} is not a torch dtype")


# --- fp8 weight storage ---------------------------------------------------------------------


@dataclass(frozen=True)
class Fp8StorageConfig:
    """Which components keep their weights in fp8, and the dtypes on either side of the cast."""

    components: tuple[str, ...] = DENOISERS
    """Components missing from the pipeline are passed over."""
    storage_dtype: str = "float8_e4m3fn"
    compute_dtype: str | None = None
    """None: the dtype the pipeline was loaded in (the `compute_dtype` argument)."""


def apply_fp8_storage(
    pipe: Any, config: Fp8StorageConfig, compute_dtype: Any
) -> list[str]:
    """Keep the weights of `config.components` in fp8 between forwards; the names it applied to.

    diffusers' default skip patterns stay: norms, embeddings, patch embeddings and the output
    projection (and the model's own ``_keep_in_fp32_modules``) are precision-critical and small,
    so they stay in the compute dtype. A component already quantized (GGUF) is left alone: its
    quantized weights are not floats, so the cast would only coarsen its biases and norms.

    Apply this before any offload hooks. Sequential offload (accelerate's weights map) and
    group offload with streams (pinned CPU copies) keep copies of the weights as they were when
    the hooks went on and put those back on every offload, so a later cast is never seen or is
    silently undone and no memory is saved. Installed first, the casting hooks also sit inside
    the offload hooks: each layer travels to the GPU still in fp8 (half the transfer) and is
    upcast there. An offloaded component is refused with a ValueError: the caller's order is
    wrong, not the model.
    """
    storage = _torch_dtype(config.storage_dtype)
    compute = _torch_dtype(config.compute_dtype or compute_dtype)
    applied = []
    for name in config.components:
        model = getattr(pipe, name, None)
        if model is None:
            continue
        if not hasattr(model, "enable_layerwise_casting"):
            logger.info(
                "%s (%s) has no layerwise casting; fp8 storage not applied",
                name,
                type(model).__name__,
            )
            continue
        if getattr(model, "hf_quantizer", None) is not None or getattr(
            model, "is_quantized", False
        ):
            logger.info("%s is already quantized; fp8 storage not applied", name)
            continue
        if _has_layerwise_casting(model):
            applied.append(name)
            continue
        if _has_offload_hooks(model):
            raise ValueError(
                f"fp8 storage must be applied to {name} before offload hooks are installed"
            )
        model.enable_layerwise_casting(storage_dtype=storage, compute_dtype=compute)
        applied.append(name)
    if applied:
        logger.info(
            "fp8 weight storage (%s, computing in %s) for %s",
            storage,
            compute,
            ", ".join(applied),
        )
    return applied


def _has_layerwise_casting(model: Any) -> bool:
    return any(
        getattr(module, "_diffusers_hook", None) is not None
        and module._diffusers_hook.get_hook("layerwise_casting") is not None
        for module in model.modules()
    )


def _has_offload_hooks(model: Any) -> bool:
    """accelerate's hooks (model and sequential offload) or diffusers' group offload hooks."""
    for module in model.modules():
        if hasattr(module, "_hf_hook"):
            return True
        registry = getattr(module, "_diffusers_hook", None)
        if registry is not None and any("offload" in name for name in registry.hooks):
            return True
    return False


# --- GGUF-quantized transformers ------------------------------------------------------------


@dataclass(frozen=True)
class GGUFConfig:
    """Which pipeline component is read from which local .gguf file, and the dtype its
    dequantized weights are multiplied in (bfloat16 on a GPU; float32 on a CPU)."""

    files: Mapping[str, str] = field(hash=False)
    """Component name -> path, e.g. {"transformer": ".../Wan2.2-I2V-A14B-HighNoise-Q4_K_M.gguf",
    "transformer_2": ".../Wan2.2-I2V-A14B-LowNoise-Q4_K_M.gguf"}."""
    compute_dtype: str = "bfloat16"


def load_gguf_components(
    config: GGUFConfig,
    *,
    config_dir: str,
    local_files_only: bool,
    cache_dir: str | None,
    class_names: Mapping[str, str],
) -> dict[str, Any]:
    """Each file of `config` loaded by diffusers' ``from_single_file`` as the model class that
    `class_names` (model_index.json's) names for its component, keyed by component, ready to
    pass to ``from_pretrained``.

    `config_dir`: the diffusers-layout model whose ``<component>/config.json`` describes the
    model, preferably its folder on disk: diffusers reads a repo id's config through the hub
    cache it found at import, whatever `cache_dir` says. Loading failures that are a file's
    fault become one ModelError naming the file; running out of memory is re-raised.
    """
    import diffusers

    if importlib.util.find_spec("gguf") is None:
        raise ModelError(
            "GGUF checkpoints need the `gguf` package, which is not installed; install it "
            "(`pip install 'gguf>=0.10'`) or use the model's safetensors weights."
        )
    compute = _torch_dtype(config.compute_dtype)
    quantization = diffusers.GGUFQuantizationConfig(compute_dtype=compute)
    models: dict[str, Any] = {}
    for name, file in config.files.items():
        path = Path(file)
        if name not in class_names:
            raise ModelError(
                f"{path.name!r} is meant for the {name}, but this model has no {name}."
            )
        if not path.is_file():
            raise ModelError(
                f"The GGUF file {str(path)!r} for the {name} does not exist; download it first."
            )
        _check_readable(path, name)
        try:
            model = getattr(diffusers, class_names[name]).from_single_file(
                str(path),
                config=config_dir,
                subfolder=name,
                quantization_config=quantization,
                torch_dtype=compute,
                local_files_only=local_files_only,
                cache_dir=cache_dir,
            )
        except Exception as exc:  # a wrong or cut file is the file's fault
            if _out_of_memory(exc):
                raise
            raise ModelError(
                f"Cannot load the {name} from {path.name!r}: {_reason(exc)}; check that it is a "
                f"GGUF of this model's {name} and download it again."
            ) from None
        models[name] = model
    return models


def _check_readable(path: Path, name: str) -> None:
    """Parse the file's header and tensor table first: diffusers turns every reading error
    (a cut download, a missing package, even running out of memory) into the same "Unable to
    load weights" OSError, which says nothing about what is wrong."""
    import gguf

    try:
        reader = gguf.GGUFReader(str(path))
        if not reader.tensors:
            raise ValueError("it holds no tensors")
    except Exception as exc:  # any parse failure means a damaged file
        if is_out_of_memory(exc):
            raise
        raise ModelError(
            f"{path.name!r} (the {name}) is not a complete GGUF file ({_reason(exc)}); it is "
            "cut short or damaged, download it again."
        ) from None


def _out_of_memory(exc: BaseException) -> bool:
    """Out of memory anywhere in the chain: diffusers wraps reading errors in OSErrors."""
    seen: BaseException | None = exc
    while seen is not None:
        if is_out_of_memory(seen):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _reason(exc: BaseException) -> str:
    """The exception in one line, without a trailing full stop (a sentence continues after it).
    A file that lacks some of the model's weights leaves them on the meta device, which diffusers
    only notices afterwards, as "Cannot copy out of meta tensor"."""
    text = one_line(exc).rstrip(". ")
    if "meta tensor" in text:
        return "it lacks some of the model's weights"
    return text
