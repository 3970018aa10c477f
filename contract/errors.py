"""The error family every layer shares: messages written for the member, never a traceback.

A :class:`PipelineError` is safe to show as is; anything else is a bug or an accident of the
machine, and :func:`one_line` is the only way its text reaches an operator's log line.
"""

from __future__ import annotations

from typing import Literal

FailureKind = Literal["bad_input", "model", "oom", "crash", "cancelled", "timeout", "internal"]
RETRYABLE: frozenset[FailureKind] = frozenset({"oom", "crash"})
"""Kinds that a fresh worker (in low-memory mode after "oom") may get past."""


class PipelineError(Exception):
    """An error whose message is safe and useful to show to the member or CLI user as is."""

    kind: FailureKind = "internal"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def to_event(self):  # -> Failed; typed in contract.events to avoid an import cycle
        from contract.events import Failed

        return Failed(reason=self.message, kind=self.kind, retryable=self.kind in RETRYABLE)


class InputError(PipelineError):
    """The member's input cannot be used (not an image, too small, bad option)."""

    kind = "bad_input"


class ModelError(PipelineError):
    """The model cannot be loaded or cannot do what was asked."""

    kind = "model"


class FinishUnavailable(ModelError):
    """This machine cannot smooth or upscale the clip asked for (the weights are not
    downloaded, or it has no GPU and its CPU is too slow for the clip): known before anything
    is rendered, so the job layer can refuse it before charging."""


class OutOfMemory(PipelineError):
    """The GPU (or host) ran out of memory; retrying with ``low_memory=True`` may work."""

    kind = "oom"


class Cancelled(PipelineError):
    """The job was cancelled while it ran."""

    kind = "cancelled"

    def __init__(self, message: str = "The job was cancelled.") -> None:
        super().__init__(message)


_OOM_TEXT = ("out of memory", "can't allocate memory", "cannot allocate memory")


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether `exc` means the device or host ran out of memory, without importing torch.

    Covers torch.cuda.OutOfMemoryError, MemoryError, our own OutOfMemory, Ray's
    OutOfMemoryError (the raylet killed a worker) and the RuntimeErrors that CPU allocators
    and some CUDA paths raise with "out of memory" in the text.
    """
    if isinstance(exc, (MemoryError, OutOfMemory)):
        return True
    if type(exc).__name__ == "OutOfMemoryError":
        return True
    return isinstance(exc, RuntimeError) and any(t in str(exc).lower() for t in _OOM_TEXT)


def one_line(exc: BaseException, limit: int = 300) -> str:
    """An exception as one short line: its member-facing message, or type and first line."""
    if isinstance(exc, PipelineError):
        text = exc.message
    else:
        lines = str(exc).strip().splitlines()
        text = lines[0].strip() if lines else ""
        text = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
