"""The embeds members see for a job: queued, rendering, finished, failed, and its details.

Kept apart from the delivery logic so every state of a job reads the same way wherever it is
shown (the original response, a channel fallback, a DM).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import discord

from bot.formatting import credits
from bot.progress_bar import describe
from contract import CAMERA_LABELS, JobSpec, Progress
from jobs import Job

if TYPE_CHECKING:
    from bot.delivery.routes import Posted

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


def _prompt(spec: JobSpec) -> str:
    prompt = spec.prompt.strip()
    if not prompt:
        return "*no prompt*"
    return prompt if len(prompt) <= PROMPT_LIMIT else prompt[: PROMPT_LIMIT - 1] + "…"


def settings_line(job: Job) -> str:
    spec = job.spec
    parts = [f"`{job.model}`", f"{spec.duration:g} s"]
    parts.append(f"camera: {CAMERA_LABELS[spec.camera]}")
    parts.append(f"motion {spec.motion}/10")
    if spec.effect:
        parts.append(f"effect: {spec.effect}")
    if spec.loop:
        parts.append("loop")
    return " · ".join(parts)


def queued(job: Job, position: int | None, *, thumbnail: str | None = None) -> discord.Embed:
    embed = discord.Embed(
        title=ACTION_TITLES.get(job.action, "Animating"), description=_prompt(job.spec), colour=BLURPLE
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
        title=ACTION_TITLES.get(job.action, "Animating"), description=_prompt(job.spec), colour=BLURPLE
    )
    if event.stage == "queued":
        status = event.message or (f"#{event.step} in the queue" if event.step else "starting…")
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


def finished(job: Job) -> discord.Embed:
    clip = job.clip
    embed = discord.Embed(title="Your video is ready", description=_prompt(job.spec), colour=GREEN)
    embed.add_field(name="Model", value=f"`{clip.model if clip else job.model}`", inline=True)
    seed = clip.seed if clip else job.spec.seed
    embed.add_field(name="Seed", value=str(seed if seed is not None else "?"), inline=True)
    if clip and clip.frames and clip.fps:
        embed.add_field(name="Length", value=f"{clip.duration:.1f} s · {clip.fps:g} fps", inline=True)
    if (seconds := job.seconds_to_make) is not None:
        embed.add_field(name="Took", value=f"{seconds:.0f} s", inline=True)
    embed.add_field(name="Cost", value=credits(job.cost), inline=True)
    if job.spec.negative_prompt:
        embed.add_field(name="Avoid", value=job.spec.negative_prompt[:PROMPT_LIMIT], inline=False)
    if clip and clip.warnings:
        embed.add_field(name="Note", value="\n".join(clip.warnings)[:1000], inline=False)
    embed.set_footer(text=f"Job {job.id} · {settings_line(job).replace('`', '')}")
    return embed


def moved(job: Job, posted: Posted) -> discord.Embed:
    """What the old progress message says once the clip went to a new message."""
    if posted.via == "dm":
        text = "Your video is ready; I sent it to you in a direct message."
    elif posted.url:
        text = f"Your video is ready: [see it here]({posted.url})."
    else:
        text = "Your video is ready; it is in a new message below."
    embed = discord.Embed(title="Your video is ready", description=text, colour=GREEN)
    embed.add_field(name="Settings", value=settings_line(job), inline=False)
    embed.set_footer(text=f"Job {job.id} · {credits(job.cost)}")
    return embed


def failed(job: Job, reason: str) -> discord.Embed:
    embed = discord.Embed(title="This video couldn't be made", description=reason[:4000], colour=RED)
    embed.add_field(name="Prompt", value=_prompt(job.spec), inline=False)
    embed.set_footer(text=f"Job {job.id}")
    return embed


LOOP_METHODS = {
    "end frame": "seamless, the model ends on the first frame",
    "crossfade": "seamless, the last half second dissolves into the start",
}
"""How a clip loops (pipeline.loops), as Info says it."""


def info(job: Job) -> str:
    """Every parameter of a job, for the Info button (ephemeral)."""
    spec, clip = job.spec, job.clip
    seed = clip.seed if clip else spec.seed
    lines = [
        f"**Job {job.id}** ({job.action}, {job.status})",
        f"Prompt: {spec.prompt or '—'}",
        f"Avoid: {spec.negative_prompt or '—'}",
        f"Model: `{job.model}` · seed {seed if seed is not None else 'random'}",
        f"Camera: {CAMERA_LABELS[spec.camera]} · motion {spec.motion}/10 · "
        f"{spec.duration:g} s" + (" · loop" if spec.loop else ""),
    ]
    if spec.effect:
        lines.append(f"Effect: {spec.effect}")
    if clip and clip.prompt and clip.prompt != spec.prompt.strip():
        lines.append(f"The model read: {clip.prompt}")
    if clip:
        lines.append(f"Output: {clip.width}×{clip.height}, {clip.frames} frames at {clip.fps:g} fps")
        if clip.loop in LOOP_METHODS:
            lines.append(f"Loop: {LOOP_METHODS[clip.loop]}")
    if job.parent_id:
        lines.append(f"Made from job {job.parent_id}")
    lines.append(f"Cost: {credits(job.cost)}")
    return "\n".join(lines)[:2000]
