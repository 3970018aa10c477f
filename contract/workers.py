"""What the job layer and the workers tell each other about a worker: plain data."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Literal

from contract.loras import Effect, LoraSpec

Offload = Literal["auto", "none", "model", "group"]
WEIGHTS = ("auto", "bf16", "fp8", "Q8_0", "Q5_K_M", "Q4_K_M")
"""How the denoiser's weights are stored: the memory planner's choice, the preset's dtype,
fp8 storage, or a GGUF file of that quantization."""

SLOTS = 2
"""Jobs in flight per worker: one on the model, one in intake or encode beside it."""


@dataclass(frozen=True)
class BackendOptions:
    """Device, precision and speed/memory levers for a diffusion backend.

    Defaults pick everything from the machine: CUDA when present (the preset's dtype), else CPU
    float32; offload chosen from free VRAM against the preset's need.
    """

    device: str | None = None
    """"cuda", "cuda:1", "cpu"; None: CUDA when available, else CPU."""
    dtype: str | None = None
    """"bfloat16", "float16", "float32"; None: the preset's dtype on CUDA, float32 on CPU."""
    offload: Offload = "auto"
    """"auto": from free VRAM; "none": all on the GPU; "model": enable_model_cpu_offload;
    "group": enable_group_offload (leaf level, streamed), the least VRAM."""
    weights: str = "auto"
    """"auto": the memory planner's choice for this GPU; else one of WEIGHTS ("bf16": the
    preset's own dtype; "fp8": float8 storage; "Q8_0"/"Q5_K_M"/"Q4_K_M": a GGUF file)."""
    compile: bool = False
    """Regional torch.compile of the denoiser's repeated blocks (CUDA only; slow first call)."""
    attention: str = "auto"
    """diffusers attention backend for the denoiser: "auto" picks the fastest kernel installed
    on CUDA (FlashAttention 3, then FlashAttention 2, else PyTorch SDPA); "native" keeps SDPA;
    any other name (e.g. "flash", "_flash_3", "sage", "_native_cudnn") is passed to
    `set_attention_backend` and falls back to SDPA with a warning when unavailable."""
    cache: bool = False
    """First-block cache on the transformer (faster, slightly lower quality)."""
    cache_threshold: float = 0.05
    """First-block cache threshold (diffusers' default); higher skips more."""
    half_frames: bool = False
    """Render every other frame and let RIFE draw the ones between (where its weights are
    here and this machine runs it in time): about half the denoiser's work or less per clip,
    at some cost in fine, fast motion. Off by default, like the cache."""
    low_memory: bool = False
    """Force offload and VAE tiling: the setting to retry with after running out of memory."""
    loras: tuple[tuple[str, tuple[LoraSpec, ...]], ...] = ()
    """The operator's LoRAs per model name (LORAS; the CLI's --lora under "*"), fused after
    the preset's own."""
    effects: tuple[tuple[str, tuple[Effect, ...]], ...] = ()
    """Per model name, the effects members may pick per job (EFFECTS)."""

    def __post_init__(self) -> None:
        if self.offload not in ("auto", "none", "model", "group"):
            raise ValueError(f"offload must be auto, none, model or group, not {self.offload!r}")
        if self.weights not in WEIGHTS:
            raise ValueError(f"weights must be one of {', '.join(WEIGHTS)}, not {self.weights!r}")
        if not self.attention or not self.attention.replace("_", "").isalnum():
            raise ValueError(
                f"attention must be auto, native or a diffusers backend name, not {self.attention!r}"
            )
        if self.dtype is not None and self.dtype not in ("bfloat16", "float16", "float32"):
            raise ValueError(f"dtype must be bfloat16, float16 or float32, not {self.dtype!r}")

    def replace(self, **changes: Any) -> BackendOptions:
        return replace(self, **changes)

    def effects_for(self, model: str) -> tuple[Effect, ...]:
        """The effects members may pick for `model` (EFFECTS)."""
        return dict(self.effects).get(model, ())

    def loras_for(self, model: str) -> tuple[LoraSpec, ...]:
        """The LoRAs listed for `model`, else those for every model ("*": the CLI's --lora)."""
        by_name = dict(self.loras)
        return by_name.get(model, by_name.get(ANY_MODEL, ()))


ANY_MODEL = "*"


@dataclass(frozen=True)
class WorkerInfo:
    """What a worker tells the job layer about itself."""

    name: str
    models: tuple[str, ...]
    """Models it serves, resolved ("auto" appears as what it means here, e.g. "camera")."""
    aliases: dict[str, str]
    """Configured name → served name, e.g. {"auto": "camera"}; jobs may use either."""
    label: str
    """For operators: "NVIDIA H100 80GB HBM3 on 10.0.0.7"."""
    device: str
    """"cuda" or "cpu"."""
    device_name: str
    node: str
    """The node's IP address."""
    node_id: str
    pid: int
    loaded: tuple[str, ...] = ()
    errors: dict[str, str] = field(default_factory=dict)
    """Model → why it could not be loaded at start (jobs for it fail with that message)."""
    downloads: dict[str, float] = field(default_factory=dict)
    """Model → fraction of its weights downloaded, for models still downloading (jobs for
    them wait on the worker); as of the moment the worker answered."""
    finishing: dict[str, str | None] = field(default_factory=dict)
    """"smooth" / "upscale" → None when this worker can finish a typical clip so, else the
    sentence why not (weights not downloaded, a CPU too slow): a job asking for it is
    refused before it is charged. This is the machine's answer for finishing frames, and the
    whole answer for finishing a delivered clip's MP4 (the Smooth and Upscale 2× buttons)."""
    cards: dict[str, str] = field(default_factory=dict)
    """Served model that is not a preset (a directory, a repo id) → the preset whose card it
    follows (its family's defaults): the lengths members are offered and charged for are the
    ones it makes (a local CogVideoX makes 6 s clips, an SVD at most 3.5 s)."""
    finishing_by_model: dict[str, dict[str, str | None]] = field(default_factory=dict)
    """Served model → the answers of `finishing` that differ for a job rendered on it: an LTX
    preset whose latent upsampler is here upscales inside its render, so ``"upscale"`` is
    None for it even without Real-ESRGAN. See :meth:`finishing_for`."""

    def finishing_for(self, model: str | None) -> dict[str, str | None]:
        """What this worker can finish in a job that renders on `model` (a served name or an
        alias): `finishing`, with the model's own answers over it."""
        if model is None:
            return dict(self.finishing)
        own = self.finishing_by_model.get(self.aliases.get(model, model), {})
        return {**self.finishing, **own}

    def serves(self, model: str) -> bool:
        return model in self.models or model in self.aliases

    def claim_models(self) -> set[str]:
        """Every name a job for this worker may carry: served models and their aliases."""
        return set(self.models) | set(self.aliases)

    def same_model(self, model: str) -> set[str]:
        """Names that mean the same loaded model as `model` here (for the overlap slot)."""
        resolved = self.aliases.get(model, model)
        return {resolved} | {k for k, v in self.aliases.items() if v == resolved}
