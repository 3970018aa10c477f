"""Smooth and Upscale 2× on a delivered clip: the same MP4 finished again by a worker (RIFE,
Real-ESRGAN; no new render), delivered as a new clip with its own buttons and library entry,
paid by whoever presses; refused before any charge when it cannot be done. Through the
loopback Discord, the real bot and a real Ray worker whose RIFE and Real-ESRGAN files are
random weights in the published layouts, read back by a real decoder (PyAV)."""

from __future__ import annotations

import dataclasses
import functools
import io
import math
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
import ray
from loopback import LoopbackDiscord, Upload
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

from pipeline.backends.camera import CameraBackend
from pipeline.finish import RIFE, UPSCALER

pytestmark = [pytest.mark.asyncio, pytest.mark.usefixtures("finishing_ray")]

SIZE = (64, 48)
"""The camera clips here: small enough that a CPU finishes them in a moment without timing
itself first (pipeline.finish.TRIVIAL_PIXELS)."""
COSTS = {"smooth_cost_per_second": 1.5, "upscale_cost_per_second": 2.5}


@pytest.fixture(scope="module")
def finishing_ray(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """A private Ray whose workers find RIFE and Real-ESRGAN weights (random, small, in the
    files' published layouts) through RIFE_WEIGHTS and UPSCALE_WEIGHTS: the workers inherit
    the environment Ray starts with."""
    import torch

    from pipeline.finish.rife import RifeShape, random_ifnet
    from pipeline.finish.upscale import x2plus_state_dict

    folder = tmp_path_factory.mktemp("finish-weights")
    rife = folder / "flownet.pkl"  # Practical-RIFE's layout: the state dict under "module."
    net = random_ifnet(RifeShape(head=4, widths=(32, 16), carried=8), seed=3)
    torch.save({f"module.{k}": v for k, v in net.state_dict().items()}, rife)
    esrgan = folder / "RealESRGAN_x2plus.pth"  # the GitHub release's layout
    torch.save({"params_ema": x2plus_state_dict(seed=0, blocks=1)}, esrgan)
    saved = {name: os.environ.get(name) for name in (RIFE.env, UPSCALER.env)}
    os.environ[RIFE.env], os.environ[UPSCALER.env] = str(rife), str(esrgan)
    try:
        with private_ray():
            yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


class SmallCamera(CameraBackend):
    """The real camera move, drawn at SIZE."""

    def plan(self, request, image_size):  # type: ignore[no-untyped-def]
        return super().plan(request.replace(width=SIZE[0], height=SIZE[1]), image_size)


def small_camera(model: str, options: Any) -> SmallCamera:
    assert model == "camera", model
    return SmallCamera()


def factory() -> Any:
    """For `bot_world(backend_factory=...)`: this module travels to the workers by value."""
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    return functools.partial(small_camera)


def can_finish(w: World, **answers: str | None) -> None:
    """What the job layer hears from its workers about finishing: "smooth"/"upscale" → None
    (it can) or the worker's sentence. A CPU worker answers for a 5 s 720p clip, which it
    is too slow for; the clips here are tiny, so the worker itself finishes them."""
    for worker in w.dispatcher.pool.workers:
        assert worker.info is not None
        worker.info = dataclasses.replace(worker.info, finishing={"smooth": None, "upscale": None, **answers})


def decoded(video: bytes) -> tuple[np.ndarray, float]:
    with av.open(io.BytesIO(video)) as container:
        stream = container.streams.video[0]
        frames = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(stream)])
        return frames, float(stream.average_rate)


async def delivered_clip(w: World, member: Any) -> tuple[Any, Any]:
    run = await w.discord.slash(
        "animate",
        {"image": Upload(small_png(), "p.png"), "duration": 2.0, "camera": "zoom_in", "seed": 7},
        user=member,
    )
    message = await run.message(has_video, timeout=60)
    job = (await all_jobs(w.store, member.id))[-1]
    return message, await wait_status(w.store, job.id, "delivered", timeout=10)


async def test_smooth_and_upscale_finish_a_delivered_clip_for_whoever_presses(tmp_path: Path) -> None:
    async with bot_world(tmp_path, backend_factory=factory(), **COSTS) as w:
        can_finish(w)
        d = w.discord
        alice, bob = d.member, d.add_member("bob")
        message, original = await delivered_clip(w, alice)
        assert message.button_labels() == [
            "Reroll", "Edit", "Extend", "Smooth", "Upscale 2×", "Info", "Delete",
        ]
        before, fps = decoded(video_of(message))
        assert before.shape[1:3] == (SIZE[1], SIZE[0]) and fps == 24 and len(before) == 48

        # Smooth, pressed by Bob: twice the frames (24 → 48 fps), priced on the clip's 2 s.
        bob_before = await w.store.balance(bob.id)
        run = await d.click(message, "Smooth", user=bob)
        price = math.ceil(COSTS["smooth_cost_per_second"] * 2.0)
        ack = await private_text(run)
        assert ack.startswith(f"Queued as job {original.id + 1} for **{price}** credits")
        assert ack.endswith("\n💡 Smooth: twice the frames, 24 → 48 fps.")
        smooth_message = await run.message(has_video, timeout=60)
        smoothed = (await all_jobs(w.store, bob.id))[-1]
        assert (smoothed.action, smoothed.parent_id, smoothed.cost) == ("finish", original.id, price)
        assert await w.store.balance(bob.id) == bob_before - price
        frames, fps = decoded(video_of(smooth_message))
        assert fps == 48 and len(frames) == 2 * len(before) - 1 and frames.shape[1:] == before.shape[1:]
        # The first and last frames are the clip's own (one more encode apart).
        for a, b in ((frames[0], before[0]), (frames[-1], before[-1])):
            assert np.abs(a.astype(int) - b.astype(int)).mean() < 6
        await wait_status(w.store, smoothed.id, "delivered", timeout=10)
        # A clip of its own: its buttons (no Smooth: 48 fps is as smooth as it gets), its Info,
        # its library entry.
        assert smooth_message.button_labels() == [
            "Reroll", "Edit", "Extend", "Upscale 2×", "Info", "Delete",
        ]
        info = await private_text(await d.click(smooth_message, "Info", user=alice))
        assert f"Made from job {original.id}" in info and "Finishing: twice the frames" in info
        assert "Model: `camera` · seed 7" in info and f"{len(frames)} frames at 48 fps" in info
        assert [j.id for j in (await w.store.library(bob.id)).jobs] == [smoothed.id]

        # Upscale 2× on the original: twice the width and height, the same frames.
        run = await d.click(message, "Upscale 2×", user=bob)
        price_up = math.ceil(COSTS["upscale_cost_per_second"] * 2.0)
        ack = await private_text(run)
        assert f"for **{price_up}** credits" in ack and ack.endswith("💡 Upscale 2×: 64×48 → 128×96 pixels.")
        big = decoded(video_of(await run.message(has_video, timeout=60)))[0]
        assert big.shape == (len(before), SIZE[1] * 2, SIZE[0] * 2, 3)
        upscaled = (await all_jobs(w.store, bob.id))[-1]
        assert (upscaled.action, upscaled.parent_id, upscaled.cost) == ("finish", original.id, price_up)
        assert await w.store.balance(bob.id) == bob_before - price - price_up
        assert [kind for kind, _, _ in await ledger_kinds(w.store, alice.id)] == ["welcome", "debit"]


async def test_a_press_is_refused_for_free_when_no_worker_can_or_the_clip_is_gone(tmp_path: Path) -> None:
    async with bot_world(tmp_path, backend_factory=factory(), **COSTS) as w:
        d = w.discord
        can_finish(w, upscale="Upscaling needs a GPU: this machine's CPU would take about 2 h.")
        message, original = await delivered_clip(w, d.member)
        # Shown only where a worker can: Smooth yes, Upscale 2× no.
        assert "Smooth" in message.button_labels() and "Upscale 2×" not in message.button_labels()
        balance, jobs = await w.store.balance(d.member.id), len(await all_jobs(w.store))

        # The worker that could smooth went (or changed its mind): its own sentence, free.
        can_finish(w, smooth="The RIFE 4.26 frame interpolation weights are not downloaded.")
        answer = await private_text(await d.click(message, "Smooth"))
        assert answer == (
            "Smoothing isn't available here: The RIFE 4.26 frame interpolation weights are not "
            "downloaded."
        )
        # The clip's file is gone (the operator cleaned the folder): said so, free.
        can_finish(w)
        assert original.result_path
        Path(original.result_path).unlink()
        answer = await private_text(await d.click(message, "Smooth"))
        assert answer == (
            "This video is no longer kept by the bot, so it can't be smoothed. Nothing was charged."
        )
        assert await w.store.balance(d.member.id) == balance
        assert len(await all_jobs(w.store)) == jobs


async def test_smooth_still_works_after_a_restart(tmp_path: Path) -> None:
    async with LoopbackDiscord() as discord_:
        async with bot_world(tmp_path, discord_=discord_, backend_factory=factory()) as w:
            can_finish(w)
            message, original = await delivered_clip(w, discord_.member)
        async with bot_world(tmp_path, discord_=discord_, backend_factory=factory()) as w:
            can_finish(w)
            run = await discord_.click(message, "Smooth")
            smooth = await run.message(has_video, timeout=60)
            frames, fps = decoded(video_of(smooth))
            assert fps == 48 and len(frames) == 2 * 48 - 1
            (finished,) = [j for j in await all_jobs(w.store) if j.action == "finish"]
            assert finished.parent_id == original.id
            await wait_status(w.store, finished.id, "delivered", timeout=10)
