"""Info says what the model actually read: an empty prompt becomes a motion prompt built from
the camera move and the motion strength, and the member can see it."""

# ruff: noqa: F811  (pytest fixtures imported from tiny_models are "redefined" as arguments)
from __future__ import annotations

import io
import time
from pathlib import Path

from PIL import Image
from tiny_models import tiny_wan_ti2v_dir  # noqa: F401  (a session fixture)

from bot.embeds import info
from contract import AnimateRequest, BackendOptions, JobSpec
from jobs.records import ClipSummary, Job
from pipeline.animate import animate
from pipeline.presets import motion_prompt


def png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (64, 64), (90, 140, 200)).save(out, "PNG")
    return out.getvalue()


def test_an_empty_prompt_is_told_as_the_motion_prompt_the_model_read(tiny_wan_ti2v_dir: Path) -> None:
    from pipeline.backends.diffusion import DiffusionBackend

    backend = DiffusionBackend(str(tiny_wan_ti2v_dir), options=BackendOptions(device="cpu"))
    request = AnimateRequest(
        image=png(), prompt="", camera="pan_left", motion=8, seed=2, width=64, height=64,
        duration=0.3, fps=16, steps=2,
    )
    result = animate(request, backend)
    assert result.prompt == motion_prompt("", "pan_left", 8) and "pans to the left" in result.prompt
    backend.close()

    clip = ClipSummary.from_dict(ClipSummary.of(result).to_dict())  # as stored with the job
    job = Job(
        id=7, user_id=1, status="delivered", action="animate",
        spec=JobSpec(model="wan", camera="pan_left", motion=8), cost=1, delivery={},
        attempts=1, low_memory=False, created_at=time.time(), clip=clip,
    )
    text = info(job)
    assert "Prompt: —" in text and f"The model read: {result.prompt}" in text
    # A member's own words that the model read unchanged are not repeated.
    same = Job(**{**job.__dict__, "spec": JobSpec(model="wan", prompt=result.prompt), "clip": clip})
    assert "The model read" not in info(same)
