"""/animate and the buttons on its messages: Cancel, Reroll, Edit, Extend, Info, Delete.

Every command acknowledges at once (an ephemeral deferral), so refusals stay private and
free: the member sees one specific sentence and nothing is charged. A job that is accepted
gets a public message of its own, which the delivery code edits with progress and the clip.
"""

from __future__ import annotations

import asyncio
import io
import logging
import secrets
from typing import Any

import discord
from discord import app_commands
from discord.ext import commands

from bot import embeds
from bot.app import AnimateBot
from bot.attachments import AttachmentRefused, check_photo, fetch, thumbnail
from bot.catalog import durations, traits, working_size
from bot.formatting import credits, when
from bot.rules import place_refusal, prompt_refusal
from bot.store import InsufficientCredits, QueueFull, StoreError, TooManyQueued
from bot.views import job_view
from contract import CAMERA_MOVES, InputError
from pipeline.intake import low_resolution_warning

log = logging.getLogger("bot.animate")

CAMERA_CHOICES = [
    app_commands.Choice(name=embeds.CAMERA_LABELS[move], value=move) for move in CAMERA_MOVES
]
PROMPT_MAX = 1000
SEED_MAX = 2**32 - 1


class Refusal(Exception):
    """Tell the member why, privately, and charge nothing."""


class EditModal(discord.ui.Modal, title="Edit and animate again"):
    """Prefilled with the job's settings; submitting starts a new job paid by the submitter."""

    def __init__(self, cog: Animate, job_id: int, params: dict[str, Any]) -> None:
        super().__init__(timeout=600)
        self.cog = cog
        self.job_id = job_id
        self.prompt = discord.ui.TextInput(
            label="Prompt", style=discord.TextStyle.paragraph, max_length=PROMPT_MAX,
            default=params.get("prompt") or None, required=False,
        )
        self.negative = discord.ui.TextInput(
            label="Avoid (negative prompt)", style=discord.TextStyle.paragraph,
            max_length=PROMPT_MAX, default=params.get("negative_prompt") or None, required=False,
        )
        self.camera = discord.ui.TextInput(
            label="Camera", placeholder=", ".join(embeds.CAMERA_LABELS.values()), max_length=20,
            default=embeds.CAMERA_LABELS.get(params.get("camera", "static")), required=False,
        )
        self.motion = discord.ui.TextInput(
            label="Motion strength (1-10)", max_length=2, default=str(params.get("motion", 5)),
            required=False,
        )
        for item in (self.prompt, self.negative, self.camera, self.motion):
            self.add_item(item)

    async def on_submit(self, interaction: discord.Interaction) -> None:
        await self.cog.start_edit(interaction, self.job_id, self)


class Animate(commands.Cog):
    def __init__(self, bot: AnimateBot) -> None:
        self.bot = bot

    async def cog_load(self) -> None:
        self.bot.job_button_handler = self.on_button

    async def cog_unload(self) -> None:
        self.bot.job_button_handler = None

    # ---- /animate ------------------------------------------------------------------------

    @app_commands.command(name="animate", description="Turn a photo into a short video.")
    @app_commands.describe(
        image="the photo to animate",
        prompt="how it should move, e.g. slow push-in, hair moving in a light breeze",
        negative="what to avoid, e.g. blur, distortion",
        camera="a camera move",
        motion="how much movement, 1 (subtle) to 10 (a lot)",
        duration="seconds of video",
        model="which model renders it (prices shown)",
        seed="repeat a result: the same seed and settings give the same video",
        loop="play forward then backward so it loops seamlessly",
        end_image="a last frame to end on (models that support it)",
    )
    @app_commands.choices(camera=CAMERA_CHOICES)
    async def animate(
        self,
        interaction: discord.Interaction,
        image: discord.Attachment,
        prompt: app_commands.Range[str, 0, PROMPT_MAX] = "",
        negative: app_commands.Range[str, 0, PROMPT_MAX] = "",
        camera: str = "static",
        motion: app_commands.Range[int, 1, 10] = 5,
        duration: app_commands.Range[float, 1.0, 60.0] | None = None,
        model: str | None = None,
        seed: app_commands.Range[int, 0, SEED_MAX] | None = None,
        loop: bool = False,
        end_image: discord.Attachment | None = None,
    ) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        try:
            self.check_place(interaction)
            model = self.choose_model(model)
            model_traits = traits(model)
            duration = self.choose_duration(model, duration)
            if refusal := prompt_refusal(self.bot.settings, prompt, negative):
                raise Refusal(refusal)
            if end_image is not None and not model_traits.supports_end_image:
                raise Refusal(f"The model `{model}` can't end on a chosen image; leave out end_image or pick another model.")
            limit = self.bot.settings.max_image_bytes
            api_base = self.bot.settings.discord_api_base
            data = await fetch(image, max_bytes=limit, api_base=api_base)
            # Decoding is CPU work: off the event loop, so other members' clicks stay instant.
            photo = await asyncio.to_thread(check_photo, data, max_bytes=limit)
            end_data = None
            if end_image is not None:
                end_data = await fetch(end_image, max_bytes=limit, api_base=api_base)
                await asyncio.to_thread(check_photo, end_data, max_bytes=limit)
            notes = list(photo.warnings)
            width, height = photo.original_size
            if (size := working_size(model, width / height)) and (
                soft := low_resolution_warning(photo.original_size, size)
            ):
                notes.append(soft)
            if prompt and not model_traits.supports_prompt:
                notes.append(f"`{model}` doesn't read prompts; the motion comes from camera and motion strength.")
            params = {
                "prompt": prompt.strip(),
                "negative_prompt": negative.strip(),
                "camera": camera,
                "motion": motion,
                "duration": duration,
                "seed": seed,
                "loop": loop,
                "max_bytes": interaction.filesize_limit,
            }
            await self.start_job(
                interaction, image=data, end_image=end_data, params=params, model=model,
                action="animate", thumb=await asyncio.to_thread(thumbnail, photo), notes=notes,
            )
        except (Refusal, AttachmentRefused) as refusal:
            await interaction.edit_original_response(content=str(refusal))

    @animate.autocomplete("model")
    async def model_autocomplete(self, interaction: discord.Interaction, current: str) -> list[app_commands.Choice[str]]:
        settings = self.bot.settings
        choices = []
        for name in self.bot.enabled_models():
            t = traits(name)
            rate = settings.model_costs.get(name, settings.default_cost_per_second)
            label = f"{name} — {t.label} · {rate:g} credits/s"
            if current.lower() in label.lower():
                choices.append(app_commands.Choice(name=label[:100], value=name[:100]))
        return choices[:25]

    @animate.autocomplete("duration")
    async def duration_autocomplete(self, interaction: discord.Interaction, current: float | str) -> list[app_commands.Choice[float]]:
        model = getattr(interaction.namespace, "model", None) or self.bot.enabled_models()[0]
        if model not in self.bot.enabled_models():
            model = self.bot.enabled_models()[0]
        return [
            app_commands.Choice(name=f"{seconds:g} s — {credits(self.bot.settings.cost(model, seconds))}", value=seconds)
            for seconds in durations(model)
        ]

    # ---- checks shared by the command and the buttons ------------------------------------

    def check_place(self, interaction: discord.Interaction) -> None:
        channel = interaction.channel
        channel_ids = [interaction.channel_id] if interaction.channel_id else []
        parent_id = getattr(channel, "parent_id", None)
        if parent_id:
            channel_ids.append(parent_id)
        nsfw = bool(getattr(channel, "is_nsfw", lambda: False)())
        if refusal := place_refusal(
            self.bot.settings, guild_id=interaction.guild_id, channel_ids=channel_ids, nsfw=nsfw
        ):
            raise Refusal(refusal)

    def choose_model(self, model: str | None) -> str:
        enabled = self.bot.enabled_models()
        if model is None:
            return enabled[0]
        if model not in enabled:
            raise Refusal(f"The model `{model}` isn't available here; choose one of: {', '.join(enabled)}.")
        return model

    def choose_duration(self, model: str, duration: float | None) -> float:
        allowed = durations(model)
        if duration is None:
            return allowed[min(1, len(allowed) - 1)]
        if not any(abs(duration - d) < 1e-6 for d in allowed):
            listed = ", ".join(f"{d:g}" for d in allowed)
            raise Refusal(f"`{model}` makes clips of {listed} seconds; pick one of those lengths.")
        return duration

    # ---- queueing ------------------------------------------------------------------------

    async def start_job(
        self,
        interaction: discord.Interaction,
        *,
        image: bytes,
        params: dict[str, Any],
        model: str,
        action: str,
        end_image: bytes | None = None,
        parent_id: int | None = None,
        thumb: bytes | None = None,
        notes: list[str] | None = None,
    ) -> None:
        """Debit and queue, then post the job's public message (the one that shows progress)."""
        settings = self.bot.settings
        cost = settings.cost(model, float(params["duration"]))
        delivery = {
            "application_id": interaction.application_id,
            "token": interaction.token,
            "token_at": interaction.created_at.timestamp(),
            "channel_id": interaction.channel_id,
            "guild_id": interaction.guild_id,
        }
        dispatcher = self.bot.dispatcher
        try:
            job = await dispatcher.submit(
                user_id=interaction.user.id, image=image, cost=cost, model=model, params=params,
                end_image=end_image, idempotency_key=str(interaction.id), action=action,
                parent_id=parent_id, delivery=delivery,
            )
        except InsufficientCredits as refusal:
            text = f"This video costs {credits(refusal.cost, bold=True)} and you have **{refusal.balance}**."
            if refusal.next_refill_at is not None:
                text += f" Your next free credits arrive {when(refusal.next_refill_at)}."
            raise Refusal(text + " Nothing was charged.") from None
        except (TooManyQueued, QueueFull, StoreError) as refusal:
            raise Refusal(f"{refusal} Nothing was charged.") from None
        except InputError as refusal:
            raise Refusal(f"{refusal.message} Nothing was charged.") from None

        balance = await self.bot.store.balance(interaction.user.id)
        ack = f"Queued as job {job.id} for {credits(job.cost, bold=True)}; you have **{balance}** left."
        if notes:
            ack += "\n" + "\n".join(f"⚠️ {note}" for note in notes)
        # Resolve the ephemeral "thinking" first: the follow-up below is then a new, public message.
        await interaction.edit_original_response(content=ack)
        async with self.bot.delivery.holding(job.id):
            position = await dispatcher.position(job.id)
            files = []
            thumb_name = None
            if thumb is not None:
                thumb_name = f"photo-{job.id}.jpg"
                files.append(discord.File(io.BytesIO(thumb), filename=thumb_name))
            message = await interaction.followup.send(
                content=f"<@{interaction.user.id}>",
                embed=embeds.queued(job, position, thumbnail=thumb_name),
                files=files,
                view=job_view(job.id, ("cancel",)),
                wait=True,
                allowed_mentions=discord.AllowedMentions.none(),
            )
            await self.bot.store.set_delivery(job.id, message_id=message.id, picture=thumb_name)

    # ---- buttons -------------------------------------------------------------------------

    async def on_button(self, interaction: discord.Interaction, action: str, job_id: int) -> None:
        try:
            job = await self.bot.store.get_job(job_id)
        except StoreError:
            await interaction.response.send_message("That video no longer exists.", ephemeral=True)
            return
        if action == "info":
            await interaction.response.send_message(embeds.info(job), ephemeral=True)
        elif action == "edit":
            await interaction.response.send_modal(EditModal(self, job.id, job.params))
        elif action in ("cancel", "delete"):
            await self._owner_action(interaction, action, job)
        else:  # reroll, extend: the presser pays for the new job
            await interaction.response.defer(ephemeral=True, thinking=True)
            try:
                self.check_place(interaction)
                await self._follow_up(interaction, action, job)
            except (Refusal, AttachmentRefused) as refusal:
                await interaction.edit_original_response(content=str(refusal))

    async def _owner_action(self, interaction: discord.Interaction, action: str, job) -> None:
        if interaction.user.id != job.user_id and not await self.bot.is_operator(interaction.user):
            what = "cancel" if action == "cancel" else "delete"
            await interaction.response.send_message(
                f"Only the member who made this video (or a bot operator) can {what} it.", ephemeral=True
            )
            return
        await interaction.response.defer(ephemeral=True, thinking=True)
        if action == "cancel":
            if await self.bot.dispatcher.cancel(job.id, "Cancelled by request."):
                text = "Cancelled." + (
                    f" {credits(job.cost)} {'was' if job.cost == 1 else 'were'} refunded." if job.cost else ""
                )
            else:
                text = _nothing_to_cancel((await self.bot.store.get_job(job.id)).status)
            await interaction.edit_original_response(content=text)
            return
        try:
            if interaction.message is not None:
                await interaction.message.delete()
        except discord.NotFound:
            pass
        await interaction.edit_original_response(content="Deleted.")

    async def _follow_up(self, interaction: discord.Interaction, action: str, job) -> None:
        model = job.model if job.model in self.bot.enabled_models() else self.choose_model(None)
        image, end_image = await self.bot.store.job_inputs(job.id)
        params = {**_request_params(job.params), "max_bytes": interaction.filesize_limit}
        if action == "reroll":
            params["seed"] = secrets.randbelow(SEED_MAX)
            parent_id = job.id
        else:  # extend
            if not traits(model).supports_extend:
                raise Refusal(f"`{model}` can't extend videos.")
            if job.status not in ("done", "delivered") or not job.result_path:
                raise Refusal("This video isn't finished yet, so it can't be extended.")
            params["seed"] = None
            parent_id = job.id
            end_image = None
        params["duration"] = self.choose_duration(model, float(params.get("duration") or 0) or None)
        await self.start_job(
            interaction, image=image, end_image=end_image, params=params, model=model,
            action=action, parent_id=parent_id,
        )

    async def start_edit(self, interaction: discord.Interaction, job_id: int, modal: EditModal) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        try:
            self.check_place(interaction)
            job = await self.bot.store.get_job(job_id)
            camera = _parse_camera(modal.camera.value)
            motion = _parse_motion(modal.motion.value)
            prompt, negative = modal.prompt.value.strip(), modal.negative.value.strip()
            if refusal := prompt_refusal(self.bot.settings, prompt, negative):
                raise Refusal(refusal)
            model = job.model if job.model in self.bot.enabled_models() else self.choose_model(None)
            image, end_image = await self.bot.store.job_inputs(job.id)
            params = {
                **_request_params(job.params),
                "prompt": prompt, "negative_prompt": negative, "camera": camera, "motion": motion,
                "seed": None, "max_bytes": interaction.filesize_limit,
            }
            params["duration"] = self.choose_duration(model, float(params.get("duration") or 0) or None)
            await self.start_job(
                interaction, image=image, end_image=end_image, params=params, model=model,
                action="edit", parent_id=job.id,
            )
        except (Refusal, AttachmentRefused) as refusal:
            await interaction.edit_original_response(content=str(refusal))


def _nothing_to_cancel(status: str) -> str:
    """Why a Cancel did nothing, by what had already happened to the job."""
    if status == "cancelled":
        return "This job was already cancelled (its credits were refunded once)."
    if status == "failed":
        return "This job had already stopped (its credits were refunded)."
    return "This job had already finished, so there was nothing to cancel."


def _request_params(params: dict[str, Any]) -> dict[str, Any]:
    keep = ("prompt", "negative_prompt", "camera", "motion", "duration", "loop", "seed")
    return {k: params[k] for k in keep if k in params}


def _parse_camera(text: str) -> str:
    wanted = text.strip().lower().replace("-", " ").replace("_", " ") or "static"
    for move, label in embeds.CAMERA_LABELS.items():
        if wanted == label:
            return move
    raise Refusal(f"“{text}” isn't a camera move; use one of: {', '.join(embeds.CAMERA_LABELS.values())}.")


def _parse_motion(text: str) -> int:
    try:
        value = int(text.strip() or 5)
    except ValueError:
        raise Refusal("Motion strength must be a whole number from 1 to 10.") from None
    if not 1 <= value <= 10:
        raise Refusal("Motion strength must be a whole number from 1 to 10.")
    return value


async def setup(bot: AnimateBot) -> None:
    await bot.add_cog(Animate(bot))
