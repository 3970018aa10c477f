"""Loading a resolved checkpoint with diffusers, and sizing it from its files without loading.

Every loading failure that is the checkpoint's fault becomes one ModelError sentence; running
out of memory is not the checkpoint's fault and is re-raised for the caller, which may retry in
low-memory mode.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from contract import ModelError, is_out_of_memory, one_line
from pipeline.backends.hub import fetch_file, hub_cache_dir
from pipeline.backends.model_index import component_names
from pipeline.backends.source import ModelSource

logger = logging.getLogger("pipeline")


def _dtype_kwarg() -> str:
    """diffusers >= 0.36 takes `dtype=` (and deprecates `torch_dtype=`); older ones `torch_dtype=`."""
    try:
        from diffusers.utils.deprecation_utils import _resolve_dtype  # noqa: F401
    except ImportError:
        return "torch_dtype"
    return "dtype"


def load_pipeline(
    source: ModelSource, dtype: Any, *, components: Mapping[str, Any] | None = None
) -> Any:
    """`DiffusionPipeline.from_pretrained` (or the family's image-to-video class when
    model_index.json names a text-to-video class) with `dtype` (a torch dtype or a
    per-component dict). `components`: models already loaded (e.g. GGUF-quantized
    transformers), used as they are instead of the repo's. Loading problems become ModelError."""
    import diffusers

    # Components are passed to the pipeline's own class: DiffusionPipeline.from_pretrained reads
    # the optional components (Wan's transformer and transformer_2) off its own, empty list and
    # silently loads those from the repo instead of the ones passed.
    if source.load_class == source.class_name and not components:
        loader = diffusers.DiffusionPipeline
    else:
        loader = getattr(diffusers, source.load_class)
    kwargs: dict[str, Any] = {_dtype_kwarg(): dtype, "local_files_only": source.local_files_only}
    if not source.is_local:
        kwargs["cache_dir"] = hub_cache_dir()
    if source.variant:
        kwargs["variant"] = source.variant
    if source.single_file is not None:
        kwargs.update(single_file_components(source, dtype))
    if components:
        kwargs.update(components)
    try:
        pipe = loader.from_pretrained(source.location, **kwargs)
    except ImportError as exc:
        raise ModelError(
            f"Cannot load {source.name!r}: {_reason(exc)}; install the missing package."
        ) from None
    except Exception as exc:  # OSError, ValueError, safetensors errors, bad configs...
        if is_out_of_memory(exc):
            raise
        if source.variant and "variant" in str(exc):
            kwargs.pop("variant")
            return _load_without_variant(loader, source, kwargs)
        raise ModelError(
            f"Cannot load {source.name!r}: {_reason(exc)}; download it again or pass a complete "
            "model directory."
        ) from None
    if type(pipe).__name__ != source.load_class and not isinstance(
        pipe, getattr(diffusers, source.load_class)
    ):
        raise ModelError(
            f"{source.name!r} loaded as {type(pipe).__name__}, not an image-to-video pipeline."
        )
    return pipe


SINGLE_FILE_COMPONENTS = ("transformer", "vae")
"""What a single-file video checkpoint in the original layout holds (LTX: both)."""


def single_file_components(source: ModelSource, dtype: Any) -> dict[str, Any]:
    """The transformer and VAE of `source.single_file`, each converted by diffusers'
    ``from_single_file`` with the config of the same component in the base repo given
    explicitly: diffusers' own guess would fetch another repo's config from the hub."""
    import diffusers

    repo, filename = source.single_file  # type: ignore[misc]
    path = str(Path(repo) / filename) if Path(repo).is_dir() else fetch_file(repo, filename, "The checkpoint")
    # The configs from the folder on disk (the hub cache's snapshot): diffusers reads a repo
    # id's config through the cache it found at import, not the one the environment names now.
    config: dict[str, Any] = {
        "config": source.files_dir or source.location,
        "local_files_only": source.local_files_only,
    }
    if not source.is_local:
        config["cache_dir"] = hub_cache_dir()
    components = {}
    for name in SINGLE_FILE_COMPONENTS:
        class_name = source.model_index[name][1]
        wanted = dtype.get(name, dtype["default"]) if isinstance(dtype, dict) else dtype
        try:
            components[name] = getattr(diffusers, class_name).from_single_file(
                path, subfolder=name, torch_dtype=wanted, **config
            )
        except Exception as exc:  # noqa: BLE001 - a wrong or cut file is the checkpoint's fault
            if is_out_of_memory(exc):
                raise
            raise ModelError(
                f"Cannot load the {name} of {filename!r}: {_reason(exc)}; download it again "
                f"(`huggingface-cli download {repo} {filename}`)."
            ) from None
    return components


def _load_without_variant(loader: Any, source: ModelSource, kwargs: dict[str, Any]) -> Any:
    try:
        return loader.from_pretrained(source.location, **kwargs)
    except Exception as exc:  # noqa: BLE001 - any loading failure is a model problem
        if is_out_of_memory(exc):
            raise
        raise ModelError(f"Cannot load {source.name!r}: {_reason(exc)}; download it again.") from None


def _reason(exc: BaseException) -> str:
    """The exception in one line, without a trailing full stop (a sentence continues after it)."""
    return one_line(exc).rstrip(".")


def component_parameters(files_dir: str | None, model_index: dict[str, Any]) -> dict[str, int]:
    """Parameter count per component, read from safetensors headers (no weights loaded).

    Used to estimate the VRAM a checkpoint needs; components stored as .bin are estimated from
    file size (2 bytes per parameter). Empty when the files are not on disk.
    """
    if not files_dir:
        return {}
    root = Path(files_dir)
    counts: dict[str, int] = {}
    for name in component_names(model_index):
        folder = root / name
        if not folder.is_dir():
            continue
        total = sum(_safetensors_numel(file) for file in folder.glob("*.safetensors"))
        if total == 0:
            total = sum(f.stat().st_size for f in folder.glob("*.bin")) // 2
        if total:
            counts[name] = total
    return counts


def _safetensors_numel(file: Path) -> int:
    """Elements in one safetensors file; safe_open reads only its header, never the tensors."""
    from safetensors import SafetensorError, safe_open

    total = 0
    try:
        with safe_open(file, framework="numpy") as weights:
            for key in weights.keys():
                numel = 1
                for dim in weights.get_slice(key).get_shape():
                    numel *= int(dim)
                total += numel
    except (OSError, SafetensorError):
        return 0
    return total


def quiet_libraries() -> None:
    """diffusers/transformers progress bars and load chatter would garble the CLI's bar and the
    worker logs; our own Progress events replace them."""
    try:
        import diffusers
        import transformers

        diffusers.utils.logging.set_verbosity_error()
        diffusers.utils.logging.disable_progress_bar()
        transformers.utils.logging.set_verbosity_error()
        transformers.utils.logging.disable_progress_bar()
    except (ImportError, AttributeError):
        pass
