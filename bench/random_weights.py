"""Pipelines built from their published configs with random weights, without a download.

Why: a full-size model runs at full speed whatever its weights are, so the GPU benchmark times
the real architectures (LTX-Video 2B, Wan 2.2 TI2V-5B, Wan 2.2 I2V-A14B) from the config files
committed under pipeline/configs/, laid out like a diffusers repository without the weights. The
same code builds the tiny test pipelines' configs, and on the `meta` device it builds a 14B
model in milliseconds, which is how the tests check the configs and count FLOPs on a CPU.

The tokenizer is the one thing not built from a config: a word-level T5-style tokenizer made
on the fly stands in (token ids only feed an embedding; speed depends on the padded length,
which the pipeline fixes).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

CONFIGS = Path(__file__).parent.parent / "pipeline" / "configs"

_CONFIG_FILES = ("config.json", "scheduler_config.json", "preprocessor_config.json")
_WORDS = (
    "a an the and of in on with to at is are photo video scene person cat dog portrait face "
    "camera slowly gently quickly smoothly steadily barely very zooms zoom pans pan tilts tilt "
    "orbits orbit around left right up down push toward subject motion moves natural lively "
    "subtle dynamic energetic cinematic still holds almost perceptible arc slight turn high "
    "quality comes life wind water sky light hair smiles walks waves dance monkey"
).split()


def word_tokenizer(model_max_length: int = 512) -> Any:
    """A T5-like fast tokenizer (pad id 0, `</s>` appended) trained on the fly, no download."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2}
    for word in _WORDS:
        vocab.setdefault(word, len(vocab))
    tokenizer = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tokenizer.normalizer = normalizers.Lowercase()
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.post_processor = processors.TemplateProcessing(
        single="$A </s>", special_tokens=[("</s>", 1)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        pad_token="<pad>",
        eos_token="</s>",
        unk_token="<unk>",
        model_max_length=model_max_length,
    )


@contextlib.contextmanager
def _default_dtype(dtype: Any) -> Iterator[None]:
    import torch

    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


def read_config(folder: Path, component: str) -> dict[str, Any]:
    for name in _CONFIG_FILES:
        path = folder / component / name
        if path.is_file():
            return json.loads(path.read_text())
    raise FileNotFoundError(f"no config for {component} in {folder}")


def build_component(library: str, class_name: str, config: dict[str, Any]) -> Any:
    """One model or scheduler from its config, random weights, on the current default device."""
    if library == "transformers":
        import transformers

        model_class = getattr(transformers, class_name)
        return model_class(model_class.config_class.from_dict(config)).eval()
    import importlib

    import diffusers

    # A pipeline's own module (model_index names its package: ``["ltx2", "LTX2TextConnectors"]``)
    # lives under diffusers.pipelines, as diffusers itself resolves it when loading.
    where = diffusers if library == "diffusers" else importlib.import_module(f"diffusers.pipelines.{library}")
    built = getattr(where, class_name).from_config(config)
    return built.eval() if hasattr(built, "eval") else built


def build_pipeline(
    folder: str | Path,
    *,
    device: str = "cuda",
    dtype: Any = None,
    fp32_components: tuple[str, ...] = (),
) -> Any:
    """The image-to-video pipeline `folder`'s model_index.json describes, with random weights
    allocated and initialised directly on `device` in `dtype` (float32 for `fp32_components`)."""
    import diffusers
    import torch

    from pipeline.presets import I2V_CLASS

    folder = Path(folder)
    index = json.loads((folder / "model_index.json").read_text())
    dtype = dtype or torch.bfloat16
    components: dict[str, Any] = {}
    settings: dict[str, Any] = {}
    for name, value in index.items():
        if name.startswith("_"):
            continue
        if not (isinstance(value, list) and len(value) == 2):
            settings[name] = value  # pipeline settings: boundary_ratio, expand_timesteps...
            continue
        library, class_name = value
        if not library or not class_name:
            components[name] = None
        elif name.startswith("tokenizer"):
            components[name] = word_tokenizer()
        else:
            config = read_config(folder, name)
            if "Processor" in class_name or name == "feature_extractor":
                import transformers

                components[name] = getattr(transformers, class_name).from_dict(config)
                continue
            if "Scheduler" in class_name:
                components[name] = build_component(library, class_name, config)
                continue
            torch.manual_seed(0)
            with torch.device(device), _default_dtype(
                torch.float32 if name in fp32_components else dtype
            ):
                components[name] = build_component(library, class_name, config)
            # A few tensors ignore the default device (SVD's `torch.Tensor([alpha])` mix
            # factors are made on the CPU): move the stragglers.
            components[name].to(device)
    pipeline_class = getattr(diffusers, I2V_CLASS.get(index["_class_name"], index["_class_name"]))
    return pipeline_class(**components, **settings)


def parameter_counts(pipe: Any) -> dict[str, int]:
    """Parameters per model component of a built pipeline."""
    return {
        name: sum(p.numel() for p in module.parameters())
        for name, module in pipe.components.items()
        if hasattr(module, "parameters")
    }
