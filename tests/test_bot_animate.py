"""/animate end to end: the real bot, discord.py, store, Ray workers and camera backend.

Every test talks to the bot only the way Discord would (through the loopback server) and
checks what a member would see and what the ledger says.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from loopback import Message, Upload
from photos import NAMES, photo_path
from world import World, bot_world

from pipeline.probe import probe

GREEN = 0x2ECC71  # discord.Colour.green(): the card of a finished job
COMPONENTS_V2 = 1 << 15


def container(message: Message) -> dict:
    (box,) = [c for c in message.components if c["type"] == 17]
    return box


def clip_job(message: Message) -> int:
    found = re.search(r"Job (\d+)", message.text())
    assert found, message.text()
    return int(found.group(1))

pytestmark = [pytest.mark.asyncio, pytest.mark.usefixtures("ray_instance")]


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    async with bot_world(tmp_path) as w:
        yield w


def has_video(message: Message) -> bool:
    return any(a.filename.endswith(".mp4") for a in message.attachments)


def video_of(message: Message) -> bytes:
    name = next(a.filename for a in message.attachments if a.filename.endswith(".mp4"))
    return message.file(name)


def status_values(message: Message) -> list[str]:
    """The card's status line (queue position or progress bar) in every version, oldest first."""
    values = []
    for version in [*message.history, message]:
        values += [t for t in version.texts() if "in the queue" in t or "starting" in t or "░" in t or "█" in t]
    return values


def percentages(message: Message) -> list[int]:
    return [int(m.group(1)) for v in status_values(message) if (m := re.search(r"(\d+)%", v))]


def seed_of(message: Message) -> str:
    found = re.search(r"seed (\d+)", message.text())
    assert found, message.text()
    return found.group(1)


async def debits(world: World, user_id: int) -> list[int]:
    return [e.job_id for e in await world.store.history(user_id, limit=50) if e.kind == "debit"]


async def test_animate_each_sample_photo_then_reroll(world: World) -> None:
    d = world.discord
    alice, bob = d.member, d.add_member("bob")
    for name in NAMES:
        run = await d.slash(
            "animate",
            {
                "image": Upload(photo_path(name).read_bytes(), f"{name}.png"),
                "prompt": "slow push-in, hair moving in a light breeze",
                "camera": "zoom_in",
                "duration": 2.0,
            },
            user=alice,
        )
        ack = await run.acknowledged()
        assert ack.latency < 3.0 and ack.type == 5  # deferred at once
        clip = await run.message(has_video, timeout=60)
        # One card: the mention above it, the MP4 playing in its gallery, green when done.
        assert clip.card and not clip.ephemeral and clip.texts()[0] == f"<@{alice.id}>"
        assert clip.content == "" and clip.embeds == []
        assert clip.shown(kind=12) == [a.filename for a in clip.attachments] == [f"animate-{clip_job(clip)}.mp4"]
        assert container(clip)["accent_color"] == GREEN
        info = probe(video_of(clip))
        assert (info["codec"], info["pix_fmt"], info["faststart"]) == ("h264", "yuv420p", True)
        assert info["frames"] == 48 and info["fps"] == pytest.approx(24)
        # The same message showed the queue, then progress that only went up, then the clip.
        shown = percentages(clip)
        assert len(shown) >= 2 and shown == sorted(shown), status_values(clip)
        assert clip.button_labels() == ["Reroll", "Edit", "Extend", "Info", "Delete"]
        # While queued and rendering, every file on the card is the picture it shows (the
        # photo's thumbnail beside the prompt, then the preview frame in a gallery): no loose
        # files, and the preview did show up. Every version was a card.
        pictures = []
        for version in clip.history:
            assert version.flags & COMPONENTS_V2 and not version.content
            if any(a.filename.endswith(".mp4") for a in version.attachments):
                continue
            files = sorted(a.filename for a in version.attachments)
            assert files == sorted(version.shown()), (files, version.shown())
            pictures += files
        assert pictures[0].startswith("photo-") and pictures[-1].startswith("preview-"), pictures
        first = clip.history[0]
        assert first.shown(kind=11) == [pictures[0]]  # the thumbnail, beside the prompt
        queued = "\n".join(first.texts())
        assert "slow push-in" in queued and ("in the queue" in queued or "starting" in queued)
        # The member's private acknowledgement names the cost and what is left.
        ack_message = await run.original()
        assert ack_message.ephemeral and "credit" in ack_message.content

    assert len(await debits(world, alice.id)) == 3
    assert await world.store.balance(alice.id) == 20 - 3 * world.settings.cost("camera", 2.0)

    first_seed = seed_of(clip)
    reroll = await d.click(clip, "Reroll", user=bob)
    again = await reroll.message(has_video, timeout=60)
    assert seed_of(again) != first_seed
    assert len(await debits(world, bob.id)) == 1  # whoever clicked pays
    assert len(await debits(world, alice.id)) == 3
    jobs = await world.store.jobs(statuses=("delivered",))
    assert len(jobs) == 4 and all(j.status == "delivered" for j in jobs)
