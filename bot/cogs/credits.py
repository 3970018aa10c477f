"""/credits grant|take|history: bot operators adjust and audit members' credits.

Checked in code against the operator list, never Discord permissions: a guild administrator
runs one guild, while credits are global to the bot.
"""

from __future__ import annotations

import discord
from discord import app_commands
from discord.ext import commands

from bot.app import AnimateBot
from bot.formatting import credits, when


class NotOperator(app_commands.CheckFailure):
    def __init__(self, action: str) -> None:
        super().__init__(f"Only the bot's operators can {action}.")


def operators_only(action: str = "change credits"):
    async def predicate(interaction: discord.Interaction) -> bool:
        bot = interaction.client
        assert isinstance(bot, AnimateBot)
        if not await bot.is_operator(interaction.user):
            raise NotOperator(action)
        return True

    return app_commands.check(predicate)


@app_commands.default_permissions()  # hidden from members by default; still checked in code
class Credits(commands.GroupCog, group_name="credits", group_description="Operators: manage members' credits."):
    def __init__(self, bot: AnimateBot) -> None:
        self.bot = bot
        super().__init__()

    @app_commands.command(name="grant", description="Add credits to a member.")
    @app_commands.describe(user="who gets the credits", amount="how many", reason="shown in the ledger")
    @operators_only()
    async def grant(
        self,
        interaction: discord.Interaction,
        user: discord.User,
        amount: app_commands.Range[int, 1, 1_000_000],
        reason: str = "",
    ) -> None:
        await interaction.response.defer(ephemeral=True)
        balance = await self.bot.store.grant(
            user.id, amount, operator_id=interaction.user.id, reason=reason
        )
        await interaction.followup.send(
            f"Added {credits(amount)} to {user.mention}; they now have {balance}.", ephemeral=True
        )

    @app_commands.command(name="take", description="Remove credits from a member.")
    @app_commands.describe(user="whose credits", amount="how many", reason="shown in the ledger")
    @operators_only()
    async def take(
        self,
        interaction: discord.Interaction,
        user: discord.User,
        amount: app_commands.Range[int, 1, 1_000_000],
        reason: str = "",
    ) -> None:
        await interaction.response.defer(ephemeral=True)
        balance = await self.bot.store.take(  # InvalidAmount: bot.errors tells the operator
            user.id, amount, operator_id=interaction.user.id, reason=reason
        )
        await interaction.followup.send(
            f"Removed {credits(amount)} from {user.mention}; they now have {balance}.", ephemeral=True
        )

    @app_commands.command(name="history", description="A member's recent credit history.")
    @operators_only()
    async def history(self, interaction: discord.Interaction, user: discord.User) -> None:
        await interaction.response.defer(ephemeral=True)
        account = await self.bot.store.account(user.id)
        entries = await self.bot.store.history(user.id, limit=20)
        lines = [
            f"`{entry.delta:+d}` {entry.kind}"
            + (f" job {entry.job_id}" if entry.job_id else "")
            + (f" by <@{entry.operator_id}>" if entry.operator_id else "")
            + (f" — {entry.reason}" if entry.reason and entry.kind in ("grant", "take") else "")
            + f" {when(entry.created_at)}"
            for entry in entries
        ]
        embed = discord.Embed(
            title=f"Credits of {user}", description="\n".join(lines)[:4000] or "No activity yet."
        )
        embed.add_field(name="Balance", value=str(account.balance))
        await interaction.followup.send(embed=embed, ephemeral=True)


async def setup(bot: AnimateBot) -> None:
    await bot.add_cog(Credits(bot))
