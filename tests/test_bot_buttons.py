"""The buttons on a finished video: Info, Edit (a modal), Extend — through the loopback.

Whoever presses Edit or Extend pays for the new job; the modal comes prefilled with the
job's settings and refuses bad values specifically; an extension is the previous clip plus
the new frames, at the same size and frame rate.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from loopback import Message, Upload
from photos import photo_bytes
from world import (
    all_jobs,
    bot_world,
    has_video,
    ledger_kinds,
    n_credits,
    private_text,
    video_of,
    wait_status,
)

from pipeline.encode import decode_frames
from pipeline.probe import probe

pytestmark = [pytest.mark.asyncio, pytest.mark.usefixtures("ray_instance")]


def text_inputs(modal: dict) -> Iterator[dict]:
    """The modal's text inputs, whatever layout discord.py chose (rows or labels)."""
    for component in modal.get("components", []):
        if component.get("type") == 1:
            yield from component.get("components", [])
        elif component.get("type") == 18:
            yield {**component["component"], "label": component.get("label")}


def chosen(field: dict) -> list[str]:
    """The preselected values of a select or radio group in a modal."""
    return [o["value"] for o in field.get("options", []) if o.get("default")]


def footer(message: Message) -> str:
    """The small print at the bottom of a job's card: job, cost and settings."""
    return next(t for t in message.texts() if t.startswith("-# Job "))


async def test_info_edit_and_extend(tmp_path: Path) -> None:
    async with bot_world(tmp_path) as w:
        d = w.discord
        alice, bob = d.member, d.add_member("bob")
        run = await d.slash(
            "animate",
            {
                "image": Upload(photo_bytes("chelsea"), "chelsea.png"),
                "prompt": "the cat looks up",
                "negative": "blur",
                "camera": "zoom_in",
                "motion": 7,
                "duration": 2.0,
                "seed": 1234,
            },
            user=alice,
        )
        clip = await run.message(has_video, timeout=60)
        (original,) = await all_jobs(w.store, alice.id)
        # The clip is visible a moment before the bot records it as delivered.
        await wait_status(w.store, original.id, "delivered", timeout=10)
        first = probe(video_of(clip))

        # Info: every parameter, privately, to whoever asks.
        info = await private_text(await d.click(clip, "Info", user=bob))
        assert f"**Job {original.id}** (animate, delivered)" in info
        assert "Prompt: the cat looks up" in info and "Avoid: blur" in info
        assert "Model: `camera` · seed 1234" in info
        assert "Camera: zoom in · motion 7/10 · 2 s" in info
        assert f"Output: {first['width']}×{first['height']}, 48 frames at 24 fps" in info
        assert f"Cost: {n_credits(original.cost)}" in info

        # Edit: a form of real controls, each prefilled with the job's setting.
        edit = await d.click(clip, "Edit", user=bob)
        modal = await edit.modal()
        fields = {f["label"]: f for f in text_inputs(modal)}
        assert list(fields) == ["Prompt", "Camera", "Motion strength", "Length", "Options"]
        assert fields["Prompt"]["value"] == "the cat looks up"
        assert chosen(fields["Camera"]) == ["zoom_in"] and chosen(fields["Motion strength"]) == ["7"]
        assert [o["value"] for o in fields["Length"]["options"]] == ["2", "3", "5", "8"]
        assert chosen(fields["Length"]) == ["2"]
        # The camera move makes no sound: no Sound box; the last box asks for the second form.
        assert [o["value"] for o in fields["Options"]["options"]] == ["loop", "more"]
        bob_before = await w.store.balance(bob.id)

        # A prompt the server's rules refuse is refused specifically, for free.
        w.bot.settings.blocked_words = ["yawns"]
        bad = await d.submit_modal(edit, {"Prompt": "the cat yawns"}, user=bob)
        assert "yawns" in await private_text(bad)
        w.bot.settings.blocked_words = []
        assert await w.store.balance(bob.id) == bob_before
        assert await all_jobs(w.store, bob.id) == []

        edit = await d.click(clip, "Edit", user=bob)
        submitted = await d.submit_modal(
            edit,
            {"Prompt": "the cat yawns", "Camera": "pan_left", "Motion strength": "3",
             "Length": "3", "Options": ["loop"]},
            user=bob,
        )
        edited_clip = await submitted.message(has_video, timeout=60)
        (edited,) = await all_jobs(w.store, bob.id)
        assert edited.action == "edit" and edited.parent_id == original.id
        assert (edited.spec.prompt, edited.spec.negative_prompt) == ("the cat yawns", "blur")
        assert (edited.spec.camera, edited.spec.motion) == ("pan_left", 3)
        assert edited.spec.duration == 3.0 and edited.spec.loop and edited.spec.seed is None
        assert "camera: pan left · motion 3/10" in footer(edited_clip)
        assert "the cat yawns" in edited_clip.texts()
        assert await w.store.balance(bob.id) == bob_before - edited.cost  # the editor paid
        assert [k for k, _, _ in await ledger_kinds(w.store, alice.id)] == ["welcome", "debit"]

        # Extend: pressed by Bob on Alice's clip; a form with her prompt, which he changes for
        # what happens next; he pays for the new 2 s; the clip grows by 2 s.
        extend = await d.click(clip, "Extend", user=bob)
        form = await extend.modal()
        assert {f["label"]: f.get("value") for f in text_inputs(form)} == {
            "What happens next (prompt)": "the cat looks up"
        }
        extend = await d.submit_modal(extend, {"What happens next (prompt)": "the cat turns away"}, user=bob)
        longer_clip = await extend.message(has_video, timeout=60)
        extended = (await all_jobs(w.store, bob.id))[-1]
        assert extended.action == "extend" and extended.parent_id == original.id
        assert extended.spec.prompt == "the cat turns away" and extended.spec.duration == 2.0
        assert extended.cost == w.settings.cost("camera", 2.0)  # the new seconds only
        longer = probe(video_of(longer_clip))
        assert (longer["width"], longer["height"], longer["fps"]) == (
            first["width"], first["height"], first["fps"],
        )
        assert longer["frames"] == first["frames"] + 48
        # Its first part is the previous clip (re-encoded: equal up to compression noise).
        old_frames, _ = decode_frames(video_of(clip))
        new_frames, _ = decode_frames(video_of(longer_clip))
        diff = np.abs(old_frames.astype(np.int16) - new_frames[: len(old_frames)].astype(np.int16))
        assert diff.mean() < 4.0, diff.mean()
        # ... and then it moves on from the last frame rather than starting over.
        assert np.abs(new_frames[-1].astype(np.int16) - old_frames[-1].astype(np.int16)).mean() > 1.0
        assert await w.store.balance(bob.id) == bob_before - edited.cost - extended.cost
        assert "Extend" in longer_clip.button_labels()
        await wait_status(w.store, extended.id, "delivered", timeout=10)
        info = await private_text(await d.click(longer_clip, "Info", user=alice))
        assert "Prompt: the cat turns away" in info and f"Made from job {original.id}" in info


async def test_a_chain_extends_up_to_the_limit_and_the_next_press_is_refused_before_the_form(
    tmp_path: Path,
) -> None:
    async with bot_world(tmp_path, max_extensions=1) as w:
        d = w.discord
        run = await d.slash(
            "animate", {"image": Upload(photo_bytes("chelsea"), "chelsea.png"), "duration": 2.0},
            user=d.member,
        )
        clip = await run.message(has_video, timeout=60)
        (original,) = await all_jobs(w.store, d.member.id)
        await wait_status(w.store, original.id, "delivered", timeout=10)
        extend = await d.submit_modal(await d.click(clip, "Extend"), {})  # the prompt as it was
        longer = await extend.message(has_video, timeout=60)
        extended = (await all_jobs(w.store, d.member.id))[-1]
        await wait_status(w.store, extended.id, "delivered", timeout=10)
        balance, jobs = await w.store.balance(d.member.id), len(await all_jobs(w.store, d.member.id))

        again = await d.click(longer, "Extend")
        assert await private_text(again) == (
            "This video has been extended once, the most allowed here; start a new one from a "
            "photo instead."
        )
        assert await w.store.balance(d.member.id) == balance
        assert len(await all_jobs(w.store, d.member.id)) == jobs
        # The first clip is a chain of its own: it may still be extended (a form opens).
        assert (await (await d.click(clip, "Extend")).modal())["title"] == "Extend this video"


async def test_a_loop_is_a_crossfade_on_the_camera_and_info_says_so(tmp_path: Path) -> None:
    async with bot_world(tmp_path) as w:
        d = w.discord
        run = await d.slash(
            "animate",
            {"image": Upload(photo_bytes("chelsea"), "chelsea.png"), "duration": 2.0, "loop": True,
             "camera": "zoom_in"},
        )
        clip = await run.message(has_video, timeout=60)
        (job,) = await all_jobs(w.store, d.member.id)
        await wait_status(w.store, job.id, "delivered", timeout=10)
        frames, fps = decode_frames(video_of(clip))
        assert len(frames) == round(2.0 * fps)  # as long as asked, not ping-ponged to double
        seam = np.abs(frames[-1].astype(np.int16) - frames[0].astype(np.int16)).mean()
        biggest_step = np.abs(np.diff(frames.astype(np.int16), axis=0)).mean(axis=(1, 2, 3)).max()
        assert seam <= biggest_step + 0.5, (seam, biggest_step)
        info = await private_text(await d.click(clip, "Info"))
        assert "Loop: seamless, the last half second dissolves into the start" in info
