"""/animate variations: N takes with seeds seed, seed+1, ... in one job, one message, each
take its own MP4 and buttons; N × the price; only failed takes refunded, exactly once.

Through the loopback Discord and the real bot, store, Ray worker and MP4 encoder; the clips
are decoded back with PyAV. The camera move draws the same frames for every seed, so takes of
it are refused before any charge; the worker here serves the model ``seeded`` instead (a
model only the workers know, so the job layer reads a plain AI model's card) and renders it
with :class:`SeededCamera`: the real camera backend whose picture depends on the seed, as a
diffusion model's does (a tiny diffusion model at the bot's sizes takes minutes per take on a
CPU), and which gives up on the seeds a test names, as a model that cannot go on does.
"""

from __future__ import annotations

import dataclasses
import functools
import io
import sys
import time
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
import ray
from loopback import LoopbackDiscord, Message, Upload
from loopback.components import walk
from world import (
    World,
    all_jobs,
    bot_world,
    ledger_kinds,
    private_text,
    small_png,
    wait_status,
)

from contract import InputError, ModelError
from jobs import NotSupported, Store
from pipeline.backends.camera import CameraBackend
from pipeline.probe import probe

pytestmark = [pytest.mark.asyncio, pytest.mark.usefixtures("ray_instance")]

PHOTO = small_png()
MODEL = "seeded"
"""The model the variations worlds serve (see :func:`world`)."""


class SeededCamera(CameraBackend):
    """The camera move, tinted by the seed (each seed its own picture); fails `fail_seeds`;
    takes `delay` seconds more per clip (a slow model)."""

    render_yuv420 = None
    """Not the camera's yuv420p fast path: this double changes the RGB frames render() draws."""
    info = dataclasses.replace(CameraBackend.info, name=MODEL, label="Seeded camera (test)", uses_seed=True)

    def __init__(self, fail_seeds: tuple[int, ...], delay: float = 0.0) -> None:
        super().__init__()
        self.fail_seeds = fail_seeds
        self.delay = delay

    def render(self, image, plan, request, **kwargs):  # type: ignore[no-untyped-def]
        if plan.seed in self.fail_seeds:
            raise ModelError("The model gave up on this seed.")
        time.sleep(self.delay)
        frames = super().render(image, plan, request, **kwargs)
        shift = np.array([(plan.seed * 37) % 96, (plan.seed * 53) % 96, 0], dtype=np.int16)
        return np.clip(frames.astype(np.int16) + shift, 0, 255).astype(np.uint8)


def seeded_camera(
    model: str, options: Any, *, fail_seeds: tuple[int, ...] = (), delay: float = 0.0
) -> SeededCamera:
    assert model == MODEL, model
    return SeededCamera(fail_seeds, delay)


def factory(*fail_seeds: int, delay: float = 0.0) -> Any:
    """For `bot_world(backend_factory=...)`: tests/ is not importable in the Ray workers, so
    this module travels pickled by value (as world.Gate's does)."""
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    return functools.partial(seeded_camera, fail_seeds=fail_seeds, delay=delay)


def world(tmp_path: Path, *fail_seeds: int, delay: float = 0.0, **overrides: Any) -> Any:
    """The bot serving :data:`MODEL` with :class:`SeededCamera`."""
    return bot_world(
        tmp_path, backend_factory=factory(*fail_seeds, delay=delay), model=MODEL, **overrides
    )


def videos(message: Message) -> list[str]:
    return [a.filename for a in message.attachments if a.filename.endswith(".mp4")]


def decoded(data: bytes) -> np.ndarray:
    with av.open(io.BytesIO(data)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


def status_values(message: Message) -> list[str]:
    """The progress lines of the card in every version, oldest first."""
    return [t for version in [*message.history, message] for t in version.texts() if "█" in t or "░" in t]


def rows(message: Message) -> list[list[str]]:
    """The labels of each row of buttons on the card."""
    return [
        [b.get("label") for b in row.get("components", [])]
        for row in walk(message.components) if row.get("type") == 1
    ]


async def animate(w: World, member: Any, **options: Any) -> Any:
    values = {"image": Upload(PHOTO, "photo.png"), "duration": 2.0, **options}
    return await w.discord.slash("animate", values, user=member)


async def test_two_takes_in_one_message_each_playable_charged_twice(tmp_path: Path) -> None:
    async with world(tmp_path) as w:
        d = w.discord
        alice, bob = d.member, d.add_member("bob")
        price = w.settings.cost(MODEL, 2.0)
        run = await animate(w, alice, seed=100, variations=2)
        clip = await run.message(lambda m: len(videos(m)) == 2, timeout=60)
        ack = await run.original()
        assert ack.ephemeral and f"2 takes × {price} credit" in ack.content, ack.content
        # Progress said which take was rendering.
        shown = status_values(clip)
        assert any("Take 1 of 2" in s for s in shown) and any("Take 2 of 2" in s for s in shown), shown

        # Two different playable MP4s, each within half of the upload limit.
        first, second = (clip.file(name) for name in videos(clip))
        for data in (first, second):
            info = probe(data)
            assert (info["codec"], info["frames"]) == ("h264", 48)
            assert len(data) <= 10 * 2**20 // 2
        a, b = decoded(first), decoded(second)
        assert a.shape == b.shape and np.abs(a.astype(int) - b.astype(int)).mean() > 5

        # One card: both takes play in its one gallery, captioned; one row of buttons per
        # take, then Delete.
        assert clip.card and clip.shown(kind=12) == videos(clip)
        captions = [i.get("description") for c in walk(clip.components) if c["type"] == 12 for i in c["items"]]
        assert captions == ["Take 1 · seed 100", "Take 2 · seed 101"]
        assert rows(clip) == [
            ["Reroll 1", "Edit 1", "Extend 1", "Info 1"],
            ["Reroll 2", "Edit 2", "Extend 2", "Info 2"],
            ["Delete"],
        ]
        assert all(len(b["custom_id"]) <= 100 for b in clip.buttons())

        # Charged once, twice the single price.
        assert ("debit", -2 * price) in [(k, v) for k, v, _ in await ledger_kinds(w.store, alice.id)]
        assert await w.store.balance(alice.id) == 20 - 2 * price

        # Each take is a library entry with its own seed; Info says which take and seed.
        page = await w.store.library(alice.id)
        assert sorted(j.clip.seed for j in page.jobs) == [100, 101]
        assert "Take 2 of 2: seed 101" in await private_text(await d.click(clip, "Info 2", user=bob))

        # Reroll 2: one new clip, paid once at the single price by whoever pressed.
        again = await (await d.click(clip, "Reroll 2", user=bob)).message(
            lambda m: len(videos(m)) == 1, timeout=60
        )
        assert again.button_labels() == ["Reroll", "Edit", "Extend", "Info", "Delete"]
        assert await w.store.balance(bob.id) == 20 - price

        # Delete: the message and both takes' files.
        takes = await w.store.takes_of(page.jobs[-1].id)
        paths = [Path(t.result_path) for t in takes]
        assert len(paths) == 2 and all(p.is_file() for p in paths)
        await private_text(await d.click(clip, "Delete", user=alice))
        assert d.state.messages[clip.id].deleted
        assert not any(p.exists() for p in paths)
        assert (await w.store.library(alice.id)).total == 0


async def test_one_failed_take_is_refunded_alone_once_across_a_restart(tmp_path: Path) -> None:
    async with LoopbackDiscord() as discord_:
        alice = discord_.member
        async with world(tmp_path, 201, discord_=discord_) as w:
            price = w.settings.cost(MODEL, 2.0)
            run = await animate(w, alice, seed=200, variations=2)
            message = await run.message(lambda m: not m.ephemeral and m.card, timeout=15)
            (job,) = await all_jobs(w.store, alice.id)
            # Discord refuses the upload (a ban): the job is done, not delivered.
            path = f"PATCH /webhooks/*/messages/{message.id}"
            discord_.faults.rate_limit(path, count=None, via=False)
            await wait_status(w.store, job.id, "done", timeout=60)
            await discord_.wait_for(
                lambda: any(r.fault and r.files for r in discord_.requests(path)),
                timeout=10, what="the upload to be refused",
            )
        discord_.faults.clear()

        async with world(tmp_path, discord_=discord_) as w:
            await wait_status(w.store, job.id, "delivered", timeout=30)
            clip = discord_.state.messages[message.id]
            assert len(videos(clip)) == 1  # take 1 only
            assert rows(clip) == [["Reroll 1", "Edit 1", "Extend 1", "Info 1"], ["Delete"]]
            failed = next(t for t in clip.texts() if "refunded for" in t)
            assert "Take 2" in failed and f"{price} credit" in failed
            moves = [(k, v) for k, v, j in await ledger_kinds(w.store, alice.id) if j == job.id]
            assert moves == [("debit", -2 * price), ("refund", price)]
            assert await w.store.balance(alice.id) == 20 - price
            assert (await w.store.get_job(job.id)).attempts == 1
            # Buttons from before the restart: Info on take 1 answers with its seed.
            assert "seed 200" in await private_text(await discord_.click(clip, "Info 1"))


async def test_bad_variations_are_refused_before_any_charge(tmp_path: Path) -> None:
    """The command offers 1, 2 and 4 as choices, so Discord itself refuses 3 or 0 (the
    loopback as Discord does); anything else that builds a job (a button, the form, a stored
    row) meets the same sentence from JobSpec, before a charge."""
    async with bot_world(tmp_path) as w:
        alice = w.discord.member
        for bad in (3, 0):
            with pytest.raises(AssertionError, match="not one of the choices"):
                await animate(w, alice, variations=bad)
            with pytest.raises(InputError, match=f"Variations must be 1, 2 or 4 takes, not {bad}."):
                w.bot.jobs.spec(model="camera", variations=bad)
        assert await all_jobs(w.store, alice.id) == []
        assert [k for k, _, _ in await ledger_kinds(w.store, alice.id)] in ([], ["welcome"])


SAME_TAKES = (
    "The camera move draws the same clip every time, so takes would be identical: pick an AI "
    "model for variations, or ask for 1 take."
)


async def test_takes_of_the_camera_move_are_refused_before_any_charge(tmp_path: Path) -> None:
    """The camera move ignores the seed, so 2 or 4 takes would be copies charged 2× or 4×:
    /animate and the Animate form refuse them with one sentence, before the photo is fetched
    or anything is charged; one take of it is still a clip."""
    async with bot_world(tmp_path) as w:
        d = w.discord
        alice = d.member
        for takes in (2, 4):
            assert await private_text(await animate(w, alice, variations=takes)) == SAME_TAKES
        posted = await d.post_message(d.general, "cat", files=[Upload(PHOTO, "cat.png")])
        run = await d.message_command("Animate", posted, user=alice)
        form = await d.submit_modal(run, {"Length in seconds": "2", "Options": ["takes-2"]})
        assert await private_text(form) == SAME_TAKES
        assert await all_jobs(w.store, alice.id) == []
        assert [k for k, _, _ in await ledger_kinds(w.store, alice.id)] in ([], ["welcome"])
        # "auto" meaning the camera move on a worker without a GPU is the camera move.
        (worker,) = w.dispatcher.workers
        w.dispatcher.pool.ready()[0].info = dataclasses.replace(worker, aliases={"auto": "camera"})
        with pytest.raises(NotSupported, match="takes would be identical"):
            w.bot.jobs.spec(model="auto", variations=2)

        one = await animate(w, alice, variations=1)
        await one.message(lambda m: len(videos(m)) == 1, timeout=60)
        (job,) = await all_jobs(w.store, alice.id)
        assert job.cost == w.settings.cost("camera", 2.0)


async def test_the_store_ends_takes_once_and_refunds_once(tmp_path: Path) -> None:
    """The ledger's side: 4 takes at 2 credits, one failed; finishing twice (a retry that
    raced, a second process) refunds nothing more; the takes go out with their job."""
    from contract import JobSpec
    from jobs import ClipSummary, TakeClip

    # A row stored before variations existed reads as one take.
    assert JobSpec.from_dict({"model": "camera", "seed": 5}).variations == 1
    assert JobSpec.from_dict(JobSpec(variations=4).to_dict()).variations == 4
    async with await Store.open(tmp_path / "db.sqlite3") as store:
        spec = JobSpec(model="camera", seed=5, variations=4)
        job = await store.create_job(user_id=1, spec=spec, cost=8, image=PHOTO)
        await store.claim(job.id, "w")

        def clip(take: int) -> ClipSummary:
            return ClipSummary(64, 64, 8, 8.0, 5 + take - 1, "camera", take=take, takes=4)

        takes = [TakeClip(n, str(tmp_path / f"{job.id}-{n}.mp4"), clip(n)) for n in (2, 4)]
        done = await store.finish(
            job.id, result_path=str(tmp_path / "1.mp4"), clip=clip(1), takes=takes, failed_takes=1
        )
        assert done is not None
        assert await store.finish(job.id, result_path="x", clip=clip(1), failed_takes=4) is None
        moves = [(e.kind, e.delta) for e in reversed(await store.history(1)) if e.job_id == job.id]
        assert moves == [("debit", -8), ("refund", 2)]
        recovery = await store.recover(max_attempts=3)
        assert [j.id for j in recovery.undelivered] == [job.id]  # its takes go with it
        assert await store.mark_delivered(job.id, {"message_id": 9})
        group = await store.takes_of(job.id)
        assert [j.clip.seed for j in group] == [5, 6, 8]
        assert all(j.status == "delivered" and j.delivery == {"message_id": 9} for j in group)
        assert [(j.spec.variations, j.spec.seed, j.cost) for j in group[1:]] == [(1, 6, 0), (1, 8, 0)]
        assert (await store.library(1)).total == 3
        assert (await store.job_inputs(group[1].id))[0] == PHOTO
        assert (await store.tallies()).jobs == {("camera", "delivered"): 1}


async def test_four_takes_from_the_animate_form_each_a_library_entry(tmp_path: Path) -> None:
    """Right-click → Animate → "4 takes": four MP4s in one message (a quarter of the upload
    limit each), five rows of buttons; each take is its own /history entry: Post again posts
    that take alone, Delete of one take keeps the message for the others."""
    async with world(tmp_path) as w:
        d = w.discord
        alice = d.member
        posted = await d.post_message(d.general, "cat", files=[Upload(PHOTO, "cat.png")])

        run = await d.message_command("Animate", posted, user=alice)
        both = await d.submit_modal(run, {"Length in seconds": "2", "Options": ["takes-2", "takes-4"]})
        assert "Pick one number of takes (2 or 4), not both." in await private_text(both)
        assert await all_jobs(w.store, alice.id) == []

        run = await d.message_command("Animate", posted, user=alice)
        done = await d.submit_modal(run, {"Length in seconds": "2", "Options": ["takes-4"]})
        clip = await done.message(lambda m: len(videos(m)) == 4, timeout=120)
        assert len(rows(clip)) == 5 and rows(clip)[-1] == ["Delete"]
        assert len(clip.shown(kind=12)) == 4 and len(list(walk(clip.components))) <= 40
        assert [row[0] for row in rows(clip)[:4]] == ["Reroll 1", "Reroll 2", "Reroll 3", "Reroll 4"]
        files = [clip.file(name) for name in videos(clip)]
        assert all(len(f) <= 10 * 2**20 // 4 for f in files)
        pictures = [decoded(f) for f in files]
        assert all(np.abs(p.astype(int) - pictures[0].astype(int)).mean() > 5 for p in pictures[1:])
        job, *takes = await all_jobs(w.store, alice.id)  # the job charged, then its takes
        assert job.cost == 4 * w.settings.cost(MODEL, 2.0)
        assert [(t.action, t.parent_id, t.cost) for t in takes] == [("take", job.id, 0)] * 3

        entries = (await w.store.library(alice.id)).jobs
        assert len(entries) == 4
        seeds = {e.clip.take: e.clip.seed for e in entries}
        assert [seeds[n] - seeds[1] for n in (1, 2, 3, 4)] == [0, 1, 2, 3]
        take = {e.clip.take: e for e in entries}
        history = await (await d.slash("history", {}, user=alice)).original(timeout=15)
        assert any("take 2 of 4" in e["title"] for e in history.embeds)

        # Post again, take 2: that MP4 alone, with a take's own buttons.
        again = await d.click(history, custom_id=f"library:post:{take[2].id}:a0")
        reposted = await again.message(lambda m: not m.ephemeral and len(videos(m)) == 1, timeout=15)
        assert reposted.file(videos(reposted)[0]) == Path(take[2].result_path).read_bytes()
        assert reposted.button_labels() == ["Reroll", "Edit", "Extend", "Info", "Delete"]

        # Delete take 3 from the library: its file goes, the message stays for the others.
        await d.click(history, custom_id=f"library:delete:{take[3].id}:a0")
        await d.wait_for(
            lambda: "Its message stays" in d.state.messages[history.id].content, timeout=15,
            what="the library page to be redrawn",
        )
        assert not Path(take[3].result_path).exists()
        assert not d.state.messages[clip.id].deleted
        assert (await w.store.library(alice.id)).total == 3


async def test_the_job_timeout_counts_per_take(tmp_path: Path) -> None:
    """JOB_TIMEOUT_SECONDS is per take: two takes of a model that needs 55 % of it each are
    delivered, not stopped halfway and refunded."""
    timeout = 12.0
    async with world(tmp_path, delay=0.55 * timeout, job_timeout_seconds=timeout) as w:
        alice = w.discord.member
        run = await animate(w, alice, seed=1, variations=2)
        clip = await run.message(lambda m: len(videos(m)) == 2, timeout=5 * timeout)
        assert "took longer" not in clip.text()
        (job, _) = await all_jobs(w.store, alice.id)
        job = await wait_status(w.store, job.id, "delivered", timeout=10)
        assert job.finished_at - job.started_at > timeout


async def test_two_takes_in_a_direct_message_with_the_bot(tmp_path: Path) -> None:
    """In the member's DM with the bot: the same one message with both takes and their rows."""
    async with world(tmp_path, guild_ids="") as w:
        d = w.discord
        dm = d.dm_channel(d.member)
        run = await d.slash(
            "animate", {"image": Upload(PHOTO, "photo.png"), "duration": 2.0, "seed": 7, "variations": 2},
            channel=dm,
        )
        clip = await run.message(lambda m: len(videos(m)) == 2, timeout=60)
        assert clip.channel_id == dm.id
        assert rows(clip)[-1] == ["Delete"] and len(rows(clip)) == 3
        first, second = (clip.file(name) for name in videos(clip))
        assert np.abs(decoded(first).astype(int) - decoded(second).astype(int)).mean() > 5
        assert "Take 2 of 2: seed 8" in await private_text(await d.click(clip, "Info 2"))
