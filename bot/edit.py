"""The Edit button's form: the job's settings prefilled; submitting starts a new job that the
member who submits pays for."""

from __future__ import annotations

from typing import TYPE_CHECKING

import discord

from bot.errors import Refusal, answer_error
from bot.interactions import check_member, origin_of
from bot.rules import prompt_refusal
from contract import CAMERA_LABELS, PROMPT_MAX
from jobs import Job

if TYPE_CHECKING:
    from bot.app import AnimateBot


class EditModal(discord.ui.Modal, title="Edit and animate again"):
    def __init__(self, job: Job) -> None:
        super().__init__(timeout=600)
        self.job_id = job.id
        spec = job.spec
        self.prompt = discord.ui.TextInput(
            label="Prompt", style=discord.TextStyle.paragraph, max_length=PROMPT_MAX,
            default=spec.prompt or None, required=False,
        )
        self.negative = discord.ui.TextInput(
            label="Avoid (negative prompt)", style=discord.TextStyle.paragraph,
            max_length=PROMPT_MAX, default=spec.negative_prompt or None, required=False,
        )
        self.camera = discord.ui.TextInput(
            label="Camera", placeholder=", ".join(CAMERA_LABELS.values()), max_length=20,
            default=CAMERA_LABELS[spec.camera], required=False,
        )
        self.motion = discord.ui.TextInput(
            label="Motion strength (1-10)", max_length=2, default=str(spec.motion), required=False,
        )
        for item in (self.prompt, self.negative, self.camera, self.motion):
            self.add_item(item)

    async def on_submit(self, interaction: discord.Interaction[AnimateBot]) -> None:  # type: ignore[override]
        bot = interaction.client
        await interaction.response.defer(ephemeral=True, thinking=True)
        await check_member(interaction, bot.settings, bot.store)
        camera = parse_camera(self.camera.value)
        motion = parse_motion(self.motion.value)
        prompt, negative = self.prompt.value.strip(), self.negative.value.strip()
        if refusal := prompt_refusal(bot.settings, prompt, negative):
            raise Refusal(refusal)
        job = await bot.jobs.edit(
            self.job_id, origin_of(interaction),
            prompt=prompt, negative_prompt=negative, camera=camera, motion=motion,
        )
        balance = await bot.store.balance(interaction.user.id)
        await bot.delivery.announce(interaction, job, balance=balance)

    async def on_error(self, interaction: discord.Interaction, error: Exception, /) -> None:  # type: ignore[override]
        await answer_error(interaction, error)


class ExtendModal(discord.ui.Modal, title="Extend this video"):
    """What happens next: the prompt, prefilled with the clip's, for the new seconds only."""

    def __init__(self, job: Job) -> None:
        super().__init__(timeout=600)
        self.job_id = job.id
        self.prompt = discord.ui.TextInput(
            label="What happens next (prompt)", style=discord.TextStyle.paragraph,
            max_length=PROMPT_MAX, default=job.spec.prompt or None, required=False,
        )
        self.add_item(self.prompt)

    async def on_submit(self, interaction: discord.Interaction[AnimateBot]) -> None:  # type: ignore[override]
        bot = interaction.client
        await interaction.response.defer(ephemeral=True, thinking=True)
        await check_member(interaction, bot.settings, bot.store)
        prompt = self.prompt.value.strip()
        if refusal := prompt_refusal(bot.settings, prompt):
            raise Refusal(refusal)
        job = await bot.jobs.extend(self.job_id, origin_of(interaction), prompt=prompt)
        balance = await bot.store.balance(interaction.user.id)
        await bot.delivery.announce(interaction, job, balance=balance)

    async def on_error(self, interaction: discord.Interaction, error: Exception, /) -> None:  # type: ignore[override]
        await answer_error(interaction, error)


def parse_camera(text: str) -> str:
    wanted = text.strip().lower().replace("-", " ").replace("_", " ") or "static"
    for move, label in CAMERA_LABELS.items():
        if wanted == label:
            return move
    raise Refusal(f"“{text}” isn't a camera move; use one of: {', '.join(CAMERA_LABELS.values())}.")


def parse_motion(text: str) -> int:
    try:
        value = int(text.strip() or 5)
    except ValueError:
        raise Refusal("Motion strength must be a whole number from 1 to 10.") from None
    if not 1 <= value <= 10:
        raise Refusal("Motion strength must be a whole number from 1 to 10.")
    return value


def parse_seconds(text: str) -> float | None:
    """A length typed in a form: empty means the model's default; the model's own lengths are
    checked by the job layer, like /animate's."""
    cleaned = text.strip().lower().removesuffix("s").strip().replace(",", ".")
    if not cleaned:
        return None
    try:
        value = float(cleaned)
    except ValueError:
        raise Refusal(f"“{text.strip()[:20]}” isn't a length; type the seconds, e.g. 3.") from None
    if not 1 <= value <= 60:
        raise Refusal("The length must be between 1 and 60 seconds.")
    return value
