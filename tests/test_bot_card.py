"""One card per job (Components V2), through the real bot and the loopback Discord.

The job's message is a card from its first post: the photo's thumbnail beside the prompt
while it waits, the progress bar and the preview while it renders, the MP4 playing inside it
when done, red with the reason when it fails. A message posted as an embed by an earlier
release (a job in flight across the upgrade) becomes a card at its next edit.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from loopback import Upload
from loopback.components import walk
from world import Gate, World, all_jobs, bot_world, small_png, wait_status

from bot.delivery.record import DeliveryRecord

pytestmark = [pytest.mark.asyncio, pytest.mark.usefixtures("ray_instance")]

PHOTO = small_png()
BLURPLE, GREEN, RED = 0x5865F2, 0x2ECC71, 0xE74C3C  # discord.Colour.blurple(), green(), red()


@pytest.fixture
async def world(tmp_path: Path, gate: Gate) -> AsyncIterator[World]:
    async with bot_world(tmp_path, backend_factory=gate.factory) as w:
        yield w


def accent(message) -> int:  # type: ignore[no-untyped-def]
    (box,) = [c for c in message.components if c["type"] == 17]
    return box["accent_color"]


async def held(world: World, gate: Gate, **options):  # type: ignore[no-untyped-def]
    d = world.discord
    values = {"image": Upload(PHOTO, "photo.png"), "duration": 2.0, "prompt": "waves roll in", **options}
    run = await d.slash("animate", values, user=d.member)
    message = await run.message(lambda m: not m.ephemeral and m.card, timeout=15)
    job = (await all_jobs(world.store, d.member.id))[-1]
    await gate.wait_started(job.id)
    return message, job


async def test_one_card_from_the_queue_to_the_clip(world: World, gate: Gate) -> None:
    d = world.discord
    alice = d.member
    message, job = await held(world, gate)
    # Waiting: blurple, the photo beside the prompt, the settings and price, Cancel; it names
    # the member but (posted with no allowed mentions) does not ping them yet.
    assert accent(message) == BLURPLE and message.content == "" and message.embeds == []
    assert message.shown(kind=11) == [f"photo-{job.id}.jpg"]
    assert "waves roll in" in message.texts() and message.button_labels() == ["Cancel"]
    sections = [c for c in walk(message.components) if c["type"] == 9]
    assert len(sections) == 1 and sections[0]["accessory"]["type"] == 11

    gate.open(job.id)
    await wait_status(world.store, job.id, "delivered", timeout=60)
    card = d.state.messages[message.id]
    # Done, on the same message: green, the MP4 in its gallery and nothing else attached,
    # the mention above, the clip's facts and buttons inside.
    assert accent(card) == GREEN and card.texts()[0] == f"<@{alice.id}>"
    assert [a.filename for a in card.attachments] == card.shown(kind=12) == [f"animate-{job.id}.mp4"]
    assert card.button_labels() == ["Reroll", "Edit", "Extend", "Info", "Delete"]
    assert any(t.startswith("### Your video is ready") for t in card.texts())
    # Every version was a card; none ever carried content or embeds.
    assert all(v.flags & (1 << 15) and not v.content and not v.embeds for v in card.history)


async def test_a_failed_job_turns_its_card_red_with_the_reason(world: World, gate: Gate) -> None:
    d = world.discord
    message, job = await held(world, gate)
    gate.fail(job.id)
    await wait_status(world.store, job.id, "failed", timeout=60)
    card = await d.wait_for(
        lambda: accent(m := d.state.messages[message.id]) == RED and m, timeout=15, what="a red card"
    )
    assert "couldn't be made" in card.text() and "refunded" in card.text()
    assert card.button_labels() == [] and card.attachments == []


async def test_a_message_posted_as_an_embed_before_the_upgrade_becomes_a_card(
    world: World, gate: Gate
) -> None:
    """A job queued by the previous release has an embed message; the new release's first
    edit clears its content and embeds (Discord refuses the card flag beside them)."""
    d = world.discord
    alice = d.member
    message, job = await held(world, gate)
    legacy = d.state.messages[message.id]
    legacy.flags, legacy.content = 0, f"<@{alice.id}>"
    legacy.embeds = [{"title": "Animating your photo", "description": "waves roll in"}]
    legacy.components = [{"type": 1, "components": [
        {"type": 2, "style": 4, "label": "Cancel", "custom_id": f"animate:cancel:{job.id}"}
    ]}]
    for _ in range(100):  # announce() notes the message just after posting it
        record = DeliveryRecord.of(await world.store.get_job(job.id))
        if record.message_id:
            break
        await asyncio.sleep(0.05)
    assert record.message_id == message.id and record.card
    await world.store.set_delivery(job.id, record.replace(card=False).to_dict())

    gate.open(job.id)
    job = await wait_status(world.store, job.id, "delivered", timeout=60)
    card = d.state.messages[message.id]
    assert card.card and card.content == "" and card.embeds == []
    assert card.shown(kind=12) == [f"animate-{job.id}.mp4"]
    assert DeliveryRecord.of(job).card is True and DeliveryRecord.of(job).delivered_via == "interaction"


async def test_a_new_card_pings_its_member_and_nobody_a_prompt_names(world: World, gate: Gate) -> None:
    """The card shows the prompt as text, where a mention would ping: a new message about the
    job (here after a moderator deleted its card) notifies its member only."""
    d = world.discord
    alice, bob = d.member, d.add_member("bob")
    message, job = await held(world, gate, prompt=f"<@{bob.id}> waves at the camera")
    await d.delete_message(message)
    gate.open(job.id)
    await wait_status(world.store, job.id, "delivered", timeout=60)
    (clip,) = [m for m in d.messages() if m.shown(kind=12) == [f"animate-{job.id}.mp4"]]
    assert clip.id != message.id and f"<@{bob.id}> waves at the camera" in clip.texts()
    assert clip.mentions == [alice.id]

