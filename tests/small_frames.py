"""The real diffusion backend, loaded by the production loader, asked for small frames.

Bot-level tests render tiny random-weight checkpoints through the whole bot; the presets'
frame sizes (768×512, 1280×704 ...) would take minutes per clip on a CPU, so only the size is
forced down. Everything else (steps, schedule, guidance, frame count) is the model's own.

`factory(record_dir)` also writes one JSON file per render into `record_dir`: what the
request asked for, what the backend planned, and the denoising steps it reported. The
workers are Ray processes, so the file system is how a test sees what they did.
"""

from __future__ import annotations

import functools
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import ray

SIDE = 32
"""Width and height of every render (each family's size multiple at the tiny configs)."""


class SmallFrames:
    """The real backend, asked for `side`×`side` frames."""

    def __init__(self, backend: Any, *, side: int = SIDE, record_dir: str | None = None) -> None:
        self.backend = backend
        self.info = backend.info
        self.side = side
        self.record_dir = record_dir

    def plan(self, request: Any, image_size: tuple[int, int]) -> Any:
        return self.backend.plan(request.replace(width=self.side, height=self.side), image_size)

    def render(self, image: Any, plan: Any, request: Any, **kwargs: Any) -> Any:
        if self.record_dir is None:
            return self.backend.render(image, plan, request, **kwargs)
        emit = kwargs.pop("emit", lambda progress: None)
        denoised: list[tuple[int, int]] = []

        def seen(progress: Any) -> None:
            if progress.stage == "denoise":
                denoised.append((progress.step, progress.total))
            emit(progress)

        out = self.backend.render(image, plan, request, emit=seen, **kwargs)
        pipe = getattr(self.backend, "_pipe", None)
        record = {
            "model": self.info.name,
            "family": self.info.family,
            "pipeline": type(pipe).__name__ if pipe is not None else None,
            "asked_steps": request.steps,
            "plan_steps": plan.steps,
            "timesteps": list(plan.timesteps),
            "sigmas": list(plan.sigmas),
            "guidance": plan.guidance,
            "size": [plan.width, plan.height],
            "frames": plan.num_frames,
            "denoised": denoised,
        }
        path = Path(self.record_dir) / f"render-{time.time_ns()}-{os.getpid()}.json"
        path.write_text(json.dumps(record))
        return out

    def close(self) -> None:
        self.backend.close()


def small_frames(
    model: str, options: Any, *, side: int = SIDE, record_dir: str | None = None
) -> SmallFrames:
    from pipeline.backends import load_backend

    return SmallFrames(load_backend(model, options), side=side, record_dir=record_dir)


def factory(record_dir: str | os.PathLike[str] | None = None, *, side: int = SIDE) -> Any:
    """For `bot_world(backend_factory=...)`: the production loader, frames forced to
    `side`×`side`, each render recorded in `record_dir` when given."""
    # tests/ is not importable inside the Ray workers: this module travels pickled by value.
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    return functools.partial(
        small_frames, side=side, record_dir=None if record_dir is None else str(record_dir)
    )


def renders(record_dir: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """What `factory(record_dir)` recorded, oldest first."""
    return [json.loads(p.read_text()) for p in sorted(Path(record_dir).glob("render-*.json"))]
