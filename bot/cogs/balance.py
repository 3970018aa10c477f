"""/balance: a member's credits, prices, their jobs in the queue and recent ledger entries."""

from __future__ import annotations

import discord
from discord import app_commands
from discord.ext import commands

from bot.app import AnimateBot
from bot.catalog import format_prices, price_list
from bot.formatting import credits, when
from bot.i18n import tr
from bot.installs import anywhere
from jobs import JobStatus

KIND_LABELS = {
    "welcome": "welcome grant",
    "grant": "added by an operator",
    "take": "removed by an operator",
    "debit": "video",
    "refund": "refund",
    "refill": "free refill",
}


class Balance(commands.Cog):
    def __init__(self, bot: AnimateBot) -> None:
        self.bot = bot

    @app_commands.command(name="balance", description="Show your credits, prices and your videos in the queue.")
    @anywhere
    async def balance(self, interaction: discord.Interaction) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        store = self.bot.store
        user_id = interaction.user.id
        account = await store.account(user_id)
        locale = interaction.locale
        embed = discord.Embed(title=tr(locale, "Your credits"), colour=discord.Colour.blurple())
        embed.add_field(
            name=tr(locale, "Balance"), value=credits(account.balance, bold=True, locale=locale),
            inline=True,
        )
        if account.next_refill_at is not None:
            embed.add_field(
                name=tr(locale, "Next free refill"),
                value=f"+{self.bot.settings.refill_amount} {when(account.next_refill_at)}",
                inline=True,
            )
        embed.add_field(
            name=tr(locale, "Prices (credits per clip)"),
            value=format_prices(price_list(self.bot.settings.pricing(), self.bot.jobs.models(), self.bot.jobs.card)) or "—",
            inline=False,
        )
        jobs = await store.jobs(user_id=user_id)
        if jobs:
            order = await store.queue_order()
            lines = []
            for job in jobs:
                if job.status is JobStatus.RUNNING:
                    where = tr(locale, "rendering")
                elif job.id in order:
                    where = tr(locale, "#{place} in the queue", place=order.index(job.id) + 1)
                else:
                    where = job.status
                lines.append(tr(locale, "Job {job} ({model}): {where}", job=job.id, model=job.model, where=where))
            embed.add_field(
                name=tr(locale, "Your videos in progress"), value="\n".join(lines), inline=False
            )
        history = await store.history(user_id, limit=5)
        if history:
            embed.add_field(
                name=tr(locale, "Recent activity"),
                value="\n".join(
                    f"{entry.delta:+d} {tr(locale, KIND_LABELS.get(entry.kind, entry.kind))}"
                    + (" " + tr(locale, "(job {job})", job=entry.job_id) if entry.job_id else "")
                    + f" {when(entry.created_at)}"
                    for entry in history
                ),
                inline=False,
            )
        await interaction.followup.send(embed=embed, ephemeral=True)


async def setup(bot: AnimateBot) -> None:
    await bot.add_cog(Balance(bot))
