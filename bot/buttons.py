"""The buttons on a job's messages, one class per action; they keep working after a restart.

Each is a :class:`discord.ui.DynamicItem` rebuilt from the custom_id of whatever message was
clicked (``animate:<action>:<job id>``), so buttons sent a month ago still work after any
number of restarts, with no view state kept in memory. Who may press is checked in
``interaction_check``; what a press does is one call of the job service.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from typing import TYPE_CHECKING, ClassVar

import discord

from bot import embeds
from bot.errors import answer, answer_error
from bot.formatting import credits
from bot.i18n import tr
from bot.interactions import check_member, origin_of
from jobs import Job, JobStatus

if TYPE_CHECKING:
    from bot.app import AnimateBot

_JOB = r"(?P<job>[0-9]{1,20})"


class JobButton(discord.ui.DynamicItem[discord.ui.Button], template=rf"animate:[a-z]+:{_JOB}"):
    """One action on one job. Subclasses set the action and its look, and `run`."""

    action: ClassVar[str]
    label: ClassVar[str]
    emoji: ClassVar[str]
    style: ClassVar[discord.ButtonStyle] = discord.ButtonStyle.secondary

    def __init__(self, job_id: int, *, label: str | None = None) -> None:
        """`label`: a take's buttons on a message with variations ("Reroll 2"); the
        custom_id is the take's own job either way, so a press after a restart needs none."""
        super().__init__(
            discord.ui.Button(
                label=label or self.label,
                emoji=self.emoji,
                style=self.style,
                custom_id=f"animate:{self.action}:{job_id}",
            )
        )
        self.job_id = job_id

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Button, match: re.Match[str], /
    ) -> JobButton:
        return cls(int(match["job"]))

    async def callback(self, interaction: discord.Interaction[AnimateBot]) -> None:
        try:
            await self.run(interaction, interaction.client)
        except Exception as error:  # noqa: BLE001 - every failure becomes a sentence
            await answer_error(interaction, error)

    async def run(self, interaction: discord.Interaction[AnimateBot], bot: AnimateBot) -> None:
        raise NotImplementedError


class _OwnerOnly(JobButton, template=rf"animate:owner-only:{_JOB}"):
    """Only the member who made the video, or a bot operator, may press it."""

    verb: ClassVar[str]

    async def interaction_check(self, interaction: discord.Interaction[AnimateBot], /) -> bool:
        bot = interaction.client
        try:
            job = await bot.store.get_job(self.job_id)
        except Exception as error:  # noqa: BLE001 - unknown job and the like
            await answer_error(interaction, error)
            return False
        if interaction.user.id == job.user_id or await bot.is_operator(interaction.user):
            return True
        await answer(
            interaction,
            f"Only the member who made this video (or a bot operator) can {self.verb} it.",
        )
        return False


class CancelButton(_OwnerOnly, template=rf"animate:cancel:{_JOB}"):
    action, label, emoji, verb = "cancel", "Cancel", "✖️", "cancel"
    style = discord.ButtonStyle.danger

    async def run(self, interaction: discord.Interaction[AnimateBot], bot: AnimateBot) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        cancelled, job = await bot.jobs.cancel(self.job_id)
        if cancelled:
            text = "Cancelled." + (
                f" {credits(job.cost)} {'was' if job.cost == 1 else 'were'} refunded." if job.cost else ""
            )
        else:
            text = _nothing_to_cancel(job.status)
        await interaction.edit_original_response(content=text)


class DeleteButton(_OwnerOnly, template=rf"animate:delete:{_JOB}"):
    action, label, emoji, verb = "delete", "Delete", "🗑️", "delete"
    style = discord.ButtonStyle.danger
    takes: ClassVar[bool] = False
    """Also every take of the job (the Delete of a message with variations)."""
    gone: ClassVar[str] = "Deleted. The photo, the prompt and the video are gone from the bot too."

    async def run(self, interaction: discord.Interaction[AnimateBot], bot: AnimateBot) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        try:
            if interaction.message is not None:
                await interaction.message.delete()
        except discord.NotFound:
            pass
        await bot.jobs.delete(self.job_id, takes=self.takes)
        await interaction.edit_original_response(content=tr(interaction.locale, self.gone))


class DeleteTakesButton(DeleteButton, template=rf"animate:deletetakes:{_JOB}"):
    """Delete on a message with variations: the message, and every take of its job."""

    action = "deletetakes"
    takes = True
    gone = "Deleted. The photo, the prompt and every take are gone from the bot too."


class InfoButton(JobButton, template=rf"animate:info:{_JOB}"):
    action, label, emoji = "info", "Info", "ℹ️"

    async def run(self, interaction: discord.Interaction[AnimateBot], bot: AnimateBot) -> None:
        job = await bot.store.get_job(self.job_id)
        await interaction.response.send_message(embeds.info(job, interaction.locale), ephemeral=True)


class EditButton(JobButton, template=rf"animate:edit:{_JOB}"):
    action, label, emoji = "edit", "Edit", "✏️"

    async def run(self, interaction: discord.Interaction[AnimateBot], bot: AnimateBot) -> None:
        from bot.edit import EditModal

        # Refused before the form, not after the member filled it in (the form checks again:
        # a block or a role can change while it is open).
        await check_member(interaction, bot.settings, bot.store)
        job = await bot.store.get_job(self.job_id)
        card = bot.jobs.card(job.model)
        await interaction.response.send_modal(
            EditModal(
                job, lengths=card.durations, has_sound=card.supports_audio, locale=interaction.locale
            )
        )


class _FollowUp(JobButton, template=rf"animate:follow-up:{_JOB}"):
    """A new job made from this one; the member who presses pays for it."""

    async def run(self, interaction: discord.Interaction[AnimateBot], bot: AnimateBot) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        await check_member(interaction, bot.settings, bot.store)
        job = await self.make(bot, interaction)
        balance = await bot.store.balance(interaction.user.id)
        await bot.delivery.announce(interaction, job, balance=balance)

    async def make(self, bot: AnimateBot, interaction: discord.Interaction) -> Job:
        raise NotImplementedError


class RerollButton(_FollowUp, template=rf"animate:reroll:{_JOB}"):
    action, label, emoji = "reroll", "Reroll", "🎲"
    style = discord.ButtonStyle.primary

    async def make(self, bot: AnimateBot, interaction: discord.Interaction) -> Job:
        return await bot.jobs.reroll(self.job_id, origin_of(interaction))


class ExtendButton(JobButton, template=rf"animate:extend:{_JOB}"):
    action, label, emoji = "extend", "Extend", "⏩"

    async def run(self, interaction: discord.Interaction[AnimateBot], bot: AnimateBot) -> None:
        from bot.edit import ExtendModal

        # Refused before the form: a blocked member, a clip not finished or at the chain's limit.
        await check_member(interaction, bot.settings, bot.store)
        job = await bot.jobs.check_extend(self.job_id)
        await interaction.response.send_modal(ExtendModal(job, locale=interaction.locale))


class _FinishButton(JobButton, template=rf"animate:finishing:{_JOB}"):
    """Smooth or Upscale 2× on a delivered clip: the same video finished again by a worker,
    no new render; a new clip with its own buttons. The member who presses pays for the
    finish of the clip's length; the private answer says what it will do."""

    finish: ClassVar[str]

    async def run(self, interaction: discord.Interaction[AnimateBot], bot: AnimateBot) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        await check_member(interaction, bot.settings, bot.store)
        job = await bot.jobs.finish(self.job_id, self.finish, origin_of(interaction))
        parent = await bot.store.get_job(self.job_id)
        balance = await bot.store.balance(interaction.user.id)
        await bot.delivery.announce(
            interaction, job, balance=balance, tip=self.what(job, parent, interaction.locale)
        )

    @staticmethod
    def what(job: Job, parent: Job, locale: discord.Locale | None) -> str:
        """What the finish job `job` does to `parent`'s clip, in the presser's words."""
        clip, spec = parent.clip, job.spec
        if clip is None:  # not reached: a finish is refused before its clip exists
            return ""
        if spec.upscale > 1:
            return tr(
                locale, "Upscale 2×: {before} → {after} pixels.",
                before=f"{clip.width}×{clip.height}", after=f"{clip.width * 2}×{clip.height * 2}",
            )
        if spec.interpolate > 1:
            return tr(
                locale, "Smooth: twice the frames, {before} → {after} fps.",
                before=f"{clip.fps:g}", after=f"{clip.fps * 2:g}",
            )
        return tr(
            locale, "Smooth: new in-between frames, {before} → {after} fps.",
            before=f"{clip.fps:g}", after=spec.fps_out,
        )


class SmoothButton(_FinishButton, template=rf"animate:smooth:{_JOB}"):
    action, label, emoji, finish = "smooth", "Smooth", "🎞️", "smooth"


class UpscaleButton(_FinishButton, template=rf"animate:upscale:{_JOB}"):
    action, label, emoji, finish = "upscale", "Upscale 2×", "🔍", "upscale"


BUTTONS: tuple[type[JobButton], ...] = (
    CancelButton,
    DeleteButton,
    DeleteTakesButton,
    InfoButton,
    EditButton,
    RerollButton,
    ExtendButton,
    SmoothButton,
    UpscaleButton,
)
_BY_ACTION: dict[str, type[JobButton]] = {button.action: button for button in BUTTONS}


def action_rows(job_id: int, actions: tuple[str, ...]) -> list[discord.ui.ActionRow]:
    """`actions` on one job as the rows of a card (five buttons to a row)."""
    items = [_BY_ACTION[action](job_id) for action in actions]
    return [discord.ui.ActionRow(*items[i : i + 5]) for i in range(0, len(items), 5)]


TAKE_ACTIONS = ("reroll", "edit", "extend", "info")
"""Each take's own buttons on a message with variations, one row per take."""


def take_rows(job_id: int, takes: list[tuple[int, int]], *, can_extend: bool) -> list[discord.ui.ActionRow]:
    """A card with variations: for each made take, (take number, its job id), a row of its
    own "Reroll 2", "Edit 2", "Extend 2", "Info 2"; then Delete for the whole message. At
    most four takes, so at most five rows (a card holds at most 40 components in all)."""
    rows = []
    for number, take_id in takes:
        row: discord.ui.ActionRow = discord.ui.ActionRow()
        for action in TAKE_ACTIONS:
            if action == "extend" and not can_extend:
                continue
            button = _BY_ACTION[action]
            row.add_item(button(take_id, label=f"{button.label} {number}"))
        rows.append(row)
    rows.append(discord.ui.ActionRow(DeleteTakesButton(job_id)))
    return rows


def result_actions(*, can_extend: bool, finishes: Collection[str] = ()) -> tuple[str, ...]:
    """The buttons under one delivered clip, in order: Reroll, Edit, Extend (where its model
    can), Smooth and Upscale 2× (those in `finishes`: what ``JobService.finishes_offered``
    says for the clip), Info, Delete. Seven at most, cut into rows of five: what makes a new
    clip comes first, so Info and Delete are what moves to a second row."""
    actions: list[str] = ["reroll", "edit"]
    if can_extend:
        actions.append("extend")
    actions += [name for name in (SmoothButton.finish, UpscaleButton.finish) if name in finishes]
    return (*actions, "info", "delete")


def _nothing_to_cancel(status: JobStatus) -> str:
    """Why a Cancel did nothing, by what had already happened to the job."""
    if status is JobStatus.CANCELLED:
        return "This job was already cancelled (its credits were refunded once)."
    if status is JobStatus.FAILED:
        return "This job had already stopped (its credits were refunded)."
    return "This job had already finished, so there was nothing to cancel."


__all__ = ["BUTTONS", "action_rows", "result_actions", "take_rows"]
