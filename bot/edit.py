"""The Edit button's form: the job's settings prefilled; submitting starts a new job that the
member who submits pays for."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import discord

from bot.attachments import fetch
from bot.errors import Refusal, answer_error
from bot.i18n import tr
from bot.interactions import check_member, origin_of
from bot.rules import prompt_refusal
from contract import CAMERA_LABELS, CAMERA_MOVES, PROMPT_MAX, card_for
from jobs import Job

if TYPE_CHECKING:
    from bot.app import AnimateBot


MOTION_WORDS: dict[int, str] = {
    1: "barely moves", 3: "subtle", 5: "natural", 7: "lively", 10: "a lot",
}
MORE = "more"
"""The Options box that asks for the second form (model, negative prompt, photos)."""


@dataclass(frozen=True)
class EditDraft:
    """What the first form chose, carried to the second one."""

    job_id: int
    prompt: str
    camera: str
    motion: int
    duration: float | None
    loop: bool
    audio: bool

    def changes(self) -> dict[str, Any]:
        return {
            "prompt": self.prompt, "camera": self.camera, "motion": self.motion,
            "duration": self.duration, "loop": self.loop, "audio": self.audio,
        }


class EditModal(discord.ui.Modal):
    """The job's settings as real controls: the prompt as text, the camera as a select, motion
    and length as radio buttons, loop and sound as checkboxes. A modal holds five components,
    so the model, negative prompt and new photos are a second form, asked for with a box."""

    def __init__(
        self,
        job: Job,
        *,
        lengths: tuple[float, ...],
        has_sound: bool,
        locale: discord.Locale | None = None,
    ) -> None:
        super().__init__(title=tr(locale, "Edit and animate again"), timeout=600)
        self.job_id = job.id
        spec = job.spec
        self.prompt = discord.ui.TextInput(
            style=discord.TextStyle.paragraph, max_length=PROMPT_MAX,
            default=spec.prompt or None, required=False,
        )
        self.camera = camera_select(spec.camera, locale)
        self.motion = discord.ui.RadioGroup(required=True, options=[
            discord.RadioGroupOption(
                label=f"{level} · {tr(locale, MOTION_WORDS[level])}" if level in MOTION_WORDS else str(level),
                value=str(level), default=level == spec.motion,
            )
            for level in range(1, 11)
        ])
        self.length = discord.ui.RadioGroup(required=True, options=[
            discord.RadioGroupOption(
                label=tr(locale, "{seconds} seconds", seconds=f"{seconds:g}"), value=f"{seconds:g}",
                default=abs(seconds - spec.duration) < 1e-6,
            )
            for seconds in lengths[:10]
        ]) if len(lengths) >= 2 else None
        boxes = [discord.CheckboxGroupOption(
            label=tr(locale, "A seamless loop"), value="loop", default=spec.loop
        )]
        if has_sound:
            boxes.append(discord.CheckboxGroupOption(
                label=tr(locale, "Sound"), value="audio", default=spec.audio,
                description=tr(locale, "keep the sound the model makes"),
            ))
        boxes.append(discord.CheckboxGroupOption(
            label=tr(locale, "Next: model, negative prompt, new photo"), value=MORE,
            description=tr(locale, "a second form before it starts"),
        ))
        self.options = discord.ui.CheckboxGroup(
            required=False, min_values=0, max_values=len(boxes), options=boxes
        )
        fields: list[tuple[str, discord.ui.Item[Any] | None]] = [
            (tr(locale, "Prompt"), self.prompt), (tr(locale, "Camera"), self.camera),
            (tr(locale, "Motion strength"), self.motion), (tr(locale, "Length"), self.length),
            (tr(locale, "Options"), self.options),
        ]
        for text, item in fields:
            if item is not None:
                self.add_item(discord.ui.Label(text=text, component=item))
        self.has_sound = has_sound

    def draft(self) -> EditDraft:
        """The choices, each checked like /animate's (a forged submit gets a sentence)."""
        ticked = set(self.options.values)
        return EditDraft(
            job_id=self.job_id,
            prompt=self.prompt.value.strip(),
            camera=parse_camera((self.camera.values or ["static"])[0]),
            motion=parse_motion(self.motion.value or "5"),
            duration=parse_seconds(self.length.value or "") if self.length is not None else None,
            loop="loop" in ticked,
            audio="audio" in ticked or not self.has_sound,
        )

    async def on_submit(self, interaction: discord.Interaction[AnimateBot]) -> None:  # type: ignore[override]
        bot = interaction.client
        draft = self.draft()
        if refusal := prompt_refusal(bot.settings, draft.prompt):
            raise Refusal(refusal)
        if MORE in self.options.values:
            # A modal cannot answer a modal: one private button opens the second form.
            await check_member(interaction, bot.settings, bot.store)
            await interaction.response.send_message(
                tr(interaction.locale, "Now the model, the negative prompt and new photos; nothing is charged yet."),
                view=MoreView(draft, interaction.locale), ephemeral=True,
            )
            return
        await interaction.response.defer(ephemeral=True, thinking=True)
        await check_member(interaction, bot.settings, bot.store)
        job = await bot.jobs.edit(draft.job_id, origin_of(interaction), **draft.changes())
        balance = await bot.store.balance(interaction.user.id)
        await bot.delivery.announce(interaction, job, balance=balance)

    async def on_error(self, interaction: discord.Interaction, error: Exception, /) -> None:  # type: ignore[override]
        await answer_error(interaction, error)


class MoreView(discord.ui.View):
    """The private button between the two forms (it lives as long as the first form's choices)."""

    def __init__(self, draft: EditDraft, locale: discord.Locale | None = None) -> None:
        super().__init__(timeout=600)
        self.draft = draft
        self.open.label = tr(locale, "Model, negative prompt, photos…")

    @discord.ui.button(label="Model, negative prompt, photos…", style=discord.ButtonStyle.primary)
    async def open(self, interaction: discord.Interaction[AnimateBot], button: discord.ui.Button[Any]) -> None:
        bot = interaction.client
        job = await bot.store.get_job(self.draft.job_id)
        await interaction.response.send_modal(
            EditMoreModal(job, self.draft, models=bot.jobs.models(), locale=interaction.locale)
        )

    async def on_error(self, interaction: discord.Interaction, error: Exception, item: Any, /) -> None:  # type: ignore[override]
        await answer_error(interaction, error)


class EditMoreModal(discord.ui.Modal):
    """The second form: the model as a select, the negative prompt as text, and an optional new
    photo and end frame, each judged as /animate judges its uploads before anything is charged."""

    def __init__(
        self, job: Job, draft: EditDraft, *, models: list[str], locale: discord.Locale | None = None
    ) -> None:
        super().__init__(title=tr(locale, "Edit: model, negative prompt, photos"), timeout=600)
        self.draft = draft
        self.model = discord.ui.Select(required=False, options=[
            discord.SelectOption(label=card_for(name).label[:100], value=name[:100], default=name == job.model)
            for name in models[:25]
        ])
        self.negative = discord.ui.TextInput(
            style=discord.TextStyle.paragraph, max_length=PROMPT_MAX,
            default=job.spec.negative_prompt or None, required=False,
        )
        self.photo = discord.ui.FileUpload(min_values=0, max_values=1, required=False)
        self.end_frame = discord.ui.FileUpload(min_values=0, max_values=1, required=False)
        for text, description, item in (
            (tr(locale, "Model"), None, self.model),
            (tr(locale, "Avoid (negative prompt)"), None, self.negative),
            (tr(locale, "New photo"), tr(locale, "leave empty to keep the clip's photo"), self.photo),
            (tr(locale, "End frame"), tr(locale, "a last frame to end on (models that support it)"), self.end_frame),
        ):
            self.add_item(discord.ui.Label(text=text, description=description, component=item))

    async def on_submit(self, interaction: discord.Interaction[AnimateBot]) -> None:  # type: ignore[override]
        bot = interaction.client
        await interaction.response.defer(ephemeral=True, thinking=True)
        await check_member(interaction, bot.settings, bot.store)
        negative = self.negative.value.strip()
        if refusal := prompt_refusal(bot.settings, self.draft.prompt, negative):
            raise Refusal(refusal)
        model = (self.model.values or [None])[0]
        uploads = {}
        async with bot.photos.turn(interaction.user.id):
            for name, field in (("image", self.photo), ("end_image", self.end_frame)):
                if field.values:
                    uploads[name] = await judged(bot, field.values[0])
        job = await bot.jobs.edit(
            self.draft.job_id, origin_of(interaction), model=model, negative_prompt=negative,
            **uploads, **self.draft.changes(),
        )
        balance = await bot.store.balance(interaction.user.id)
        await bot.delivery.announce(interaction, job, balance=balance)

    async def on_error(self, interaction: discord.Interaction, error: Exception, /) -> None:  # type: ignore[override]
        await answer_error(interaction, error)


def camera_select(current: str, locale: discord.Locale | None) -> discord.ui.Select[Any]:
    """The camera moves as a list, in the member's language, the current one chosen."""
    return discord.ui.Select(required=False, options=[
        discord.SelectOption(label=tr(locale, CAMERA_LABELS[move]), value=move, default=move == current)
        for move in CAMERA_MOVES
    ])


async def judged(bot: AnimateBot, attachment: discord.Attachment) -> bytes:
    """An uploaded photo's bytes, fetched within the size limit and judged as /animate's."""
    limit = bot.settings.max_image_bytes
    data = await fetch(attachment, session=bot.downloads, max_bytes=limit, api_base=bot.settings.discord_api_base)
    await bot.photos.judge(data, max_bytes=limit)
    return data


class ExtendModal(discord.ui.Modal):
    """What happens next: the prompt, prefilled with the clip's, for the new seconds only."""

    def __init__(self, job: Job, *, locale: discord.Locale | None = None) -> None:
        super().__init__(title=tr(locale, "Extend this video"), timeout=600)
        self.job_id = job.id
        self.prompt = discord.ui.TextInput(
            label=tr(locale, "What happens next (prompt)"), style=discord.TextStyle.paragraph,
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
        if wanted in (label, move.replace("_", " ")):
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
