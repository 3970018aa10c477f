"""A compiled model dropped after running out of memory takes its compiled code with it.

With COMPILE=true the denoiser's repeated blocks run through torch.compile, whose code cache
(guards and graphs, per block class) is process-wide and outlives the model. After an
out-of-memory job the worker drops the model so the retry loads it again in low-memory mode,
under other hooks: without ``torch._dynamo.reset()`` the new blocks pile recompiles onto the
dropped model's entries (until Dynamo's recompile limit silently falls back to eager) and
the stale entries keep what they reference alive.

On the CPU, compile is otherwise skipped; here it runs with the ``eager`` Dynamo backend (as
in test_backends.py), so the warm-up render at load traces the blocks for real.
"""

# ruff: noqa: F811  (pytest fixtures imported from tiny_models are "redefined" as arguments)
from __future__ import annotations

import dataclasses
import io
from pathlib import Path
from typing import Any

import pytest
from tiny_models import tiny_ltx_dir  # noqa: F401  (a session fixture)

from contract import AnimateRequest, BackendOptions, Failed


def png() -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (64, 64), (90, 140, 200)).save(out, format="PNG")
    return out.getvalue()


def compiled_on_the_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """The backend's own compile settings, but traced on the CPU with the eager backend."""
    from pipeline.backends.diffusion import DiffusionBackend

    chosen = DiffusionBackend.compile_config
    monkeypatch.setattr(
        DiffusionBackend,
        "compile_config",
        lambda self: dataclasses.replace(chosen(self), backend="eager", cuda_only=False),
    )


@pytest.mark.asyncio
async def test_a_compiled_model_dropped_after_running_out_of_memory_resets_dynamo(
    tiny_ltx_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch
    import torch._dynamo

    from pipeline.worker import PipelineWorker

    compiled_on_the_cpu(monkeypatch)
    model = str(tiny_ltx_dir)
    worker = PipelineWorker("cpu-0", [model], options=BackendOptions(device="cpu", compile=True))
    ((_, backend),) = worker._models._backends.items()
    assert worker._models.loaded() == (model,) and backend.options.compile
    blocks = backend.pipe.transformer.transformer_blocks
    assert all(block._compiled_call_impl is not None for block in blocks)  # proven and kept

    resets: list[Any] = []
    real_reset = torch._dynamo.reset

    def reset() -> None:
        resets.append(backend._pipe)  # None: the pipeline was dropped first
        real_reset()

    monkeypatch.setattr(torch._dynamo, "reset", reset)

    def out_of_memory(self: Any, **kwargs: Any) -> Any:
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    monkeypatch.setattr(type(backend.pipe), "__call__", out_of_memory)
    request = AnimateRequest(image=png(), prompt="a cat", seed=1, duration=1.0, fps=8,
                             width=32, height=32, model=model, job_id="1")
    events = [event async for event in worker.run("1", request)]
    failed = events[-1]
    assert isinstance(failed, Failed) and failed.kind == "oom" and failed.retryable
    assert worker._models.loaded() == ()  # dropped for the low-memory retry
    assert resets == [None]  # Dynamo's code cache went with it, once
