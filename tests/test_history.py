"""/history, the member's library: pages newest first, favourites, Post again, New photo,
Delete (the MP4 gone from disk), owners only, buttons that outlive a restart, and the
retention sweep (KEEP_OUTPUTS_DAYS) that keeps favourites — in a guild and in a DM.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from loopback import Channel, LoopbackDiscord, Message, Upload
from loopback.state import MESSAGE_COMPONENT
from photos import photo_bytes
from world import (
    World,
    all_jobs,
    bot_world,
    has_video,
    private_text,
    small_png,
    video_of,
    wait_status,
)

from bot.delivery.record import DeliveryRecord
from bot.library import NOT_YOURS
from contract import JobSpec
from jobs import CreditPolicy, Job, JobsConfig, JobService, Store, UnknownJob
from jobs import service as service_module
from jobs.service import RETENTION_SINCE_KEY
from pipeline.probe import probe

pytestmark = [pytest.mark.asyncio, pytest.mark.usefixtures("ray_instance")]

DAY = 86_400.0


# ---- helpers ---------------------------------------------------------------------------------


async def make_clips(w: World, member: Any, n: int, *, channel: Channel | None = None) -> list[Job]:
    """`n` camera clips with prompts "clip 0" … and seeds 100 …, delivered, oldest first."""
    for i in range(n):
        run = await w.discord.slash(
            "animate",
            {"image": Upload(small_png(), "photo.png"), "duration": 2.0, "prompt": f"clip {i}",
             "seed": 100 + i},
            user=member, channel=channel,
        )
        # The member's next photo is read once this one is queued (one photo at a time).
        await run.message(lambda m: not m.ephemeral and m.card, timeout=15)
    jobs = await all_jobs(w.store, member.id)
    return [await wait_status(w.store, job.id, "delivered", timeout=60) for job in jobs[-n:]]


async def history(w: World, member: Any, *, channel: Channel | None = None, **options: Any) -> Message:
    run = await w.discord.slash("history", options, user=member, channel=channel)
    page = await run.original(timeout=15)
    assert page.ephemeral
    return page


async def redrawn(d: LoopbackDiscord, page: Message, check: Callable[[Message], bool]) -> Message:
    """The library message once an edit made `check` true."""

    def done() -> Message | None:
        message = d.state.messages[page.id]
        return message if check(message) else None

    return await d.wait_for(done, timeout=15, what="the library page to be redrawn")


def titles(page: Message) -> list[str]:
    return [e["title"] for e in page.embeds]


def shown_ids(page: Message) -> list[int]:
    return [int(t.removeprefix("★ ").removeprefix("Job ")) for t in titles(page)]


def button(page: Message, custom_id: str) -> dict:
    (found,) = [b for b in page.buttons() if b.get("custom_id") == custom_id]
    return found


async def forged_click(d: LoopbackDiscord, page: Message, custom_id: str, user: Any) -> Any:
    """A click on a message the clicker cannot see (an ephemeral one of someone else's): a
    modified client can send it; the bot must refuse it."""
    data = {"custom_id": custom_id, "component_type": 2}
    channel = d.state.channels[page.channel_id]
    return await d._send(MESSAGE_COMPONENT, data, d._user(user), channel, message=page)


async def age(w: World, job_id: int, days: float) -> None:
    """Pretend the job was delivered `days` ago, on a database whose retention has run for a
    year (on an upgraded one it starts at the first sweep: see the test below)."""
    async with w.store.db.write() as tx:
        await tx.execute(
            "UPDATE jobs SET delivered_at = ? WHERE id = ?", (time.time() - days * DAY, job_id)
        )
    await w.store.set_meta(RETENTION_SINCE_KEY, repr(time.time() - 365 * DAY))


# ---- through the loopback Discord ------------------------------------------------------------


async def test_history_pages_favourites_post_again_and_delete(tmp_path: Path) -> None:
    async with bot_world(tmp_path, max_queued_per_user=10) as w:
        d = w.discord
        alice, bob = d.member, d.add_member("bob")
        clips = await make_clips(w, alice, 6)
        ids = [job.id for job in clips]

        # Page 1: the four newest, each with its thumbnail, prompt, model, seed, length, date
        # and a link to the message that delivered it.
        page = await history(w, alice)
        assert shown_ids(page) == ids[::-1][:4]
        assert "1–4 of 6" in page.content and "kept 30 days" in page.content
        newest, job = page.embeds[0], clips[-1]
        assert newest["description"] == "clip 5"
        fields = {f["name"]: f["value"] for f in newest["fields"]}
        assert fields["Model"] == "`camera`" and fields["Seed"] == "105"
        assert fields["Length"] == "2.0 s" and fields["Made"].startswith("<t:")
        record = DeliveryRecord.of(job)
        assert fields["Posted"] == (
            f"[Jump to the message](https://discord.com/channels/{d.guild.id}/"
            f"{record.channel_id}/{record.result_message_id})"
        )
        assert newest["thumbnail"]["url"] == f"attachment://photo-{job.id}.jpg"
        assert page.file(f"photo-{job.id}.jpg")[:3] == b"\xff\xd8\xff"  # a JPEG
        assert page.button_labels().count("Post again") == 4
        assert button(page, f"library:newer:{alice.id}:a0")["disabled"] is True
        assert not button(page, f"library:older:{alice.id}:a0").get("disabled")

        # Older: the rest, on the same message; Newer: back.
        await d.click(page, "Older")
        page = await redrawn(d, page, lambda m: "5–6 of 6" in m.content)
        assert shown_ids(page) == ids[::-1][4:]
        assert button(page, f"library:older:{alice.id}:a1")["disabled"] is True
        await d.click(page, "Newer")
        page = await redrawn(d, page, lambda m: "1–4 of 6" in m.content)
        assert shown_ids(page) == ids[::-1][:4]

        # Favourite: marked on the page, and the only entry of /history favourites:True.
        favourite = ids[3]
        await d.click(page, custom_id=f"library:fav:{favourite}:a0:1")
        page = await redrawn(d, page, lambda m: f"★ Job {favourite}" in titles(m))
        assert "is a favourite: kept forever" in page.content
        assert (await w.store.get_job(favourite)).favourite
        favourites = await history(w, alice, favourites=True)
        assert shown_ids(favourites) == [favourite] and "1–1 of 1" in favourites.content
        assert "☆ Unfavourite" in favourites.button_labels()
        assert "no favourites yet" in (await history(w, bob, favourites=True)).content

        # Post again: the MP4, publicly in this channel, playable, with the clip's buttons.
        again = await d.click(page, custom_id=f"library:post:{ids[4]}:a0")
        posted = await again.message(lambda m: not m.ephemeral and has_video(m), timeout=15)
        assert posted.channel_id == d.general.id
        assert video_of(posted) == Path(clips[4].result_path).read_bytes()
        assert probe(video_of(posted))["frames"] == 48
        assert {"Reroll", "Info", "Delete"} <= set(posted.button_labels())
        assert "Posted job" in (await again.original()).content

        # Someone else's clicks (a forged click on Alice's private page) are refused.
        for custom_id in (f"library:delete:{ids[5]}:a0", f"library:older:{alice.id}:a0"):
            refused = await forged_click(d, page, custom_id, bob)
            assert await private_text(refused) == NOT_YOURS
        assert (await w.store.get_job(ids[5])).result_path

        # Delete: gone from the page (the next one moves up), from the disk, and its message.
        newest_path = Path(clips[5].result_path)
        assert newest_path.is_file()
        other_page = await history(w, alice)  # opened again, before the delete
        await d.click(page, custom_id=f"library:delete:{ids[5]}:a0")
        page = await redrawn(d, page, lambda m: f"Deleted job {ids[5]}" in m.content)
        assert shown_ids(page) == [ids[4], ids[3], ids[2], ids[1]] and "1–4 of 5" in page.content
        assert not newest_path.exists()
        with pytest.raises(UnknownJob):
            await w.store.job_inputs(ids[5])
        assert d.state.messages[DeliveryRecord.of(clips[5]).result_message_id].deleted
        # Its buttons on a page opened before say why nothing happens.
        stale = await d.click(other_page, custom_id=f"library:delete:{ids[5]}:a0")
        assert "no longer in your library" in await private_text(stale)


async def test_new_photo_runs_the_same_settings_on_an_uploaded_photo(tmp_path: Path) -> None:
    async with bot_world(tmp_path) as w:
        d = w.discord
        alice = d.member
        run = await d.slash(
            "animate",
            {"image": Upload(small_png(), "photo.png"), "prompt": "the cat looks up",
             "negative": "blur", "camera": "zoom_in", "motion": 7, "duration": 2.0, "seed": 1234},
        )
        await run.message(has_video, timeout=60)
        (first,) = await all_jobs(w.store, alice.id)
        await wait_status(w.store, first.id, "delivered")
        page = await history(w, alice)
        before = await w.store.balance(alice.id)

        form = await d.click(page, custom_id=f"library:photo:{first.id}:a0")
        modal = await form.modal()
        (field,) = modal["components"]
        assert modal["title"] == "Animate a new photo" and field["label"] == "Photo"
        assert field["component"]["type"] == 19  # a file upload
        assert "camera, 2 s, zoom in, motion 7, seed 1234" in field["description"]
        submitted = await d.submit_modal(form, {"Photo": Upload(photo_bytes("chelsea"), "cat.png")})
        clip = await submitted.message(has_video, timeout=60)
        new = (await all_jobs(w.store, alice.id))[-1]
        assert new.id != first.id and new.action == "animate" and new.parent_id is None
        spec = new.spec
        assert (spec.model, spec.prompt, spec.negative_prompt) == ("camera", "the cat looks up", "blur")
        assert (spec.camera, spec.motion, spec.duration, spec.seed) == ("zoom_in", 7, 2.0, 1234)
        assert new.cost == w.settings.cost("camera", 2.0)
        assert await w.store.balance(alice.id) == before - new.cost  # charged as /animate
        # The new photo, not the old one: the cat is a different size.
        assert probe(video_of(clip))["width"] != (await w.store.get_job(first.id)).clip.width


async def test_library_buttons_from_before_a_restart_work_after_it(tmp_path: Path) -> None:
    async with LoopbackDiscord() as discord_:
        alice = discord_.member
        async with bot_world(tmp_path, discord_=discord_, max_queued_per_user=10) as w:
            clips = await make_clips(w, alice, 6)
            ids = [job.id for job in clips]
            page = await history(w, alice)
            assert shown_ids(page) == ids[::-1][:4] and "1–4 of 6" in page.content
            identifies = discord_.gateway.identify_count
            await age(w, ids[0], days=31)  # its time is up: the next start removes it

        async with bot_world(tmp_path, discord_=discord_) as w:
            assert discord_.gateway.identify_count == identifies + 1  # a new bot process
            # The sweep at start forgot the expired clip and its MP4.
            await discord_.wait_for(
                lambda: not Path(clips[0].result_path).exists(), timeout=10,
                what="the expired clip to be removed at start",
            )
            assert (await w.store.get_job(ids[0])).result_path is None
            # The page from before the restart: every button still works.
            await discord_.click(page, "Older")
            page = await redrawn(discord_, page, lambda m: "5–5 of 5" in m.content)
            assert shown_ids(page) == [ids[1]]
            await discord_.click(page, "Newer")
            page = await redrawn(discord_, page, lambda m: "1–4 of 5" in m.content)
            await discord_.click(page, custom_id=f"library:fav:{ids[2]}:a0:1")
            page = await redrawn(discord_, page, lambda m: f"★ Job {ids[2]}" in titles(m))
            again = await discord_.click(page, custom_id=f"library:post:{ids[2]}:a0")
            assert has_video(await again.message(lambda m: not m.ephemeral and has_video(m), timeout=15))
            form = await discord_.click(page, custom_id=f"library:photo:{ids[3]}:a0")
            assert (await form.modal())["title"] == "Animate a new photo"
            await discord_.click(page, custom_id=f"library:delete:{ids[5]}:a0")
            page = await redrawn(discord_, page, lambda m: f"Deleted job {ids[5]}" in m.content)
            assert shown_ids(page) == [ids[4], ids[3], ids[2], ids[1]]
            assert not Path(clips[5].result_path).exists()


async def test_in_a_dm_history_works_and_retention_keeps_favourites(tmp_path: Path) -> None:
    # Commands synced globally (no GUILD_IDS), so Discord offers them in DMs.
    async with bot_world(tmp_path, guild_ids="", max_queued_per_user=10) as w:
        d = w.discord
        alice = d.member
        dm = d.dm_channel(alice)
        clips = await make_clips(w, alice, 3, channel=dm)
        ids = [job.id for job in clips]
        page = await history(w, alice, channel=dm)
        assert page.channel_id == dm.id and shown_ids(page) == ids[::-1]
        record = DeliveryRecord.of(clips[0])
        link = f"https://discord.com/channels/@me/{dm.id}/{record.result_message_id}"
        assert link in str(page.embeds[-1]["fields"])

        await d.click(page, custom_id=f"library:fav:{ids[0]}:a0:1")
        page = await redrawn(d, page, lambda m: f"★ Job {ids[0]}" in titles(m))
        again = await d.click(page, custom_id=f"library:post:{ids[0]}:a0")
        posted = await again.message(lambda m: not m.ephemeral and has_video(m), timeout=15)
        assert posted.channel_id == dm.id and posted.guild_id is None

        # 31 days later: the two plain clips go (rows kept for the ledger, files removed),
        # the favourite stays (KEEP_FAVOURITES_DAYS=0: forever).
        for job_id in ids:
            await age(w, job_id, days=31)
        assert await w.bot.jobs.expire_outputs() == 2
        for job in clips[1:]:
            assert not Path(job.result_path).exists()
            assert (await w.store.get_job(job.id)).result_path is None
        assert Path(clips[0].result_path).is_file()
        page = await history(w, alice, channel=dm)
        assert shown_ids(page) == [ids[0]] and "1–1 of 1" in page.content
        assert await w.bot.jobs.expire_outputs() == 0


# ---- the retention sweep on its own ----------------------------------------------------------


class _Clock:
    def __init__(self) -> None:
        self.now = 1_000_000_000.0

    def __call__(self) -> float:
        return self.now


async def test_retention_periods_and_batches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """30 days for plain clips, 90 for favourites, in batches; files removed, rows kept."""
    clock = _Clock()
    outputs = tmp_path / "outputs"
    outputs.mkdir()
    async with await Store.open(tmp_path / "db.sqlite3", CreditPolicy(welcome=100), clock=clock) as store:
        made: dict[str, Job] = {}
        for name, days_ago, favourite in (
            ("fresh", 10, False), ("old", 31, False), ("older", 60, False),
            ("old favourite", 60, True), ("ancient favourite", 91, True),
        ):
            clock.now = 1_000_000_000.0 - days_ago * DAY
            job = await store.create_job(user_id=1, spec=JobSpec(model="camera"), cost=1, image=b"photo")
            path = outputs / f"{job.id}.mp4"
            path.write_bytes(b"mp4")
            await store.claim(job.id, "w")
            await store.finish(job.id, result_path=str(path))
            await store.mark_delivered(job.id)
            if favourite:
                await store.set_favourite(job.id, True)
            made[name] = job
        clock.now = 1_000_000_000.0
        monkeypatch.setattr(service_module, "RETENTION_BATCH", 1)  # one clip per transaction
        service = JobService(store, None, JobsConfig(keep_outputs_days=30, keep_favourites_days=90))  # type: ignore[arg-type]
        # The first sweep on a database (an upgrade: clips made before the library existed)
        # removes nothing: the period starts now, so members can still mark favourites.
        assert await service.expire_outputs() == 0
        assert await store.get_meta(RETENTION_SINCE_KEY) == repr(clock.now)
        await store.set_meta(RETENTION_SINCE_KEY, repr(clock.now - 365 * DAY))
        assert await service.expire_outputs() == 3
        gone = {"old", "older", "ancient favourite"}
        for name, job in made.items():
            kept = await store.get_job(job.id)
            assert (kept.result_path is None) == (name in gone), name
            assert (outputs / f"{job.id}.mp4").exists() == (name not in gone), name
        assert (await store.library(1)).total == 2
        assert await service.expire_outputs() == 0
        # 0 means forever; favourites are never kept shorter than other clips.
        assert JobsConfig(keep_outputs_days=0).kept_seconds(favourite=False) is None
        assert JobsConfig(keep_outputs_days=0, keep_favourites_days=5).kept_seconds(favourite=True) is None
        assert JobsConfig(keep_outputs_days=30, keep_favourites_days=5).kept_seconds(favourite=True) == 30 * DAY
