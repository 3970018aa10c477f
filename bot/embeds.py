"""How a job reads in words: its prompt, settings line, price, and every parameter (Info).

Shared by the job's card (``bot.card``), the library and the private replies, so a job reads
the same way wherever it is shown.
"""

from __future__ import annotations

import discord

from bot.formatting import credits
from bot.i18n import tr
from contract import CAMERA_LABELS, JobSpec, card_for
from jobs import Job

ACTION_TITLES = {
    "animate": "Animating your photo",
    "reroll": "Rerolling",
    "edit": "Animating an edit",
    "extend": "Extending the video",
    "finish": "Finishing the video",
}
PROMPT_LIMIT = 300


def prompt_text(spec: JobSpec) -> str:
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
           seed=seed if seed is not None else tr(locale, "random"))
        if not (clip and clip.steps)
        else tr(locale, "Model: {model} · seed {seed} · {steps} steps", model=f"`{job.model}`",
                seed=seed, steps=clip.steps),
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
