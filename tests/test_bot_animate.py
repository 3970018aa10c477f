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
    """The Status field of the embed in every version of the message, oldest first."""
    values = []
    for version in [*message.history, message]:
        for embed in version.embeds:
            for field in embed.get("fields", []):
                if field["name"] == "Status":
                    values.append(field["value"])
    return values


def percentages(message: Message) -> list[int]:
    return [int(m.group(1)) for v in status_values(message) if (m := re.search(r"(\d+)%", v))]


def embed_field(message: Message, name: str) -> str:
    for embed in message.embeds:
        for field in embed.get("fields", []):
            if field["name"] == name:
                return field["value"]
    raise AssertionError(f"no field {name!r} in {message.embeds}")


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
        assert not clip.ephemeral and str(alice.id) in clip.content
        info = probe(video_of(clip))
        assert (info["codec"], info["pix_fmt"], info["faststart"]) == ("h264", "yuv420p", True)
        assert info["frames"] == 48 and info["fps"] == pytest.approx(24)
        # The same message showed the queue, then progress that only went up, then the clip.
        shown = percentages(clip)
        assert len(shown) >= 2 and shown == sorted(shown), status_values(clip)
        assert clip.button_labels() == ["Reroll", "Edit", "Extend", "Info", "Delete"]
        # While queued and rendering, every file on the message is the picture its embed
        # shows (the photo's thumbnail, then the preview frame): no loose files, no dangling
        # attachment:// links; and the preview did show up.
        pictures = []
        for version in clip.history:
            if any(a.filename.endswith(".mp4") for a in version.attachments):
                continue
            files = {a.filename for a in version.attachments}
            shown = {
                (embed.get(k) or {}).get("url", "").removeprefix("attachment://")
                for embed in version.embeds
                for k in ("thumbnail", "image")
            } - {""}
            assert files == shown, (files, shown)
            pictures += sorted(files)
        assert pictures[0].startswith("photo-") and pictures[-1].startswith("preview-"), pictures
        # The member's private acknowledgement names the cost and what is left.
        ack_message = await run.original()
        assert ack_message.ephemeral and "credit" in ack_message.content

    assert len(await debits(world, alice.id)) == 3
    assert await world.store.balance(alice.id) == 20 - 3 * world.settings.cost("camera", 2.0)

    first_seed = embed_field(clip, "Seed")
    reroll = await d.click(clip, "Reroll", user=bob)
    again = await reroll.message(has_video, timeout=60)
    assert embed_field(again, "Seed") != first_seed
    assert len(await debits(world, bob.id)) == 1  # whoever clicked pays
    assert len(await debits(world, alice.id)) == 3
    jobs = await world.store.jobs(statuses=("delivered",))
    assert len(jobs) == 4 and all(j.status == "delivered" for j in jobs)
