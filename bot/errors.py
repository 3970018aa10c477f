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
from contract import InputError
from jobs import (
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


def sentence(error: BaseException) -> str | None:
    """The member's sentence for a refusal; None for an unexpected error."""
    if isinstance(error, InsufficientCredits):
        text = (
            f"This video costs {credits(error.cost, bold=True)} and you have **{error.balance}**."
        )
        if error.next_refill_at is not None:
            text += f" Your next free credits arrive {when(error.next_refill_at)}."
        return text + " Nothing was charged."
    if isinstance(error, DailyLimit):
        return f"{error} You can start the next one {when(error.next_at)}. Nothing was charged."
    if isinstance(error, (TooManyQueued, QueueFull)):
        return f"{error} Nothing was charged."
    if isinstance(error, InputError):
        return f"{error.message} Nothing was charged."
    if isinstance(error, UnknownJob):
        return "That video no longer exists."
    if isinstance(error, (Refused, Refusal, app_commands.CheckFailure)):
        return str(error) or "You can't use this here."
    return None


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
    text = sentence(original)
    if text is None and is_storage_fault(original):
        log.warning("interaction %s refused: storage unavailable (%s)", interaction.id, original)
        text = STORAGE_UNAVAILABLE
    if text is None:
        where = interaction.command.qualified_name if interaction.command else interaction.data
        log.error("interaction %s (%s) failed", interaction.id, where, exc_info=original)
        text = SOMETHING_WENT_WRONG
    await answer(interaction, text)
