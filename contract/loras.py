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
_COMPONENT = re.compile(r"#(transformer(?:_2)?)$")
FORMAT = "REPO_OR_PATH[:WEIGHT_FILE][@STRENGTH]"
"""How operators write a LoRA; ``#transformer_2`` after it sends it to Wan 2.2 A14B's
low-noise expert."""
EFFECT_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,31}$")


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
        strength, component = 1.0, "transformer"
        if match := _COMPONENT.search(text):
            component = match.group(1)
            text = text[: match.start()]
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
        return cls(source=source, weight_name=weight_name, strength=strength, component=component)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Effect:
    """A look members may pick per job (``/animate effect``): LoRAs kept loaded as adapters
    and switched on for that job only, plus any trigger words they were trained with."""

    name: str
    """What a job stores and members pick: lower-case letters, digits and dashes."""
    label: str
    loras: tuple[LoraSpec, ...]
    prompt: str = ""
    """Words added to the member's prompt while the effect is on (a LoRA's trigger words)."""

    def __post_init__(self) -> None:
        if not EFFECT_NAME.match(self.name):
            raise ValueError(
                f"an effect's name is 1-32 lower-case letters, digits or dashes, not {self.name!r}"
            )
        if not self.loras:
            raise ValueError(f"the effect {self.name!r} names no LoRA")
        if not self.label.strip() or len(self.label) > 80:
            raise ValueError(f"the effect {self.name!r} needs a label of 1-80 characters")
