"""Every diffusion family renders at its default settings through the real bot.

One /animate per family through the loopback Discord: the worker loads a tiny random-weight
checkpoint with the production loader and renders it with the family's own steps, schedule
and guidance (LTX's 8 distilled timesteps, LTX-2's 8 sigmas, Wan's 40 or 50 steps with CFG,
SVD's 25, CogVideoX's 50); only the frame size is forced down (tests/small_frames.py), because
the presets' sizes take minutes per clip on a CPU. Each job delivers a decodable MP4, is
charged once and not refunded, and Info names the model and what was made.

Info does not print the step count (bot/embeds.py `info` has no such line, and a finished
clip does not carry it), so the steps a render used are read from the worker's record of it
(tests/small_frames.py): the plan's steps and schedule, and the denoise progress it reported.

One bot and one worker serve every family (each member asks for one model, the worker
switches): a world per family would start a worker process eight times. LTX-2 also renders
at its defaults through the bot in tests/test_bot_ltx2.py (sound on and off).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from loopback import Upload
from small_frames import factory, renders
from tiny_models import tiny_model_dir
from world import (
    World,
    all_jobs,
    bot_world,
    has_video,
    ledger_kinds,
    private_ray,
    private_text,
    small_png,
    video_of,
    wait_status,
)

from contract import card_for
from pipeline.presets import PRESETS
from pipeline.probe import probe

pytestmark = pytest.mark.asyncio(loop_scope="module")

FAMILIES = {
    # kind in tests/tiny_models.py: (the preset whose settings it gets, the class it loads as)
    "ltx": ("ltx", "LTXConditionPipeline"),
    # An LTX-Video 0.9.x directory: model_index.json names LTXImageToVideoPipeline, its VAE is
    # timestep-conditioned. At its defaults it once failed every job ("Only one of
    # `timesteps` or `sigmas` can be passed").
    "ltx_i2v": ("ltx", "LTXConditionPipeline"),
    "ltx2": ("ltx2", "LTX2ImageToVideoPipeline"),
    "wan": ("wan-14b", "WanImageToVideoPipeline"),  # Wan 2.1 I2V: a CLIP image encoder
    # Wan 2.2 TI2V-5B, saved as WanPipeline (as the hub repo is), loaded for image-to-video
    "wan_ti2v": ("wan", "WanImageToVideoPipeline"),
    "wan_a14b": ("wan-14b", "WanImageToVideoPipeline"),  # Wan 2.2 A14B: two experts
    "svd": ("svd", "StableVideoDiffusionPipeline"),
    "cogvideox": ("cogvideox", "CogVideoXImageToVideoPipeline"),
}

RATE = 2.0
"""Credits per second of every model here."""
WELCOME = 50


@dataclass
class Families:
    world: World
    models: dict[str, str]
    """kind -> the model directory, as members name it."""
    record: Path


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def families(
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[Families]:
    models = {kind: str(tiny_model_dir(kind, tmp_path_factory)) for kind in FAMILIES}
    root = tmp_path_factory.mktemp("families")
    record = root / "renders"
    record.mkdir()
    with private_ray():
        async with bot_world(
            root, model=",".join(models.values()), backend_factory=factory(record),
            model_costs={}, default_cost_per_second=RATE, welcome_credits=WELCOME,
        ) as world:
            yield Families(world, models, record)


def ended(message: Any) -> bool:
    """The clip came, or the card says the job failed (so a failure ends the wait, with why)."""
    return has_video(message) or "couldn't be made" in message.text()


@pytest.mark.parametrize("kind", list(FAMILIES))
async def test_a_tiny_model_of_each_family_renders_at_its_defaults_through_the_bot(
    kind: str, families: Families
) -> None:
    preset_name, pipeline_class = FAMILIES[kind]
    preset = PRESETS[preset_name]
    world, model = families.world, families.models[kind]
    d = world.discord
    member = d.add_member(f"member-{kind}")
    seconds = min(world.bot.jobs.card(model).durations)  # the shortest clip offered for it
    run = await d.slash(
        "animate",
        {"image": Upload(small_png(), "dog.png"), "prompt": "a dog wags its tail",
         "duration": seconds, "model": model},
        user=member,
    )
    clip = await run.message(ended, timeout=120)
    assert has_video(clip), clip.text()  # a failure's card says why
    facts = probe(video_of(clip))  # decodes every frame
    assert facts["codec"] == "h264" and facts["frames"] >= 1

    (job,) = await all_jobs(world.store, member.id)
    job = await wait_status(world.store, job.id, "delivered")
    assert job.model == model and job.spec.steps is None
    assert job.cost == RATE * seconds
    assert await ledger_kinds(world.store, member.id) == [
        ("welcome", WELCOME, None), ("debit", -job.cost, job.id)  # charged once, no refund
    ]

    (rendered,) = [r for r in renders(families.record) if r["model"] == model]
    assert rendered["pipeline"] == pipeline_class and rendered["asked_steps"] is None
    assert rendered["plan_steps"] == preset.steps
    assert rendered["timesteps"] == list(preset.default_timesteps)
    assert rendered["sigmas"] == list(preset.default_sigmas)
    assert rendered["guidance"] == preset.guidance
    assert rendered["denoised"] == [[step, preset.steps] for step in range(preset.steps + 1)]
    assert facts["frames"] == rendered["frames"]

    info = await private_text(await d.click(clip, "Info", user=member))
    width, height = rendered["size"]
    assert f"Model: `{model}` · seed {job.clip.seed} · {preset.steps} steps" in info  # type: ignore[union-attr]
    assert f"Output: {width}×{height}, {rendered['frames']} frames" in info


@pytest.mark.parametrize(("kind", "preset"), [("svd", "svd"), ("cogvideox", "cogvideox")])
async def test_a_model_directory_is_offered_and_charged_the_lengths_it_makes(
    kind: str, preset: str, families: Families
) -> None:
    """A directory is no preset, but its worker reads its family from model_index.json: the
    bot offers its family's lengths (SVD makes at most ~3.5 s, CogVideoX always 6 s) and
    refuses any other before charging. Before, both got the plain 2 / 3 / 5 s, so a "5 s" SVD
    clip was charged 5 s for 3.5, and a "2 s" CogVideoX one 2 s for 6."""
    world, model = families.world, families.models[kind]
    d = world.discord
    member = d.add_member(f"picky-{kind}")
    asked = 5.0 if kind == "svd" else 2.0
    run = await d.slash(
        "animate", {"image": Upload(small_png(), "dog.png"), "duration": asked, "model": model},
        user=member,
    )
    refusal = await private_text(run)
    offered = card_for(preset).durations
    assert f"makes clips of {', '.join(f'{seconds:g}' for seconds in offered)} seconds" in refusal
    assert await all_jobs(world.store, member.id) == []
    card = world.bot.jobs.card(model)
    assert card.name == model and card.durations == offered
    assert await ledger_kinds(world.store, member.id) in ([], [("welcome", WELCOME, None)])
