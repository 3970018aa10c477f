"""LoRAs as plain data: which file, into which denoiser, how strongly.

Both the presets (a distillation LoRA pair) and operators (``LORAS`` / ``--lora``) name LoRAs
with this; the worker loads them. ``parse`` reads the operator's one-line form.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

Component = Literal["transformer", "transformer_2"]

_STRENGTH = re.compile(r"@(-?\d+(?:\.\d*)?|-?\.\d+)$")
FORMAT = "REPO_OR_PATH[:WEIGHT_FILE][@STRENGTH]"


@dataclass(frozen=True)
class LoraSpec:
    """One LoRA file. It is fused into the weights at load time: a LoRA that is always on
    costs nothing per step once fused, and an unfused one would undo fp8's speed-up."""

    source: str
    """A Hugging Face repo id, a local .safetensors file or a local folder holding one."""
    weight_name: str | None = None
    """The file inside the repo or folder (None: the only LoRA file there)."""
    strength: float = 1.0
    component: Component = "transformer"
    """The denoiser it belongs to; Wan 2.2 A14B's low-noise expert is ``transformer_2``."""

    def __post_init__(self) -> None:
        if not self.source.strip():
            raise ValueError("a LoRA needs a repo id or a path")
        if self.component not in ("transformer", "transformer_2"):
            raise ValueError(f"a LoRA goes into transformer or transformer_2, not {self.component!r}")
        if not -4.0 <= self.strength <= 4.0:
            raise ValueError(f"LoRA strength {self.strength:g} is outside -4 to 4")

    @property
    def label(self) -> str:
        """How logs and errors name it: the file, and the repo or folder it is in."""
        name = f"{self.source}:{self.weight_name}" if self.weight_name else self.source
        return name if self.strength == 1.0 else f"{name}@{self.strength:g}"

    @classmethod
    def parse(cls, text: str) -> LoraSpec:
        """``REPO_OR_PATH[:WEIGHT_FILE][@STRENGTH]``, e.g.
        ``lightx2v/Wan2.2-Lightning:Wan2.2-I2V-A14B-4steps-lora-rank64-Seko-V1/high_noise_model.safetensors@1``
        or ``./loras/orbit.safetensors@0.8``. Raises ValueError with the form expected."""
        text = text.strip()
        strength = 1.0
        if match := _STRENGTH.search(text):
            strength = float(match.group(1))
            text = text[: match.start()]
        source, weight_name = text, None
        # A colon after the first character separates the weight file (not a Windows drive).
        head, sep, tail = text.rpartition(":")
        if sep and len(head) > 1 and tail:
            source, weight_name = head, tail
        if not source:
            raise ValueError(f"{text!r} is not a LoRA; write {FORMAT}")
        return cls(source=source, weight_name=weight_name, strength=strength)
