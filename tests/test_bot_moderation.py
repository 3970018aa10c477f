"""Operators' rules that need no restart or that live in settings: the role rule, the daily
limit, and /stats charts; all through the real bot and the loopback Discord.

(/mod block|unblock|list is in test_bot_operators.py.)
"""

# ruff: noqa: F811  (pytest fixtures imported from tiny_models are "redefined" as arguments)

from __future__ import annotations

import io
from pathlib import Path

import pytest
from loopback import InteractionHandle, LoopbackDiscord, Message, Upload
from PIL import Image
from tiny_models import tiny_wan_a14b_dir  # noqa: F401  (a session fixture)
from world import Gate, World, all_jobs, bot_world, private_text, small_png, wait_status

from bot.charts import DPI, SIZE_INCHES

pytestmark = [pytest.mark.asyncio, pytest.mark.usefixtures("ray_instance")]

PHOTO = small_png()


async def animate(w: World, member, channel=None, **options) -> InteractionHandle:
    values = {"image": Upload(PHOTO, "photo.png"), "duration": 2.0, **options}
    return await w.discord.slash("animate", values, user=member, channel=channel)


async def public_message(run: InteractionHandle) -> Message:
    return await run.message(lambda m: not m.ephemeral and m.card, timeout=15)


async def test_only_members_with_an_allowed_role_animate_through_every_door(tmp_path: Path) -> None:
    async with LoopbackDiscord() as discord_:
        animators = discord_.add_role("animators")
        # Commands synced globally (no GUILD_IDS), so Discord offers /animate in DMs too.
        async with bot_world(
            tmp_path, discord_=discord_, guild_ids="", allowed_role_ids=str(animators.id)
        ) as w:
            d = w.discord
            alice = d.add_member("alice", roles=[animators])
            bob = d.add_member("bob")
            first = await animate(w, alice)
            clip = await public_message(first)
            await wait_status(w.store, (await all_jobs(w.store, alice.id))[-1].id, "delivered")

            refused = await private_text(await animate(w, bob))
            assert refused == (
                f"Only members with one of these roles can make videos here: <@&{animators.id}>."
            )
            assert await all_jobs(w.store, bob.id) == []

            # Roles come with each interaction: one taken away counts at the next click.
            alice.roles.remove(animators.id)
            balance, jobs = await w.store.balance(alice.id), len(await all_jobs(w.store, alice.id))
            assert "Only members with one of these roles" in await private_text(await animate(w, alice))
            for button in ("Reroll", "Edit"):
                run = await d.click(clip, button, user=alice)
                assert "Only members with one of these roles" in await private_text(run), button
            # A DM carries no roles, so it cannot be a way around the rule.
            dm = await private_text(await animate(w, alice, channel=d.dm_channel(alice)))
            assert "not in direct messages" in dm
            assert await w.store.balance(alice.id) == balance
            assert len(await all_jobs(w.store, alice.id)) == jobs

            alice.roles.append(animators.id)
            again = await animate(w, alice)
            await again.message(lambda m: m.ephemeral and "Queued as job" in m.content, timeout=15)


async def test_the_daily_limit_refuses_for_free_and_says_when(tmp_path: Path) -> None:
    async with bot_world(tmp_path, max_jobs_per_day=1) as w:
        d = w.discord
        await public_message(await animate(w, d.member))
        [job] = await all_jobs(w.store, d.member.id)
        await wait_status(w.store, job.id, "delivered")
        balance = await w.store.balance(d.member.id)

        text = await private_text(await animate(w, d.member, prompt="one more"))
        next_at = int(job.created_at + 86_400)
        assert text == (
            "You have made 1 video in the last 24 hours, the most allowed here. "
            f"You can start the next one <t:{next_at}:R>. Nothing was charged."
        )
        assert await w.store.balance(d.member.id) == balance
        assert len(await all_jobs(w.store, d.member.id)) == 1


def png_of(message: Message) -> Image.Image:
    [attachment] = message.attachments
    assert attachment.filename.endswith(".png")
    image = Image.open(io.BytesIO(message.file(attachment.filename)))
    image.load()
    return image


def pixels_of(image: Image.Image, colour: tuple[int, int, int]) -> int:
    return sum(1 for pixel in image.convert("RGB").getdata() if pixel == colour)


async def test_stats_draws_a_chart_that_follows_the_data(tmp_path: Path) -> None:
    gate = Gate(tmp_path / "gate")
    async with bot_world(tmp_path, backend_factory=gate.factory) as w:
        d = w.discord
        owner = d.add_member(d.app_owner)

        refused = await d.slash("stats", {}, user=d.member)
        assert "Only the bot's operators can see the statistics." in await private_text(refused)

        run = await d.slash("stats", {}, user=owner)
        empty = await run.message(lambda m: m.ephemeral and bool(m.attachments), timeout=30)
        assert empty.content.startswith("**Last 24 hours:** 0 jobs ended (0 delivered, 0 failed")
        before = png_of(empty)
        assert before.format == "PNG"
        assert before.size == (SIZE_INCHES[0] * DPI, SIZE_INCHES[1] * DPI)

        made = await animate(w, d.member)
        await public_message(made)
        a = (await all_jobs(w.store, d.member.id))[-1]
        gate.open(a.id)
        await wait_status(w.store, a.id, "delivered")
        failing = await animate(w, d.member, prompt="fails")
        await public_message(failing)
        b = (await all_jobs(w.store, d.member.id))[-1]
        await gate.wait_started(b.id)
        gate.fail(b.id)
        await wait_status(w.store, b.id, "failed")

        run = await d.slash("stats", {"period": "24h"}, user=owner)
        full = await run.message(lambda m: m.ephemeral and bool(m.attachments), timeout=30)
        cost = w.settings.cost("camera", 2.0)
        assert full.content == (
            f"**Last 24 hours:** 2 jobs ended (1 delivered, 1 failed, 0 cancelled) · {cost} credits spent"
        )
        after = png_of(full)
        assert after.size == before.size
        changed = sum(
            1 for x, y in zip(before.convert("RGB").getdata(), after.convert("RGB").getdata()) if x != y
        )
        assert changed > 1000, changed  # bars, a box plot and a new headline, not one pixel
        # The delivered job's green bar and the failed job's red one are drawn (before, those
        # colours were only the legend's small patches).
        for colour in ((0x3B, 0xA5, 0x5D), (0xED, 0x42, 0x45)):
            grew = pixels_of(after, colour) - pixels_of(before, colour)
            assert grew > 500, (colour, grew)

        run = await d.slash("stats", {"period": "7d"}, user=owner)
        week = await run.message(lambda m: m.ephemeral and bool(m.attachments), timeout=30)
        assert week.content.startswith("**Last 7 days:** 2 jobs ended")
        assert png_of(week).size == before.size


async def test_members_pick_an_operators_effect_and_a_model_without_one_refuses_it(
    tmp_path: Path, tiny_wan_a14b_dir: Path
) -> None:
    """EFFECTS through /animate: offered by autocomplete with its label for the model chosen,
    refused for free on a model without effects, stored on the job when chosen (the job is
    cancelled before it renders: a tiny model at the preset's full size is minutes on a CPU)."""
    import json

    from tiny_models import write_wan_lora

    lora = write_wan_lora(tmp_path / "loras" / "orbit.safetensors", seed=8)
    tiny = str(tiny_wan_a14b_dir)
    effects = {tiny: {"orbit": {"label": "360° orbit", "loras": [str(lora)], "prompt": "orbit shot"}}}
    async with bot_world(tmp_path, model=f"camera,{tiny}", effects=json.dumps(effects)) as w:
        d, alice = w.discord, w.discord.member
        offered = await d.autocomplete("animate", "effect", {"model": tiny, "effect": ""}, user=alice)
        assert [(c["name"], c["value"]) for c in offered] == [("360° orbit (orbit)", "orbit")]
        assert await d.autocomplete("animate", "effect", {"effect": ""}, user=alice) == []  # camera

        balance = await w.store.balance(alice.id)
        refused = await private_text(await animate(w, alice, effect="orbit"))
        assert refused == "`camera` has no effects; leave out effect or pick another model."
        wrong = await private_text(await animate(w, alice, model=tiny, effect="sparkle"))
        assert wrong == f"`{tiny}` has no effect called “sparkle”; it offers orbit (360° orbit)."
        assert await w.store.balance(alice.id) == balance and await all_jobs(w.store, alice.id) == []

        run = await animate(w, alice, model=tiny, effect="orbit")
        await public_message(run)
        [job] = await all_jobs(w.store, alice.id)
        assert job.spec.effect == "orbit" and job.model == tiny
        cancelled, _ = await w.bot.jobs.cancel(job.id)
        assert cancelled
        await wait_status(w.store, job.id, "cancelled")
        assert await w.store.balance(alice.id) == balance


async def test_the_prompt_coach_adds_one_tip_to_the_acknowledgement_and_templates_autocomplete(
    tmp_path: Path, tiny_wan_a14b_dir: Path
) -> None:
    """A prompt that describes the scene but no motion still queues (never blocked, same
    price), with one tip in the private answer; a model that reads no prompt gets no tip. The
    job is cancelled before it renders (a tiny model at full size is minutes on a CPU)."""
    tiny = str(tiny_wan_a14b_dir)
    async with bot_world(tmp_path, model=f"camera,{tiny}") as w:
        d, alice = w.discord, w.discord.member
        offered = await d.autocomplete("animate", "prompt", {"prompt": "pet"}, user=alice)
        assert [c["name"].split(":")[0] for c in offered] == ["Pet"]

        scene = "a woman in a red dress in a garden at sunset"
        run = await animate(w, alice, model=tiny, prompt=scene)
        ack = await run.message(lambda m: m.ephemeral and "Queued as job" in m.content, timeout=15)
        assert "💡 Describe the motion, not the scene" in ack.content
        [job] = await all_jobs(w.store, alice.id)
        assert job.spec.prompt == scene and job.cost == w.settings.cost(tiny, 2.0)
        await w.bot.jobs.cancel(job.id)
        await wait_status(w.store, job.id, "cancelled")

        camera = await animate(w, alice, prompt=scene)  # the camera move reads no prompt
        ack = await camera.message(lambda m: m.ephemeral and "Queued as job" in m.content, timeout=15)
        assert "💡" not in ack.content
