"""The embeds members see for a job: queued, rendering, finished, failed, and its details.

Kept apart from the delivery logic so every state of a job reads the same way wherever it is
shown (the original response, a channel fallback, a DM).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import discord

from bot.formatting import credits
from bot.i18n import tr
from bot.progress_bar import describe
from contract import CAMERA_LABELS, JobSpec, Progress, card_for
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
    if spec.variations > 1:
        parts.append(f"{spec.variations} takes")
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
    embed.set_footer(text=f"Job {job.id} · {price(job)}")
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
    embed.set_footer(text=f"Job {job.id} · {price(job)}")
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
    embed.add_field(name="Cost", value=price(job), inline=True)
    if job.spec.negative_prompt:
        embed.add_field(name="Avoid", value=job.spec.negative_prompt[:PROMPT_LIMIT], inline=False)
    if clip and clip.warnings:
        embed.add_field(name="Note", value="\n".join(clip.warnings)[:1000], inline=False)
    embed.set_footer(text=f"Job {job.id} · {settings_line(job).replace('`', '')}")
    return embed


def price(job: Job, locale: discord.Locale | None = None, *, bold: bool = False) -> str:
    """What the job cost, per take when it has variations ("2 takes × 3 credits = 6 credits")."""
    takes = job.spec.variations
    total = credits(job.cost, bold=bold, locale=locale)
    if takes > 1 and job.action != "take":
        each = credits(job.cost // takes, locale=locale)
        return tr(locale, "{takes} takes × {each} = {total}", takes=takes, each=each, total=total)
    return total


def refunded_takes(job: Job) -> int:
    """Credits given back for the takes of `job` that failed (the ledger's one refund row)."""
    failed = len(job.clip.failed_takes) if job.clip else 0
    takes = max(1, job.spec.variations)
    return job.cost * min(failed, takes) // takes


def finished_takes(job: Job, takes: list[Job]) -> discord.Embed:
    """A job with variations: its takes in one message, each with its seed; what failed
    and was refunded."""
    embed = discord.Embed(
        title=f"Your {len(takes)} takes are ready" if len(takes) > 1 else "Your take is ready",
        description=_prompt(job.spec), colour=GREEN,
    )
    for take in takes:
        clip = take.clip
        number = clip.take if clip and clip.take else takes.index(take) + 1
        seed = clip.seed if clip else take.spec.seed
        value = f"seed {seed}"
        if clip and clip.frames and clip.fps:
            value += f" · {clip.duration:.1f} s"
        embed.add_field(name=f"Take {number}", value=value, inline=True)
    if (seconds := job.seconds_to_make) is not None:
        embed.add_field(name="Took", value=f"{seconds:.0f} s", inline=True)
    embed.add_field(name="Cost", value=price(job), inline=True)
    if job.clip and job.clip.failed_takes:
        back = refunded_takes(job)
        lines = "\n".join(job.clip.failed_takes) + f"\n{credits(back)} refunded for {'it' if len(job.clip.failed_takes) == 1 else 'them'}."
        embed.add_field(name="Failed", value=lines[:1000], inline=False)
    warnings = list(dict.fromkeys(w for take in takes if take.clip for w in take.clip.warnings))
    if warnings:
        embed.add_field(name="Note", value="\n".join(warnings)[:1000], inline=False)
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


def info(job: Job, locale: discord.Locale | None = None) -> str:
    """Every parameter of a job, for the Info button (ephemeral), in the asker's language."""
    spec, clip = job.spec, job.clip
    seed = clip.seed if clip else spec.seed
    camera = tr(
        locale, "Camera: {camera} · motion {motion}/10 · {seconds} s",
        camera=tr(locale, CAMERA_LABELS[spec.camera]), motion=spec.motion, seconds=f"{spec.duration:g}",
    )
    lines = [
        f"**{tr(locale, 'Job {job}', job=job.id)}** ({job.action}, {job.status})",
        tr(locale, "Prompt: {text}", text=spec.prompt or "—"),
        tr(locale, "Avoid: {text}", text=spec.negative_prompt or "—"),
        tr(locale, "Model: {model} · seed {seed}", model=f"`{job.model}`",
           seed=seed if seed is not None else tr(locale, "random")),
        camera + (" · " + tr(locale, "loop") if spec.loop else ""),
    ]
    if spec.effect:
        lines.append(tr(locale, "Effect: {effect}", effect=spec.effect))
    if spec.finishes:
        done = []
        if spec.upscale > 1:
            done.append(tr(locale, "upscaled 2×"))
        if spec.interpolate > 1:
            done.append(tr(locale, "twice the frames"))
        elif spec.fps_out:
            done.append(tr(locale, "smoothed to {fps} fps", fps=spec.fps_out))
        lines.append(tr(locale, "Finishing: {what}", what=", ".join(done)))
    if clip and clip.prompt and clip.prompt != spec.prompt.strip():
        lines.append(tr(locale, "The model read: {prompt}", prompt=clip.prompt))
    if clip:
        lines.append(tr(
            locale, "Output: {width}×{height}, {frames} frames at {fps} fps",
            width=clip.width, height=clip.height, frames=clip.frames, fps=f"{clip.fps:g}",
        ))
        if clip.loop in LOOP_METHODS:
            lines.append(tr(locale, "Loop: {how}", how=tr(locale, LOOP_METHODS[clip.loop])))
        if clip.audio:
            lines.append(tr(locale, "Sound: made by the model with the picture (AAC)"))
        elif not spec.audio and card_for(job.model).supports_audio:
            lines.append(tr(locale, "Sound: off (asked for a silent clip)"))
    if clip and clip.take:
        lines.append(tr(
            locale, "Take {take} of {takes}: seed {seed} (the same seed and settings make it again)",
            take=clip.take, takes=clip.takes, seed=clip.seed,
        ))
    if job.action == "take":
        lines.append(tr(locale, "Charged with job {job}", job=job.parent_id))
    elif job.parent_id:
        lines.append(tr(locale, "Made from job {job}", job=job.parent_id))
    cost = tr(locale, "Cost: {cost}", cost=price(job, locale))
    if back := refunded_takes(job):
        cost += " " + tr(locale, "({credits} refunded for failed takes)", credits=credits(back, locale=locale))
    lines.append(cost)
    return "\n".join(lines)[:2000]
