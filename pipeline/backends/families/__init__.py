"""The diffusers image-to-video families by name, and the call-signature filter they share.

Import cost is plain Python: the family classes read a loaded pipeline's attributes but never
import torch or diffusers themselves.
"""

from __future__ import annotations

import inspect
import logging
from typing import Any

from contract import ModelError
from pipeline.backends.families.base import Constraints, Family, PipelineRules
from pipeline.backends.families.cogvideox import CogVideoX
from pipeline.backends.families.ltx import LTX
from pipeline.backends.families.ltx2 import LTX2
from pipeline.backends.families.svd import SVD
from pipeline.backends.families.wan import Wan

__all__ = [
    "FAMILIES",
    "CogVideoX",
    "Constraints",
    "Family",
    "LTX",
    "LTX2",
    "PipelineRules",
    "SVD",
    "Wan",
    "family_for",
    "supported_kwargs",
]

logger = logging.getLogger("pipeline")

FAMILIES: dict[str, Family] = {family.name: family for family in (LTX(), LTX2(), Wan(), SVD(), CogVideoX())}


def family_for(name: str) -> Family:
    """The family called `name`, or a ModelError (a checkpoint of a family we cannot drive)."""
    try:
        return FAMILIES[name]
    except KeyError:
        raise ModelError(f"No defaults for model family {name!r}.") from None


def supported_kwargs(pipe: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
    """Drop arguments this diffusers version's ``__call__`` does not take (logged), so a preset
    setting that an older or newer pipeline lacks degrades instead of crashing."""
    parameters = inspect.signature(type(pipe).__call__).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return kwargs
    dropped = sorted(k for k in kwargs if k not in parameters)
    if dropped:
        logger.debug("%s does not take %s; ignored", type(pipe).__name__, ", ".join(dropped))
    return {k: v for k, v in kwargs.items() if k in parameters}
