"""The "Animate" message command: right-click (or long-press) a message with a photo, fill in
a short form, and the same job as /animate starts. The photo is often already in the chat.
"""

from __future__ import annotations

import discord
from discord import app_commands
from discord.ext import commands

from bot.app import AnimateBot
from bot.cogs.animate import start_job
from bot.edit import parse_seconds
from bot.errors import Refusal, answer_error
from bot.i18n import tr
from bot.installs import CONTEXTS, INSTALLS
from bot.interactions import check_member
from contract import CAMERA_LABELS, CAMERA_MOVES, PROMPT_MAX, VARIATIONS, card_for

IMAGE_TYPES = ("image/jpeg", "image/png", "image/webp", "image/gif", "image/bmp", "image/tiff", "image/heic", "image/heif")
NO_IMAGE = "That message has no photo attached; use Animate on a message with an image file."


def photo_of(message: discord.Message) -> discord.Attachment:
    """The message's first image attachment (by Discord's content type, else the file name;
    the bytes are judged again when fetched), or a Refusal."""
    for attachment in message.attachments:
        kind = (attachment.content_type or "").split(";")[0].strip().lower()
        name = attachment.filename.lower()
        if kind in IMAGE_TYPES or (not kind and name.endswith((".jpg", ".jpeg", ".png", ".webp"))):
            return attachment
    raise Refusal(NO_IMAGE)


class AnimateForm(discord.ui.Modal):
    """/animate's main choices as a form: prompt, camera, model, length, loop and private."""

    def __init__(
        self, bot: AnimateBot, photo: discord.Attachment, *, locale: discord.Locale | None = None
    ) -> None:
        super().__init__(title=tr(locale, "Animate this photo"), timeout=600)
        self.bot = bot
        self.photo = photo
        models = bot.jobs.models()
        pricing = bot.settings.pricing()
        self.prompt = discord.ui.TextInput(
            style=discord.TextStyle.paragraph, max_length=PROMPT_MAX, required=False,
            placeholder=tr(locale, "how it should move, e.g. hair moving in a light breeze, slow push-in"),
        )
        # Each select starts on its default and may be left alone (required=False).
        self.camera = discord.ui.Select(required=False, options=[
            discord.SelectOption(label=tr(locale, CAMERA_LABELS[move]), value=move, default=move == "static")
            for move in CAMERA_MOVES
        ])
        self.model = discord.ui.Select(required=False, options=[
            discord.SelectOption(
                label=f"{card_for(name).label}"[:100], value=name[:100],
                description=tr(locale, "{rate} credits per second", rate=f"{pricing.rate(name):g}"),
                default=index == 0,
            )
            for index, name in enumerate(models[:25])
        ])
        self.seconds = discord.ui.TextInput(
            max_length=5, required=False, default=f"{card_for(models[0]).default_duration:g}",
        )
        # A form holds five components: the yes/no choices share one multi-select.
        self.options = discord.ui.Select(required=False, min_values=0, max_values=4, options=[
            discord.SelectOption(label=tr(locale, "A seamless loop"), value="loop"),
            discord.SelectOption(
                label=tr(locale, "Only I see it"), value="private",
                description=tr(locale, "progress and video private to you (by DM after 15 minutes)"),
            ),
            *(
                discord.SelectOption(
                    label=f"{n} takes", value=f"takes-{n}",
                    description=f"{n} seeds in one message, to pick the best ({n}× the price)",
                )
                for n in VARIATIONS if n > 1
            ),
        ])
        for text, item in (
            (tr(locale, "Prompt"), self.prompt), (tr(locale, "Camera"), self.camera),
            (tr(locale, "Model"), self.model), (tr(locale, "Length in seconds"), self.seconds),
            (tr(locale, "Options"), self.options),
        ):
            self.add_item(discord.ui.Label(text=text, component=item))

    async def on_submit(self, interaction: discord.Interaction[AnimateBot]) -> None:  # type: ignore[override]
        await interaction.response.defer(ephemeral=True, thinking=True)
        takes = [int(value.removeprefix("takes-")) for value in self.options.values if value.startswith("takes-")]
        if len(takes) > 1:
            raise Refusal("Pick one number of takes (2 or 4), not both.")
        await start_job(
            self.bot, interaction, self.photo, variations=takes[0] if takes else 1,
            prompt=self.prompt.value, camera=(self.camera.values or ["static"])[0],
            model=(self.model.values or [None])[0], duration=parse_seconds(self.seconds.value),
            loop="loop" in self.options.values, private="private" in self.options.values,
        )

    async def on_error(self, interaction: discord.Interaction, error: Exception, /) -> None:  # type: ignore[override]
        await answer_error(interaction, error)


class AnimateMessage(commands.Cog):
    def __init__(self, bot: AnimateBot) -> None:
        self.bot = bot
        # Context menus cannot be declared on a cog by decorator: added to the tree here.
        self.menu = app_commands.ContextMenu(
            name="Animate", callback=self.animate_message,
            allowed_installs=INSTALLS, allowed_contexts=CONTEXTS,
        )
        bot.tree.add_command(self.menu)

    async def cog_unload(self) -> None:
        self.bot.tree.remove_command(self.menu.name, type=self.menu.type)

    async def animate_message(self, interaction: discord.Interaction, message: discord.Message) -> None:
        """Refused before the form when there is nothing to animate or the member may not."""
        photo = photo_of(message)
        await check_member(interaction, self.bot.settings, self.bot.store)
        await interaction.response.send_modal(AnimateForm(self.bot, photo, locale=interaction.locale))


async def setup(bot: AnimateBot) -> None:
    await bot.add_cog(AnimateMessage(bot))
