"""/queue for operators: what is rendering and waiting, and which workers serve it."""

from __future__ import annotations

import discord
from discord import app_commands
from discord.ext import commands

from bot.app import AnimateBot
from bot.cogs.credits import operators_only
from bot.formatting import when
from jobs import JobStatus

LIST_LIMIT = 15


class Queue(commands.Cog):
    def __init__(self, bot: AnimateBot) -> None:
        self.bot = bot

    @app_commands.command(name="queue", description="Operators: jobs rendering and waiting, and the workers.")
    @app_commands.default_permissions()
    @operators_only()
    async def queue(self, interaction: discord.Interaction) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        store = self.bot.store
        running = await store.jobs(statuses=(JobStatus.RUNNING,))
        order = await store.queue_order()
        waiting = {job.id: job for job in await store.jobs(statuses=(JobStatus.QUEUED,))}
        embed = discord.Embed(
            title="Queue",
            description=self.bot.jobs.dispatcher.describe_runtime(),
            colour=discord.Colour.blurple(),
        )
        embed.add_field(
            name=f"Rendering ({len(running)})",
            value="\n".join(
                f"Job {j.id} · <@{j.user_id}> · `{j.model}` · {j.worker or '?'} · started {when(j.started_at or j.created_at)}"
                for j in running[:LIST_LIMIT]
            ) or "nothing",
            inline=False,
        )
        embed.add_field(
            name=f"Waiting ({len(order)})",
            value="\n".join(
                f"#{i} job {job_id} · <@{waiting[job_id].user_id}> · `{waiting[job_id].model}` · queued {when(waiting[job_id].created_at)}"
                for i, job_id in enumerate(order[:LIST_LIMIT], 1)
                if job_id in waiting
            ) or "nothing",
            inline=False,
        )
        # Asked now, not as the workers said at start: downloads move, and fail.
        workers = await self.bot.jobs.dispatcher.refresh_workers()
        embed.add_field(
            name=f"Workers ({len(workers)})",
            value="\n".join(
                f"{w.name}: {', '.join(w.models)} on {w.label}"
                + (f" — cannot load {', '.join(w.errors)}" if w.errors else "")
                for w in workers
            ) or "none ready yet",
            inline=False,
        )
        downloads = [
            f"Downloading {model} for {w.name}: {int(fraction * 100)} %"
            for w in workers
            for model, fraction in w.downloads.items()
        ]
        if downloads:
            embed.add_field(
                name=f"Downloads ({len(downloads)})",
                value="\n".join(downloads[:LIST_LIMIT]),
                inline=False,
            )
        watch = self.bot.loop_watch
        embed.set_footer(
            text=f"Event loop: p99 lag {watch.percentile(0.99) * 1000:.0f} ms, "
            f"{watch.stalls} stall{'' if watch.stalls == 1 else 's'} over "
            f"{watch.threshold * 1000:.0f} ms since start"
        )
        await interaction.followup.send(embed=embed, ephemeral=True)


async def setup(bot: AnimateBot) -> None:
    await bot.add_cog(Queue(bot))
