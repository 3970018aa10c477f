"""Discord misbehaving mid-job: every fault ends with the clip delivered (exactly once), and
the test says where it went.

Jobs wait at the gate of `world.GatedCamera` while a test arranges the fault (a rate limit,
a 5xx, a deleted message, an expired token, a vanished channel, a gateway outage), then the
gate opens and the real camera backend renders. (CDN 403 on an expired photo link is a
refusal before anything is charged: tests/test_bot_refusals.py.)
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from loopback import InteractionHandle, Message, RecordedRequest, Upload
from world import (
    Gate,
    World,
    all_jobs,
    bot_world,
    has_video,
    small_png,
    video_of,
    wait_status,
)

from bot.delivery.record import DeliveryRecord
from pipeline.probe import probe
from pipeline.worker import _fit_upload

pytestmark = [pytest.mark.asyncio, pytest.mark.usefixtures("ray_instance")]

PHOTO = small_png()


@pytest.fixture
async def world(tmp_path: Path, gate: Gate) -> AsyncIterator[World]:
    async with bot_world(tmp_path, backend_factory=gate.factory) as w:
        yield w


class Held:
    """One /animate job, held at the gate with its public progress message posted."""

    def __init__(self, run: InteractionHandle, message: Message, job_id: int) -> None:
        self.run, self.message, self.job_id = run, message, job_id


async def held_job(w: World, gate: Gate, member=None, **options) -> Held:
    d = w.discord
    member = member or d.member
    values = {"image": Upload(PHOTO, "photo.png"), "duration": 2.0, "seed": 7, **options}
    run = await d.slash("animate", values, user=member)
    message = await run.message(lambda m: not m.ephemeral and m.card, timeout=15)
    job = (await all_jobs(w.store, member.id))[-1]
    await gate.wait_started(job.id)
    return Held(run, message, job.id)


def clips_of(w: World, job_id: int) -> list[Message]:
    """Every message, deleted or not, that ever carried this job's MP4."""
    name = f"animate-{job_id}.mp4"
    return [
        m
        for m in w.discord.messages(include_deleted=True)
        if any(a.filename == name for v in m.history for a in v.attachments)
    ]


async def delivered(w: World, gate: Gate, held: Held) -> tuple[Message, DeliveryRecord]:
    """Open the gate; wait for delivery; exactly one message carries the clip."""
    gate.open(held.job_id)
    job = await wait_status(w.store, held.job_id, "delivered", "failed", timeout=60)
    assert job.status == "delivered", job
    (clip,) = clips_of(w, held.job_id)
    assert not clip.deleted and has_video(clip)
    return clip, DeliveryRecord.of(job)


def carries_video(request: RecordedRequest) -> bool:
    return any(f.filename.endswith(".mp4") for f in request.files)


def message_path(held: Held) -> str:
    return f"PATCH /webhooks/*/messages/{held.message.id}"


async def test_rate_limits_and_server_errors_are_ridden_out(world: World, gate: Gate) -> None:
    d = world.discord
    cases = [
        ("per-route 429", {"kind": "rate_limit", "count": 2, "retry_after": 0.3}),
        ("global 429", {"kind": "rate_limit", "count": 1, "retry_after": 0.3, "is_global": True}),
        ("500", {"kind": "server_error", "status": 500}),
        ("502", {"kind": "server_error", "status": 502}),
    ]
    for name, spec in cases:
        held = await held_job(world, gate)
        kind = spec.pop("kind")
        if kind == "rate_limit":
            rule = d.faults.rate_limit(message_path(held), **spec)
        else:
            rule = d.faults.server_error(message_path(held), **spec)
        clip, delivery = await delivered(world, gate, held)
        assert rule.hits == (spec.get("count") or 1), name
        # The clip landed on the member's own message, via the interaction.
        assert clip.id == held.message.id and delivery.delivered_via == "interaction", name
        faulted = [r for r in d.requests(message_path(held)) if r.fault]
        retried = [r for r in d.requests(message_path(held)) if r.monotonic > faulted[-1].monotonic]
        assert retried and retried[0].status == 200, name
        if kind == "rate_limit":  # discord.py honoured Retry-After rather than hammering
            assert retried[0].monotonic - faulted[-1].monotonic >= 0.25, name
    assert d.unhandled_requests == []


async def test_upload_too_large_is_reencoded_smaller(world: World, gate: Gate) -> None:
    d = world.discord
    # The size this clip encodes to, with the limit the interaction announced (10 MiB).
    first = await held_job(world, gate)
    clip, _ = await delivered(world, gate, first)
    original = video_of(clip)
    size, frames = len(original), probe(original)["frames"]

    # The same clip again, but Discord now takes less than it announced when the command
    # ran (the guild lost a boost meanwhile): the upload gets 40005.
    held = await held_job(world, gate)
    interaction = held.run.record
    interaction.attachment_size_limit = int(size * 0.9)
    clip, delivery = await delivered(world, gate, held)
    too_large = [r for r in d.requests(message_path(held)) if r.status == 413]
    assert len(too_large) == 1 and too_large[0].response["code"] == 40005
    data = video_of(clip)
    assert len(data) <= int(size * 0.9)
    info = probe(data)
    assert info["frames"] == frames and info["codec"] == "h264"
    assert clip.id == held.message.id and delivery.delivered_via == "interaction"

    # Far less than announced: one shrink is not enough, the bot keeps shrinking until it fits.
    # The limit sits under what the first shrink (to 0.75 of the size) really makes of this
    # clip, read from the same re-encode the worker runs.
    once = len(await asyncio.to_thread(_fit_upload, original, int(size * 0.75)))
    limit = int(once * 0.85)
    held = await held_job(world, gate)
    held.run.record.attachment_size_limit = limit
    clip, delivery = await delivered(world, gate, held)
    too_large = [r for r in d.requests(message_path(held)) if r.status == 413]
    assert len(too_large) >= 2  # one shrink (to 0.75 of the size) was not enough
    assert len(video_of(clip)) <= limit
    assert probe(video_of(clip))["frames"] == frames
    assert clip.id == held.message.id and delivery.delivered_via == "interaction"


async def test_deleted_progress_message_gets_a_new_message(world: World, gate: Gate) -> None:
    d = world.discord
    alice = d.member
    held = await held_job(world, gate)
    await d.delete_message(held.message)  # a moderator deletes it mid-render
    deleted_at = d.state.messages[held.message.id].deleted_at
    clip, delivery = await delivered(world, gate, held)
    assert clip.id != held.message.id and not clip.ephemeral and clip.card
    assert clip.texts()[0] == f"<@{alice.id}>" and alice.id in clip.mentions
    assert delivery.delivered_via == "interaction" and delivery.progress_gone is True
    # Exactly one edit found the message gone (10008); none was tried after that.
    after = [r for r in d.requests(message_path(held)) if r.at >= deleted_at]
    assert len(after) <= 1 and all(r.response["code"] == 10008 for r in after)
    # The new message's buttons work.
    info = await d.click(clip, "Info", user=alice)
    assert f"Job {held.job_id}" in (await info.original(timeout=10)).content


async def test_after_the_token_expires_the_clip_goes_to_the_channel_or_a_dm(
    world: World, gate: Gate, caplog: pytest.LogCaptureFixture
) -> None:
    d = world.discord
    alice = d.member
    general = d.general

    # 50027: the job outlives the 15-minute interaction token.
    held = await held_job(world, gate)
    d.clock.advance(16 * 60)
    clip, delivery = await delivered(world, gate, held)
    assert any(r.status == 401 and r.response["code"] == 50027 for r in d.requests("/webhooks/*"))
    assert delivery.delivered_via == "channel"
    assert clip.id != held.message.id and clip.via == "channel" and clip.channel_id == general.id
    assert clip.card and clip.shown(kind=12) == [f"animate-{held.job_id}.mp4"]
    assert clip.texts()[0] == f"<@{alice.id}>" and alice.id in clip.mentions
    assert str(clip.message_reference["message_id"]) == str(held.message.id)  # replies to it
    # The old progress message no longer says "95 % · Cancel": it points at the clip.
    old = d.state.messages[held.message.id]
    assert old.button_labels() == [] and "Your video is ready" in old.text()
    assert f"/{clip.channel_id}/{clip.id}" in old.text()
    # Its buttons work (they are served by the bot, not by the expired token).
    info = await d.click(clip, "Info", user=alice)
    assert f"Job {held.job_id}" in (await info.original(timeout=10)).content

    # The channel is deleted while the next job renders, after its token expired: a DM.
    held = await held_job(world, gate)
    d.clock.advance(16 * 60)
    d.state.channels.pop(general.id)
    d.guild.channels.pop(general.id)
    await d.dispatch("CHANNEL_DELETE", {"id": str(general.id), "type": 0, "guild_id": str(d.guild.id)},
                     guild_id=d.guild.id)
    clip, delivery = await delivered(world, gate, held)
    assert delivery.delivered_via == "dm" and delivery.progress_gone is True
    assert clip.channel_id == d.dm_channel(alice).id and clip.guild_id is None
    assert "Your video is ready" in clip.text() and f"<@{alice.id}>" not in clip.text()
    assert clip.card and clip.shown(kind=12) == [f"animate-{held.job_id}.mp4"]
    # A vanished channel is not an error to log on every progress step.
    assert [r.getMessage() for r in caplog.records if r.levelname == "ERROR"] == []


async def test_gateway_outage_mid_job_delivers_exactly_once(world: World, gate: Gate) -> None:
    d = world.discord
    alice = d.member
    identifies, resumes = d.gateway.identify_count, d.gateway.resume_count
    held = await held_job(world, gate)
    async with d.gateway.outage():
        gate.open(held.job_id)
        await wait_status(world.store, held.job_id, "delivered", timeout=60)  # REST still works
        (clip,) = clips_of(world, held.job_id)
        # A click while the bot is disconnected waits for the RESUME and is then answered.
        info = await d.click(clip, "Info", user=alice)
    assert f"Job {held.job_id}" in (await info.original(timeout=15)).content
    assert d.gateway.resume_count == resumes + 1 and d.gateway.identify_count == identifies
    (clip,) = clips_of(world, held.job_id)
    assert clip.id == held.message.id
    # The resumed session replays nothing that makes the bot deliver again.
    again = await d.slash("balance", user=alice)
    await again.original(timeout=10)
    assert len(clips_of(world, held.job_id)) == 1


async def test_a_failure_is_explained_and_refunded_once(tmp_path: Path, gate: Gate) -> None:
    """Jobs that never leave the gate run into JOB_TIMEOUT_SECONDS and fail."""
    async with bot_world(tmp_path, backend_factory=gate.factory, job_timeout_seconds=1.0) as w:
        d = w.discord
        alice = d.member
        held = await held_job(w, gate)
        job = await wait_status(w.store, held.job_id, "failed", timeout=30)
        message = await d.wait_for(
            lambda: "couldn't be made" in (m := d.state.messages[held.message.id]).text() and m,
            timeout=10, what="the failure on the job's message",
        )
        assert "took longer than 1 second" in message.text() and "refunded" in message.text()
        assert message.button_labels() == [] and message.texts()[0] == f"<@{alice.id}>"
        refunds = [e for e in await w.store.history(alice.id, limit=20) if e.kind == "refund"]
        assert [(e.job_id, e.delta) for e in refunds] == [(job.id, job.cost)]

        # Its message was deleted meanwhile: the member is told in a new message.
        held = await held_job(w, gate)
        await d.delete_message(held.message)
        await wait_status(w.store, held.job_id, "failed", timeout=30)
        notice = await d.wait_for_message(
            lambda m: f"Job {held.job_id}" in m.text() and "couldn't be made" in m.text(),
            timeout=10,
        )
        assert notice.id != held.message.id and alice.id in notice.mentions
        assert "refunded" in notice.text() and not notice.ephemeral

        # It failed after its token expired: an edit would not notify, so a new message that
        # mentions the member replies to the job's message, which shows the failure too.
        held = await held_job(w, gate)
        d.clock.advance(16 * 60)
        await wait_status(w.store, held.job_id, "failed", timeout=30)
        notice = await d.wait_for_message(
            lambda m: m.id != held.message.id and f"Job {held.job_id}" in m.text(), timeout=10
        )
        assert alice.id in notice.mentions and "refunded" in notice.text()
        assert notice.via == "channel"
        assert str(notice.message_reference["message_id"]) == str(held.message.id)
        old = d.state.messages[held.message.id]
        assert "couldn't be made" in old.text() and old.button_labels() == []
        assert await w.store.balance(alice.id) == 20


async def test_a_refused_upload_is_tried_again_later(world: World, gate: Gate) -> None:
    """A 429 without `Via` (Cloudflare's ban) makes discord.py give up at once: the bot tries
    the delivery again later instead of leaving the clip until the next restart."""
    d = world.discord
    world.bot.delivery.retry_delays = (0.5,)
    held = await held_job(world, gate)
    # Banned until the upload itself (the edit carrying the MP4) has been refused: progress
    # edits may be refused before it, and they are only skipped, never retried.
    ban = d.faults.rate_limit(message_path(held), count=None, via=False)
    gate.open(held.job_id)
    await d.wait_for(
        lambda: any(r.fault and carries_video(r) for r in d.requests(message_path(held))),
        timeout=60,
        what="the refused upload",
    )
    ban.remaining = 0  # the ban is lifted
    job = await wait_status(world.store, held.job_id, "delivered", "failed", timeout=60)
    assert job.status == "delivered" and DeliveryRecord.of(job).delivered_via == "interaction"
    (clip,) = clips_of(world, held.job_id)
    assert clip.id == held.message.id and has_video(clip)
    uploads = [r for r in d.requests(message_path(held)) if carries_video(r)]
    refused, accepted = uploads[0], uploads[-1]
    assert refused.fault == "rate_limit" and accepted.status == 200 and not accepted.fault
    assert accepted.monotonic - refused.monotonic >= 0.4  # tried again later, not at once
