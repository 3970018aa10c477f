"""Every refusal of /animate, through the loopback Discord and the real bot.

Each one must reach the member as a specific ephemeral sentence, leave the balance as it
was and create no job. The queue limits are tested with jobs that really wait: the only
worker is held busy by a job parked at the gate of `world.GatedCamera`.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import pytest
from loopback import InteractionHandle, LoopbackDiscord, Member, Upload
from world import (
    Gate,
    World,
    all_jobs,
    bot_world,
    has_video,
    n_credits,
    noisy_png,
    small_png,
    wait_status,
)

pytestmark = [pytest.mark.asyncio, pytest.mark.usefixtures("ray_instance")]

PHOTO = small_png()


async def refused(
    world: World, run: InteractionHandle, *expected: str
) -> str:
    """The member's private answer; it must contain every `expected` fragment."""
    answer = await run.original(timeout=15)
    assert answer.ephemeral, answer.content
    for fragment in expected:
        assert fragment in answer.content, f"{fragment!r} not in {answer.content!r}"
    # Nothing public was posted for this interaction.
    assert [m.id for m in run.messages] == [answer.id]
    return answer.content


async def unchanged(world: World, member: Member | object, before: int, jobs_before: int = 0) -> None:
    user_id = member.id  # type: ignore[attr-defined]
    assert await world.store.balance(user_id) == before
    assert len(await all_jobs(world.store, user_id)) == jobs_before


async def animate(
    world: World, member: Member, options: dict | None = None, **where: object
) -> InteractionHandle:
    values = {"image": Upload(PHOTO, "photo.png"), "duration": 2.0, **(options or {})}
    return await world.discord.slash("animate", values, user=member, **where)


async def test_bad_photos_and_options_are_refused_for_free(tmp_path: Path) -> None:
    async with bot_world(tmp_path, max_image_bytes=64 * 1024, blocked_words="gore, blood bath") as w:
        d = w.discord
        alice = d.member
        before = await w.store.balance(alice.id)

        cases: Iterable[tuple[dict, tuple[str, ...]]] = [
            # Not an image: text bytes with a .png name and an image/png content type.
            ({"image": Upload(b"hello, this is just some text\n" * 20, "holiday.png")},
             ("isn't an image", "text")),
            # Too big: the limit is 64 KiB here.
            ({"image": Upload(noisy_png(200), "big.png")}, ("“big.png” is 118 KiB; photos can be at most 64 KiB",)),
            # Too small to animate.
            ({"image": Upload(small_png(32), "tiny.png")}, ("only 32×32 pixels", "at least 64×64")),
            # A length the model does not make.
            ({"duration": 4.0}, ("`camera` makes clips of 2, 3, 5, 8 seconds",)),
            # A model that is not enabled here.
            ({"model": "ltx"}, ("The model `ltx` isn't available here", "camera")),
            # An end image on a model that cannot end on one.
            ({"end_image": Upload(PHOTO, "end.png")}, ("can't end on a chosen image",)),
            # Blocked words, whole words, any case, in the prompt or the negative prompt.
            ({"prompt": "a slow GORE scene"}, ("contains “gore”", "Nothing was charged")),
            ({"negative": "no blood bath please"}, ("contains “blood bath”",)),
        ]
        # What Discord offers while typing: the enabled models with their price, the lengths
        # the chosen model makes with their cost (so a refusal is rarely needed).
        models = await d.autocomplete("animate", "model", {"model": ""}, user=alice)
        assert [c["value"] for c in models] == ["camera"]
        assert models[0]["name"] == "camera — Camera move (no AI) · 0.2 credits/s"
        lengths = await d.autocomplete("animate", "duration", {"duration": ""}, user=alice)
        assert [(c["name"], c["value"]) for c in lengths] == [
            (f"{s:g} s — {n_credits(w.settings.cost('camera', s))}", s) for s in (2.0, 3.0, 5.0, 8.0)
        ]

        for options, expected in cases:
            run = await animate(w, alice, options)
            await refused(w, run, *expected)
            await unchanged(w, alice, before)

        # Whole words only: "gorey" is not "gore", and that job is accepted and charged.
        run = await animate(w, alice, {"prompt": "gorey-free fun"})
        clip = await run.message(has_video, timeout=60)
        # Its private acknowledgement warned, before she paid, that the photo is small.
        ack = await run.original()
        assert "⚠️ Your photo is 160×160; the model works at 960×960" in ack.content
        assert clip.attachments and await w.store.balance(alice.id) == before - w.settings.cost("camera", 2.0)


async def test_expired_and_foreign_attachment_links_are_refused(tmp_path: Path) -> None:
    async with LoopbackDiscord() as discord_:
        # The bot is told Discord lives at "localhost", so the loopback's attachment URLs on
        # 127.0.0.1 are on a host it must not fetch from (neither Discord's CDN nor the API's).
        foreign_base = discord_.api_base.replace("127.0.0.1", "localhost")
        async with bot_world(tmp_path / "a", discord_=discord_, discord_api_base=foreign_base) as w:
            alice = discord_.member
            before = await w.store.balance(alice.id)
            fetched = len(discord_.requests("GET /*attachments/*"))
            run = await animate(w, alice)
            await refused(w, run, "isn't hosted by Discord")
            await unchanged(w, alice, before)
            assert len(discord_.requests("GET /*attachments/*")) == fetched  # never downloaded

    async with bot_world(tmp_path / "b") as w:
        d = w.discord
        alice = d.member
        before = await w.store.balance(alice.id)
        # A photo uploaded a day ago: its signed CDN link has expired (403 from the CDN).
        old = d.upload(PHOTO, "yesterday.png")
        d.clock.advance(25 * 3600)
        run = await animate(w, alice, {"image": old})
        await refused(w, run, "link to your photo has expired")
        await unchanged(w, alice, before)
        assert any(r.status == 403 for r in d.requests("GET /*attachments/*"))


async def test_places_where_the_bot_does_not_work(tmp_path: Path) -> None:
    async with LoopbackDiscord() as discord_:
        studio = discord_.add_channel("studio")
        after_dark = discord_.add_channel("after-dark", nsfw=True)
        async with bot_world(
            tmp_path / "channels", discord_=discord_,
            allowed_channel_ids=f"{studio.id},{after_dark.id}", nsfw_channels_only=True,
        ) as w:
            alice = discord_.member
            before = await w.store.balance(alice.id)
            run = await animate(w, alice, channel=discord_.general)
            await refused(w, run, "I only make videos in", f"<#{studio.id}>")
            await unchanged(w, alice, before)
            # Allowed, but not age-restricted while NSFW_CHANNELS_ONLY is on.
            run = await animate(w, alice, channel=studio)
            await refused(w, run, "only make videos in age-restricted channels")
            await unchanged(w, alice, before)
            # Both rules satisfied: accepted.
            run = await animate(w, alice, channel=after_dark)
            assert (await run.message(has_video, timeout=60)).channel_id == after_dark.id

    # DMs: commands synced globally (no GUILD_IDS), so Discord offers /animate in DMs.
    async with bot_world(tmp_path / "dms", guild_ids="", allow_dms=False) as w:
        alice = w.discord.member
        before = await w.store.balance(alice.id)
        run = await animate(w, alice, channel=w.discord.dm_channel(alice))
        await refused(w, run, "I don't make videos in direct messages")
        await unchanged(w, alice, before)


async def test_not_enough_credits_shows_balance_cost_and_next_refill(tmp_path: Path) -> None:
    async with bot_world(
        tmp_path, welcome_credits=1, refill_amount=2, refill_period_hours=6, refill_cap=10
    ) as w:
        alice = w.discord.member
        cost = w.settings.cost("camera", 8.0)
        assert cost > 1
        account = await w.store.account(alice.id)
        assert account.balance == 1 and account.next_refill_at is not None
        fetched = len(w.discord.requests("GET /*attachments/*"))
        run = await animate(w, alice, {"duration": 8.0})
        text = await refused(w, run, f"costs **{cost}** credit{'' if cost == 1 else 's'} and you have **1**",
                             "Nothing was charged")
        assert f"<t:{int(account.next_refill_at)}:R>" in text  # when the next free credits come
        await unchanged(w, alice, 1)
        # Refused before the photo was downloaded (let alone decoded).
        assert len(w.discord.requests("GET /*attachments/*")) == fetched


async def test_queue_limits_refuse_with_jobs_really_waiting(tmp_path: Path) -> None:
    gate = Gate(tmp_path / "gate")
    async with bot_world(
        tmp_path, backend_factory=gate.factory, max_queued_per_user=2, max_queue=2
    ) as w:
        d = w.discord
        alice, bob, carol = d.member, d.add_member("bob"), d.add_member("carol")
        # Alice's first job takes the only worker and waits at the gate: it is "running".
        first = await animate(w, alice)
        await first.message(lambda m: m.card, timeout=15)
        (running,) = await all_jobs(w.store, alice.id)
        await gate.wait_started(running.id)
        assert (await w.store.get_job(running.id)).status == "running"
        # Her second one waits in the queue.
        second = await animate(w, alice)
        await second.message(lambda m: m.card, timeout=15)
        waiting = (await all_jobs(w.store, alice.id))[-1]
        assert waiting.status == "queued"

        before = await w.store.balance(alice.id)
        fetched = len(d.requests("GET /*attachments/*"))
        run = await animate(w, alice)
        await refused(w, run, "You already have 2 videos waiting or rendering", "Nothing was charged")
        await unchanged(w, alice, before, jobs_before=2)
        assert len(d.requests("GET /*attachments/*")) == fetched  # the photo was never fetched

        # Bob's job makes the queue 2 long; then it is full for Carol.
        bobs = await animate(w, bob)
        await bobs.message(lambda m: m.card, timeout=15)
        carol_before = await w.store.balance(carol.id)
        run = await animate(w, carol)
        await refused(w, run, "The queue is full (2 videos waiting)", "Nothing was charged")
        await unchanged(w, carol, carol_before)

        gate.open()
        for job in await all_jobs(w.store):
            await wait_status(w.store, job.id, "delivered")


async def test_read_only_database_is_a_sentence_and_nothing_is_charged(tmp_path: Path) -> None:
    """The database turns read-only (a remounted disk): /animate says so in words, not
    "something went wrong", charges nothing, and works again once it is writable."""
    async with bot_world(tmp_path) as w:
        d = w.discord
        balance = await w.store.balance(d.member.id)
        db = w.store.db
        async with db._lock:
            await db._conn.execute("PRAGMA query_only = ON")
        try:
            run = await animate(w, d.member)
            await refused(w, run, "cannot save anything right now", "nothing was charged")
        finally:
            async with db._lock:
                await db._conn.execute("PRAGMA query_only = OFF")
        await unchanged(w, d.member, balance)
        run = await animate(w, d.member)
        answer = await run.message(lambda m: m.ephemeral and "Queued as job" in m.content, timeout=15)
        assert answer
