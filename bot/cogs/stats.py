"""/stats for operators: the last 24 hours or 7 days as a chart, from the database."""

from __future__ import annotations

import asyncio
import io

import discord
from discord import app_commands
from discord.ext import commands

from bot.app import AnimateBot
from bot.charts import draw, summary
from bot.cogs.credits import operators_only

PERIODS = {"24h": ("Last 24 hours", 86_400.0), "7d": ("Last 7 days", 7 * 86_400.0)}


class Stats(commands.Cog):
    def __init__(self, bot: AnimateBot) -> None:
        self.bot = bot

    @app_commands.command(name="stats", description="Operators: jobs, render times and credits as a chart.")
    @app_commands.describe(period="how far back (default: the last 24 hours)")
    @app_commands.choices(
        period=[app_commands.Choice(name=label, value=key) for key, (label, _) in PERIODS.items()]
    )
    @app_commands.default_permissions()
    @operators_only("see the statistics")
    async def stats(self, interaction: discord.Interaction, period: str = "24h") -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        title, seconds = PERIODS[period]
        # Whole hours, so a bucket means the same hour from one /stats to the next.
        until = (self.bot.store.clock() // 3600 + 1) * 3600
        activity = await self.bot.store.activity(until - seconds, until)
        png = await asyncio.to_thread(draw, activity, f"{title} (UTC)")
        await interaction.followup.send(
            f"**{title}:** {summary(activity)}",
            file=discord.File(io.BytesIO(png), filename=f"stats-{period}.png"),
            ephemeral=True,
        )


async def setup(bot: AnimateBot) -> None:
    await bot.add_cog(Stats(bot))
