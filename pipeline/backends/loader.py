"""Finding a model (preset, local directory or hub id) and loading it with diffusers.

Resolution is separate from loading so a bad name, a missing directory or an uncached repo id
fails in milliseconds with one actionable sentence, before torch is even imported, and never
waits on a network that is not there.
"""

from __future__ import annotations

import json
import logging
import os
import re
import socket
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from contract import ModelError
from pipeline.presets import (
    FAMILY_OF_CLASS,
    I2V_CLASS,
    PRESETS,
    Preset,
    get_preset,
    preset_for_family,
)

logger = logging.getLogger("pipeline")

_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9_.-]+$")
_CONFIG_FILES = (
    "config.json",
    "scheduler_config.json",
    "preprocessor_config.json",
    "tokenizer_config.json",
)
_reachable: dict[str, bool] = {}


@dataclass(frozen=True)
class ModelSource:
    """Where a model's files are and what model_index.json says about them."""

    name: str
    """As the member or operator wrote it (preset name, path or repo id)."""
    location: str
    """What `from_pretrained` gets: a local directory or a repo id."""
    is_local: bool
    model_index: dict[str, Any] = field(hash=False)
    class_name: str
    """`_class_name` in model_index.json."""
    family: str
    load_class: str
    """The image-to-video class the checkpoint is loaded with."""
    preset: Preset
    """The named preset, or the defaults of the checkpoint's family."""
    files_dir: str | None = None
    """Directory holding the files (the local dir, or the hub cache snapshot), when on disk."""
    local_files_only: bool = True
    variant: str | None = None


def is_offline() -> bool:
    """HF_HUB_OFFLINE (or TRANSFORMERS_OFFLINE) as set now, not only at import time."""
    from huggingface_hub import constants

    env = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE") or ""
    return bool(constants.HF_HUB_OFFLINE) or env.strip().lower() in ("1", "on", "yes", "true")


def hub_cache_dir() -> str:
    """The hub cache directory as the environment says now (HF_HUB_CACHE, HF_HOME)."""
    if os.environ.get("HF_HUB_CACHE"):
        return os.path.expanduser(os.environ["HF_HUB_CACHE"])
    if os.environ.get("HF_HOME"):
        return os.path.join(os.path.expanduser(os.environ["HF_HOME"]), "hub")
    from huggingface_hub import constants

    return constants.HF_HUB_CACHE


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the hub endpoint accepts a TCP connection (cached per process); False offline."""
    if is_offline():
        return False
    from huggingface_hub import constants

    endpoint = os.environ.get("HF_ENDPOINT") or constants.ENDPOINT
    url = urlparse(endpoint)
    host, port = url.hostname or "huggingface.co", url.port or (443 if url.scheme != "http" else 80)
    key = f"{host}:{port}"
    if key not in _reachable:
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            _reachable[key] = True
        except OSError:
            _reachable[key] = False
    return _reachable[key]


def cached_file(repo_id: str, filename: str) -> str | None:
    """Path of `filename` of `repo_id` in the local hub cache, or None. Never touches the network."""
    from huggingface_hub import try_to_load_from_cache

    try:
        path = try_to_load_from_cache(repo_id, filename, cache_dir=hub_cache_dir())
    except Exception:  # malformed ids raise validation errors
        return None
    return path if isinstance(path, str) else None


def is_cached(repo_id: str) -> bool:
    """Whether model_index.json and every component's config of `repo_id` are in the cache.

    Configs stand in for weights: a partial download usually lacks whole components.
    """
    index_path = cached_file(repo_id, "model_index.json")
    if index_path is None:
        return False
    try:
        model_index = json.loads(Path(index_path).read_text())
    except (OSError, ValueError):
        return False
    snapshot = Path(index_path).parent
    for name, value in model_index.items():
        if name.startswith("_") or not (isinstance(value, list) and len(value) == 2 and all(value)):
            continue
        if not any((snapshot / name / config).exists() for config in _CONFIG_FILES):
            if not any(cached_file(repo_id, f"{name}/{config}") for config in _CONFIG_FILES):
                return False
    return True


def _missing_hub_model(repo_id: str) -> ModelError:
    why = " (HF_HUB_OFFLINE is set)" if is_offline() else ""
    return ModelError(
        f"Model {repo_id!r} not found locally and the Hugging Face hub is unreachable{why}; "
        f"download it first with `huggingface-cli download {repo_id}` or pass a local directory."
    )


def read_model_index(directory: Path, name: str) -> dict[str, Any]:
    path = directory / "model_index.json"
    if not path.is_file():
        raise ModelError(
            f"{name!r} has no model_index.json, so it is not a diffusers pipeline directory; pass "
            "the folder that holds model_index.json (e.g. one made by `huggingface-cli download "
            "<repo> --local-dir <folder>`)."
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ModelError(
            f"Cannot read {str(path)!r} ({exc.__class__.__name__}); check the file or download "
            "the model again."
        ) from None
    if not isinstance(data, dict) or not isinstance(data.get("_class_name"), str):
        raise ModelError(f"{str(path)!r} has no pipeline class name; download the model again.")
    return data


def classify(model_index: dict[str, Any], name: str) -> tuple[str, str]:
    """(family, image-to-video class) for a checkpoint, or a ModelError saying why it can't animate."""
    class_name = model_index["_class_name"]
    family = FAMILY_OF_CLASS.get(class_name)
    if family is None:
        supported = ", ".join(sorted(set(FAMILY_OF_CLASS.values())))
        kind = (
            "an image-to-video pipeline this bot does not support"
            if ("ImageToVideo" in class_name or "I2V" in class_name)
            else "not an image-to-video pipeline"
        )
        raise ModelError(
            f"{name!r} is a {class_name}, {kind}; use a preset ({', '.join(PRESETS)}) or a model "
            f"of a supported family ({supported})."
        )
    if class_name == "WanPipeline" and not model_index.get("expand_timesteps"):
        raise ModelError(
            f"{name!r} is a Wan text-to-video model and cannot start from a photo; use a Wan I2V or "
            "TI2V checkpoint (e.g. Wan-AI/Wan2.2-TI2V-5B-Diffusers)."
        )
    return family, I2V_CLASS[class_name]


def resolve(model: str) -> ModelSource:
    """Turn a preset name, local directory or hub repo id into a :class:`ModelSource`.

    Raises ModelError with one actionable sentence when the model cannot be used.
    """
    model = model.strip()
    if not model:
        raise ModelError("No model given; pass a preset name, a model directory or a repo id.")
    preset: Preset | None = None
    location = model
    if model in PRESETS:
        preset = get_preset(model)
        location = preset.repo_id

    path = Path(os.path.expanduser(location))
    if preset is None and path.exists():
        if not path.is_dir():
            raise ModelError(
                f"{model!r} is a file; pass the model directory (the folder holding model_index.json)."
            )
        if not os.access(path, os.R_OK | os.X_OK):
            raise ModelError(f"Model directory {model!r} is not readable; check its permissions.")
        model_index = read_model_index(path, model)
        family, load_class = classify(model_index, model)
        return ModelSource(
            name=model,
            location=str(path.resolve()),
            is_local=True,
            model_index=model_index,
            class_name=model_index["_class_name"],
            family=family,
            load_class=load_class,
            preset=preset_for_family(family, model_index),
            files_dir=str(path.resolve()),
        )

    if not _HUB_ID.match(location) or ".." in location:
        if preset is None and (os.sep in model or model.startswith((".", "~"))):
            raise ModelError(f"Model directory {model!r} does not exist; check the path.")
        get_preset(model)  # raises the "unknown model" message listing the presets

    return _resolve_hub(model, location, preset)


def _resolve_hub(name: str, repo_id: str, preset: Preset | None) -> ModelSource:
    index_path = cached_file(repo_id, "model_index.json")
    online = hub_reachable()
    if index_path is None:
        if not online:
            raise _missing_hub_model(repo_id)
        from huggingface_hub import hf_hub_download

        try:
            index_path = hf_hub_download(repo_id, "model_index.json", cache_dir=hub_cache_dir())
        except Exception as exc:  # 404, gated, auth...
            raise ModelError(
                f"Cannot fetch {repo_id!r} from the Hugging Face hub ({exc.__class__.__name__}); check "
                "the repo id, your access to it, or pass a local directory."
            ) from None
    directory = Path(index_path).parent
    model_index = read_model_index(directory, name)
    family, load_class = classify(model_index, name)
    if not online and not is_cached(repo_id):
        raise ModelError(
            f"Model {repo_id!r} is only partly downloaded and the Hugging Face hub is unreachable; "
            f"finish the download with `huggingface-cli download {repo_id}` or pass a local directory."
        )
    chosen = (
        preset
        if preset is not None and preset.family == family
        else preset_for_family(family, model_index)
    )
    return ModelSource(
        name=name,
        location=repo_id,
        is_local=False,
        model_index=model_index,
        class_name=model_index["_class_name"],
        family=family,
        load_class=load_class,
        preset=chosen,
        files_dir=str(directory),
        local_files_only=not online,
        variant=chosen.variant if preset is not None and repo_id == preset.repo_id else None,
    )


def source_for_pipeline(
    pipe: Any, *, preset: str | None = None, name: str | None = None
) -> ModelSource:
    """A :class:`ModelSource` for a pipeline that exists only in memory (built from configs).

    Its config plays model_index.json's part; `preset` names the settings to render with
    (default: the family's), `name` what logs and metadata call it.
    """
    model_index = {"_class_name": type(pipe).__name__, **dict(pipe.config)}
    label = name or preset or type(pipe).__name__
    family, load_class = classify(model_index, label)
    chosen = get_preset(preset) if preset else preset_for_family(family, model_index)
    if chosen.family != family:
        raise ModelError(f"Preset {chosen.name!r} is for {chosen.family} models, not {family}.")
    return ModelSource(
        name=label,
        location=label,
        is_local=True,
        model_index=model_index,
        class_name=model_index["_class_name"],
        family=family,
        load_class=type(pipe).__name__,
        preset=chosen,
    )


# --- loading -----------------------------------------------------------------------------------


def _dtype_kwarg() -> str:
    """diffusers >= 0.36 takes `dtype=` (and deprecates `torch_dtype=`); older ones `torch_dtype=`."""
    try:
        from diffusers.utils.deprecation_utils import _resolve_dtype  # noqa: F401
    except ImportError:
        return "torch_dtype"
    return "dtype"


def load_pipeline(source: ModelSource, dtype: Any) -> Any:
    """`DiffusionPipeline.from_pretrained` (or the family's image-to-video class when
    model_index.json names a text-to-video class) with `dtype` (a torch dtype or a
    per-component dict). Loading problems become ModelError."""
    import diffusers

    if source.load_class == source.class_name:
        loader = diffusers.DiffusionPipeline
    else:
        loader = getattr(diffusers, source.load_class)
    kwargs: dict[str, Any] = {_dtype_kwarg(): dtype, "local_files_only": source.local_files_only}
    if not source.is_local:
        kwargs["cache_dir"] = hub_cache_dir()
    if source.variant:
        kwargs["variant"] = source.variant
    try:
        pipe = loader.from_pretrained(source.location, **kwargs)
    except ImportError as exc:
        raise ModelError(
            f"Cannot load {source.name!r}: {_first_line(exc)}; install the missing package."
        ) from None
    except Exception as exc:  # OSError, ValueError, safetensors errors, bad configs...
        if _is_out_of_memory(exc):
            raise
        if source.variant and "variant" in str(exc):
            kwargs.pop("variant")
            return _load_without_variant(loader, source, kwargs)
        raise ModelError(
            f"Cannot load {source.name!r}: {_first_line(exc)}; download it again or pass a complete "
            "model directory."
        ) from None
    if type(pipe).__name__ != source.load_class and not isinstance(
        pipe, getattr(diffusers, source.load_class)
    ):
        raise ModelError(
            f"{source.name!r} loaded as {type(pipe).__name__}, not an image-to-video pipeline."
        )
    return pipe


def _is_out_of_memory(exc: BaseException) -> bool:
    """CUDA OOM is the caller's to handle (it may retry in low-memory mode), not a bad model."""
    return type(exc).__name__ == "OutOfMemoryError" or isinstance(exc, MemoryError)


def _load_without_variant(loader: Any, source: ModelSource, kwargs: dict[str, Any]) -> Any:
    try:
        return loader.from_pretrained(source.location, **kwargs)
    except Exception as exc:  # noqa: BLE001 - any loading failure is a model problem
        if _is_out_of_memory(exc):
            raise
        raise ModelError(
            f"Cannot load {source.name!r}: {_first_line(exc)}; download it again."
        ) from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    line = text[0] if text else exc.__class__.__name__
    return line[:300].rstrip(".")


# --- sizes -------------------------------------------------------------------------------------


def component_parameters(files_dir: str | None, model_index: dict[str, Any]) -> dict[str, int]:
    """Parameter count per component, read from safetensors headers (no weights loaded).

    Used to estimate the VRAM a checkpoint needs; components stored as .bin are estimated from
    file size (2 bytes per parameter). Empty when the files are not on disk.
    """
    if not files_dir:
        return {}
    root = Path(files_dir)
    counts: dict[str, int] = {}
    for name, value in model_index.items():
        if name.startswith("_") or not (isinstance(value, list) and len(value) == 2 and all(value)):
            continue
        folder = root / name
        if not folder.is_dir():
            continue
        total = 0
        for file in folder.glob("*.safetensors"):
            total += _safetensors_numel(file)
        if total == 0:
            total = sum(f.stat().st_size for f in folder.glob("*.bin")) // 2
        if total:
            counts[name] = total
    return counts


def _safetensors_numel(file: Path) -> int:
    try:
        with open(file, "rb") as handle:
            (length,) = struct.unpack("<Q", handle.read(8))
            if length > 100 * 2**20:
                return 0
            header = json.loads(handle.read(length))
    except (OSError, ValueError, struct.error):
        return 0
    total = 0
    for key, meta in header.items():
        if key == "__metadata__" or not isinstance(meta, dict):
            continue
        numel = 1
        for dim in meta.get("shape", ()):
            numel *= int(dim)
        total += numel
    return total
