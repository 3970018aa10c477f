"""Buttons that keep working after a restart: the job id lives in the custom_id.

A `DynamicItem` is rebuilt from the custom_id of whatever message was clicked, so buttons sent
a month ago still work after any number of restarts, with no view state kept in memory.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
import discord

ACTIONS: dict[str, tuple[str, str, discord.ButtonStyle]] = {
    # action: (label, emoji, style)
    "reroll": ("Reroll", "🎲", discord.ButtonStyle.primary),
    "edit": ("Edit", "✏️", discord.ButtonStyle.secondary),
    "extend": ("Extend", "⏩", discord.ButtonStyle.secondary),
    "info": ("Info", "ℹ️", discord.ButtonStyle.secondary),
    "delete": ("Delete", "🗑️", discord.ButtonStyle.danger),
    "cancel": ("Cancel", "✖️", discord.ButtonStyle.danger),
}
Handler = Callable[[discord.Interaction, str, int], Awaitable[None]]


class JobButton(
    discord.ui.DynamicItem[discord.ui.Button],
    template=r"animate:(?P<action>reroll|edit|extend|info|delete|cancel):(?P<job>[0-9]{1,20})",
):
    """One action on one job; the bot's `job_button_handler` does the work."""

    def __init__(self, action: str, job_id: int) -> None:
        label, emoji, style = ACTIONS[action]
        super().__init__(
            discord.ui.Button(
                label=label, emoji=emoji, style=style, custom_id=f"animate:{action}:{job_id}"
            )
        )
        self.action = action
        self.job_id = job_id

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Button, match: re.Match[str], /
    ) -> JobButton:
        return cls(match["action"], int(match["job"]))

    async def callback(self, interaction: discord.Interaction) -> None:
        handler: Handler | None = getattr(interaction.client, "job_button_handler", None)
        if handler is None:
            await interaction.response.send_message("This button isn't available right now.", ephemeral=True)
            return
        await handler(interaction, self.action, self.job_id)


def job_view(job_id: int, actions: tuple[str, ...]) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    for action in actions:
        view.add_item(JobButton(action, job_id))
    return view


def result_actions(*, can_extend: bool) -> tuple[str, ...]:
    actions: list[str] = ["reroll", "edit"]
    if can_extend:
        actions.append("extend")
    actions += ["info", "delete"]
    return tuple(actions)

