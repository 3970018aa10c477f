"""Every refusal and failure turned into the member's sentence, in one place.

Commands reach :func:`answer_error` through the tree's error handler, buttons and modals
through their callbacks. A refusal says why and, where it can, what to do; anything
unexpected is logged and the member hears that nothing was charged.
"""

from __future__ import annotations

import logging

import discord
from discord import app_commands

from bot.formatting import credits, when
from bot.i18n import tr
from contract import InputError
from jobs import (
    CannotFinish,
    DailyLimit,
    InsufficientCredits,
    QueueFull,
    Refused,
    TooManyQueued,
    UnknownJob,
    is_storage_fault,
)

log = logging.getLogger("bot")

SOMETHING_WENT_WRONG = "Something went wrong on our side; nothing was charged. Please try again."
STORAGE_UNAVAILABLE = (
    "The bot cannot save anything right now (its storage is unavailable); nothing was "
    "charged. Please try again in a few minutes."
)


class Refusal(Exception):
    """A bot-side refusal (place, blocked words, a bad attachment): its text is the sentence."""


def sentence(error: BaseException, locale: discord.Locale | None = None) -> str | None:
    """The member's sentence for a refusal (in `locale` where it has a translation); None
    for an unexpected error."""
    nothing = tr(locale, "Nothing was charged.")
    if isinstance(error, InsufficientCredits):
        text = tr(
            locale, "This video costs {cost} and you have {balance}.",
            cost=credits(error.cost, bold=True, locale=locale), balance=f"**{error.balance}**",
        )
        if error.next_refill_at is not None:
            text += " " + tr(locale, "Your next free credits arrive {when}.", when=when(error.next_refill_at))
        return f"{text} {nothing}"
    if isinstance(error, DailyLimit):
        later = tr(locale, "You can start the next one {when}.", when=when(error.next_at))
        return f"{error} {later} {nothing}"
    if isinstance(error, (TooManyQueued, QueueFull)):
        return f"{error} {nothing}"
    if isinstance(error, InputError):
        return f"{error.message} {nothing}"
    if isinstance(error, UnknownJob):
        return tr(locale, "That video no longer exists.")
    if isinstance(error, CannotFinish):
        return f"{_cannot_finish(error, locale)} {nothing}"
    if isinstance(error, (Refused, Refusal, app_commands.CheckFailure)):
        return str(error) or "You can't use this here."
    return None


def _cannot_finish(error: CannotFinish, locale: discord.Locale | None) -> str:
    """Why Smooth or Upscale 2× cannot finish this clip (jobs.CannotFinish)."""
    smooth = error.finish == "smooth"
    if error.why == "at_most" and smooth:
        return tr(
            locale, "This video already plays at {fps} fps, as smooth as Smooth makes it.",
            fps=f"{error.fps:g}",
        )
    if error.why == "at_most":
        return tr(
            locale, "This video is already {size}; twice that would pass {most} pixels, the most here.",
            size=f"{error.width}×{error.height}", most=error.most,
        )
    if error.why == "gone":
        if smooth:
            return tr(locale, "This video is no longer kept by the bot, so it can't be smoothed.")
        return tr(locale, "This video is no longer kept by the bot, so it can't be upscaled.")
    if smooth:
        return tr(locale, "This video isn't finished yet, so it can't be smoothed.")
    return tr(locale, "This video isn't finished yet, so it can't be upscaled.")


async def answer(interaction: discord.Interaction, text: str) -> None:
    """Answer privately, whichever way the interaction is still open: the first response, the
    deferred "thinking" message, or a new ephemeral follow-up."""
    response = interaction.response
    try:
        if not response.is_done():
            await response.send_message(text, ephemeral=True)
        elif response.type is discord.InteractionResponseType.deferred_channel_message:
            await interaction.edit_original_response(content=text)
        else:
            await interaction.followup.send(text, ephemeral=True)
    except discord.HTTPException:
        log.warning("could not deliver an answer for interaction %s", interaction.id)


async def answer_error(interaction: discord.Interaction, error: BaseException) -> None:
    original = getattr(error, "original", error)
    locale = interaction.locale
    text = sentence(original, locale)
    if text is None and is_storage_fault(original):
        log.warning("interaction %s refused: storage unavailable (%s)", interaction.id, original)
        text = tr(locale, STORAGE_UNAVAILABLE)
    if text is None:
        where = interaction.command.qualified_name if interaction.command else interaction.data
        log.error("interaction %s (%s) failed", interaction.id, where, exc_info=original)
        text = tr(locale, SOMETHING_WENT_WRONG)
    await answer(interaction, text)
