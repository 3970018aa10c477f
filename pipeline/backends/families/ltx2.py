"""LTX-2: one transformer denoises the picture and its sound together.

Its pipelines read like LTX-Video's (frame rate as a call argument, VAE × patch multiples,
8k+1 frames) and the image-to-video class conditions on the first frame only, so the rules
are LTX's; what differs is the vocoder's waveform beside the frames (read by the backend
with :func:`sample_rate`) and the preset: 8 distilled sigmas with every guidance pass off.
"""

from __future__ import annotations

from typing import Any

from pipeline.backends.families.ltx import LTX


class LTX2(LTX):
    name = "ltx2"
    label = "LTX-2"
    preset = "ltx2"


def sample_rate(pipe: Any) -> int:
    """The vocoder's output rate (24 kHz for LTX-2, 48 kHz behind 2.3's bandwidth extender)."""
    vocoder = getattr(pipe, "vocoder", None)
    rate = getattr(getattr(vocoder, "config", None), "output_sampling_rate", None)
    return int(rate or getattr(pipe, "audio_sampling_rate", 16000))
