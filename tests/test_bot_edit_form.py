"""The Edit form's second step: a box in the first form asks for it, a private button opens it,
and it changes the model, the negative prompt and the photos, each checked as /animate checks
them, before anything is charged. Through the loopback Discord and the real bot."""

from __future__ import annotations

from pathlib import Path

import pytest
from loopback import Upload
from photos import photo_bytes
from world import all_jobs, bot_world, has_video, private_text, small_png

from bot.edit import EditModal
from contract import JobSpec
from jobs.records import Job

pytestmark = [pytest.mark.asyncio, pytest.mark.usefixtures("ray_instance")]


def fields(modal: dict) -> dict[str, dict]:
    return {c["label"]: c["component"] for c in modal["components"] if c.get("type") == 18}


async def test_second_form_changes_photo_negative_and_checks_the_end_frame(tmp_path: Path) -> None:
    async with bot_world(tmp_path, model="camera", welcome_credits=40) as w:
        d = w.discord
        run = await d.slash(
            "animate",
            {"image": Upload(photo_bytes("chelsea"), "chelsea.png"), "prompt": "the cat looks up",
             "negative": "blur", "duration": 2.0},
        )
        clip = await run.message(has_video, timeout=60)
        (original,) = await all_jobs(w.store)
        before = await w.store.balance(d.member.id)

        # First form: a new prompt, and the box that asks for the second form.
        first = await d.click(clip, "Edit")
        answered = await d.submit_modal(first, {"Prompt": "the cat sneezes", "Options": ["more"]})
        step = await answered.original()
        assert step.ephemeral and "nothing is charged yet" in step.content
        assert await w.store.balance(d.member.id) == before and len(await all_jobs(w.store)) == 1

        # Second form: prefilled with the job's model and negative prompt; uploads are optional.
        second = await d.click(step, "Model, negative prompt, photos…")
        form = fields(await second.modal())
        assert list(form) == ["Model", "Avoid (negative prompt)", "New photo", "End frame"]
        assert [o["value"] for o in form["Model"]["options"] if o.get("default")] == ["camera"]
        assert form["Avoid (negative prompt)"]["value"] == "blur"

        # The camera move cannot end on a chosen image: refused with a sentence, for free.
        refused = await d.submit_modal(second, {"End frame": Upload(small_png(), "end.png")})
        assert "can't end on a chosen image" in await private_text(refused)
        assert await w.store.balance(d.member.id) == before and len(await all_jobs(w.store)) == 1

        # A file that is not a photo is judged like /animate's upload, before any charge.
        second = await d.click(step, "Model, negative prompt, photos…")
        refused = await d.submit_modal(second, {"New photo": Upload(b"just some text", "notes.png")})
        assert "isn't an image" in await private_text(refused)
        assert await w.store.balance(d.member.id) == before

        # A new photo and negative prompt, with the first form's prompt: one new job.
        new_photo = small_png(120, color=(200, 40, 40))
        second = await d.click(step, "Model, negative prompt, photos…")
        done = await d.submit_modal(
            second, {"Avoid (negative prompt)": "shaky", "New photo": Upload(new_photo, "red.png")}
        )
        await done.message(has_video, timeout=60)
        edited = next(j for j in await all_jobs(w.store) if j.id != original.id)
        assert edited.action == "edit" and edited.parent_id == original.id
        assert (edited.spec.prompt, edited.spec.negative_prompt) == ("the cat sneezes", "shaky")
        image, _ = await w.store.job_inputs(edited.id)
        assert image == new_photo
        assert await w.store.balance(d.member.id) == before - edited.cost


async def test_a_model_with_sound_gets_a_sound_box_ticked_as_the_job_was() -> None:
    job = Job(
        id=3, user_id=1, status="delivered", action="animate",
        spec=JobSpec(model="ltx2", duration=5.0, motion=4, audio=False), cost=10, delivery={},
        attempts=1, low_memory=False, created_at=0.0,
    )
    payload = EditModal(job, lengths=(2.0, 3.0, 5.0, 8.0, 10.0), has_sound=True).to_dict()
    form = fields(payload)
    options = {o["value"]: o.get("default", False) for o in form["Options"]["options"]}
    assert options == {"loop": False, "audio": False, "more": False}
    lengths = [o["value"] for o in form["Length"]["options"] if o.get("default")]
    assert lengths == ["5"]
    assert [o["value"] for o in form["Motion strength"]["options"] if o.get("default")] == ["4"]
