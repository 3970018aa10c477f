"""Smooth and Upscale 2× from /animate: priced by settings on top of the model, and refused
before any charge where no renderer can do them (their weights not downloaded, a CPU too
slow), with the worker's own sentence. Through the loopback Discord, the real bot and a real
Ray worker that asked pipeline.finish at start what this machine can do."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from loopback import Upload
from world import all_jobs, bot_world, private_text, small_png

from bot.buttons import result_actions
from contract import JobSpec, WorkerInfo
from jobs import CannotFinish, ClipSummary, Job, JobAction, JobStatus, NotSupported
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


# ---- Smooth and Upscale 2× on a delivered clip (the buttons) ---------------------------------


def delivered(*, fps: float = 24.0, frames: int = 121, size: tuple[int, int] = (768, 512), **spec: Any) -> Job:
    """A delivered `ltx` clip as the job layer stores it."""
    return Job(
        id=5, user_id=1, status=JobStatus.DELIVERED, action=JobAction.ANIMATE,
        spec=JobSpec(model="ltx", prompt="waves", duration=5.0, **spec), cost=10, delivery={},
        attempts=1, low_memory=False, created_at=0.0, result_path="/kept/5.mp4",
        clip=ClipSummary(width=size[0], height=size[1], frames=frames, fps=fps, seed=11, model="ltx"),
    )


def finishing_service(*workers: WorkerInfo) -> JobService:
    config = JobsConfig(
        models=("ltx",),
        pricing=Pricing(per_second={"ltx": 2.0}, finish_per_second={"smooth": 0.5, "upscale": 1.0}),
    )
    return JobService(store=None, dispatcher=Workers(*workers), config=config)  # type: ignore[arg-type]


def test_a_press_picks_a_sensible_finish_for_the_clip_and_prices_its_length() -> None:
    service = finishing_service(worker(("ltx",), smooth=None, upscale=None))
    clip = delivered(upscale=2, variations=2)  # a take of an upscaled job: one clip, one finish
    spec = service.finish_spec(clip, "smooth")
    assert (spec.interpolate, spec.fps_out, spec.upscale, spec.variations) == (2, None, 1, 1)
    assert (spec.seed, spec.prompt, spec.model, spec.finishes) == (11, "waves", "ltx", ("smooth",))
    assert service.finish_spec(delivered(fps=16), "smooth").interpolate == 2  # 16 → 32 fps
    assert service.finish_spec(delivered(fps=30), "smooth").fps_out == 48  # past 48: reach it
    with pytest.raises(CannotFinish, match="already plays at 48 fps"):
        service.finish_spec(delivered(fps=48), "smooth")
    assert service.finish_spec(clip, "upscale").finishes == ("upscale",)
    with pytest.raises(CannotFinish, match=r"already 2048×1152; twice that would pass 3840"):
        service.finish_spec(delivered(size=(2048, 1152)), "upscale")
    # Priced on the clip's length: LTX's 121 frames at 24 fps are its 5 s (as /animate prices
    # them), an extended chain of 241 frames 10 s; once, whatever its takes.
    assert (service.finish_cost(clip, "smooth"), service.finish_cost(clip, "upscale")) == (3, 5)
    assert service.finish_cost(delivered(frames=241), "upscale") == 10


def test_the_buttons_are_offered_where_a_worker_can_and_the_clip_can_take_it() -> None:
    gpu = worker(("ltx",), smooth=None, upscale="Upscaling needs a GPU.")
    assert finishing_service(gpu).finishes_offered(delivered()) == ("smooth",)
    assert finishing_service(gpu).finishes_offered(delivered(fps=48)) == ()
    both = worker(("ltx",), smooth=None, upscale=None)
    assert finishing_service(both).finishes_offered(delivered()) == ("smooth", "upscale")
    assert finishing_service(both).finishes_offered(delivered(size=(2048, 1152))) == ("smooth",)
    assert finishing_service(worker(("ltx",))).finishes_offered(delivered()) == ()  # never said
    assert finishing_service().finishes_offered(delivered()) == ()  # no worker yet
    # The result row: what makes a new clip first, so Info and Delete are what moves to a
    # second row of five.
    assert result_actions(can_extend=True, finishes=("upscale", "smooth")) == (
        "reroll", "edit", "extend", "smooth", "upscale", "info", "delete",
    )
    assert result_actions(can_extend=False) == ("reroll", "edit", "info", "delete")


def test_a_refused_finish_is_said_in_the_members_language() -> None:
    import discord

    from bot.errors import sentence

    assert sentence(CannotFinish("smooth", "gone")) == (
        "This video is no longer kept by the bot, so it can't be smoothed. Nothing was charged."
    )
    german = sentence(CannotFinish("smooth", "at_most", fps=48.0), discord.Locale.german)
    assert german == (
        "Dieses Video läuft schon mit 48 fps, so flüssig, wie „Smooth“ es macht. "
        "Es wurde nichts abgebucht."
    )
