"""/history: the member's library of kept clips, privately, newest first, four to a page.

From an entry: post it again, the same settings on a new photo, favourite, delete (see
bot/library.py for the page and its buttons). Works wherever the member is (a DM, and where
only the member installed the app); like /balance it shows the member's own things, so it is
not limited to where videos are made.
"""

from __future__ import annotations

import discord
from discord import app_commands
from discord.ext import commands

from bot.app import AnimateBot
from bot.installs import anywhere
from bot.library import LIBRARY_BUTTONS, Shelf, render


class History(commands.Cog):
    def __init__(self, bot: AnimateBot) -> None:
        self.bot = bot

    async def cog_unload(self) -> None:
        self.bot.remove_dynamic_items(*LIBRARY_BUTTONS)

    @app_commands.command(
        name="history", description="Your recent videos: post one again, reuse its settings, keep or delete it."
    )
    @anywhere
    @app_commands.describe(favourites="only the videos you marked as favourites")
    async def history(self, interaction: discord.Interaction, favourites: bool = False) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        page = await render(
            self.bot, interaction.user.id, Shelf(favourites=favourites), locale=interaction.locale
        )
        extra = {"view": page.view} if page.view is not None else {}
        await interaction.followup.send(
            content=page.content, embeds=page.embeds, files=page.files, ephemeral=True, **extra
        )


async def setup(bot: AnimateBot) -> None:
    bot.add_dynamic_items(*LIBRARY_BUTTONS)
    await bot.add_cog(History(bot))
