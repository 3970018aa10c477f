"""Reading a diffusers checkpoint's model_index.json: its pipeline class and its components."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from contract import ModelError

CONFIG_FILES = (
    "config.json",
    "scheduler_config.json",
    "preprocessor_config.json",
    "tokenizer_config.json",
)
"""One of these sits in every component's folder; which one depends on the component's kind."""


def component_names(model_index: Mapping[str, Any]) -> list[str]:
    """The components model_index.json lists with a (library, class) pair; a null pair means
    the pipeline runs without that component (e.g. Wan 2.2 TI2V's image_encoder)."""
    return [name for name, value in model_index.items() if is_component(model_index, name)]


def is_component(model_index: Mapping[str, Any], name: str) -> bool:
    """Whether `name` is a component the checkpoint really has."""
    value = model_index.get(name)
    return (
        not name.startswith("_")
        and isinstance(value, (list, tuple))
        and len(value) == 2
        and all(value)
    )


def read_model_index(directory: Path, name: str) -> dict[str, Any]:
    """model_index.json of `directory`, or a ModelError saying what to pass instead."""
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
