"""A member's library (/history): pages of their kept clips, and the buttons on each entry.

A page is a private message: up to four entries, each an embed (a thumbnail of the photo, the
prompt, model, seed, length, date and a link to the delivered message) with a row of buttons
(Post again, New photo, Favourite, Delete), then a row to page through. Every button is a
:class:`discord.ui.DynamicItem` that carries what it needs in its custom_id (the job and the
page it was shown on, or the member and the page), so a library opened before a restart
keeps working after it; only the member whose library it is may press them.
"""

from __future__ import annotations

import asyncio
import dataclasses
import io
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import discord

from bot import card, embeds
from bot.attachments import thumbnail
from bot.buttons import action_rows, result_actions
from bot.cogs.animate import start_job
from bot.delivery.record import DeliveryRecord
from bot.delivery.upload import GUARANTEED_UPLOAD_BYTES, video_name
from bot.errors import Refusal, answer, answer_error
from bot.formatting import credits, when
from bot.i18n import tr
from bot.interactions import check_member
from contract import CAMERA_LABELS, JobSpec
from jobs import Job

if TYPE_CHECKING:
    from bot.app import AnimateBot

log = logging.getLogger("bot.library")

PAGE_SIZE = 4
"""Entries per page: four rows of entry buttons and one to page through, Discord's five."""
THUMBNAIL_SIDE = 160
PROMPT_LIMIT = 300
NOT_KEPT = (
    "That video is no longer in your library: it was deleted, or it is older than this bot "
    "keeps videos."
)
NOT_YOURS = "These buttons belong to another member's library; /history shows your own."
UPLOAD_MARGIN = 64 * 1024
"""Room for the multipart envelope under the channel's per-file limit."""


@dataclass(frozen=True)
class Shelf:
    """Which page of which list: every kept clip, or the favourites only."""

    favourites: bool = False
    page: int = 0

    @property
    def tag(self) -> str:
        """How a custom_id carries it: ``a0`` (all, first page), ``f2`` (favourites, third)."""
        return f"{'f' if self.favourites else 'a'}{self.page}"

    @classmethod
    def parse(cls, tag: str) -> Shelf:
        return cls(favourites=tag[0] == "f", page=int(tag[1:]))

    def turned(self, step: int) -> Shelf:
        return dataclasses.replace(self, page=max(0, self.page + step))


@dataclass
class Page:
    """One library message, ready to send or to edit in place."""

    content: str
    embeds: list[discord.Embed]
    files: list[discord.File]
    view: discord.ui.View | None


# ---- rendering -------------------------------------------------------------------------------


def _kept(seconds: float | None, locale: discord.Locale | None = None) -> str:
    if seconds is None:
        return tr(locale, "forever")
    return tr(locale, "{days} days", days=f"{seconds / 86_400:g}")


def jump_url(job: Job) -> str | None:
    """A link to the message that delivered the clip, when the bot knows where it is."""
    record = DeliveryRecord.of(job)
    if getattr(record, "private", False):  # an ephemeral message has no link
        return None
    if record.result_url:
        return record.result_url
    if record.delivered_via in ("interaction", "found") and record.channel_id and record.result_message_id:
        where = record.guild_id or "@me"
        return f"https://discord.com/channels/{where}/{record.channel_id}/{record.result_message_id}"
    return None


def entry(job: Job, *, picture: str | None, locale: discord.Locale | None = None) -> discord.Embed:
    """One library entry: prompt, model, seed, length, date and where it was posted."""
    clip, spec = job.clip, job.spec
    prompt = spec.prompt.strip()
    if len(prompt) > PROMPT_LIMIT:
        prompt = prompt[: PROMPT_LIMIT - 1] + "…"
    take = (
        " · " + tr(locale, "take {take} of {takes}", take=clip.take, takes=clip.takes)
        if clip and clip.take else ""
    )
    embed = discord.Embed(
        title=("★ " if job.favourite else "") + tr(locale, "Job {job}", job=job.id) + take,
        description=prompt or tr(locale, "*no prompt*"),
        colour=discord.Colour.gold() if job.favourite else discord.Colour.blurple(),
    )
    embed.add_field(name=tr(locale, "Model"), value=f"`{clip.model if clip else job.model}`", inline=True)
    seed = clip.seed if clip else spec.seed
    embed.add_field(name=tr(locale, "Seed"), value=str(seed if seed is not None else "?"), inline=True)
    length = clip.duration if clip and clip.frames and clip.fps else spec.duration
    embed.add_field(name=tr(locale, "Length"), value=f"{length:.1f} s", inline=True)
    embed.add_field(name=tr(locale, "Made"), value=when(job.finished_at or job.created_at, "f"), inline=True)
    if url := jump_url(job):
        embed.add_field(
            name=tr(locale, "Posted"), value=tr(locale, "[Jump to the message]({url})", url=url),
            inline=True,
        )
    if picture:
        embed.set_thumbnail(url=f"attachment://{picture}")
    embed.set_footer(text=embeds.settings_line(job).replace("`", ""))
    return embed


async def _thumbnail(bot: AnimateBot, job: Job) -> bytes | None:
    """A small JPEG of the job's photo, decoded off the event loop; None when it can't be."""
    try:
        image, _ = await bot.store.job_inputs(job.id)
        photo = await bot.photos.judge(image, max_bytes=max(len(image), bot.settings.max_image_bytes))
        return await asyncio.to_thread(thumbnail, photo, THUMBNAIL_SIDE)
    except Exception as exc:  # noqa: BLE001 - an entry without a picture is still an entry
        log.info("no thumbnail for job %d: %s", job.id, exc)
        return None


async def render(
    bot: AnimateBot,
    user_id: int,
    shelf: Shelf,
    *,
    note: str | None = None,
    locale: discord.Locale | None = None,
) -> Page:
    """The page `shelf` of the member's library (the last one, if it has fewer pages now),
    in the member's language."""
    found = await bot.store.library(
        user_id, favourites=shelf.favourites, offset=shelf.page * PAGE_SIZE, limit=PAGE_SIZE
    )
    if not found.jobs and found.total:  # its last entries went: show the page before
        shelf = dataclasses.replace(shelf, page=(found.total - 1) // PAGE_SIZE)
        found = await bot.store.library(
            user_id, favourites=shelf.favourites, offset=shelf.page * PAGE_SIZE, limit=PAGE_SIZE
        )
    lines = [note] if note else []
    config = bot.jobs.config
    if not found.total:
        lines.append(
            tr(locale, "You have no favourites yet: press ★ Favourite on a video in /history.")
            if shelf.favourites
            else tr(locale, "Your library is empty: the videos you make with /animate show up here.")
        )
        return Page("\n".join(lines), [], [], None)
    first, last = found.offset + 1, found.offset + len(found.jobs)
    heading = (
        tr(locale, "**Your favourite videos**, newest first: {first}–{last} of {total}.",
           first=first, last=last, total=found.total)
        if shelf.favourites
        else tr(locale, "**Your videos**, newest first: {first}–{last} of {total}.",
                first=first, last=last, total=found.total)
    )
    lines.append(heading)
    lines.append(tr(
        locale, "Videos are kept {kept} after they are posted, favourites {kept_favourites}.",
        kept=_kept(config.kept_seconds(favourite=False), locale),
        kept_favourites=_kept(config.kept_seconds(favourite=True), locale),
    ))
    pictures = await asyncio.gather(*(_thumbnail(bot, job) for job in found.jobs))
    page = Page("\n".join(lines), [], [], discord.ui.View(timeout=None))
    assert page.view is not None
    for row, (job, jpeg) in enumerate(zip(found.jobs, pictures, strict=True)):
        name = None
        if jpeg is not None:
            name = f"photo-{job.id}.jpg"
            page.files.append(discord.File(io.BytesIO(jpeg), filename=name))
        page.embeds.append(entry(job, picture=name, locale=locale))
        for button in (
            PostAgainButton(job.id, shelf, row=row),
            NewPhotoButton(job.id, shelf, row=row),
            FavouriteButton(job.id, shelf, on=not job.favourite, row=row),
            DeleteEntryButton(job.id, shelf, row=row),
        ):
            button.item.label = tr(locale, button.item.label or "")
            page.view.add_item(button)
    if found.total > PAGE_SIZE:
        newer = NewerButton(user_id, shelf, row=PAGE_SIZE)
        newer.item.disabled = shelf.page == 0
        older = OlderButton(user_id, shelf, row=PAGE_SIZE)
        older.item.disabled = not found.has_older
        for button in (newer, older):
            button.item.label = tr(locale, button.item.label or "")
            page.view.add_item(button)
    return page


async def show(
    interaction: discord.Interaction[AnimateBot], shelf: Shelf, *, note: str | None = None
) -> None:
    """Redraw the library message the button was on (the interaction is deferred)."""
    page = await render(interaction.client, interaction.user.id, shelf, note=note, locale=interaction.locale)
    await interaction.edit_original_response(
        content=page.content, embeds=page.embeds, attachments=page.files, view=page.view
    )


# ---- the buttons -----------------------------------------------------------------------------

_JOB = r"(?P<job>[0-9]{1,20})"
_USER = r"(?P<user>[0-9]{1,20})"
_SHELF = r"(?P<shelf>[af][0-9]{1,4})"


class EntryButton(discord.ui.DynamicItem[discord.ui.Button], template=rf"library:[a-z]+:{_JOB}:{_SHELF}"):
    """One action on one library entry; only the clip's owner may press it."""

    action: ClassVar[str]
    label: ClassVar[str]
    emoji: ClassVar[str | None] = None
    style: ClassVar[discord.ButtonStyle] = discord.ButtonStyle.secondary

    def __init__(self, job_id: int, shelf: Shelf, *, row: int | None = None) -> None:
        self.job_id = job_id
        self.shelf = shelf
        self.job: Job | None = None
        super().__init__(
            discord.ui.Button(
                label=self.button_label(), emoji=self.emoji, style=self.style,
                custom_id=f"library:{self.action}:{job_id}:{shelf.tag}{self.suffix()}",
            ),
            row=row,
        )

    def button_label(self) -> str:
        return self.label

    def suffix(self) -> str:
        """More of the custom_id after the page, for an action that needs it."""
        return ""

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Button, match: re.Match[str], /
    ) -> EntryButton:
        return cls(int(match["job"]), Shelf.parse(match["shelf"]))

    async def interaction_check(self, interaction: discord.Interaction[AnimateBot], /) -> bool:
        try:
            job = await interaction.client.store.get_job(self.job_id)
        except Exception as error:  # noqa: BLE001 - unknown job and the like
            await answer_error(interaction, error)
            return False
        if job.user_id != interaction.user.id:
            await answer(interaction, NOT_YOURS)
            return False
        self.job = job
        return True

    async def callback(self, interaction: discord.Interaction[AnimateBot]) -> None:
        try:
            assert self.job is not None
            await self.run(interaction, interaction.client, self.job)
        except Exception as error:  # noqa: BLE001 - every failure becomes a sentence
            await answer_error(interaction, error)

    async def run(self, interaction: discord.Interaction[AnimateBot], bot: AnimateBot, job: Job) -> None:
        raise NotImplementedError


def _kept_file(job: Job) -> Path:
    if not job.result_path or not Path(job.result_path).is_file():
        raise Refusal(NOT_KEPT)
    return Path(job.result_path)


class PostAgainButton(EntryButton, template=rf"library:post:{_JOB}:{_SHELF}"):
    """The clip again, publicly, where the member is now (a channel or the DM), with the
    clip's own buttons."""

    action, label, emoji = "post", "Post again", "📤"
    style = discord.ButtonStyle.primary

    async def run(self, interaction: discord.Interaction[AnimateBot], bot: AnimateBot, job: Job) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        await check_member(interaction, bot.settings, bot.store)
        data = await asyncio.to_thread(_kept_file(job).read_bytes)
        limit = interaction.filesize_limit - UPLOAD_MARGIN
        if len(data) > limit:  # made for a bigger limit (a boosted server) than this place's
            try:
                data = await bot.jobs.dispatcher.fit_upload(data, max(limit, GUARANTEED_UPLOAD_BYTES // 2))
            except LookupError:
                raise Refusal(
                    "This video is larger than this place accepts and no renderer is free to "
                    "shrink it right now; please try again in a minute."
                ) from None
        rows = action_rows(job.id, result_actions(
            can_extend=bot.jobs.card(job.model).supports_extend, finishes=bot.jobs.finishes_offered(job)
        ))
        # The private "thinking" answer first: the follow-up below is then a new, public message.
        await interaction.edit_original_response(content=f"Posted job {job.id} again.")
        await interaction.followup.send(
            view=card.finished(job, video_name(job), rows=rows, lead=None, title="From the library"),
            file=discord.File(io.BytesIO(data), filename=video_name(job)),
            allowed_mentions=discord.AllowedMentions.none(),
        )


class NewPhotoButton(EntryButton, template=rf"library:photo:{_JOB}:{_SHELF}"):
    """The clip's settings on a photo the member uploads in a form; charged as /animate."""

    action, label, emoji = "photo", "New photo", "🖼️"

    async def run(self, interaction: discord.Interaction[AnimateBot], bot: AnimateBot, job: Job) -> None:
        # Refused before the form, not after the member chose a photo: a block, a place the
        # bot doesn't work in, a clip no longer kept, too few credits or a full queue.
        await check_member(interaction, bot.settings, bot.store)
        spec = await bot.jobs.settings_for_new_photo(job.id)
        await bot.jobs.check_room(interaction.user.id, spec)
        private = DeliveryRecord.of(job).private  # as private as the clip it copies
        await interaction.response.send_modal(
            NewPhotoForm(job.id, spec, bot.jobs.cost(spec.model, spec.duration), private=private)
        )


class FavouriteButton(EntryButton, template=rf"library:fav:{_JOB}:{_SHELF}:(?P<on>[01])"):
    """Mark or unmark: the custom_id says which, so a stale page never does the opposite."""

    action, label = "fav", "★ Favourite"

    def __init__(self, job_id: int, shelf: Shelf, *, on: bool = True, row: int | None = None) -> None:
        self.on = on
        super().__init__(job_id, shelf, row=row)

    def button_label(self) -> str:
        return "★ Favourite" if self.on else "☆ Unfavourite"

    def suffix(self) -> str:
        return f":{int(self.on)}"

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Button, match: re.Match[str], /
    ) -> FavouriteButton:
        return cls(int(match["job"]), Shelf.parse(match["shelf"]), on=match["on"] == "1")

    async def run(self, interaction: discord.Interaction[AnimateBot], bot: AnimateBot, job: Job) -> None:
        if not job.result_path:
            raise Refusal(NOT_KEPT)
        await interaction.response.defer()
        await bot.jobs.favourite(job.id, self.on)
        locale = interaction.locale
        if self.on:
            kept = _kept(bot.jobs.config.kept_seconds(favourite=True), locale)
            note = tr(locale, "★ Job {job} is a favourite: kept {kept}.", job=job.id, kept=kept)
        else:
            note = tr(locale, "Job {job} is no longer a favourite.", job=job.id)
        await show(interaction, self.shelf, note=note)


class DeleteEntryButton(EntryButton, template=rf"library:delete:{_JOB}:{_SHELF}"):
    """As the clip's own Delete: its message, and the photo, prompts and MP4 from the bot."""

    action, label, emoji = "delete", "Delete", "🗑️"
    style = discord.ButtonStyle.danger

    async def run(self, interaction: discord.Interaction[AnimateBot], bot: AnimateBot, job: Job) -> None:
        if not job.result_path:
            raise Refusal(NOT_KEPT)
        await interaction.response.defer()
        # One take of several: the message stays for the takes still kept.
        beside = await bot.jobs.kept_beside(job)
        if not beside:
            await _delete_clip_message(bot, job)
        await bot.jobs.delete(job.id)
        locale = interaction.locale
        note = tr(locale, "Deleted job {job}: the photo, the prompt and the video are gone from the bot too.", job=job.id)
        if beside:
            jobs = ", ".join(str(t.id) for t in beside)
            note += " " + tr(locale, "Its message stays for the other takes in it (jobs {jobs}).", jobs=jobs)
        await show(interaction, self.shelf, note=note)


async def _delete_clip_message(bot: AnimateBot, job: Job) -> None:
    """Best effort: the message that delivered the clip (the bot may no longer reach it)."""
    record = DeliveryRecord.of(job)
    if not record.result_message_id:
        return
    try:
        if record.delivered_via == "dm":
            user = bot.get_user(job.user_id) or await bot.fetch_user(job.user_id)
            channel: discord.abc.Messageable = await user.create_dm()
        elif record.channel_id:
            channel = bot.get_partial_messageable(record.channel_id, guild_id=record.guild_id)
        else:
            return
        await channel.get_partial_message(record.result_message_id).delete()  # type: ignore[attr-defined]
    except discord.HTTPException as exc:
        log.info("job %d: could not delete its message: %s", job.id, exc)


class _PageButton(discord.ui.DynamicItem[discord.ui.Button], template=rf"library:[a-z]+:{_USER}:{_SHELF}"):
    """Turn the page; the custom_id holds the member and the page it was shown on."""

    action: ClassVar[str]
    label: ClassVar[str]
    emoji: ClassVar[str]
    step: ClassVar[int]

    def __init__(self, user_id: int, shelf: Shelf, *, row: int | None = None) -> None:
        super().__init__(
            discord.ui.Button(
                label=self.label, emoji=self.emoji,
                custom_id=f"library:{self.action}:{user_id}:{shelf.tag}",
            ),
            row=row,
        )
        self.user_id = user_id
        self.shelf = shelf

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Button, match: re.Match[str], /
    ) -> _PageButton:
        return cls(int(match["user"]), Shelf.parse(match["shelf"]))

    async def interaction_check(self, interaction: discord.Interaction[AnimateBot], /) -> bool:
        if interaction.user.id == self.user_id:
            return True
        await answer(interaction, NOT_YOURS)
        return False

    async def callback(self, interaction: discord.Interaction[AnimateBot]) -> None:
        try:
            await interaction.response.defer()
            await show(interaction, self.shelf.turned(self.step))
        except Exception as error:  # noqa: BLE001 - every failure becomes a sentence
            await answer_error(interaction, error)


class NewerButton(_PageButton, template=rf"library:newer:{_USER}:{_SHELF}"):
    action, label, emoji, step = "newer", "Newer", "⬅️", -1


class OlderButton(_PageButton, template=rf"library:older:{_USER}:{_SHELF}"):
    action, label, emoji, step = "older", "Older", "➡️", 1


LIBRARY_BUTTONS: tuple[type[discord.ui.DynamicItem[discord.ui.Button]], ...] = (
    PostAgainButton,
    NewPhotoButton,
    FavouriteButton,
    DeleteEntryButton,
    NewerButton,
    OlderButton,
)


# ---- the New photo form ----------------------------------------------------------------------


def _settings_text(job_id: int, spec: JobSpec, cost: int) -> str:
    parts = [f"{spec.model}", f"{spec.duration:g} s", CAMERA_LABELS[spec.camera], f"motion {spec.motion}"]
    if spec.seed is not None:
        parts.append(f"seed {spec.seed}")
    if spec.loop:
        parts.append("loop")
    return f"Job {job_id}'s settings: {', '.join(parts)} · {credits(cost)}"[:100]


class NewPhotoForm(discord.ui.Modal, title="Animate a new photo"):
    """One field: the photo. Everything else is the library entry's."""

    def __init__(self, job_id: int, spec: JobSpec, cost: int, *, private: bool = False) -> None:
        super().__init__(timeout=600)
        self.job_id = job_id
        self.spec = spec
        self.private = private
        self.photo = discord.ui.FileUpload(min_values=1, max_values=1, required=True)
        self.add_item(
            discord.ui.Label(
                text="Photo", description=_settings_text(job_id, spec, cost), component=self.photo
            )
        )

    async def on_submit(self, interaction: discord.Interaction[AnimateBot]) -> None:  # type: ignore[override]
        await interaction.response.defer(ephemeral=True, thinking=True)
        if not self.photo.values:
            raise Refusal("Choose a photo to animate.")
        spec = self.spec
        await start_job(
            interaction.client, interaction, self.photo.values[0],
            model=spec.model, duration=spec.duration, prompt=spec.prompt,
            negative=spec.negative_prompt, camera=spec.camera, motion=spec.motion,
            seed=spec.seed, loop=spec.loop, effect=spec.effect, private=self.private,
        )

    async def on_error(self, interaction: discord.Interaction, error: Exception, /) -> None:  # type: ignore[override]
        await answer_error(interaction, error)
