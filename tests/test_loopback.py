"""Tests of the loopback Discord itself, driven by the real, unmodified discord.py client.

Where the server's behaviour is not obvious, the proof is that discord.py reacts to it as
it reacts to Discord: it retries a 429 after `retry_after`, raises the right error codes,
resumes (not re-identifies) after a disconnect, and parses every payload we send.
"""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import discord
import pytest
import yarl
from discord import app_commands
from discord.asset import Asset
from discord.ext import commands
from discord.gateway import DiscordWebSocket
from discord.http import Route
from loopback import CommandUnavailable, LoopbackDiscord, RateLimitPolicy, Upload
from loopback.fixtures import loopback_discord  # noqa: F401  (the fixture under test)
from PIL import Image

from bot.endpoints import apply_endpoints

Script = Callable[[discord.Interaction], Awaitable[None]]


def png(width: int = 64, height: int = 48) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (200, 120, 40)).save(buffer, "PNG")
    return buffer.getvalue()


class JobView(discord.ui.View):
    """A persistent view like the product's: fixed custom_ids, no timeout."""

    def __init__(self, bot: ScriptedBot) -> None:
        super().__init__(timeout=None)
        self.bot = bot

    @discord.ui.button(label="Reroll", custom_id="job:1:reroll")
    async def reroll(
        self, interaction: discord.Interaction, button: discord.ui.Button[JobView]
    ) -> None:
        self.bot.clicks.append(
            (interaction.user.id, interaction.message.id if interaction.message else None)
        )
        await interaction.response.send_message("rerolling", ephemeral=True)

    @discord.ui.button(label="Edit", custom_id="job:1:edit")
    async def edit(
        self, interaction: discord.Interaction, button: discord.ui.Button[JobView]
    ) -> None:
        await interaction.response.send_modal(EditModal(self.bot))

    @discord.ui.select(
        custom_id="job:1:camera",
        options=[discord.SelectOption(label=c, value=c) for c in ("static", "orbit")],
    )
    async def camera(
        self, interaction: discord.Interaction, select: discord.ui.Select[JobView]
    ) -> None:
        await interaction.response.edit_message(content=f"camera: {select.values[0]}")


class EditModal(discord.ui.Modal, title="Edit the clip"):
    prompt = discord.ui.TextInput(label="Prompt", custom_id="prompt", max_length=200)
    seed = discord.ui.Label(
        text="Seed", component=discord.ui.TextInput(custom_id="seed", required=False)
    )

    def __init__(self, bot: ScriptedBot) -> None:
        super().__init__()
        self.bot = bot

    async def on_submit(self, interaction: discord.Interaction) -> None:
        seed = self.seed.component.value  # type: ignore[union-attr]
        await interaction.response.send_message(f"edited: {self.prompt.value} seed={seed or '-'}")


class ScriptedBot(commands.Bot):
    """A plain commands.Bot: /animate (attachment + button view), /script (runs the test's
    coroutine and reports its outcome), /pick (autocomplete), /admin (permission-gated)."""

    def __init__(self, guild_id: int, **options: Any) -> None:
        super().__init__(
            command_prefix="!", intents=options.pop("intents", discord.Intents.default()), **options
        )
        self.guild_id = guild_id
        self.clicks: list[tuple[int, int | None]] = []
        self.seen: list[discord.Interaction] = []
        self.script: Script | None = None
        self.outcomes: asyncio.Queue[BaseException | None] = asyncio.Queue()
        self.events: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        self._add_commands()

    def _add_commands(self) -> None:
        @self.tree.command(name="animate", description="Animate a photo")
        @app_commands.describe(image="The photo", prompt="What should happen")
        async def animate(
            interaction: discord.Interaction,
            image: discord.Attachment,
            prompt: str = "",
            motion: app_commands.Range[int, 1, 10] = 5,
        ) -> None:
            self.seen.append(interaction)
            await interaction.response.defer(thinking=True)
            data = await image.read()
            clip = discord.File(io.BytesIO(data[::-1]), "clip.mp4")
            await interaction.followup.send(
                f"done: {prompt} ({motion})", file=clip, view=JobView(self)
            )

        @self.tree.command(name="script", description="Runs the test's script")
        async def script(
            interaction: discord.Interaction, file: discord.Attachment | None = None
        ) -> None:
            self.seen.append(interaction)
            interaction.extras["file"] = file
            try:
                assert self.script is not None
                await self.script(interaction)
            except Exception as exc:  # reported to the test, which asserts on it
                await self.outcomes.put(exc)
            else:
                await self.outcomes.put(None)

        @self.tree.command(name="pick", description="Pick a model")
        async def pick(interaction: discord.Interaction, model: str) -> None:
            await interaction.response.send_message(f"model: {model}")

        @pick.autocomplete("model")
        async def pick_model(
            interaction: discord.Interaction, current: str
        ) -> list[app_commands.Choice[str]]:
            models = ["ltx-video", "ltx-distilled", "wan-2.2", "svd"]
            return [app_commands.Choice(name=m, value=m) for m in models if m.startswith(current)]

        credits = app_commands.Group(name="credits", description="Credits")

        @credits.command(name="grant", description="Give credits")
        async def grant(
            interaction: discord.Interaction, user: discord.Member, amount: int
        ) -> None:
            await interaction.response.send_message(
                f"granted {amount} to {user.mention} ({user.display_name})", ephemeral=True
            )

        self.tree.add_command(credits)

        @self.tree.context_menu(name="Animate this")
        async def animate_message(
            interaction: discord.Interaction, message: discord.Message
        ) -> None:
            await interaction.response.send_message(f"animating {len(message.attachments)} file(s)")

        @self.tree.context_menu(name="Animate avatar")
        async def animate_avatar(interaction: discord.Interaction, member: discord.Member) -> None:
            await interaction.response.send_message(f"animating {member.name}'s avatar")

        @self.tree.command(name="admin", description="Operators only")
        @app_commands.default_permissions(administrator=True)
        async def admin(interaction: discord.Interaction) -> None:
            await interaction.response.send_message("ok", ephemeral=True)

    async def before_identify_hook(self, shard_id: int | None, *, initial: bool = False) -> None:
        """discord.py sleeps 5 s before every re-IDENTIFY; nothing to wait for on loopback."""

    async def setup_hook(self) -> None:
        self.add_view(JobView(self))
        await self.tree.sync()
        guild = discord.Object(self.guild_id)
        self.tree.copy_global_to(guild=guild)
        await self.tree.sync(guild=guild)

    async def outcome(self) -> BaseException | None:
        return await asyncio.wait_for(self.outcomes.get(), 10)

    async def on_message(self, message: discord.Message) -> None:
        await self.events.put(("message", message))

    async def on_resumed(self) -> None:
        await self.events.put(("resumed", None))

    async def on_member_join(self, member: discord.Member) -> None:
        await self.events.put(("member_join", member))

    async def on_guild_join(self, guild: discord.Guild) -> None:
        await self.events.put(("guild_join", guild))

    async def next_event(self, kind: str) -> Any:
        while True:
            name, value = await asyncio.wait_for(self.events.get(), 10)
            if name == kind:
                return value


@pytest.fixture
def discord_(loopback_discord: LoopbackDiscord) -> LoopbackDiscord:  # noqa: F811
    """The shared fixture from loopback.fixtures, under a shorter name."""
    return loopback_discord


async def run_script(
    discord_: LoopbackDiscord,
    bot: ScriptedBot,
    script: Script,
    options: dict[str, Any] | None = None,
    **slash: Any,
) -> Any:
    bot.script = script
    return await discord_.slash("script", options, **slash)


# ---- the whole path: login, sync, command, file, button ------------------------------------


async def test_bot_logs_in_syncs_answers_with_a_file_and_gets_the_click(
    discord_: LoopbackDiscord,
) -> None:
    bot = ScriptedBot(discord_.guild.id)
    photo = png()
    async with discord_.running(bot):
        synced = {c["name"]: c for c in discord_.commands()}
        assert set(synced) == {
            "animate",
            "script",
            "pick",
            "credits",
            "admin",
            "Animate this",
            "Animate avatar",
        }
        assert [c["name"] for c in discord_.commands(discord_.guild)] == [
            c["name"] for c in discord_.commands()
        ]
        image_option = synced["animate"]["options"][0]
        assert (image_option["name"], image_option["type"], image_option["required"]) == (
            "image",
            11,
            True,
        )

        run = await discord_.slash(
            "animate", {"image": Upload(photo, "me.png"), "prompt": "waves", "motion": 7}
        )
        ack = await run.acknowledged()
        assert ack.type == 5 and ack.latency < 3.0
        clip = await run.message(lambda m: bool(m.attachments))
        assert clip.file("clip.mp4") == photo[::-1]  # byte for byte, through the CDN and back
        assert clip.content == "done: waves (7)"
        assert (
            clip.id == run.record.original_message_id
        )  # the first follow-up fills the "thinking" message
        assert [v.flags for v in clip.history] == [128, 0]
        assert discord_.requests("GET /ephemeral-attachments/*")[0].status == 200

        click = await discord_.click(clip, "Reroll")
        reply = await click.message()
        assert reply.content == "rerolling" and reply.ephemeral
        assert bot.clicks == [(discord_.member.id, clip.id)]


async def test_interaction_payload_follows_discord_documentation(discord_: LoopbackDiscord) -> None:
    bot = ScriptedBot(discord_.guild.id)
    async with discord_.running(bot):
        run = await discord_.slash("animate", {"image": png(64, 48)})
        await run.message(lambda m: bool(m.attachments))
    payload = run.payload
    for key in (
        "id",
        "application_id",
        "type",
        "data",
        "guild_id",
        "channel",
        "channel_id",
        "member",
        "token",
        "version",
        "app_permissions",
        "locale",
        "guild_locale",
        "entitlements",
        "authorizing_integration_owners",
        "context",
        "attachment_size_limit",
    ):
        assert key in payload, key
    assert "user" not in payload and payload["member"]["user"]["id"] == str(discord_.member.id)
    assert payload["member"]["permissions"].isdigit() and payload["context"] == 0
    data = payload["data"]
    assert data["guild_id"] == str(discord_.guild.id)  # it ran the guild copy of the command
    (attachment,) = data["resolved"]["attachments"].values()
    assert attachment["filename"] == "image.png" and attachment["content_type"] == "image/png"
    assert (attachment["width"], attachment["height"]) == (64, 48)
    assert (
        attachment["size"] > 0 and "?ex=" in attachment["url"] and "&hm=" in attachment["proxy_url"]
    )
    interaction = bot.seen[0]
    assert interaction.filesize_limit == 10 * 1024 * 1024 and interaction.guild_locale is not None
    assert interaction.context.guild and interaction.permissions.send_messages


async def test_options_are_checked_against_the_synced_signature(discord_: LoopbackDiscord) -> None:
    async with discord_.running(ScriptedBot(discord_.guild.id)):
        with pytest.raises(AssertionError, match="no option"):
            await discord_.slash("animate", {"image": png(), "promt": "typo"})
        with pytest.raises(AssertionError, match="required"):
            await discord_.slash("animate", {"prompt": "no image"})
        with pytest.raises(AssertionError, match="outside"):
            await discord_.slash("animate", {"image": png(), "motion": 11})
        with pytest.raises(AssertionError, match="is a string"):
            await discord_.slash("animate", {"image": png(), "prompt": 3})
        with pytest.raises(CommandUnavailable, match="no synced command"):
            await discord_.slash("nonexistent")
        with pytest.raises(CommandUnavailable, match="default_member_permissions"):
            await discord_.slash("admin")
        admin = discord_.add_member("root", admin=True)
        ok = await discord_.slash("admin", user=admin)
        assert (await ok.original()).ephemeral

        bob = discord_.add_member("bob", nick="Bobby")
        granted = await discord_.slash("/credits grant", {"user": bob, "amount": 5}, user=admin)
        assert (await granted.original()).content == f"granted 5 to <@{bob.id}> (Bobby)"
        (sub,) = granted.payload["data"]["options"]
        assert (sub["name"], sub["type"]) == ("grant", 1)
        assert [(o["name"], o["type"]) for o in sub["options"]] == [("user", 6), ("amount", 4)]
        assert set(granted.payload["data"]["resolved"]) == {"users", "members"}
        with pytest.raises(AssertionError, match="needs a subcommand"):
            await discord_.slash("credits", {})


async def test_modal_select_and_autocomplete(discord_: LoopbackDiscord) -> None:
    bot = ScriptedBot(discord_.guild.id)
    async with discord_.running(bot):
        run = await discord_.slash("animate", {"image": png(), "prompt": "first"})
        clip = await run.message(lambda m: bool(m.attachments))

        edit = await discord_.click(clip, "Edit")
        modal = await edit.modal()
        assert modal["title"] == "Edit the clip"
        submitted = await discord_.submit_modal(edit, {"Prompt": "second", "seed": "42"})
        assert (await submitted.original()).content == "edited: second seed=42"
        with pytest.raises(AssertionError, match="required"):
            await discord_.submit_modal(edit, {"seed": "1"})

        picked = await discord_.select(clip, ["orbit"])
        assert (await picked.acknowledged()).type == 7  # UPDATE_MESSAGE edits the clip's message
        assert clip.content == "camera: orbit" and len(clip.history) == 3

        choices = await discord_.autocomplete("pick", "model", {"model": "ltx"})
        assert [c["value"] for c in choices] == ["ltx-video", "ltx-distilled"]


async def test_dm_interactions_carry_user_and_closed_dms_fail_50007(
    discord_: LoopbackDiscord,
) -> None:
    bot = ScriptedBot(discord_.guild.id)
    loner = discord_.add_user("loner", accepts_dms=False)

    async def script(interaction: discord.Interaction) -> None:
        await interaction.response.send_message("hi in DM")
        await interaction.user.send("a DM from the bot")
        closed = await bot.fetch_user(loner.id)
        await closed.send("never arrives")

    async with discord_.running(bot):
        stranger = discord_.add_user("stranger")
        run = await run_script(
            discord_, bot, script, user=stranger, channel=discord_.dm_channel(stranger)
        )
        failure = await bot.outcome()
    assert "member" not in run.payload and run.payload["user"]["id"] == str(stranger.id)
    assert run.payload["context"] == 1 and "guild_id" not in run.payload
    assert isinstance(failure, discord.Forbidden) and failure.code == 50007
    texts = [m.content for m in discord_.messages(discord_.dm_channel(stranger))]
    assert texts == ["hi in DM", "a DM from the bot"]


async def test_application_owner_and_team(discord_: LoopbackDiscord) -> None:
    async with discord_.running(ScriptedBot(discord_.guild.id)) as bot:
        assert bot.user is not None and (await bot.user.display_avatar.read()).startswith(
            b"\x89PNG"
        )
        assert (await bot.application_info()).owner.id == discord_.app_owner.id
        assert await bot.is_owner(discord_.app_owner) and not await bot.is_owner(
            discord_.guild_owner.user
        )  # type: ignore[arg-type]
    async with (
        LoopbackDiscord(team=True) as teamed,
        teamed.running(ScriptedBot(teamed.guild.id)) as bot,
    ):
        info = await bot.application_info()
        assert info.team is not None and info.team.owner_id == teamed.app_owner.id
        assert await bot.is_owner(await bot.fetch_user(teamed.app_owner.id))


async def test_responses_and_follow_ups_can_be_fetched_edited_and_deleted(
    discord_: LoopbackDiscord,
) -> None:
    bot = ScriptedBot(discord_.guild.id)
    nsfw = discord_.add_channel("after-dark", nsfw=True)

    async def lifecycle(interaction: discord.Interaction) -> None:
        assert (
            isinstance(interaction.channel, discord.TextChannel) and interaction.channel.is_nsfw()
        )
        await interaction.response.send_message(
            "v1", file=discord.File(io.BytesIO(b"one"), "a.txt")
        )
        original = await interaction.original_response()
        kept = original.attachments[0]
        new = discord.File(io.BytesIO(b"two"), "b.txt")
        await interaction.edit_original_response(content="v2", attachments=[kept, new])
        extra = await interaction.followup.send("extra", ephemeral=True, wait=True)
        await extra.edit(content="extra, edited")
        assert (await interaction.followup.fetch_message(extra.id)).content == "extra, edited"
        await extra.delete()
        await interaction.edit_original_response(attachments=[])

    async with discord_.running(bot):
        run = await run_script(discord_, bot, lifecycle, channel=nsfw)
        assert await bot.outcome() is None
    original = await run.original()
    assert [(v.content, [a.data for a in v.attachments]) for v in original.history] == [
        ("v1", [b"one"]),
        ("v2", [b"one", b"two"]),
        ("v2", []),
    ]
    (extra,) = discord_.messages(include_deleted=True)[-1:]
    assert (
        extra.deleted
        and extra.ephemeral
        and [v.content for v in extra.history]
        == [
            "extra",
            "extra, edited",
        ]
    )
    assert run.messages == [original]


async def test_a_client_the_gateway_refuses_fails_fast() -> None:
    async with LoopbackDiscord(privileged_intents=0) as discord_:
        bot = ScriptedBot(discord_.guild.id, intents=discord.Intents.all())
        with pytest.raises(AssertionError, match="client died") as died:
            async with discord_.running(bot):
                pass
    assert isinstance(died.value.__cause__, discord.PrivilegedIntentsRequired)


async def test_context_menus_user_messages_and_world_changes_reach_the_bot() -> None:
    async with LoopbackDiscord() as discord_:
        intents = discord.Intents.default()
        intents.members = intents.message_content = True
        bot = ScriptedBot(discord_.guild.id, intents=intents, guild_ready_timeout=0.05)
        async with discord_.running(bot, wait_ready=True):  # after on_ready: GUILD_CREATE is a join
            posted = await discord_.post_message(discord_.general, "look", files=[png()])
            assert (await bot.next_event("message")).attachments[0].width == 64
            run = await discord_.message_command("Animate this", posted)
            assert (await run.original()).content == "animating 1 file(s)"
            carol = discord_.add_member("carol")
            assert (await bot.next_event("member_join")).id == carol.id
            run = await discord_.user_command("Animate avatar", carol)
            assert (await run.original()).content == "animating carol's avatar"

            guild = bot.get_guild(discord_.guild.id)
            assert guild is not None
            found = await guild.query_members("car")  # op 8 REQUEST_GUILD_MEMBERS
            assert [m.id for m in found] == [carol.id]
            extra = discord_.add_guild("Second Guild", premium_tier=2)
            joined = await bot.next_event("guild_join")
            assert joined.id == extra.id and joined.filesize_limit == 50 * 1024 * 1024

            await discord_.gateway.request_reconnect()  # op 7: the client resumes
            await bot.next_event("resumed")
            assert (discord_.gateway.identify_count, discord_.gateway.resume_count) == (1, 1)


# ---- faults ---------------------------------------------------------------------------------


async def test_429_is_retried_after_retry_after(discord_: LoopbackDiscord) -> None:
    async with discord_.running(ScriptedBot(discord_.guild.id)) as bot:
        rule = discord_.faults.rate_limit("POST /channels/{channel_id}/messages", retry_after=0.3)
        started = time.monotonic()
        sent = await bot.get_partial_messageable(discord_.general.id).send("after the limit")
        assert time.monotonic() - started >= 0.3
        attempts = discord_.requests("POST /channels/*/messages")
        assert [(r.status, r.fault) for r in attempts] == [(429, "rate_limit"), (200, None)]
        assert rule.hits == 1 and [
            m.id for m in discord_.messages() if m.content == "after the limit"
        ] == [sent.id]

        discord_.faults.rate_limit("GET /users/{user_id}", retry_after=0.2, is_global=True)
        assert (await bot.fetch_user(discord_.member.id)).id == discord_.member.id
        assert [r.status for r in discord_.requests("GET /users/{user_id}")] == [429, 200]

        discord_.faults.rate_limit(
            "POST /channels/*/messages", via=False
        )  # no Via: a Cloudflare ban
        with pytest.raises(discord.HTTPException) as banned:
            await bot.get_partial_messageable(discord_.general.id).send("banned")
        assert banned.value.status == 429


async def test_rate_limit_headers_pace_discord_py() -> None:
    policy = RateLimitPolicy(limit=2, window_s=0.4)
    async with (
        LoopbackDiscord(rate_limits=policy) as discord_,
        discord_.running(ScriptedBot(discord_.guild.id)) as bot,
    ):
        channel = bot.get_partial_messageable(discord_.general.id)
        started = time.monotonic()
        for n in range(3):
            await channel.send(f"message {n}")
        assert time.monotonic() - started >= 0.3  # waited for the bucket to reset
        sent = discord_.requests("POST /channels/*/messages")
        assert [r.status for r in sent] == [200, 200, 200]  # paced, never limited


async def test_one_off_server_error_is_retried_and_latency_slows_a_route(
    discord_: LoopbackDiscord,
) -> None:
    async with discord_.running(ScriptedBot(discord_.guild.id)) as bot:
        discord_.faults.server_error("/channels/*/messages", status=502)
        await bot.get_partial_messageable(discord_.general.id).send("eventually")
        assert [r.status for r in discord_.requests("POST /channels/*/messages")] == [502, 200]
        assert (
            await discord_.wait_for_message(lambda m: m.content == "eventually")
        ).via == "channel"

        slow = discord_.faults.latency("GET /channels/{channel_id}", seconds=0.2, count=1)
        started = time.monotonic()
        await bot.fetch_channel(discord_.general.id)
        assert time.monotonic() - started >= 0.2 and slow.hits == 1


async def test_acknowledging_after_3_seconds_gives_10062(discord_: LoopbackDiscord) -> None:
    bot = ScriptedBot(discord_.guild.id)
    gate = asyncio.Event()

    async def slow(interaction: discord.Interaction) -> None:
        await gate.wait()
        await interaction.response.defer()

    async with discord_.running(bot):
        run = await run_script(discord_, bot, slow)
        discord_.clock.advance(3.5)  # the bot "took" 3.5 s
        gate.set()
        failure = await bot.outcome()
        assert isinstance(failure, discord.NotFound) and failure.code == 10062
        assert [(c.status, c.error_code) for c in run.callbacks] == [
            (404, 10062)
        ] and not run.record.acknowledged

        discord_.faults.expire_interactions()  # same, without touching the clock
        run_script_handle = await run_script(
            discord_, bot, lambda i: i.response.send_message("too late")
        )
        failure = await bot.outcome()
        assert isinstance(failure, discord.NotFound) and failure.code == 10062
        assert run_script_handle.messages == []


async def test_webhook_token_expires_after_15_minutes_50027(discord_: LoopbackDiscord) -> None:
    bot = ScriptedBot(discord_.guild.id)
    gate = asyncio.Event()

    async def long_job(interaction: discord.Interaction) -> None:
        await interaction.response.defer(thinking=True)
        await interaction.followup.send("progress 10%")
        await gate.wait()
        await interaction.followup.send("done")

    async with discord_.running(bot):
        run = await run_script(discord_, bot, long_job)
        await run.original()
        discord_.clock.advance(15 * 60 + 1)
        gate.set()
        failure = await bot.outcome()
    assert isinstance(failure, discord.HTTPException) and (failure.status, failure.code) == (
        401,
        50027,
    )
    assert [m.content for m in run.messages] == ["progress 10%"]


async def test_double_acknowledgement_gives_40060(discord_: LoopbackDiscord) -> None:
    bot = ScriptedBot(discord_.guild.id)

    async def twice(interaction: discord.Interaction) -> None:
        await interaction.response.defer()
        # A second instance of the bot (or a second handler) acknowledging the same interaction.
        adapter = discord.webhook.async_.async_context.get()
        params = discord.webhook.async_.interaction_response_params(type=5)
        await adapter.create_interaction_response(
            interaction.id, interaction.token, session=interaction._session, params=params
        )

    async with discord_.running(bot):
        run = await run_script(discord_, bot, twice)
        failure = await bot.outcome()
    assert isinstance(failure, discord.HTTPException) and (failure.status, failure.code) == (
        400,
        40060,
    )
    assert [c.status for c in run.callbacks] == [200, 400] and run.response is run.callbacks[0]


async def test_editing_a_deleted_message_gives_10008(discord_: LoopbackDiscord) -> None:
    bot = ScriptedBot(discord_.guild.id)
    gate = asyncio.Event()

    async def edit_later(interaction: discord.Interaction) -> None:
        await interaction.response.send_message("rendering…")
        await gate.wait()
        await interaction.edit_original_response(content="done")

    async with discord_.running(bot):
        run = await run_script(discord_, bot, edit_later)
        await discord_.delete_message(await run.original())  # a moderator removes it meanwhile
        gate.set()
        failure = await bot.outcome()
    assert isinstance(failure, discord.NotFound) and failure.code == 10008


async def test_file_over_the_interaction_limit_gives_40005(discord_: LoopbackDiscord) -> None:
    bot = ScriptedBot(discord_.guild.id)

    async def too_big(interaction: discord.Interaction) -> None:
        await interaction.response.defer()
        assert interaction.filesize_limit == 1024
        await interaction.followup.send(file=discord.File(io.BytesIO(b"x" * 1025), "clip.mp4"))

    async with discord_.running(bot):
        await run_script(discord_, bot, too_big, attachment_size_limit=1024)
        failure = await bot.outcome()
    assert isinstance(failure, discord.HTTPException) and (failure.status, failure.code) == (
        413,
        40005,
    )
    assert not any(m.attachments for m in discord_.messages())


async def test_cdn_urls_are_signed_and_expire(discord_: LoopbackDiscord) -> None:
    photo = png()
    attachment = discord_.upload(photo, "me.png")
    url = discord_.server.cdn.url(attachment)
    async with aiohttp.ClientSession() as http:
        async with http.get(url) as resp:
            assert (
                resp.status == 200
                and await resp.read() == photo
                and resp.content_type == "image/png"
            )
        async with http.get(url.replace("hm=", "hm=0")) as resp:
            assert resp.status == 403
        discord_.clock.advance(24 * 3600 + 1)
        async with http.get(url) as resp:
            assert resp.status == 403


async def test_bot_reading_an_expired_attachment_gets_forbidden(discord_: LoopbackDiscord) -> None:
    bot = ScriptedBot(discord_.guild.id)
    stored = discord_.upload(png(), "me.png")

    async def read_later(interaction: discord.Interaction) -> None:
        await interaction.response.defer()
        discord_.clock.advance(24 * 3600 + 1)  # the bot kept the URL and came back a day later
        await interaction.extras["file"].read()

    async with discord_.running(bot):
        await run_script(discord_, bot, read_later, options={"file": stored})
        failure = await bot.outcome()
    assert isinstance(failure, discord.Forbidden)
    assert [r.status for r in discord_.requests("GET /*attachments/*")] == [403]


async def test_gateway_disconnect_resumes_and_replays_missed_events(
    discord_: LoopbackDiscord,
) -> None:
    bot = ScriptedBot(discord_.guild.id)
    async with discord_.running(bot):
        assert discord_.gateway.connects[0][1]["compress"] == "zlib-stream"
        async with discord_.gateway.outage(code=4000):
            missed = await discord_.post_message(discord_.general, "sent while you were away")
        received = await bot.next_event("message")
        assert received.id == missed.id and received.content == ""  # no MESSAGE_CONTENT intent
        await bot.next_event("resumed")

        await discord_.gateway.disconnect(drop=True)  # TCP cut, no close frame
        again = await discord_.post_message(discord_.general, "after a drop")
        assert (await bot.next_event("message")).id == again.id
        assert (discord_.gateway.identify_count, discord_.gateway.resume_count) == (1, 2)
        assert [path for path, _ in discord_.gateway.connects] == [
            "/gateway",
            "/gateway/resume",
            "/gateway/resume",
        ]

        await discord_.gateway.invalidate_session(resumable=False)  # now a fresh IDENTIFY
        await discord_.wait_for(
            lambda: discord_.gateway.identify_count == 2 and discord_.gateway.live_sessions(), 10
        )
        fresh = await discord_.slash("pick", {"model": "svd"})
        assert (await fresh.original()).content == "model: svd"


async def test_auto_sharded_client_uses_gateway_bot(discord_: LoopbackDiscord) -> None:
    bot = commands.AutoShardedBot(command_prefix="!", intents=discord.Intents.default())
    async with discord_.running(bot):
        assert [r.status for r in discord_.requests("GET /gateway/bot")] == [200]
        identify = next(f for f in discord_.state.gateway_frames if f.op == 2)
        assert identify.data["shard"] == [0, 1]


# ---- the server itself ------------------------------------------------------------------------


def test_apply_endpoints_sets_discord_py_globals_and_ignores_none() -> None:
    saved = (Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY, Asset.BASE)
    try:
        apply_endpoints(None, None)
        assert saved == (Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY, Asset.BASE)
        with pytest.raises(ValueError, match="DISCORD_API_BASE"):
            apply_endpoints("discord.example/api", None)
        with pytest.raises(ValueError, match="DISCORD_GATEWAY_URL"):
            apply_endpoints(None, "https://gateway.example")
        apply_endpoints(
            "https://proxy.example/api/v10/", "wss://gw.example/", cdn_base="https://cdn.example"
        )
        assert Route.BASE == "https://proxy.example/api/v10"
        assert Route("GET", "/users/@me").url == "https://proxy.example/api/v10/users/@me"
        assert yarl.URL("wss://gw.example/") == DiscordWebSocket.DEFAULT_GATEWAY
        assert Asset.BASE == "https://cdn.example"
    finally:
        Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY, Asset.BASE = saved


async def test_server_starts_and_stops_fast_on_its_own_port() -> None:
    started = time.monotonic()
    async with LoopbackDiscord() as one, LoopbackDiscord() as two:
        assert one.api_base != two.api_base
    assert time.monotonic() - started < 0.5


async def test_callback_without_with_response_is_204_and_discord_errors_are_exact_json(
    discord_: LoopbackDiscord,
) -> None:
    bot = ScriptedBot(discord_.guild.id)
    gate = asyncio.Event()

    async def wait(interaction: discord.Interaction) -> None:
        await gate.wait()

    async with discord_.running(bot):
        run = await run_script(discord_, bot, wait)
        async with aiohttp.ClientSession() as http:
            url = f"{discord_.api_base}/interactions/{run.id}/{run.token}/callback"
            async with http.post(url, json={"type": 4, "data": {"content": "x" * 2001}}) as resp:
                assert resp.status == 400 and resp.headers["Content-Type"] == "application/json"
                assert (await resp.json())["code"] == 50035
            async with http.post(url, json={"type": 4, "data": {"content": "hello"}}) as resp:
                assert resp.status == 204
            async with http.get(f"{discord_.api_base}/users/@me") as resp:
                assert resp.status == 401
        gate.set()
        assert await bot.outcome() is None


async def test_unimplemented_routes_fail_the_test_on_exit() -> None:
    with pytest.raises(AssertionError, match="does not implement"):
        async with LoopbackDiscord() as discord_, aiohttp.ClientSession() as http:
            headers = {"Authorization": f"Bot {discord_.token}"}
            async with http.get(f"{discord_.api_base}/channels/1/pins", headers=headers) as resp:
                assert resp.status == 404


async def test_components_v2_cards_follow_discords_rules(discord_: LoopbackDiscord) -> None:
    """A card: no content beside it, media only from its own attachments, 4000 characters of
    text in all; a message becomes a card by an edit that clears its content, and stays one;
    discord.py parses what the loopback returns (the unfurled attachment)."""
    bot = ScriptedBot(discord_.guild.id)

    def card(text: str, media: str | None = None) -> discord.ui.LayoutView:
        view = discord.ui.LayoutView()
        box: discord.ui.Container[Any] = discord.ui.Container(discord.ui.TextDisplay(text))
        if media:
            box.add_item(discord.ui.MediaGallery(discord.MediaGalleryItem(f"attachment://{media}")))
        view.add_item(box)
        return view

    refusals: list[str] = []

    async def script(interaction: discord.Interaction) -> None:
        await interaction.response.send_message("plain text first")
        for attempt in (
            # a V2 edit that leaves the old content in place
            lambda: interaction.edit_original_response(view=card("hello")),
            # a gallery naming a file the message does not carry
            lambda: interaction.edit_original_response(content=None, view=card("hi", "nope.png")),
            # more than 4000 characters of text
            lambda: interaction.edit_original_response(content=None, view=card("x" * 4001)),
        ):
            try:
                await attempt()
            except discord.HTTPException as exc:
                refusals.append(f"{exc.status} {exc.code}")
        upgraded = await interaction.edit_original_response(
            content=None, view=card("now a card", "p.png"),
            attachments=[discord.File(io.BytesIO(png()), "p.png")],
        )
        assert upgraded.flags.components_v2
        (gallery,) = [c for c in upgraded.components[0].children if isinstance(c, discord.MediaGalleryComponent)]
        assert gallery.items[0].media.attachment_id == upgraded.attachments[0].id
        try:
            await interaction.edit_original_response(content="back to text")
        except discord.HTTPException as exc:
            refusals.append(f"{exc.status} {exc.code}")
        await bot.outcomes.put(None)

    async with discord_.running(bot):
        run = await run_script(discord_, bot, script)
        assert await bot.outcome() is None
        message = await run.original()
    assert refusals == ["400 50035"] * 4
    assert message.card and message.content == "" and message.texts() == ["now a card"]
    assert message.shown(kind=12) == ["p.png"]
    assert [v.flags & (1 << 15) for v in message.history] == [0, 1 << 15]
