"""Creating, editing and deleting messages as Discord does, shared by every REST route that
makes one (channel posts, interaction responses, follow-ups, webhook edits).

One place applies Discord's rules: limits (50035), empty messages (50006), per-file upload
limit (40005), which existing attachments an edit keeps, and the gateway events that follow
(MESSAGE_CREATE/UPDATE/DELETE, never for ephemeral messages, content hidden from sessions
without the MESSAGE_CONTENT intent).
"""

from __future__ import annotations

import re
from typing import Any

from . import components as comp
from . import errors, payloads, validation
from .cdn import Cdn
from .gateway import MESSAGE_CONTENT, Gateway, Session
from .media import content_type_for, image_size
from .state import (
    COMPONENTS_V2,
    EPHEMERAL,
    LOADING,
    Attachment,
    Channel,
    DiscordState,
    Interaction,
    Message,
    UploadedFile,
    User,
)

_MENTION = re.compile(r"<@!?(\d+)>")
_EDITABLE_FLAGS = 1 << 2 | 1 << 12  # suppress embeds, suppress notifications


class Messaging:
    def __init__(self, state: DiscordState, cdn: Cdn, gateway: Gateway) -> None:
        self._state = state
        self._cdn = cdn
        self._gateway = gateway

    # ---- create / edit / delete ------------------------------------------------------

    async def create(
        self,
        channel: Channel,
        payload: dict[str, Any],
        files: list[UploadedFile],
        *,
        author: User,
        via: str,
        size_limit: int,
        interaction: Interaction | None = None,
        message_type: int = 0,
        extra_flags: int = 0,
        allow_empty: bool = False,
    ) -> Message:
        validation.check_message(payload, file_count=len(files))
        attachments = self._attachments(
            payload, files, existing=[], channel=channel, size_limit=size_limit
        )
        flags = (int(payload.get("flags") or 0) & ~LOADING) | extra_flags
        message = Message(
            id=self._state.ids.next(),
            channel_id=channel.id,
            guild_id=channel.guild_id,
            author=author,
            content=str(payload.get("content") or ""),
            embeds=list(payload.get("embeds") or []),
            components=list(payload.get("components") or []),
            attachments=attachments,
            flags=flags,
            type=message_type,
            tts=bool(payload.get("tts")),
            created_at=self._state.clock.time(),
            interaction_id=interaction.id if interaction else None,
            webhook_id=self._state.application.id if interaction else None,
            application_id=self._state.application.id if interaction else None,
            message_reference=payload.get("message_reference"),
            via=via,
        )
        message.mentions = _mentions(message, payload)
        _unfurl(message, self._cdn)
        if message.message_reference and message.type == 0:
            message.type = 19
        comp.assign_ids(message.components)
        if not allow_empty and _is_empty(message, payload):
            raise errors.empty_message()
        self._state.add_message(message)
        await self.announce("MESSAGE_CREATE", message)
        return message

    async def edit(
        self,
        message: Message,
        payload: dict[str, Any],
        files: list[UploadedFile],
        *,
        via: str,
        size_limit: int,
    ) -> Message:
        validation.check_message(
            {**payload, "flags": message.flags | int(payload.get("flags") or 0)},
            file_count=len(files),
        )
        channel = self._state.channels[message.channel_id]
        attachments = message.attachments
        if "attachments" in payload or files:
            attachments = self._attachments(
                payload, files, existing=message.attachments, channel=channel, size_limit=size_limit
            )
        content = message.content if "content" not in payload else str(payload["content"] or "")
        embeds = message.embeds if "embeds" not in payload else list(payload["embeds"] or [])
        components = (
            message.components if "components" not in payload else list(payload["components"] or [])
        )
        flags = message.flags & ~LOADING
        if payload.get("flags") is not None:
            flags = (flags & ~_EDITABLE_FLAGS) | (int(payload["flags"]) & _EDITABLE_FLAGS)
            # A message becomes a V2 card by an edit, and stays one (the flag never goes).
            flags |= int(payload["flags"]) & COMPONENTS_V2
        if flags & COMPONENTS_V2 and (content or embeds):
            raise errors.invalid_form_body(
                errors.field_error(
                    ["content"], "MESSAGE_CANNOT_USE_LEGACY_FIELDS_WITH_COMPONENTS_V2",
                    "The 'content' and 'embeds' fields cannot be used with MessageFlags.IS_COMPONENTS_V2",
                )
            )
        if not (content or embeds or components or attachments):
            raise errors.empty_message()
        message.content, message.embeds, message.components = content, embeds, components
        message.attachments, message.flags = attachments, flags
        message.mentions = _mentions(message, payload)
        _unfurl(message, self._cdn)
        comp.assign_ids(message.components)
        message.edited_at = self._state.clock.time()
        message.snapshot(message.edited_at, via)
        self._state.touch()
        await self.announce("MESSAGE_UPDATE", message)
        return message

    async def delete(self, message: Message) -> None:
        message.deleted = True
        message.deleted_at = self._state.clock.time()
        self._state.touch()
        if not message.ephemeral:
            data: dict[str, Any] = {"id": str(message.id), "channel_id": str(message.channel_id)}
            if message.guild_id is not None:
                data["guild_id"] = str(message.guild_id)
            await self._gateway.dispatch("MESSAGE_DELETE", data, guild_id=message.guild_id)

    def _attachments(
        self,
        payload: dict[str, Any],
        files: list[UploadedFile],
        *,
        existing: list[Attachment],
        channel: Channel,
        size_limit: int,
    ) -> list[Attachment]:
        """Attachments after this request: kept ones by id, new files by their index."""
        for upload in files:
            if len(upload.data) > size_limit:
                raise errors.entity_too_large()
        by_id = {a.id: a for a in existing}
        by_index = {
            int(f.field[len("files[") : -1]): f for f in files if f.field.startswith("files[")
        }
        by_index.update({i: f for i, f in enumerate(files) if not f.field.startswith("files[")})
        ephemeral = bool(int(payload.get("flags") or 0) & EPHEMERAL)
        result: list[Attachment] = []
        used: set[int] = set()
        listed = payload.get("attachments")
        for entry in listed if isinstance(listed, list) else []:
            ident = int(entry.get("id"))
            if ident in by_id:
                result.append(by_id[ident])
            elif ident in by_index:
                result.append(self._store(by_index[ident], entry, channel, ephemeral))
                used.add(ident)
            else:
                raise errors.invalid_form_body(
                    errors.field_error(
                        ["attachments"], "ATTACHMENT_NOT_FOUND", f"Unknown attachment {ident}"
                    )
                )
        if not isinstance(listed, list):
            result = list(existing)
        for index, upload in sorted(by_index.items()):
            if index not in used:
                result.append(self._store(upload, {}, channel, ephemeral))
        return result

    def _store(
        self, upload: UploadedFile, entry: dict[str, Any], channel: Channel, ephemeral: bool
    ) -> Attachment:
        filename = entry.get("filename") or upload.filename
        size = (
            image_size(upload.data)
            if (content_type_for(filename) or "").startswith("image/")
            else None
        )
        return self._state.add_attachment(
            upload.data,
            filename,
            channel_id=channel.id,
            content_type=content_type_for(filename),
            width=size[0] if size else None,
            height=size[1] if size else None,
            description=entry.get("description"),
            ephemeral=ephemeral,
        )

    # ---- gateway -----------------------------------------------------------------------

    async def announce(self, event: str, message: Message) -> None:
        """MESSAGE_CREATE/UPDATE to the bot's sessions (ephemeral messages are never sent)."""
        if message.ephemeral:
            return
        data = payloads.message(self._state, self._cdn, message, gateway=True)
        bot_id = self._state.bot.id

        def shape(session: Session, full: dict[str, Any]) -> dict[str, Any]:
            if session.intents & MESSAGE_CONTENT or message.guild_id is None:
                return full
            if message.author.id == bot_id or bot_id in message.mentions:
                return full
            return {**full, "content": "", "embeds": [], "attachments": [], "components": []}

        await self._gateway.dispatch(event, data, guild_id=message.guild_id, shape=shape)


def _mentions(message: Message, payload: dict[str, Any]) -> list[int]:
    """Users named in the content, or in a V2 card's text displays (they notify the same),
    as far as the request's `allowed_mentions` lets them be parsed."""
    text = "\n".join([message.content, *comp.texts(message.components)])
    named = [int(u) for u in dict.fromkeys(_MENTION.findall(text))]
    allowed = payload.get("allowed_mentions")
    if allowed is None:
        return named
    users = {int(u) for u in allowed.get("users") or []}
    return [u for u in named if "users" in (allowed.get("parse") or []) or u in users]


def _unfurl(message: Message, cdn: Cdn) -> None:
    """Resolve a card's ``attachment://name`` media to the message's attachment, as Discord
    does (an attachment a card does not name is not shown); naming a file the message does
    not carry is refused."""
    by_name = {a.filename: a for a in message.attachments}
    for _, media in comp.media(message.components):
        url = str(media.get("url") or "")
        if not url.startswith("attachment://"):
            continue
        attachment = by_name.get(url[len("attachment://"):])
        if attachment is None:
            raise errors.invalid_form_body(
                errors.field_error(
                    ["components", "media", "url"], "ATTACHMENT_NOT_FOUND",
                    f"{url} names no attachment of this message",
                )
            )
        shown = payloads.attachment(cdn, attachment)
        media.clear()
        media.update(
            url=shown["url"], proxy_url=shown["proxy_url"], attachment_id=str(attachment.id),
            content_type=attachment.content_type,
            **{k: shown[k] for k in ("width", "height") if shown.get(k) is not None},
        )


def _is_empty(message: Message, payload: dict[str, Any]) -> bool:
    has_extra = payload.get("sticker_ids") or payload.get("poll")
    return not (
        message.content or message.embeds or message.components or message.attachments or has_extra
    )
