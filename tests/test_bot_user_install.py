"""Where only the member installed the app, and private results: the bot never posts in a
channel it is not in, nor in the channel of a private result; the interaction carries the job,
and after its 15 minutes a DM does (the member is told before the token ends).

Jobs wait at the gate of `world.GatedCamera` (the real camera backend behind it) while the
test moves the loopback's clock past the token's lifetime.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from loopback import Upload
from world import Gate, World, all_jobs, bot_world, has_video, small_png, wait_status

from bot.delivery.progress import DM_NOTICE
from bot.delivery.record import DeliveryRecord

pytestmark = [pytest.mark.asyncio, pytest.mark.usefixtures("ray_instance")]

PHOTO = small_png()


@pytest.fixture
async def world(tmp_path: Path, gate: Gate) -> AsyncIterator[World]:
    # User installs need global commands: no GUILD_IDS.
    async with bot_world(tmp_path, backend_factory=gate.factory, guild_ids="") as w:
        yield w


def channel_posts(w: World, channel_id: int) -> list[str]:
    """The bot's own REST posts into a channel (webhook messages are not these)."""
    return [
        f"{r.status}" for r in w.discord.requests(f"POST /channels/{channel_id}/messages")
    ]


async def test_commands_allow_user_installs_everywhere_and_operator_ones_do_not(world: World) -> None:
    d = world.discord
    synced = {c["name"]: c for c in d.commands()}
    for name in ("animate", "balance", "Animate"):
        assert synced[name]["integration_types"] == [0, 1] and synced[name]["contexts"] == [0, 1, 2], name
    for name in ("credits", "queue"):
        assert 1 not in (synced[name].get("integration_types") or [0]), name


async def test_in_a_guild_without_the_bot_the_clip_comes_through_the_interaction_then_a_dm(
    world: World, gate: Gate
) -> None:
    d = world.discord
    alice = d.member
    elsewhere = d.add_guild("Elsewhere", with_bot=False)
    d.add_member(alice.user, guild=elsewhere)
    (lobby,) = elsewhere.channels.values()

    # Within the token: the interaction's own messages, nothing posted by the bot itself.
    run = await d.slash("animate", {"image": Upload(PHOTO, "p.png"), "duration": 2.0}, user=alice, channel=lobby)
    card = await run.message(lambda m: not m.ephemeral and m.card, timeout=15)
    (job,) = await all_jobs(world.store, alice.id)
    record = DeliveryRecord.of(job)
    assert record.channel_open is False and record.private is False
    gate.open(job.id)
    clip = await run.message(has_video, timeout=60)
    assert clip.channel_id == lobby.id and clip.id == card.id  # the card became the clip
    assert channel_posts(world, lobby.id) == []

    # Past the token: told before it ends, then a DM — never a channel message there.
    run = await d.slash("animate", {"image": Upload(PHOTO, "p.png"), "duration": 2.0, "seed": 3}, user=alice, channel=lobby)
    card = await run.message(lambda m: not m.ephemeral and m.card, timeout=15)
    job = (await all_jobs(world.store, alice.id))[-1]
    await gate.wait_started(job.id)
    delivery = world.bot.delivery
    delivery.routes.clock = delivery.progress.clock = d.clock.time  # the bot reads the test's clock
    delivery.token_watch_interval = 0.1
    delivery._watch.cancel()  # restart the watch at the short interval
    delivery.start()
    # Discord refuses the first try of the notice (a Cloudflare 429 that discord.py does not
    # retry): the watch's next round shows it all the same.
    refused = d.faults.rate_limit("PATCH /webhooks/*", via=False, count=1)
    d.clock.advance(13 * 60)
    await d.wait_for(lambda: DM_NOTICE in d.state.messages[card.id].text() or None, 15, what="the DM notice")
    assert refused.hits == 1
    d.clock.advance(3 * 60)
    gate.open(job.id)
    done = await wait_status(world.store, job.id, "delivered", "failed", timeout=60)
    assert done.status == "delivered" and DeliveryRecord.of(done).delivered_via == "dm"
    dm = d.dm_channel(alice)
    assert any(has_video(m) for m in d.messages() if m.channel_id == dm.id)
    assert channel_posts(world, lobby.id) == []


async def test_a_private_result_is_ephemeral_and_never_posted_in_the_channel(world: World, gate: Gate) -> None:
    d = world.discord
    alice, bob = d.member, d.add_member("bob")
    run = await d.slash("animate", {"image": Upload(PHOTO, "p.png"), "duration": 2.0, "private": True}, user=alice)
    card = await run.message(lambda m: m.card, timeout=15)
    assert card.ephemeral and f"<@{alice.id}>" not in card.text()
    # Only she sees this card, so it may say what she has left (a public card never does).
    assert any(t.startswith("-# Job ") and "left" in t for t in card.texts())
    (job,) = await all_jobs(world.store, alice.id)
    assert DeliveryRecord.of(job).private is True
    gate.open(job.id)
    clip = await run.message(has_video, timeout=60)
    assert clip.ephemeral
    assert channel_posts(world, d.general.id) == []
    # A reroll of a private clip stays private.
    reroll = await d.click(clip, "Reroll", user=alice)
    again = await reroll.message(lambda m: m.card and m.id != clip.id, timeout=15)
    assert again.ephemeral
    job2 = (await all_jobs(world.store, alice.id))[-1]
    assert DeliveryRecord.of(job2).private is True
    gate.open(job2.id)
    await wait_status(world.store, job2.id, "delivered", timeout=60)
    # The member dismisses a private card mid-render: the clip comes as a new follow-up,
    # still ephemeral, never a public message.
    run = await d.slash("animate", {"image": Upload(PHOTO, "p.png"), "duration": 2.0, "private": True, "seed": 9}, user=alice)
    card = await run.message(lambda m: m.card, timeout=15)
    job3 = (await all_jobs(world.store, alice.id))[-1]
    await gate.wait_started(job3.id)
    await d.delete_message(card)
    gate.open(job3.id)
    done = await wait_status(world.store, job3.id, "delivered", "failed", timeout=60)
    assert done.status == "delivered"
    # Bob sees none of it.
    assert not any(has_video(m) for m in d.messages() if not m.ephemeral)
    assert channel_posts(world, d.general.id) == []
    del bob
