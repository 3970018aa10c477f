"""The text encoder on the CPU: the memory plan's last tier, for the smallest GPUs.

The T5/UMT5 encoders are 9–11 GiB in bf16 — more than the LTX 2B transformer — yet run once
per clip. Here the encoder leaves the pipeline (so no placement hook ever moves it to the GPU,
and the pipeline's execution device is its denoiser's), prompts are encoded on the CPU with the
pipeline's own ``encode_prompt``, and the embeddings are passed to the call on the GPU instead
of the prompt. A prompt then costs seconds of CPU time instead of GiB of GPU memory.
"""

from __future__ import annotations

import inspect
from typing import Any

TEXT_ENCODER = "text_encoder"


def detach_text_encoder(pipe: Any) -> Any | None:
    """Take the text encoder out of `pipe` (kept on the CPU); None when it has none."""
    encoder = getattr(pipe, TEXT_ENCODER, None)
    if encoder is None:
        return None
    pipe.register_modules(**{TEXT_ENCODER: None})
    return encoder.to("cpu")


def with_prompt_embeddings(
    pipe: Any, encoder: Any, kwargs: dict[str, Any], *, guidance: float, device: Any
) -> dict[str, Any]:
    """`kwargs` with ``prompt``/``negative_prompt`` replaced by embeddings encoded on the CPU
    by `encoder` through the pipeline's own ``encode_prompt`` (2 outputs: embeddings and
    negative embeddings; LTX's 4: each with its attention mask), moved to `device`."""
    import torch

    accepted = inspect.signature(pipe.encode_prompt).parameters
    cfg = guidance > 1.0
    asked = {
        "prompt": kwargs.get("prompt") or "",
        "negative_prompt": kwargs.get("negative_prompt"),
        "do_classifier_free_guidance": cfg,
        "num_videos_per_prompt": 1,
        "device": torch.device("cpu"),
        "dtype": encoder.dtype,
    }
    # The call pads prompts to its own length (Wan: 512), which encode_prompt's default (226)
    # is not: a different padding changes the cross-attention.
    call = inspect.signature(pipe.__call__).parameters
    if "max_sequence_length" in kwargs or "max_sequence_length" in call:
        asked["max_sequence_length"] = kwargs.get(
            "max_sequence_length", call["max_sequence_length"].default if "max_sequence_length" in call else None
        )
    setattr(pipe, TEXT_ENCODER, encoder)
    try:
        with torch.no_grad():
            encoded = pipe.encode_prompt(**{k: v for k, v in asked.items() if k in accepted})
    finally:
        pipe.register_modules(**{TEXT_ENCODER: None})
    names = (
        ("prompt_embeds", "prompt_attention_mask", "negative_prompt_embeds", "negative_prompt_attention_mask")
        if len(encoded) == 4
        else ("prompt_embeds", "negative_prompt_embeds")
    )
    out = {k: v for k, v in kwargs.items() if k not in ("prompt", "negative_prompt")}
    for name, value in zip(names, encoded, strict=True):
        if value is not None:
            out[name] = value.to(device)
    return out
