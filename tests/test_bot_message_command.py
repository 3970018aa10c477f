"""The "Animate" message command: a photo already in the chat, a short form, the same job as
/animate, through the real bot and the loopback Discord."""

from __future__ import annotations

from pathlib import Path

import pytest
from loopback import Upload
from photos import photo_bytes
from world import all_jobs, bot_world, has_video, private_text, wait_status

pytestmark = [pytest.mark.asyncio, pytest.mark.usefixtures("ray_instance")]


def labels(modal: dict) -> list[str]:
    return [c.get("label") for c in modal.get("components", []) if c.get("type") == 18]


async def test_right_click_a_photo_fill_the_form_and_get_the_video(tmp_path: Path) -> None:
    async with bot_world(tmp_path) as w:
        d = w.discord
        alice, bob = d.member, d.add_member("bob")
        posted = await d.post_message(
            d.general, "my cat", author=bob, files=[Upload(photo_bytes("chelsea"), "cat.png")]
        )
        run = await d.message_command("Animate", posted, user=alice)
        form = await run.modal()
        assert form["title"] == "Animate this photo"
        assert labels(form) == ["Prompt", "Camera", "Model", "Length in seconds", "Options"]
        balance = await w.store.balance(alice.id)

        bad = await d.submit_modal(run, {"Length in seconds": "soon"}, user=alice)
        assert "“soon” isn't a length; type the seconds, e.g. 3." in await private_text(bad)
        assert await all_jobs(w.store, alice.id) == []

        run = await d.message_command("Animate", posted, user=alice)
        done = await d.submit_modal(
            run,
            {"Prompt": "the cat looks up", "Camera": "zoom_in", "Length in seconds": "2",
             "Options": ["loop", "private"]},
            user=alice,
        )
        clip = await done.message(has_video, timeout=60)
        assert clip.ephemeral  # "Only I see it"
        (job,) = await all_jobs(w.store, alice.id)
        await wait_status(w.store, job.id, "delivered", timeout=10)
        spec = job.spec
        assert (spec.prompt, spec.camera, spec.duration, spec.loop, job.model) == (
            "the cat looks up", "zoom_in", 2.0, True, "camera",
        )
        assert await w.store.balance(alice.id) == balance - job.cost  # the one who asked pays

        text_only = await d.post_message(d.general, "no picture here", author=bob)
        refused = await d.message_command("Animate", text_only, user=alice)
        assert await private_text(refused) == (
            "That message has no photo attached; use Animate on a message with an image file."
        )
