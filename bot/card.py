"""A job's one message, as a Components V2 card: queued, rendering, done (the MP4 playing
inside it), failed, or pointing at where the clip went.

Discord draws a V2 message from its components alone: no `content`, no embeds, and an
attachment shows only where a Thumbnail, MediaGallery or File names it (``attachment://``).
A message sent with the V2 flag keeps it for good, so every state of the job's message is a
card built here, and the edits that move it along replace the whole layout. Its text stays
far under Discord's 4000 characters: the prompt and negative prompt are cut to 300, notes to
1000 and a failure's reason to 2000 (the loopback Discord checks the limit in every test).

The card is public (the channel sees it) and stays in English, like the embeds it replaced;
the private replies follow the member's language (``bot.i18n``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import discord
from discord import ui

from bot.embeds import ACTION_TITLES, price, prompt_text, refunded_takes, settings_line
from bot.formatting import credits
from bot.progress_bar import describe
from contract import Progress
from jobs import Job

if TYPE_CHECKING:
    from bot.delivery.routes import Posted

BLURPLE = discord.Colour.blurple()
GREEN = discord.Colour.green()
RED = discord.Colour.red()

Rows = Sequence[ui.ActionRow]


class Card(ui.LayoutView):
    """One state of a job's message. `lead`: a line above the card (the member's mention,
    which notifies them when the message is new; an edit never does)."""

    def __init__(
        self,
        *,
        accent: discord.Colour,
        heading: str,
        body: Sequence[str] = (),
        picture: str | None = None,
        gallery: Sequence[discord.MediaGalleryItem] = (),
        footer: str = "",
        rows: Rows = (),
        lead: str | None = None,
    ) -> None:
        super().__init__(timeout=None)
        if lead:
            self.add_item(ui.TextDisplay(lead))
        top = f"### {heading}"
        if picture is not None and picture.startswith("photo-"):
            # The member's photo beside the prompt while it waits; later the preview or the
            # clip itself takes the big place below.
            head: ui.Item[Card] = ui.Section(
                ui.TextDisplay(top), accessory=ui.Thumbnail(f"attachment://{picture}")
            )
        else:
            head = ui.TextDisplay(top)
        container: ui.Container[Card] = ui.Container(head, accent_colour=accent)
        for text in body:
            if text:
                container.add_item(ui.TextDisplay(text))
        if picture is not None and picture.startswith("preview-"):
            gallery = [discord.MediaGalleryItem(f"attachment://{picture}"), *gallery]
        if gallery:
            container.add_item(ui.MediaGallery(*gallery))
        if footer:
            container.add_item(ui.Separator(visible=False))
            container.add_item(ui.TextDisplay(f"-# {footer}"))
        for row in rows:
            container.add_item(row)
        self.add_item(container)


def mention(job: Job) -> str:
    """The line above a card that names the member (it notifies them on a new message)."""
    return f"<@{job.user_id}>"


def _footer(job: Job) -> str:
    return f"Job {job.id} · {price(job)}"


def _details(job: Job) -> str:
    return f"-# {settings_line(job)}"


def queued(
    job: Job, position: int | None, *, picture: str | None, rows: Rows, lead: str | None,
    balance: int | None = None,
) -> Card:
    """The job's card as it is posted. `balance`: shown only where the member alone sees
    the card (a private result); a public card never shows what someone has left."""
    status = f"#{position} in the queue" if position else "starting…"
    footer = _footer(job)
    if balance is not None:
        footer += f" · {credits(balance)} left"
    return Card(
        accent=BLURPLE, heading=ACTION_TITLES.get(job.action, "Animating"),
        body=[prompt_text(job.spec), _details(job), f"**{status}**"],
        picture=picture, footer=footer, rows=rows, lead=lead,
    )


def progress(
    job: Job, event: Progress | None, eta: float | None, *, picture: str | None, rows: Rows,
    lead: str | None, notice: str | None = None,
) -> Card:
    """While it waits and renders: the bar, the step and the time left; the worker's first
    preview frame once it came (`picture` ``preview-…``), the photo's thumbnail before."""
    if event is None or event.stage == "queued":
        status = (event.message if event else "") or (
            f"#{event.step} in the queue" if event and event.step else "starting…"
        )
        status = f"**{status}**"
    else:
        status = describe(event, eta)
    return Card(
        accent=BLURPLE, heading=ACTION_TITLES.get(job.action, "Animating"),
        body=[prompt_text(job.spec), _details(job), status, f"⏳ {notice}" if notice else ""],
        picture=picture, footer=_footer(job), rows=rows, lead=lead,
    )


def finished(job: Job, video: str, *, rows: Rows, lead: str | None, title: str = "Your video is ready") -> Card:
    """Done: the MP4 plays inside the card, with what made it and the buttons."""
    clip = job.clip
    seed = clip.seed if clip else job.spec.seed
    facts = [f"`{clip.model if clip else job.model}`", f"seed {seed if seed is not None else '?'}"]
    if clip and clip.frames and clip.fps:
        facts.append(f"{clip.duration:.1f} s · {clip.fps:g} fps")
    if (seconds := job.seconds_to_make) is not None:
        facts.append(f"took {seconds:.0f} s")
    body = [prompt_text(job.spec), " · ".join(facts)]
    if job.spec.negative_prompt:
        body.append(f"Avoid: {job.spec.negative_prompt[:300]}")
    if clip and clip.warnings:
        body.append("\n".join(f"⚠️ {w}" for w in clip.warnings)[:1000])
    return Card(
        accent=GREEN, heading=title, body=body,
        gallery=[discord.MediaGalleryItem(f"attachment://{video}")],
        footer=f"Job {job.id} · {price(job)} · {settings_line(job).replace('`', '')}",
        rows=rows, lead=lead,
    )


def finished_takes(
    job: Job, takes: Sequence[tuple[Job, str]], *, rows: Rows, lead: str | None
) -> Card:
    """A job with variations: every take in one gallery (each captioned with its number and
    seed), one row of buttons per take; which takes failed and what came back."""
    items = []
    for n, (take, video) in enumerate(takes, 1):
        clip = take.clip
        number = clip.take if clip and clip.take else n
        seed = clip.seed if clip else take.spec.seed
        items.append(discord.MediaGalleryItem(f"attachment://{video}", description=f"Take {number} · seed {seed}"))
    heading = f"Your {len(takes)} takes are ready" if len(takes) > 1 else "Your take is ready"
    facts = [f"`{job.model}`", f"{len(takes)} of {job.spec.variations} takes"]
    if (seconds := job.seconds_to_make) is not None:
        facts.append(f"took {seconds:.0f} s")
    body = [prompt_text(job.spec), " · ".join(facts)]
    if job.clip and job.clip.failed_takes:
        failed = job.clip.failed_takes
        body.append(
            ("\n".join(failed) + f"\n{credits(refunded_takes(job))} refunded for "
             f"{'it' if len(failed) == 1 else 'them'}.")[:1000]
        )
    warnings = list(dict.fromkeys(w for take, _ in takes if take.clip for w in take.clip.warnings))
    if warnings:
        body.append("\n".join(f"⚠️ {w}" for w in warnings)[:1000])
    return Card(
        accent=GREEN, heading=heading, body=body, gallery=items,
        footer=f"Job {job.id} · {price(job)} · {settings_line(job).replace('`', '')}",
        rows=rows, lead=lead,
    )


def moved(job: Job, posted: Posted, *, lead: str | None) -> Card:
    """What the old card says once the clip went to a new message (a reply, a DM)."""
    if posted.via == "dm":
        text = "I sent it to you in a direct message."
    elif posted.url:
        text = f"[See it here]({posted.url})."
    else:
        text = "It is in a new message below."
    return Card(
        accent=GREEN, heading="Your video is ready", body=[text, _details(job)],
        footer=f"Job {job.id} · {credits(job.cost)}", lead=lead,
    )


def failed(job: Job, reason: str, *, lead: str | None) -> Card:
    return Card(
        accent=RED, heading="This video couldn't be made",
        body=[reason[:2000], f"Prompt: {prompt_text(job.spec)}"],
        footer=f"Job {job.id}", lead=lead,
    )




__all__ = ["Card", "failed", "mention", "finished", "finished_takes", "moved", "progress", "queued"]
