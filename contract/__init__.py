"""The plain data that the bot, the job layer and the pipeline share, and nothing else.

Everything here is picklable and free of torch, PIL, sqlite and discord: it crosses Ray's
process boundary and is stored in SQLite.
"""

from contract.errors import (
    Cancelled,
    FailureKind,
    FinishUnavailable,
    InputError,
    ModelError,
    OutOfMemory,
    PipelineError,
    is_out_of_memory,
    one_line,
)
from contract.events import AnimateResult, Event, Failed, Progress, Stage, Takes
from contract.loras import Effect, LoraSpec
from contract.models import AUTO, CAMERA, CARDS, ModelCard, card_for, identical_takes
from contract.request import (
    CAMERA_LABELS,
    CAMERA_MOVES,
    MAX_UPSCALED_SIDE,
    PROMPT_MAX,
    SEED_MAX,
    VARIATIONS,
    AnimateRequest,
    JobSpec,
    random_seed,
)
from contract.workers import SLOTS, BackendOptions, WorkerInfo

__all__ = [
    "AUTO",
    "CAMERA",
    "CAMERA_LABELS",
    "CAMERA_MOVES",
    "CARDS",
    "MAX_UPSCALED_SIDE",
    "PROMPT_MAX",
    "SEED_MAX",
    "SLOTS",
    "VARIATIONS",
    "AnimateRequest",
    "AnimateResult",
    "BackendOptions",
    "Cancelled",
    "Effect",
    "Event",
    "Failed",
    "FailureKind",
    "FinishUnavailable",
    "InputError",
    "JobSpec",
    "LoraSpec",
    "ModelCard",
    "ModelError",
    "OutOfMemory",
    "PipelineError",
    "Progress",
    "Stage",
    "Takes",
    "WorkerInfo",
    "card_for",
    "identical_takes",
    "is_out_of_memory",
    "one_line",
    "random_seed",
]
