"""Turning what a member or operator wrote (preset, local directory, hub id) into a ModelSource.

Resolution is separate from loading so a bad name, a missing directory or an uncached repo id
fails in milliseconds with one actionable sentence, before torch is even imported, and never
waits on a network that is not there.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from contract import ModelError
from pipeline.backends.families import family_for
from pipeline.backends.hub import (
    cached_file,
    hub_cache_dir,
    hub_reachable,
    is_cached,
    missing_hub_model,
)
from pipeline.backends.model_index import read_model_index
from pipeline.presets import FAMILY_OF_CLASS, I2V_CLASS, PRESETS, Preset, get_preset

_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9_.-]+$")


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
    single_file: tuple[str, str] | None = None
    """(repo, file) whose transformer and VAE replace the repo's (see Preset.single_file)."""

    @classmethod
    def of(
        cls,
        name: str,
        location: str,
        model_index: dict[str, Any],
        *,
        preset: Preset | None = None,
        load_class: str | None = None,
        **where: Any,
    ) -> ModelSource:
        """The source described by `model_index`: its family and image-to-video class from the
        pipeline class (a ModelError when it cannot animate a photo), and `preset` when it is of
        that family, else the family's defaults. `where`: is_local, files_dir and so on."""
        family, i2v_class = classify(model_index, name)
        if preset is None or preset.family != family:
            preset = family_for(family).default_preset(model_index)
        return cls(
            name=name,
            location=location,
            model_index=model_index,
            class_name=model_index["_class_name"],
            family=family,
            load_class=load_class or i2v_class,
            preset=preset,
            **where,
        )


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
        return _resolve_directory(model, path)

    if not _HUB_ID.match(location) or ".." in location:
        if preset is None and (os.sep in model or model.startswith((".", "~"))):
            raise ModelError(f"Model directory {model!r} does not exist; check the path.")
        get_preset(model)  # raises the "unknown model" message listing the presets

    return _resolve_hub(model, location, preset)


def _resolve_directory(name: str, path: Path) -> ModelSource:
    if not path.is_dir():
        raise ModelError(
            f"{name!r} is a file; pass the model directory (the folder holding model_index.json)."
        )
    if not os.access(path, os.R_OK | os.X_OK):
        raise ModelError(f"Model directory {name!r} is not readable; check its permissions.")
    location = str(path.resolve())
    model_index = read_model_index(path, name)
    return ModelSource.of(name, location, model_index, is_local=True, files_dir=location)


def _resolve_hub(name: str, repo_id: str, preset: Preset | None) -> ModelSource:
    index_path = cached_file(repo_id, "model_index.json")
    online = hub_reachable()
    if index_path is None:
        if not online:
            raise missing_hub_model(repo_id)
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
    source = ModelSource.of(
        name,
        repo_id,
        model_index,
        preset=preset,
        is_local=False,
        files_dir=str(directory),
        # Complete in the cache (the download step's doing): load without asking the hub.
        local_files_only=not online or _complete(repo_id, preset),
    )
    if not online and not is_cached(repo_id):
        raise ModelError(
            f"Model {repo_id!r} is only partly downloaded and the Hugging Face hub is unreachable; "
            f"finish the download with `huggingface-cli download {repo_id}` or pass a local directory."
        )
    if preset is not None and source.preset is preset and repo_id == preset.repo_id:
        return replace(source, variant=preset.variant, single_file=preset.single_file)
    return source


def _complete(repo_id: str, preset: Preset | None) -> bool:
    """Whether every file the loader reads from `repo_id` is in the cache (no network)."""
    from pipeline.backends.loader import SINGLE_FILE_COMPONENTS
    from pipeline.downloads import Wanted
    from pipeline.fetcher import is_fetched

    single = preset is not None and preset.repo_id == repo_id and preset.single_file is not None
    skip = frozenset(SINGLE_FILE_COMPONENTS) if single else frozenset()
    variant = preset.variant if preset is not None and preset.repo_id == repo_id else None
    return is_fetched([Wanted(repo_id, skip_weights_of=skip, variant=variant)])


def source_for_pipeline(
    pipe: Any, *, preset: str | None = None, name: str | None = None
) -> ModelSource:
    """A :class:`ModelSource` for a pipeline that exists only in memory (built from configs).

    Its config plays model_index.json's part; `preset` names the settings to render with
    (default: the family's), `name` what logs and metadata call it.
    """
    model_index = {"_class_name": type(pipe).__name__, **dict(pipe.config)}
    label = name or preset or type(pipe).__name__
    chosen = get_preset(preset) if preset else None
    source = ModelSource.of(
        label, label, model_index, preset=chosen, load_class=type(pipe).__name__, is_local=True
    )
    if chosen is not None and source.preset is not chosen:
        raise ModelError(f"Preset {chosen.name!r} is for {chosen.family} models, not {source.family}.")
    return source
