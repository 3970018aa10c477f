"""Restarts: the bot (and its dispatcher) stop and a new instance starts on the same SQLite
database, talking to the same Discord. Nothing is lost, nothing is delivered twice, the
member's message is updated rather than duplicated, and old buttons keep working.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from loopback import LoopbackDiscord, Message, Upload
from world import (
    Gate,
    World,
    all_jobs,
    bot_world,
    has_video,
    ledger_kinds,
    small_png,
    wait_status,
)

from bot.delivery.record import DeliveryRecord
from jobs import Store

pytestmark = [pytest.mark.asyncio, pytest.mark.usefixtures("ray_instance")]

PHOTO = small_png()


def clips_of(discord_: LoopbackDiscord, job_id: int) -> list[Message]:
    """Every message, deleted or not, that ever carried this job's MP4."""
    name = f"animate-{job_id}.mp4"
    return [
        m
        for m in discord_.messages(include_deleted=True)
        if any(a.filename == name for v in m.history for a in v.attachments)
    ]


async def post_job(w: World, member, **options):
    values = {"image": Upload(PHOTO, "photo.png"), "duration": 2.0, **options}
    run = await w.discord.slash("animate", values, user=member)
    message = await run.message(lambda m: not m.ephemeral and m.card, timeout=15)
    job = (await all_jobs(w.store, member.id))[-1]
    return run, message, job


async def test_restart_mid_render_delivers_each_job_once_on_its_own_message(tmp_path: Path) -> None:
    gate = Gate(tmp_path / "gate")
    async with LoopbackDiscord() as discord_:
        alice, bob = discord_.member, discord_.add_member("bob")
        async with bot_world(tmp_path, discord_=discord_, backend_factory=gate.factory) as w:
            _, rendering_message, rendering = await post_job(w, alice)
            await gate.wait_started(rendering.id)
            _, waiting_message, waiting = await post_job(w, bob)
            assert (await w.store.get_job(waiting.id)).status == "queued"
        # The bot was shut down: the job it was rendering went back to the queue with its
        # attempt given back (a shutdown is not the job's fault); the other still waits.
        async with await Store.open(tmp_path / "bot.sqlite3") as store:
            interrupted = await store.get_job(rendering.id)
            assert (interrupted.status, interrupted.attempts) == ("queued", 0)
            assert (await store.get_job(waiting.id)).status == "queued"

        gate.open()
        async with bot_world(tmp_path, discord_=discord_, backend_factory=gate.factory) as w:
            for job, message in ((rendering, rendering_message), (waiting, waiting_message)):
                done = await wait_status(w.store, job.id, "delivered", timeout=60)
                (clip,) = clips_of(discord_, job.id)
                assert clip.id == message.id and has_video(clip)  # updated, not duplicated
                assert DeliveryRecord.of(done).delivered_via == "interaction"
            assert (await w.store.get_job(rendering.id)).attempts == 1  # the shutdown cost nothing
            for member, job in ((alice, rendering), (bob, waiting)):
                assert [k for k in await ledger_kinds(w.store, member.id) if k[2] == job.id] == [
                    ("debit", -job.cost, job.id)
                ]


async def test_a_clip_finished_but_not_delivered_is_delivered_after_a_restart(
    tmp_path: Path,
) -> None:
    gate = Gate(tmp_path / "gate")
    async with LoopbackDiscord() as discord_:
        alice = discord_.member
        async with bot_world(tmp_path, discord_=discord_, backend_factory=gate.factory) as w:
            _, message, job = await post_job(w, alice)
            # Cloudflare bans the bot (429 without Via): discord.py gives up, nothing is uploaded.
            path = f"PATCH /webhooks/*/messages/{message.id}"
            discord_.faults.rate_limit(path, count=None, via=False)
            gate.open()
            await wait_status(w.store, job.id, "done", timeout=30)
            await discord_.wait_for(
                lambda: any(r.fault and r.files for r in discord_.requests(path)),
                timeout=10, what="the upload to be refused",
            )
        assert not clips_of(discord_, job.id)
        async with await Store.open(tmp_path / "bot.sqlite3") as store:
            assert (await store.get_job(job.id)).status == "done"
        discord_.faults.clear()

        async with bot_world(tmp_path, discord_=discord_) as w:
            done = await wait_status(w.store, job.id, "delivered", timeout=30)
            (clip,) = clips_of(discord_, job.id)
            assert clip.id == message.id and DeliveryRecord.of(done).delivered_via == "interaction"
            assert (await w.store.get_job(job.id)).attempts == 1  # not rendered again


async def test_buttons_from_before_a_restart_work_after_it(tmp_path: Path) -> None:
    async with LoopbackDiscord() as discord_:
        alice, bob = discord_.member, discord_.add_member("bob")
        async with bot_world(tmp_path, discord_=discord_) as w:
            run, _, job = await post_job(w, alice, camera="tilt_up")
            clip = await run.message(has_video, timeout=60)
            await wait_status(w.store, job.id, "delivered")
            identifies = discord_.gateway.identify_count

        async with bot_world(tmp_path, discord_=discord_) as w:
            assert discord_.gateway.identify_count == identifies + 1  # a new bot process
            info = await discord_.click(clip, "Info", user=bob)
            text = (await info.original(timeout=10)).content
            assert f"**Job {job.id}** (animate, delivered)" in text and "tilt up" in text
            reroll = await discord_.click(clip, "Reroll", user=bob)
            again = await reroll.message(has_video, timeout=60)
            (new_job,) = await all_jobs(w.store, bob.id)
            assert new_job.action == "reroll" and new_job.parent_id == job.id
            assert new_job.spec.camera == "tilt_up"
            assert again.id != clip.id and has_video(again)


async def test_a_clip_posted_just_before_a_crash_is_not_posted_again(tmp_path: Path) -> None:
    """The bot stops while Discord is still creating its channel post (the token had
    expired): the post lands, the bot never heard. The next start finds it, posts nothing."""
    gate = Gate(tmp_path / "gate")
    async with LoopbackDiscord() as discord_:
        alice = discord_.member
        async with bot_world(tmp_path, discord_=discord_, backend_factory=gate.factory) as w:
            _, message, job = await post_job(w, alice)
            await gate.wait_started(job.id)
            discord_.clock.advance(16 * 60)
            slow = discord_.faults.latency("POST /channels/*/messages", seconds=1.5, count=1)
            gate.open()
            await discord_.wait_for(lambda: slow.hits, timeout=30, what="the channel post")
            # Stop now, with the upload in flight: its task is cancelled, no answer is read.
            await w.dispatcher.stop()
        # The bot is gone; the post it sent completes now.
        (clip,) = await discord_.wait_for(
            lambda: clips_of(discord_, job.id), timeout=10, what="the post to land"
        )
        async with await Store.open(tmp_path / "bot.sqlite3") as store:
            assert (await store.get_job(job.id)).status == "done"  # never recorded

        async with bot_world(tmp_path, discord_=discord_, backend_factory=gate.factory) as w:
            done = await wait_status(w.store, job.id, "delivered", timeout=30)
            assert DeliveryRecord.of(done).result_message_id == clip.id
            assert clips_of(discord_, job.id) == [clip]
            # The old progress message points at it instead of showing progress.
            old = await discord_.wait_for(
                lambda: "Your video is ready" in (m := discord_.state.messages[message.id]).text() and m,
                timeout=10, what="the progress message to point at the clip",
            )
            assert old.button_labels() == []


async def test_a_job_whose_attempts_ran_out_in_a_crash_is_told_after_the_restart(
    tmp_path: Path,
) -> None:
    gate = Gate(tmp_path / "gate")
    async with LoopbackDiscord() as discord_:
        alice = discord_.member
        async with bot_world(
            tmp_path, discord_=discord_, backend_factory=gate.factory, max_attempts=1
        ) as w:
            _, message, job = await post_job(w, alice)
            await gate.wait_started(job.id)
            await w.dispatcher.stop(release=False)  # as if the bot had died mid-render
        async with bot_world(
            tmp_path, discord_=discord_, backend_factory=gate.factory, max_attempts=1
        ) as w:
            await wait_status(w.store, job.id, "failed")
            # The member is told on the job's message, not left looking at "Rendering".
            await discord_.wait_for(
                lambda: "retries ran out" in discord_.state.messages[message.id].text(),
                timeout=30, what="the job's message to say it failed",
            )
            text = discord_.state.messages[message.id].text()
            assert "refunded" in text and discord_.state.messages[message.id].button_labels() == []
            assert [k for k in await ledger_kinds(w.store, alice.id) if k[2] == job.id] == [
                ("debit", -job.cost, job.id), ("refund", job.cost, job.id)
            ]
