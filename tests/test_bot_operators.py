"""Operators and owners: /credits grant|take|history, /queue, /balance, Cancel and Delete.

Operators are ADMIN_USER_IDS plus the application's owner (or team); a guild administrator
is not one. Every credit change lands in the ledger with the operator's id. Jobs are held
"rendering" at the gate of `world.GatedCamera` so that others really wait in the queue.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from loopback import InteractionHandle, LoopbackDiscord, Message, Upload
from world import (
    Gate,
    World,
    all_jobs,
    bot_world,
    has_video,
    ledger_kinds,
    n_credits,
    private_text,
    small_png,
    wait_status,
)

from bot.delivery.record import DeliveryRecord
from jobs import UnknownJob

pytestmark = [pytest.mark.asyncio, pytest.mark.usefixtures("ray_instance")]

PHOTO = small_png()


def field(message: Message, name: str) -> str:
    for embed in message.embeds:
        for f in embed.get("fields", []):
            if f["name"] == name:
                return f["value"]
    raise AssertionError(f"no field {name!r} in {message.embeds}")


async def test_only_operators_change_credits_and_the_ledger_names_them(tmp_path: Path) -> None:
    async with LoopbackDiscord() as discord_:
        helper = discord_.add_member("helper")  # an operator by ADMIN_USER_IDS
        async with bot_world(tmp_path, discord_=discord_, admin_user_ids=str(helper.id)) as w:
            d = w.discord
            alice = d.member
            owner = d.add_member(d.app_owner)  # the application's owner, in this guild
            mod = d.add_member("mod", admin=True)  # a guild administrator, not an operator
            assert await w.store.balance(alice.id) == 20

            run = await d.slash(
                "credits grant", {"user": alice, "amount": 15, "reason": "contest prize"}, user=owner
            )
            assert f"Added 15 credits to <@{alice.id}>; they now have 35." in await private_text(run)
            run = await d.slash("credits take", {"user": alice, "amount": 5, "reason": "spam"}, user=helper)
            assert f"Removed 5 credits from <@{alice.id}>; they now have 30." in await private_text(run)
            # Never below zero, with a clear answer and no ledger row.
            run = await d.slash("credits take", {"user": alice, "amount": 31}, user=helper)
            assert "only 30 credits; take at most 30" in await private_text(run)

            # A guild administrator (and a plain member) is refused, and nothing changes.
            for who in (mod, alice):
                run = await d.slash("credits grant", {"user": alice, "amount": 100}, user=who)
                assert "Only the bot's operators can change credits." in await private_text(run)
                run = await d.slash("credits history", {"user": alice}, user=who)
                assert "Only the bot's operators" in await private_text(run)
                run = await d.slash("queue", user=who)
                assert "Only the bot's operators" in await private_text(run)
            assert await w.store.balance(alice.id) == 30

            rows = await w.store.history(alice.id, limit=10)
            assert [(e.kind, e.delta, e.operator_id, e.reason) for e in reversed(rows)] == [
                ("welcome", 20, None, rows[-1].reason),
                ("grant", 15, owner.id, "contest prize"),
                ("take", -5, helper.id, "spam"),
            ]

            run = await d.slash("credits history", {"user": alice}, user=owner)
            history = await private_text(run)
            assert f"`+15` grant by <@{owner.id}> — contest prize" in history
            assert f"`-5` take by <@{helper.id}> — spam" in history
            assert "`+20` welcome" in history
            answer = await run.original()
            assert field(answer, "Balance") == "30"

            run = await d.slash("queue", user=helper)
            queue = await run.original(timeout=15)
            assert queue.ephemeral and "cpu-0: camera on" in field(queue, "Workers (1)")
            # Operators see whether the event loop keeps up (members wait when it does not).
            assert queue.embeds[0]["footer"]["text"].startswith("Event loop: p99 lag ")

    # A team application: every team developer is an operator too.
    async with LoopbackDiscord(team=True) as discord_:
        async with bot_world(tmp_path / "team", discord_=discord_) as w:
            d = w.discord
            developer = next(u for u in d.state.application.team_members if u is not d.app_owner)
            dev = d.add_member(developer)
            run = await d.slash("credits grant", {"user": d.member, "amount": 2}, user=dev)
            assert "Added 2 credits" in await private_text(run)
            assert (await w.store.history(d.member.id, limit=1))[0].operator_id == developer.id


async def animate(w: World, member, **options) -> InteractionHandle:
    values = {"image": Upload(PHOTO, "photo.png"), "duration": 2.0, **options}
    return await w.discord.slash("animate", values, user=member)


async def public_message(run: InteractionHandle) -> Message:
    """The job's public message (the one that shows queue, progress and the clip)."""
    return await run.message(lambda m: not m.ephemeral and m.card, timeout=15)


async def test_balance_cancel_and_delete(tmp_path: Path) -> None:
    gate = Gate(tmp_path / "gate")
    async with bot_world(
        tmp_path, backend_factory=gate.factory, refill_amount=5, refill_period_hours=12, refill_cap=40
    ) as w:
        d = w.discord
        alice, bob = d.member, d.add_member("bob")
        owner = d.add_member(d.app_owner)
        cost = w.settings.cost("camera", 2.0)

        # Alice's first job renders (held at the gate); her next two wait.
        first = await animate(w, alice)
        first_message = await public_message(first)
        second = await animate(w, alice, prompt="second")
        second_message = await public_message(second)
        third = await animate(w, alice, prompt="third")
        third_message = await public_message(third)
        a, b, c = await all_jobs(w.store, alice.id)
        await gate.wait_started(a.id)
        await wait_status(w.store, a.id, "running")
        # A queued job's public message: position, a thumbnail of the photo, cost, Cancel.
        assert "**#2 in the queue**" in third_message.texts()
        assert third_message.shown(kind=11) == [f"photo-{c.id}.jpg"]  # beside the prompt
        assert f"-# Job {c.id} · {n_credits(cost)}" in third_message.texts()  # no balance: public
        assert third_message.button_labels() == ["Cancel"]

        # /balance: balance, prices of every length, her jobs with positions, ledger, refill.
        run = await d.slash("balance", user=alice)
        answer = await run.original(timeout=15)
        assert answer.ephemeral
        assert field(answer, "Balance") == f"**{20 - 3 * cost}** credits"
        prices = field(answer, "Prices (credits per clip)")
        assert prices == "**camera** — " + " · ".join(
            f"{s:g} s: {w.settings.cost('camera', s)}" for s in (2.0, 3.0, 5.0, 8.0)
        )
        jobs = field(answer, "Your videos in progress").splitlines()
        assert jobs == [
            f"Job {a.id} (camera): rendering",
            f"Job {b.id} (camera): #1 in the queue",
            f"Job {c.id} (camera): #2 in the queue",
        ]
        activity = field(answer, "Recent activity")
        assert f"-{cost} video (job {c.id})" in activity and "+20 welcome grant" in activity
        # Refills are on, but she is below the cap only after spending: the next one is shown.
        assert field(answer, "Next free refill").startswith("+5 <t:")

        # Someone else cannot cancel her job.
        run = await d.click(second_message, "Cancel", user=bob)
        assert "Only the member who made this video (or a bot operator) can cancel it." in await private_text(run)
        assert (await w.store.get_job(b.id)).status == "queued"

        # She cancels the waiting job twice in a row (a double click): one refund.
        run1 = await d.click(second_message, "Cancel", user=alice)
        run2 = await d.click(second_message, "Cancel", user=alice)
        answers = sorted([await private_text(run1), await private_text(run2)])
        assert any(f"Cancelled. {n_credits(cost)} {'was' if cost == 1 else 'were'} refunded." in t for t in answers), answers
        assert "This job was already cancelled (its credits were refunded once)." in answers, answers
        job_b = await w.store.get_job(b.id)
        assert job_b.status == "cancelled"
        kinds = [k for k in await ledger_kinds(w.store, alice.id) if k[2] == b.id]
        assert kinds == [("debit", -cost, b.id), ("refund", cost, b.id)]
        # Her message says so and has no Cancel button any more.
        cancelled = await d.wait_for(
            lambda: "couldn't be made" in (m := d.state.messages[second_message.id]).text() and m,
            timeout=10, what="the cancelled job's message",
        )
        assert "Cancelled by request." in cancelled.text() and "refunded" in cancelled.text()
        assert cancelled.button_labels() == []

        # Cancel while rendering: the worker stops and the credits come back too.
        running_message = d.state.messages[first_message.id]
        assert "Cancel" in running_message.button_labels()
        run = await d.click(running_message, "Cancel", user=alice)
        assert f"{n_credits(cost)} {'was' if cost == 1 else 'were'} refunded" in await private_text(run)
        assert (await w.store.get_job(a.id)).status == "cancelled"

        # The third one now renders and is delivered; the cancelled ones never run or deliver.
        gate.open()
        await wait_status(w.store, c.id, "delivered")
        clip = await third.message(has_video, timeout=30)
        assert not gate.started(b.id)
        assert not has_video(d.state.messages[first_message.id])
        assert await w.store.balance(alice.id) == 20 - cost

        # Delete: refused for someone else, allowed for the owner of the video or an operator.
        run = await d.click(clip, "Delete", user=bob)
        assert "Only the member who made this video (or a bot operator) can delete it." in await private_text(run)
        assert not d.state.messages[clip.id].deleted
        deleted = await w.store.get_job(c.id)
        assert deleted.result_path and Path(deleted.result_path).is_file()
        run = await d.click(clip, "Delete", user=owner)
        assert "Deleted." in await private_text(run)
        assert d.state.messages[clip.id].deleted
        # Nothing of it is kept: the photo, the prompt, the token and the MP4 are gone.
        gone = await w.store.get_job(c.id)
        assert not Path(deleted.result_path).exists() and gone.result_path is None
        assert gone.spec.prompt == "" and DeliveryRecord.of(gone).token is None
        with pytest.raises(UnknownJob):
            await w.store.job_inputs(c.id)
        assert gone.status == "delivered" and await w.store.balance(alice.id) == 20 - cost

        fourth = await animate(w, alice)
        clip = await fourth.message(has_video, timeout=30)
        run = await d.click(clip, "Delete", user=alice)
        assert "Deleted." in await private_text(run)
        assert d.state.messages[clip.id].deleted


async def test_healthz_says_503_with_reasons_while_the_gateway_database_or_workers_are_down(
    tmp_path: Path,
) -> None:
    """What Docker's health check asks: 200 only while Discord, SQLite and a worker all work."""
    import socket

    import aiohttp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    async with bot_world(tmp_path, metrics_port=port) as w, aiohttp.ClientSession() as http:
        url = f"http://127.0.0.1:{port}/healthz"

        async def health() -> tuple[int, dict]:
            async with http.get(url) as response:
                return response.status, await response.json()

        async def healthy() -> bool:
            """Polled, as Docker's check is: the gateway's READY takes a moment after a resume."""
            for _ in range(100):
                if await health() == (200, {"ok": True}):
                    return True
                await asyncio.sleep(0.1)
            return False

        assert await healthy(), await health()
        async with w.discord.gateway.outage():
            status, body = await health()
            assert status == 503 and body["problems"] == ["the Discord gateway is not connected"]
        assert await healthy(), await health()

        db = w.store.db
        async with db._lock:
            await db._conn.execute("PRAGMA query_only = ON")
        try:
            status, body = await health()
        finally:
            async with db._lock:
                await db._conn.execute("PRAGMA query_only = OFF")
        assert status == 503 and body["problems"][0].startswith("the database does not take writes")
        assert await healthy(), await health()

        w.dispatcher.pool.forget()  # as when the Ray runtime died with every worker
        status, body = await health()
        assert status == 503 and body["problems"] == ["no render worker is alive"]
        await w.dispatcher.pool.scale()
        assert await healthy(), await health()


async def test_a_bot_that_stays_unhealthy_stops_itself_for_its_supervisor(tmp_path: Path) -> None:
    """Docker restarts only containers that exit: after UNHEALTHY_EXIT_MINUTES of failed
    health checks in a row the bot closes with exit code 3; a shorter outage is ridden out."""
    from bot.health import EXIT_UNHEALTHY

    async with bot_world(tmp_path, unhealthy_exit_minutes=0.15) as w:  # 9 s, checked every 2.25 s
        watchdog = w.bot.watchdog
        assert watchdog is not None and watchdog.window == 9.0
        async with w.discord.gateway.outage():
            for _ in range(100):
                if watchdog.unhealthy_since is not None:
                    break
                await asyncio.sleep(0.1)
            assert watchdog.unhealthy_since is not None, "the outage was never noticed"
        for _ in range(200):
            if watchdog.unhealthy_since is None:
                break
            await asyncio.sleep(0.1)
        assert watchdog.unhealthy_since is None and not w.bot.is_closed()
        assert w.bot.exit_code == 0

        async with w.discord.gateway.outage():
            for _ in range(300):
                if w.bot.is_closed():
                    break
                await asyncio.sleep(0.1)
            assert w.bot.is_closed(), "the bot did not stop after the window"
        assert w.bot.exit_code == EXIT_UNHEALTHY


async def test_metrics_count_deliveries_refunds_and_shrinks(tmp_path: Path) -> None:
    """/metrics through the real bot: a delivered job, a cancelled (refunded) one, a failed one
    (by its kind) and a clip re-encoded after Discord's 40005 are each counted once, with the
    credits they moved and the seconds the worker was busy."""
    import socket

    import aiohttp
    from prometheus_client.parser import text_string_to_metric_families

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    gate = Gate(tmp_path / "gate")
    async with bot_world(tmp_path, metrics_port=port, backend_factory=gate.factory) as w, \
            aiohttp.ClientSession() as http:
        d = w.discord
        cost = w.settings.cost("camera", 2.0)
        began = time.monotonic()

        async def scrape() -> dict[tuple[str, tuple], float]:
            async with http.get(f"http://127.0.0.1:{port}/metrics") as response:
                assert response.status == 200
                text = await response.text()
            return {
                (s.name, tuple(sorted(s.labels.items()))): s.value
                for family in text_string_to_metric_families(text)
                for s in family.samples
            }

        first = await animate(w, d.member)
        await public_message(first)
        [a] = await all_jobs(w.store, d.member.id)
        gate.open(a.id)
        await wait_status(w.store, a.id, "delivered")
        size = max(
            att.size for m in d.messages() for att in m.attachments if att.filename.endswith(".mp4")
        )

        second = await animate(w, d.member, prompt="too big")
        await public_message(second)
        second.record.attachment_size_limit = int(size * 0.9)
        b = (await all_jobs(w.store, d.member.id))[-1]
        gate.open(b.id)
        await wait_status(w.store, b.id, "delivered")

        third = await animate(w, d.member, prompt="cancelled")
        await public_message(third)
        c = (await all_jobs(w.store, d.member.id))[-1]
        cancelled, _ = await w.bot.jobs.cancel(c.id)
        assert cancelled
        await wait_status(w.store, c.id, "cancelled")

        fourth = await animate(w, d.member, prompt="the model gives up")
        await public_message(fourth)
        e = (await all_jobs(w.store, d.member.id))[-1]
        await gate.wait_started(e.id)
        gate.fail(e.id)
        await wait_status(w.store, e.id, "failed")

        metrics = await scrape()
        finished = "animate_jobs_finished_total"
        assert metrics[(finished, (("model", "camera"), ("outcome", "failed")))] == 1
        assert metrics[("animate_jobs_failed_total", (("kind", "model"), ("model", "camera")))] == 1
        busy = metrics[("animate_worker_busy_seconds_total", (("device", "cpu"), ("worker", "cpu-0")))]
        assert 0 < busy < time.monotonic() - began  # held at the gate, so well above 0
        assert metrics[(finished, (("model", "camera"), ("outcome", "delivered")))] == 2
        assert metrics[(finished, (("model", "camera"), ("outcome", "cancelled")))] == 1
        assert metrics[("animate_deliveries_total", (("route", "interaction"),))] == 2
        assert metrics[("animate_upload_shrinks_total", ())] == 1
        assert metrics[("animate_credits_total", (("kind", "debit"),))] == 4 * cost
        assert metrics[("animate_credits_total", (("kind", "refund"),))] == 2 * cost
        assert metrics[("animate_job_render_seconds_count", (("model", "camera"),))] == 2
        assert metrics[("animate_workers", (("state", "ready"),))] == 1
        # Every series the shipped Grafana dashboard plots is one the bot exports.
        import json
        import re

        dashboard = json.loads((Path(__file__).parents[1] / "ops" / "grafana-dashboard.json").read_text())
        plotted = {
            name
            for panel in dashboard["panels"]
            for target in panel["targets"]
            for name in re.findall(r"\banimate_[a-z0-9_]+", target["expr"])
        }
        exported = {name for name, _ in metrics}
        assert plotted and plotted <= exported, plotted - exported


async def test_a_blocked_member_makes_nothing_anywhere_until_unblocked_and_it_persists(
    tmp_path: Path,
) -> None:
    async with LoopbackDiscord() as discord_:
        # Commands synced globally (no GUILD_IDS), so Discord offers /animate in DMs too.
        async with bot_world(tmp_path, discord_=discord_, guild_ids="") as w:
            d = w.discord
            alice = d.member
            owner = d.add_member(d.app_owner)
            mallory = d.add_member("mallory")
            first = await animate(w, alice)
            clip = await public_message(first)
            await wait_status(w.store, (await all_jobs(w.store, alice.id))[-1].id, "delivered")

            refused = await d.slash("mod block", {"user": alice, "reason": "spam"}, user=mallory)
            assert "Only the bot's operators can block or unblock members." in await private_text(refused)
            run = await d.slash("mod block", {"user": alice, "reason": "spam"}, user=owner)
            assert f"Blocked <@{alice.id}>." in await private_text(run)
            balance, jobs = await w.store.balance(alice.id), len(await all_jobs(w.store, alice.id))

            # Blocked everywhere: the command, and the buttons on her earlier clip.
            text = await private_text(await animate(w, alice))
            assert "blocked you from making videos (spam)" in text and "Nothing was charged" in text
            reroll = await d.click(clip, "Reroll", user=alice)
            assert "blocked you from making videos" in await private_text(reroll)
            edit = await d.click(clip, "Edit", user=alice)  # refused before the form opens
            assert "blocked you from making videos" in await private_text(edit)
            dm = await d.slash(
                "animate", {"image": Upload(PHOTO, "photo.png"), "duration": 2.0},
                user=alice, channel=d.dm_channel(alice),
            )
            assert "blocked you from making videos" in await private_text(dm)
            assert await w.store.balance(alice.id) == balance
            assert len(await all_jobs(w.store, alice.id)) == jobs
            listed = await private_text(await d.slash("mod list", {}, user=owner))
            assert f"<@{alice.id}>" in listed and "spam" in listed

        # A restart does not lift it.
        async with bot_world(tmp_path, discord_=discord_, guild_ids="") as w:
            owner = d.add_member(d.app_owner)
            assert "blocked you" in await private_text(await animate(w, alice))
            run = await d.slash("mod unblock", {"user": alice}, user=owner)
            assert f"Unblocked <@{alice.id}>." in await private_text(run)
            again = await animate(w, alice)
            await again.message(lambda m: m.ephemeral and "Queued as job" in m.content, timeout=15)
