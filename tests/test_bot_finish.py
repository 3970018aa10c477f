"""Smooth and Upscale 2× from /animate: priced by settings on top of the model, and refused
before any charge where no renderer can do them (their weights not downloaded, a CPU too
slow), with the worker's own sentence. Through the loopback Discord, the real bot and a real
Ray worker that asked pipeline.finish at start what this machine can do."""

from __future__ import annotations

from pathlib import Path

import pytest
from loopback import Upload
from world import all_jobs, bot_world, private_text, small_png

from contract import JobSpec, WorkerInfo
from jobs import NotSupported
from jobs.config import JobsConfig, Pricing
from jobs.service import JobService


@pytest.mark.asyncio
@pytest.mark.usefixtures("ray_instance")
async def test_smooth_and_upscale_are_refused_before_any_charge_without_their_weights(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with bot_world(tmp_path) as w:
        d = w.discord
        (worker,) = w.dispatcher.workers
        assert worker.finishing["smooth"] and "download rife" in worker.finishing["smooth"]
        assert worker.finishing["upscale"] and "download upscale" in worker.finishing["upscale"]
        before = await w.store.balance(d.member.id)
        for option, value, what in (("smooth", "x2", "Smoothing"), ("smooth", "60", "Smoothing"),
                                    ("upscale", True, "Upscaling")):
            run = await d.slash("animate", {"image": Upload(small_png(), "p.png"), "duration": 2.0, option: value})
            answer = await private_text(run)
            assert answer.startswith(f"{what} isn't available here:") and "python -m pipeline download" in answer
        assert await w.store.balance(d.member.id) == before and await all_jobs(w.store) == []


class Workers:
    """The dispatcher's view of its workers, as the job layer reads it."""

    def __init__(self, *infos: WorkerInfo) -> None:
        self.workers = list(infos)
        self.models = [m for info in infos for m in info.models]

    def known_models(self) -> set[str]:
        return {m for info in self.workers for m in info.models}


def worker(models: tuple[str, ...], **finishing: str | None) -> WorkerInfo:
    return WorkerInfo(
        name="w", models=models, aliases={}, label="", device="cuda", device_name="GPU", node="",
        node_id="", pid=1, finishing=finishing,
    )


def test_a_worker_that_can_finish_lets_it_through_and_the_price_adds_the_finish() -> None:
    config = JobsConfig(
        models=("camera", "ltx"),
        pricing=Pricing(per_second={"camera": 1.0, "ltx": 2.0},
                        finish_per_second={"smooth": 0.5, "upscale": 1.0}),
    )
    gpu = worker(("ltx",), smooth=None, upscale=None)
    cpu = worker(("camera",), smooth="The CPU here would take about 3 min.", upscale="Upscaling needs a GPU.")
    service = JobService(store=None, dispatcher=Workers(cpu, gpu), config=config)  # type: ignore[arg-type]
    spec = service.spec(model="ltx", duration=3.0, interpolate=2, upscale=2)
    assert spec.finishes == ("upscale", "smooth")
    assert service.cost_of(spec) == 6 + 5  # 2/s × 3 s, and (0.5 + 1)/s × 3 s rounded up
    assert service.cost_of(spec.replace(variations=2)) == 22
    assert service.cost_of(JobSpec(model="ltx", duration=3.0)) == 6
    # The camera's worker cannot: its own sentence, before anything is charged.
    with pytest.raises(NotSupported, match="Smoothing isn't available here: The CPU here would take"):
        service.spec(model="camera", duration=3.0, fps_out=48)
    with pytest.raises(NotSupported, match="Upscaling isn't available here: Upscaling needs a GPU"):
        service.spec(model="camera", duration=3.0, upscale=2)


def test_a_worker_without_the_weights_answers_without_importing_torch() -> None:
    """Every worker asks at start; where the weights are missing (most CPU machines) that
    answer must cost nothing, or a restarted worker comes back late (the job layer refunds
    jobs that wait too long for one)."""
    import subprocess
    import sys

    code = (
        "import sys; from pipeline.finish import support; answers = support(); "
        "assert 'torch' not in sys.modules, 'torch imported'; "
        "assert all(answers.values()), answers; print('ok')"
    )
    env = {"HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": "/nonexistent-cache", "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          env=env, cwd=Path(__file__).resolve().parents[1])
    assert done.stdout.strip() == "ok", done.stderr[-1500:]
