"""The embeds members see for a job: queued, rendering, finished, failed, and its details.

Kept apart from the delivery logic so every state of a job reads the same way wherever it is
shown (the original response, a channel fallback, a DM).
"""

from __future__ import annotations

from typing import Any

import discord

from bot.formatting import credits
from bot.progress import describe
from bot.store import Job
from contract import Progress

CAMERA_LABELS = {
    "static": "static",
    "zoom_in": "zoom in",
    "zoom_out": "zoom out",
    "pan_left": "pan left",
    "pan_right": "pan right",
    "tilt_up": "tilt up",
    "tilt_down": "tilt down",
    "orbit": "orbit",
}
ACTION_TITLES = {
    "animate": "Animating your photo",
    "reroll": "Rerolling",
    "edit": "Animating an edit",
    "extend": "Extending the video",
}
BLURPLE = discord.Colour.blurple()
GREEN = discord.Colour.green()
RED = discord.Colour.red()
PROMPT_LIMIT = 300


def _prompt(params: dict[str, Any]) -> str:
    prompt = (params.get("prompt") or "").strip()
    if not prompt:
        return "*no prompt*"
    return prompt if len(prompt) <= PROMPT_LIMIT else prompt[: PROMPT_LIMIT - 1] + "…"


def settings_line(job: Job) -> str:
    p = job.params
    parts = [f"`{job.model}`", f"{p.get('duration', 3):g} s"]
    parts.append(f"camera: {CAMERA_LABELS.get(p.get('camera', 'static'), p.get('camera'))}")
    parts.append(f"motion {p.get('motion', 5)}/10")
    if p.get("loop"):
        parts.append("loop")
    return " · ".join(parts)


def queued(job: Job, position: int | None, *, thumbnail: str | None = None) -> discord.Embed:
    embed = discord.Embed(
        title=ACTION_TITLES.get(job.action, "Animating"), description=_prompt(job.params), colour=BLURPLE
    )
    status = f"#{position} in the queue" if position else "starting…"
    embed.add_field(name="Status", value=status, inline=True)
    embed.add_field(name="Settings", value=settings_line(job), inline=False)
    if thumbnail:
        embed.set_thumbnail(url=f"attachment://{thumbnail}")
    embed.set_footer(text=f"Job {job.id} · {credits(job.cost)}")
    return embed


def progress(job: Job, event: Progress, eta: float | None, *, picture: str | None = None) -> discord.Embed:
    """`picture`: the file on the message to show: the photo's thumbnail (`photo-…`) while
    queued, the worker's preview frame (`preview-…`, as the big image) once it came."""
    embed = discord.Embed(
        title=ACTION_TITLES.get(job.action, "Animating"), description=_prompt(job.params), colour=BLURPLE
    )
    if event.stage == "queued":
        status = f"#{event.step} in the queue" if event.step else "starting…"
    else:
        status = describe(event, eta)
    embed.add_field(name="Status", value=status, inline=False)
    embed.add_field(name="Settings", value=settings_line(job), inline=False)
    if picture and picture.startswith("preview-"):
        embed.set_image(url=f"attachment://{picture}")
    elif picture:
        embed.set_thumbnail(url=f"attachment://{picture}")
    embed.set_footer(text=f"Job {job.id} · {credits(job.cost)}")
    return embed


def finished(job: Job, *, seconds: float | None) -> discord.Embed:
    result = job.result or {}
    embed = discord.Embed(title="Your video is ready", description=_prompt(job.params), colour=GREEN)
    embed.add_field(name="Model", value=f"`{result.get('model', job.model)}`", inline=True)
    embed.add_field(name="Seed", value=str(result.get("seed", job.params.get("seed", "?"))), inline=True)
    frames, fps = result.get("frames"), result.get("fps")
    if frames and fps:
        embed.add_field(name="Length", value=f"{frames / fps:.1f} s · {fps:g} fps", inline=True)
    if seconds is not None:
        embed.add_field(name="Took", value=f"{seconds:.0f} s", inline=True)
    embed.add_field(name="Cost", value=credits(job.cost), inline=True)
    if job.params.get("negative_prompt"):
        embed.add_field(name="Avoid", value=job.params["negative_prompt"][:PROMPT_LIMIT], inline=False)
    warnings = result.get("warnings") or []
    if warnings:
        embed.add_field(name="Note", value="\n".join(warnings)[:1000], inline=False)
    embed.set_footer(text=f"Job {job.id} · {settings_line(job).replace('`', '')}")
    return embed


def moved(job: Job, where: dict[str, Any]) -> discord.Embed:
    """What the old progress message says once the clip went to a new message."""
    if where.get("delivered_via") == "dm":
        text = "Your video is ready; I sent it to you in a direct message."
    elif where.get("result_url"):
        text = f"Your video is ready: [see it here]({where['result_url']})."
    else:
        text = "Your video is ready; it is in a new message below."
    embed = discord.Embed(title="Your video is ready", description=text, colour=GREEN)
    embed.add_field(name="Settings", value=settings_line(job), inline=False)
    embed.set_footer(text=f"Job {job.id} · {credits(job.cost)}")
    return embed


def failed(job: Job, reason: str) -> discord.Embed:
    embed = discord.Embed(title="This video couldn't be made", description=reason[:4000], colour=RED)
    embed.add_field(name="Prompt", value=_prompt(job.params), inline=False)
    embed.set_footer(text=f"Job {job.id}")
    return embed


def info(job: Job) -> str:
    """Every parameter of a job, for the Info button (ephemeral)."""
    p = job.params
    lines = [
        f"**Job {job.id}** ({job.action}, {job.status})",
        f"Prompt: {p.get('prompt') or '—'}",
        f"Avoid: {p.get('negative_prompt') or '—'}",
        f"Model: `{job.model}` · seed {(job.result or {}).get('seed', p.get('seed', 'random'))}",
        f"Camera: {CAMERA_LABELS.get(p.get('camera', 'static'))} · motion {p.get('motion', 5)}/10 · "
        f"{p.get('duration', 3):g} s" + (" · loop" if p.get("loop") else ""),
    ]
    result = job.result or {}
    if result.get("width"):
        lines.append(
            f"Output: {result['width']}×{result['height']}, {result['frames']} frames at {result['fps']:g} fps"
        )
    if job.parent_id:
        lines.append(f"Made from job {job.parent_id}")
    lines.append(f"Cost: {credits(job.cost)}")
    return "\n".join(lines)[:2000]
