"""LoRAs on a loaded pipeline: found (local file or folder, the hub cache, the hub), loaded with
diffusers' ``load_lora_weights`` into the denoiser they belong to, then either fused or kept
as switchable adapters.

Always-on LoRAs (a preset's distillation pair, the operator's ``LORAS``) are fused into the
weights and the LoRA layers removed before compile, offload or quantization: a fused LoRA costs
nothing per step, and unfused layers would cancel fp8's speed-up. Effect LoRAs that members
choose per job stay loaded as named adapters; :func:`use_effect` switches them between jobs
without reloading the model.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from contract import Effect, LoraSpec, ModelError, is_out_of_memory, one_line
from pipeline.backends.hub import fetch_file

logger = logging.getLogger("pipeline")


def locate(spec: LoraSpec) -> tuple[str, str]:
    """(folder, file name) of the LoRA on this machine, downloading it from the hub only when
    the hub is reachable and the file is not cached. Raises ModelError naming the file and how
    to get it."""
    path = Path(spec.source).expanduser()
    if path.is_file():
        return str(path.parent), path.name
    if path.is_dir():
        if spec.weight_name:
            if not (path / spec.weight_name).is_file():
                raise ModelError(f"The LoRA file {spec.weight_name!r} is not in {str(path)!r}.")
            return str(path), spec.weight_name
        files = sorted(p.name for p in path.glob("*.safetensors"))
        if len(files) != 1:
            found = ", ".join(files) if files else "none"
            raise ModelError(
                f"Name the LoRA file in {str(path)!r} ({spec.source}:FILE.safetensors); "
                f".safetensors files there: {found}."
            )
        return str(path), files[0]
    if _looks_local(spec.source):
        raise ModelError(f"The LoRA {spec.source!r} does not exist on this machine.")
    if not spec.weight_name:
        raise ModelError(
            f"Name the LoRA file in the repo {spec.source!r}: {spec.source}:FILE.safetensors."
        )
    cached = fetch_file(spec.source, spec.weight_name, "The LoRA")
    return os.path.dirname(cached), os.path.basename(cached)


def _looks_local(source: str) -> bool:
    """A path, not a repo id: repo ids never start with these or name a weights file."""
    return source.startswith((".", "/", "~")) or source.endswith(".safetensors")


def load_adapters(pipe: Any, loras: Sequence[LoraSpec], *, prefix: str) -> list[str]:
    """Load each LoRA as an adapter named ``{prefix}{i}`` into its component."""
    if not loras:
        return []
    if not hasattr(pipe, "load_lora_weights"):
        raise ModelError(f"{type(pipe).__name__} does not take LoRAs; remove them from LORAS.")
    names = []
    for i, spec in enumerate(loras):
        if spec.component == "transformer_2" and getattr(pipe, "transformer_2", None) is None:
            raise ModelError(
                f"The LoRA {spec.label} is for a second denoiser (Wan 2.2 A14B's low-noise "
                "expert), which this model does not have."
            )
        folder, weight_name = locate(spec)
        name = f"{prefix}{i}"
        extra = {"load_into_transformer_2": True} if spec.component == "transformer_2" else {}
        try:
            pipe.load_lora_weights(folder, weight_name=weight_name, adapter_name=name, **extra)
        except ModelError:
            raise
        except Exception as exc:
            if is_out_of_memory(exc):
                raise
            raise ModelError(
                f"The LoRA {spec.label} does not fit this model ({_reason(exc)}); check that it "
                "was made for this model and this expert."
            ) from None
        names.append(name)
    return names


Kept = tuple[tuple[str, float], ...]
"""Always-on LoRAs left as active adapters: (adapter name, strength)."""


def fuse_loras(pipe: Any, loras: Sequence[LoraSpec], *, quantized: bool = False) -> Kept:
    """Load, fuse at each LoRA's strength, and remove the LoRA layers; returns ().

    `quantized` (GGUF denoisers): a LoRA cannot be fused into quantized weights, so the LoRAs
    stay loaded as active adapters instead (the same result, a little slower per step), and
    are returned so that switching effects keeps them on."""
    names = load_adapters(pipe, loras, prefix="fused_" if not quantized else "kept_")
    if not names:
        return ()
    if quantized:
        kept = tuple((name, spec.strength) for name, spec in zip(names, loras))
        _activate(pipe, kept)
        logger.info("LoRAs kept as adapters on quantized weights: %s", ", ".join(s.label for s in loras))
        return kept
    for name, spec in zip(names, loras):
        pipe.fuse_lora(components=[spec.component], lora_scale=spec.strength, adapter_names=[name])
    pipe.unload_lora_weights()
    logger.info("fused LoRAs: %s", ", ".join(spec.label for spec in loras))
    return ()


def _activate(pipe: Any, adapters: Kept) -> None:
    pipe.enable_lora()
    pipe.set_adapters([name for name, _ in adapters], [strength for _, strength in adapters])


def _reason(exc: BaseException) -> str:
    return one_line(exc).rstrip(".")


def load_effects(pipe: Any, effects: Sequence[Effect], *, kept: Kept = ()) -> dict[str, list[str]]:
    """Load every effect's LoRAs as adapters, then switch them all off (but the `kept`
    always-on ones): the plain model runs until a job asks for an effect. Returns each
    effect's adapter names."""
    adapters = {
        effect.name: load_adapters(pipe, effect.loras, prefix=f"effect-{effect.name}-")
        for effect in effects
    }
    if adapters:
        use_effect(pipe, None, kept=kept)
        logger.info("effects ready: %s", ", ".join(adapters))
    return adapters


def use_effect(
    pipe: Any, adapters: Sequence[str] | None, strengths: Sequence[float] = (), *, kept: Kept = ()
) -> None:
    """Switch the adapters of one effect on (at their strengths) and every other one off,
    the `kept` always-on ones excepted; None: the plain model. Cheap: no weights are loaded
    or moved."""
    if adapters is None:
        if kept:
            _activate(pipe, kept)
        else:
            pipe.disable_lora()
        return
    _activate(pipe, (*kept, *zip(adapters, strengths)))
