"""/mod block|unblock|list: bot operators keep members from making videos, without a restart.

Blocks live in the database (they hold across restarts, buttons and forms included), and
each one is logged with the operator who made it.
"""

from __future__ import annotations

import discord
from discord import app_commands
from discord.ext import commands

from bot.app import AnimateBot
from bot.cogs.credits import operators_only
from bot.formatting import when

LIST_LIMIT = 25


@app_commands.default_permissions()  # hidden from members by default; still checked in code
class Mod(commands.GroupCog, group_name="mod", group_description="Operators: block and unblock members."):
    def __init__(self, bot: AnimateBot) -> None:
        self.bot = bot
        super().__init__()

    @app_commands.command(name="block", description="Stop a member from making videos.")
    @app_commands.describe(user="who", reason="told to them, and kept in the log")
    @operators_only("block or unblock members")
    async def block(
        self, interaction: discord.Interaction, user: discord.User, reason: app_commands.Range[str, 0, 200] = ""
    ) -> None:
        await interaction.response.defer(ephemeral=True)
        new = await self.bot.store.block(user.id, operator_id=interaction.user.id, reason=reason.strip())
        text = f"Blocked {user.mention}." if new else f"{user.mention} was already blocked."
        await interaction.followup.send(text, ephemeral=True)

    @app_commands.command(name="unblock", description="Let a blocked member make videos again.")
    @app_commands.describe(user="who")
    @operators_only("block or unblock members")
    async def unblock(self, interaction: discord.Interaction, user: discord.User) -> None:
        await interaction.response.defer(ephemeral=True)
        lifted = await self.bot.store.unblock(user.id, operator_id=interaction.user.id)
        text = f"Unblocked {user.mention}." if lifted else f"{user.mention} was not blocked."
        await interaction.followup.send(text, ephemeral=True)

    @app_commands.command(name="list", description="Members who are blocked.")
    @operators_only("block or unblock members")
    async def list_blocks(self, interaction: discord.Interaction) -> None:
        await interaction.response.defer(ephemeral=True)
        blocks = await self.bot.store.blocks()
        lines = [
            f"<@{b.user_id}> · by <@{b.operator_id}> {when(b.created_at)}" + (f" · {b.reason}" if b.reason else "")
            for b in blocks[:LIST_LIMIT]
        ]
        if len(blocks) > LIST_LIMIT:
            lines.append(f"… and {len(blocks) - LIST_LIMIT} more")
        await interaction.followup.send("\n".join(lines) or "Nobody is blocked.", ephemeral=True)


async def setup(bot: AnimateBot) -> None:
    await bot.add_cog(Mod(bot))
