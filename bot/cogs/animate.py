"""/animate: a photo and a description in, a queued job and its public message out.

The command acknowledges at once (an ephemeral deferral), so refusals stay private and free:
the cheap checks (place, words, model, length, options, credits, queue limits) come before the
photo is downloaded, the photo is decoded once, off the event loop, and only then is anything
charged.
"""

from __future__ import annotations

import asyncio
from typing import Any

import discord
from discord import app_commands
from discord.ext import commands

from bot.app import AnimateBot
from bot.attachments import fetch, thumbnail
from bot.coach import hint, templates_for
from bot.errors import Refusal
from bot.formatting import credits
from bot.installs import anywhere
from bot.interactions import check_member, origin_of
from bot.rules import prompt_refusal
from contract import (
    CAMERA_LABELS,
    CAMERA_MOVES,
    PROMPT_MAX,
    SEED_MAX,
    VARIATIONS,
    card_for,
)
from contract.sizes import low_resolution_warning


async def start_job(
    bot: AnimateBot,
    interaction: discord.Interaction,
    image: discord.Attachment,
    *,
    end_image: discord.Attachment | None = None,
    model: str | None = None,
    duration: float | None = None,
    prompt: str = "",
    negative: str = "",
    private: bool | None = None,
    audio: bool | None = None,
    **fields: Any,
) -> None:
    """What /animate and the "Animate" form share, once the interaction is deferred: the cheap
    checks, then the photo fetched and decoded once, then the charge and the job's messages.
    `private`: only the member sees the job (None: as :func:`origin_of` infers it).
    `audio`: False for a silent clip; True asks for sound, and a note says when the model
    makes none; None keeps the sound a model makes."""
    settings = bot.settings
    await check_member(interaction, settings, bot.store)
    if refusal := prompt_refusal(settings, prompt, negative):
        raise Refusal(refusal)
    spec = bot.jobs.spec(
        model=model, duration=duration, end_image=end_image is not None,
        prompt=prompt.strip(), negative_prompt=negative.strip(), audio=audio is not False,
        **fields,
    )
    await bot.jobs.check_room(interaction.user.id, spec)  # before the photo costs anything
    limit, api_base = settings.max_image_bytes, settings.discord_api_base
    async with bot.photos.turn(interaction.user.id):
        data = await fetch(image, session=bot.downloads, max_bytes=limit, api_base=api_base)
        # Decoding is CPU work: off the event loop, so other members' clicks stay instant.
        photo = await bot.photos.judge(data, max_bytes=limit)
        end_data = None
        if end_image is not None:
            end_data = await fetch(end_image, session=bot.downloads, max_bytes=limit, api_base=api_base)
            await bot.photos.judge(end_data, max_bytes=limit)
    card = bot.jobs.card(spec.model)
    notes = list(photo.warnings)
    width, height = photo.original_size
    if (size := card.working_size(width / height)) and (
        soft := low_resolution_warning(photo.original_size, size)
    ):
        notes.append(soft)
    if spec.prompt and not card.supports_prompt:
        notes.append(f"`{spec.model}` doesn't read prompts; the motion comes from camera and motion strength.")
    if audio and not card.supports_audio:
        notes.append(f"`{spec.model}` makes no sound, so the video will be silent.")
    job = await bot.jobs.submit(
        spec, origin_of(interaction, private=private), image=data, end_image=end_data
    )
    await bot.delivery.announce(
        interaction, job,
        balance=await bot.store.balance(interaction.user.id),
        thumbnail=await asyncio.to_thread(thumbnail, photo),
        notes=notes,
        tip=hint(spec.prompt, spec.camera) if card.supports_prompt else None,
    )


CAMERA_CHOICES = [app_commands.Choice(name=CAMERA_LABELS[move], value=move) for move in CAMERA_MOVES]
SMOOTH_CHOICES = [
    app_commands.Choice(name="twice the frames (in-between frames)", value="x2"),
    app_commands.Choice(name="48 fps", value="48"),
    app_commands.Choice(name="60 fps", value="60"),
]
VARIATION_CHOICES = [
    app_commands.Choice(name="1 take" if n == 1 else f"{n} takes ({n}× the price)", value=n)
    for n in VARIATIONS
]


def smoothing(choice: str | None) -> dict[str, int | None]:
    """The smooth option as JobSpec fields: twice the frames, or a target rate."""
    if choice == "x2":
        return {"interpolate": 2}
    return {"fps_out": int(choice)} if choice and choice.isdigit() else {}


class Animate(commands.Cog):
    def __init__(self, bot: AnimateBot) -> None:
        self.bot = bot

    @app_commands.command(name="animate", description="Turn a photo into a short video.")
    @anywhere
    @app_commands.describe(
        image="the photo to animate",
        prompt="how it should move (type a subject for ideas), e.g. hair moving in a light breeze, slow push-in",
        negative="what to avoid, e.g. blur, distortion",
        camera="a camera move",
        motion="how much movement, 1 (subtle) to 10 (a lot)",
        duration="seconds of video",
        model="which model renders it (prices shown)",
        seed="repeat a result: the same seed and settings give the same video",
        loop="a seamless loop: the end leads back into the start",
        end_image="a last frame to end on (models that support it)",
        effect="a look this server's operators set up for the model (same price)",
        private="only you see the progress and the video (by DM if it takes over 15 minutes)",
        audio="keep the sound a model with audio makes (ltx2); off: a silent video",
        variations="takes with different seeds in one message, to pick the best (each take is charged)",
        smooth="fluid motion: learned in-between frames (extra credits per second)",
        upscale="twice the width and height, sharpened (extra credits per second)",
    )
    @app_commands.choices(camera=CAMERA_CHOICES, variations=VARIATION_CHOICES, smooth=SMOOTH_CHOICES)
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
        effect: str | None = None,
        private: bool = False,
        audio: bool | None = None,
        variations: int = 1,
        smooth: str | None = None,
        upscale: bool = False,
    ) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        await start_job(
            self.bot, interaction, image, end_image=end_image,
            model=model, duration=duration, prompt=prompt, negative=negative, camera=camera,
            motion=motion, seed=seed, loop=loop, effect=effect, private=private, audio=audio,
            variations=variations, upscale=2 if upscale else 1, **smoothing(smooth),
        )

    @animate.autocomplete("model")
    async def model_autocomplete(self, interaction: discord.Interaction, current: str) -> list[app_commands.Choice[str]]:
        pricing = self.bot.settings.pricing()
        choices = []
        for name in self.bot.jobs.models():
            label = f"{name} — {card_for(name).label} · {pricing.rate(name):g} credits/s"
            if current.lower() in label.lower():
                choices.append(app_commands.Choice(name=label[:100], value=name[:100]))
        return choices[:25]

    @animate.autocomplete("prompt")
    async def prompt_autocomplete(self, interaction: discord.Interaction, current: str) -> list[app_commands.Choice[str]]:
        """Editable prompts by subject; what the member typed stays theirs to send."""
        return [
            app_commands.Choice(name=f"{label}: {text}"[:100], value=text[:PROMPT_MAX])
            for label, text in templates_for(current)
        ][:25]

    @animate.autocomplete("effect")
    async def effect_autocomplete(self, interaction: discord.Interaction, current: str) -> list[app_commands.Choice[str]]:
        models = self.bot.jobs.models()
        model = getattr(interaction.namespace, "model", None)
        if model not in models:
            model = models[0]
        return [
            app_commands.Choice(name=f"{effect.label} ({effect.name})"[:100], value=effect.name)
            for effect in self.bot.jobs.effects(model)
            if current.lower() in f"{effect.label} {effect.name}".lower()
        ][:25]

    @animate.autocomplete("duration")
    async def duration_autocomplete(self, interaction: discord.Interaction, current: float | str) -> list[app_commands.Choice[float]]:
        models = self.bot.jobs.models()
        model = getattr(interaction.namespace, "model", None)
        if model not in models:
            model = models[0]
        takes = getattr(interaction.namespace, "variations", None)
        takes = takes if takes in VARIATIONS else 1
        return [
            app_commands.Choice(
                name=f"{seconds:g} s — {credits(self.bot.jobs.cost(model, seconds) * takes)}"
                + (f" for {takes} takes" if takes > 1 else ""),
                value=seconds,
            )
            for seconds in self.bot.jobs.card(model).durations
        ]


async def setup(bot: AnimateBot) -> None:
    await bot.add_cog(Animate(bot))
