"""REST routes under `/api/v10`: identity, command sync, interaction callbacks, follow-ups
and webhook edits, channel messages, DMs, and the few guild reads a bot makes.

Handlers raise `DiscordError` for Discord's error answers; the server middleware turns them
into JSON, records the request and adds rate-limit headers. Interaction rules live here:
3 s to acknowledge (10062), one acknowledgement (40060), 15 min token (50027), the first
follow-up after a "thinking" defer replaces the loading message, `?with_response=1` gets
`{interaction, resource}`.
"""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web

from . import errors, payloads, validation
from .bodies import BODY_KEY, Body
from .cdn import Cdn
from .faults import Faults
from .gateway import Gateway
from .messaging import Messaging
from .responses import json_response, no_content
from .state import (
    ACK_WINDOW_S,
    APPLICATION_COMMAND,
    AUTOCOMPLETE,
    AUTOCOMPLETE_RESULT,
    CHANNEL_MESSAGE,
    DEFERRED_CHANNEL_MESSAGE,
    DEFERRED_UPDATE_MESSAGE,
    EPHEMERAL,
    LOADING,
    MESSAGE_COMPONENT,
    MODAL,
    MODAL_SUBMIT,
    TOKEN_LIFETIME_S,
    UPDATE_MESSAGE,
    Callback,
    Channel,
    DiscordState,
    Guild,
    Interaction,
    Message,
    MiB,
)

ALLOWED_CALLBACKS = {
    APPLICATION_COMMAND: {CHANNEL_MESSAGE, DEFERRED_CHANNEL_MESSAGE, MODAL},
    MESSAGE_COMPONENT: {
        CHANNEL_MESSAGE,
        DEFERRED_CHANNEL_MESSAGE,
        DEFERRED_UPDATE_MESSAGE,
        UPDATE_MESSAGE,
        MODAL,
    },
    MODAL_SUBMIT: {
        CHANNEL_MESSAGE,
        DEFERRED_CHANNEL_MESSAGE,
        DEFERRED_UPDATE_MESSAGE,
        UPDATE_MESSAGE,
    },
    AUTOCOMPLETE: {AUTOCOMPLETE_RESULT},
}

PUBLIC_PREFIXES = ("/interactions/", "/webhooks/")
"""Routes authorised by the interaction token in the URL, not the bot token."""


def _body(request: web.Request) -> Body:
    body: Body = request[BODY_KEY]
    return body


def _id(request: web.Request, key: str) -> int:
    try:
        return int(request.match_info[key])
    except ValueError:
        raise errors.not_found() from None


class RestApi:
    def __init__(
        self, state: DiscordState, cdn: Cdn, gateway: Gateway, messaging: Messaging, faults: Faults
    ) -> None:
        self._state = state
        self._cdn = cdn
        self._gateway = gateway
        self._messaging = messaging
        self._faults = faults

    def routes(self, prefix: str) -> list[web.RouteDef]:
        p = prefix
        cmds = "/applications/{application_id}/commands"
        guild_cmds = "/applications/{application_id}/guilds/{guild_id}/commands"
        hook = "/webhooks/{webhook_id}/{webhook_token}"
        msgs = "/channels/{channel_id}/messages"
        return [
            web.get(p + "/users/@me", self.get_me),
            web.post(p + "/users/@me/channels", self.create_dm),
            web.get(p + "/users/{user_id}", self.get_user),
            web.get(p + "/oauth2/applications/@me", self.get_application),
            web.get(p + "/applications/@me", self.get_application),
            web.get(p + "/gateway", self.get_gateway),
            web.get(p + "/gateway/bot", self.get_gateway_bot),
            web.get(p + cmds, self.get_commands),
            web.put(p + cmds, self.put_commands),
            web.post(p + cmds, self.post_command),
            web.get(p + cmds + "/{command_id}", self.get_command),
            web.patch(p + cmds + "/{command_id}", self.patch_command),
            web.delete(p + cmds + "/{command_id}", self.delete_command),
            web.get(p + guild_cmds, self.get_commands),
            web.put(p + guild_cmds, self.put_commands),
            web.post(p + guild_cmds, self.post_command),
            web.get(p + guild_cmds + "/{command_id}", self.get_command),
            web.patch(p + guild_cmds + "/{command_id}", self.patch_command),
            web.delete(p + guild_cmds + "/{command_id}", self.delete_command),
            web.post(
                p + "/interactions/{interaction_id}/{interaction_token}/callback", self.callback
            ),
            web.post(p + hook, self.create_followup),
            web.get(p + hook + "/messages/{message_id}", self.get_webhook_message),
            web.patch(p + hook + "/messages/{message_id}", self.edit_webhook_message),
            web.delete(p + hook + "/messages/{message_id}", self.delete_webhook_message),
            web.get(p + "/channels/{channel_id}", self.get_channel),
            web.get(p + msgs, self.get_messages),
            web.post(p + msgs, self.create_message),
            web.get(p + msgs + "/{message_id}", self.get_message),
            web.patch(p + msgs + "/{message_id}", self.edit_message),
            web.delete(p + msgs + "/{message_id}", self.delete_message),
            web.put(p + msgs + "/{message_id}/reactions/{emoji}/@me", self.add_reaction),
            web.delete(p + msgs + "/{message_id}/reactions/{emoji}/@me", self.remove_reaction),
            web.post(p + "/channels/{channel_id}/typing", self.typing),
            web.get(p + "/guilds/{guild_id}", self.get_guild),
            web.get(p + "/guilds/{guild_id}/channels", self.get_guild_channels),
            web.get(p + "/guilds/{guild_id}/roles", self.get_guild_roles),
            web.get(p + "/guilds/{guild_id}/members/{user_id}", self.get_member),
        ]

    # ---- identity -------------------------------------------------------------------

    async def get_me(self, request: web.Request) -> web.Response:
        me = {
            **payloads.user(self._state.bot),
            "verified": True,
            "mfa_enabled": False,
            "email": None,
            "locale": "en-US",
        }
        return json_response(me)

    async def get_user(self, request: web.Request) -> web.Response:
        user = self._state.users.get(_id(request, "user_id"))
        if user is None:
            raise errors.unknown_user()
        return json_response(payloads.user(user))

    async def create_dm(self, request: web.Request) -> web.Response:
        recipient = self._state.users.get(int(_body(request).payload.get("recipient_id") or 0))
        if recipient is None:
            raise errors.unknown_user()
        return json_response(payloads.channel(self._state.dm_channel(recipient)))

    async def get_application(self, request: web.Request) -> web.Response:
        return json_response(payloads.application(self._state, self._state.application))

    async def get_gateway(self, request: web.Request) -> web.Response:
        return json_response({"url": self._gateway.url})

    async def get_gateway_bot(self, request: web.Request) -> web.Response:
        limit = {"total": 1000, "remaining": 999, "reset_after": 86_400_000, "max_concurrency": 1}
        return json_response(
            {
                "url": self._gateway.url,
                "shards": self._gateway.shard_count,
                "session_start_limit": limit,
            }
        )

    # ---- application commands ------------------------------------------------------------

    def _command_scope(self, request: web.Request) -> int | None:
        if _id(request, "application_id") != self._state.application.id:
            raise errors.DiscordError(403, 50001, "Missing Access")
        if "guild_id" not in request.match_info:
            return None
        guild_id = _id(request, "guild_id")
        if guild_id not in self._state.guilds:
            raise errors.DiscordError(403, 50001, "Missing Access")
        return guild_id

    def _stored_command(
        self, data: dict[str, Any], guild_id: int | None, previous: list[dict[str, Any]]
    ) -> dict[str, Any]:
        kind = data.get("type", 1)
        same = next(
            (c for c in previous if c["name"] == data.get("name") and c["type"] == kind), None
        )
        command: dict[str, Any] = {
            "id": same["id"] if same else str(self._state.ids.next()),
            "application_id": str(self._state.application.id),
            "version": str(self._state.ids.next()),
            "type": kind,
            "name": data.get("name"),
            "name_localizations": data.get("name_localizations"),
            "description": data.get("description", "") if kind == 1 else "",
            "description_localizations": data.get("description_localizations"),
            "default_member_permissions": data.get("default_member_permissions"),
            "contexts": data.get("contexts"),
            "integration_types": data.get("integration_types") or [0],
            "nsfw": bool(data.get("nsfw", False)),
        }
        if data.get("options"):
            command["options"] = data["options"]
        if guild_id is None:
            command["dm_permission"] = data.get("dm_permission", True)
        else:
            command["guild_id"] = str(guild_id)
        return command

    async def get_commands(self, request: web.Request) -> web.Response:
        return json_response(self._state.commands.get(self._command_scope(request), []))

    async def put_commands(self, request: web.Request) -> web.Response:
        guild_id = self._command_scope(request)
        data = _body(request).json
        if not isinstance(data, list):
            raise errors.invalid_form_body(
                errors.field_error([], "BASE_TYPE_ARRAY", "Must be an array.")
            )
        validation.check_commands(data)
        previous = self._state.commands.get(guild_id, [])
        stored = [self._stored_command(c, guild_id, previous) for c in data]
        self._state.commands[guild_id] = stored
        self._state.command_syncs.append((guild_id, stored))
        self._state.touch()
        return json_response(stored)

    async def post_command(self, request: web.Request) -> web.Response:
        guild_id = self._command_scope(request)
        data = _body(request).payload
        validation.check_commands([data])
        previous = self._state.commands.get(guild_id, [])
        command = self._stored_command(data, guild_id, previous)
        existed = any(c["id"] == command["id"] for c in previous)
        self._state.commands[guild_id] = [c for c in previous if c["id"] != command["id"]] + [
            command
        ]
        self._state.touch()
        return json_response(command, status=200 if existed else 201)

    def _find_command(self, request: web.Request) -> tuple[int | None, dict[str, Any]]:
        guild_id = self._command_scope(request)
        command_id = request.match_info["command_id"]
        for command in self._state.commands.get(guild_id, []):
            if command["id"] == command_id:
                return guild_id, command
        raise errors.unknown_command()

    async def get_command(self, request: web.Request) -> web.Response:
        return json_response(self._find_command(request)[1])

    async def patch_command(self, request: web.Request) -> web.Response:
        guild_id, command = self._find_command(request)
        merged = {**command, **_body(request).payload}
        validation.check_commands([merged])
        command.update(self._stored_command(merged, guild_id, [command]))
        self._state.touch()
        return json_response(command)

    async def delete_command(self, request: web.Request) -> web.Response:
        guild_id, command = self._find_command(request)
        self._state.commands[guild_id] = [
            c for c in self._state.commands[guild_id] if c is not command
        ]
        self._state.touch()
        return no_content()

    # ---- interaction callbacks ----------------------------------------------------------

    async def callback(self, request: web.Request) -> web.Response:
        interaction = self._state.interactions.get(_id(request, "interaction_id"))
        if interaction is None or interaction.token != request.match_info["interaction_token"]:
            raise errors.unknown_interaction()
        body = _body(request)
        payload = body.payload
        callback = Callback(
            type=int(payload.get("type") or 0),
            data=dict(payload.get("data") or {}),
            files=body.files,
            at=self._state.clock.time(),
            latency=time.monotonic() - interaction.dispatched_monotonic,
        )
        interaction.callbacks.append(callback)
        try:
            message = await self._acknowledge(interaction, callback)
        except errors.DiscordError as exc:
            callback.status, callback.error_code = exc.status, exc.code
            self._state.touch()
            raise
        callback.status = (
            200 if request.query.get("with_response") in ("1", "true", "True") else 204
        )
        interaction.response = callback
        self._state.touch()
        if callback.status == 204:
            return no_content()
        described: dict[str, Any] = {"id": str(interaction.id), "type": interaction.type}
        if (
            callback.type in (CHANNEL_MESSAGE, DEFERRED_CHANNEL_MESSAGE, UPDATE_MESSAGE)
            and message is not None
        ):
            described["response_message_id"] = str(message.id)
            described["response_message_loading"] = callback.type == DEFERRED_CHANNEL_MESSAGE
            described["response_message_ephemeral"] = message.ephemeral
        resource: dict[str, Any] = {"type": callback.type}
        if message is not None and callback.type != DEFERRED_UPDATE_MESSAGE:
            resource["message"] = payloads.message(self._state, self._cdn, message)
        return json_response({"interaction": described, "resource": resource})

    async def _acknowledge(self, interaction: Interaction, callback: Callback) -> Message | None:
        late = self._state.clock.time() - interaction.created_at > ACK_WINDOW_S
        if interaction.expired or late or self._faults.take_expired_interaction():
            interaction.expired = True
            raise errors.unknown_interaction()
        if interaction.response is not None:
            raise errors.already_acknowledged()
        if callback.type not in ALLOWED_CALLBACKS.get(interaction.type, set()):
            raise errors.invalid_form_body(
                errors.field_error(
                    ["type"],
                    "INTERACTION_RESPONSE_TYPE_INVALID",
                    "Invalid interaction response type",
                )
            )
        channel = self._state.channels[interaction.channel_id]
        message_type = 20 if interaction.type == APPLICATION_COMMAND else 0
        if callback.type == CHANNEL_MESSAGE:
            message = await self._messaging.create(
                channel,
                callback.data,
                callback.files,
                author=self._state.bot,
                via="callback",
                size_limit=interaction.attachment_size_limit,
                interaction=interaction,
                message_type=message_type,
            )
            interaction.original_message_id = message.id
            return message
        if callback.type == DEFERRED_CHANNEL_MESSAGE:
            flags = int(callback.data.get("flags") or 0) & EPHEMERAL
            message = await self._messaging.create(
                channel,
                {"flags": flags},
                [],
                author=self._state.bot,
                via="callback",
                size_limit=interaction.attachment_size_limit,
                interaction=interaction,
                message_type=message_type,
                extra_flags=LOADING,
                allow_empty=True,
            )
            interaction.original_message_id = message.id
            return message
        if callback.type in (DEFERRED_UPDATE_MESSAGE, UPDATE_MESSAGE):
            target = self._state.live_message(interaction.component_message_id or 0)
            if target is None:
                raise errors.unknown_message()
            interaction.original_message_id = target.id
            if callback.type == UPDATE_MESSAGE:
                await self._messaging.edit(
                    target,
                    callback.data,
                    callback.files,
                    via="callback",
                    size_limit=interaction.attachment_size_limit,
                )
            return target
        if callback.type == AUTOCOMPLETE_RESULT:
            validation.check_choices({"data": callback.data, **callback.data})
        if callback.type == MODAL:
            validation.check_modal(callback.data)
        return None

    # ---- follow-ups and webhook messages -------------------------------------------------

    def _webhook_interaction(self, request: web.Request) -> Interaction:
        interaction = self._state.interactions_by_token.get(request.match_info["webhook_token"])
        if _id(request, "webhook_id") != self._state.application.id or interaction is None:
            raise errors.unknown_webhook()
        if self._state.clock.time() - interaction.created_at > TOKEN_LIFETIME_S:
            raise errors.invalid_webhook_token()
        if not interaction.acknowledged:
            raise errors.unknown_webhook()
        return interaction

    def _webhook_message(self, request: web.Request, interaction: Interaction) -> Message:
        raw = request.match_info["message_id"]
        if raw == "@original":
            message_id = interaction.original_message_id
        else:
            message_id = _id(request, "message_id")
            if (
                message_id != interaction.original_message_id
                and message_id not in interaction.followup_ids
            ):
                raise errors.unknown_message()
        message = self._state.live_message(message_id or 0)
        if message is None:
            raise errors.unknown_message()
        return message

    async def create_followup(self, request: web.Request) -> web.Response:
        interaction = self._webhook_interaction(request)
        body = _body(request)
        original = self._state.live_message(interaction.original_message_id or 0)
        if (
            interaction.response_type == DEFERRED_CHANNEL_MESSAGE
            and original is not None
            and original.loading
        ):
            # Discord: the first follow-up after a "thinking" defer fills in the loading message.
            message = await self._messaging.edit(
                original,
                body.payload,
                body.files,
                via="followup",
                size_limit=interaction.attachment_size_limit,
            )
        else:
            channel = self._state.channels[interaction.channel_id]
            message = await self._messaging.create(
                channel,
                body.payload,
                body.files,
                author=self._state.bot,
                via="followup",
                size_limit=interaction.attachment_size_limit,
                interaction=interaction,
            )
            interaction.followup_ids.append(message.id)
        if request.query.get("wait") in ("1", "true", "True"):
            return json_response(payloads.message(self._state, self._cdn, message))
        return no_content()

    async def get_webhook_message(self, request: web.Request) -> web.Response:
        interaction = self._webhook_interaction(request)
        return json_response(
            payloads.message(self._state, self._cdn, self._webhook_message(request, interaction))
        )

    async def edit_webhook_message(self, request: web.Request) -> web.Response:
        interaction = self._webhook_interaction(request)
        message = self._webhook_message(request, interaction)
        body = _body(request)
        await self._messaging.edit(
            message,
            body.payload,
            body.files,
            via="webhook-edit",
            size_limit=interaction.attachment_size_limit,
        )
        return json_response(payloads.message(self._state, self._cdn, message))

    async def delete_webhook_message(self, request: web.Request) -> web.Response:
        interaction = self._webhook_interaction(request)
        await self._messaging.delete(self._webhook_message(request, interaction))
        return no_content()

    # ---- channels and messages -----------------------------------------------------------

    def _channel(self, request: web.Request) -> Channel:
        channel = self._state.channels.get(_id(request, "channel_id"))
        if channel is None:
            raise errors.unknown_channel()
        if not self._state.bot_in(channel):
            # A guild the bot is not in, or a group DM: only interaction webhooks reach there.
            raise errors.DiscordError(403, 50001, "Missing Access")
        return channel

    def _channel_message(self, request: web.Request, channel: Channel) -> Message:
        message = self._state.live_message(_id(request, "message_id"))
        if message is None or message.channel_id != channel.id or message.ephemeral:
            raise errors.unknown_message()
        return message

    def _size_limit(self, channel: Channel) -> int:
        guild = self._state.guild_of(channel)
        return guild.attachment_size_limit if guild else 10 * MiB

    async def get_channel(self, request: web.Request) -> web.Response:
        return json_response(payloads.channel(self._channel(request)))

    async def get_messages(self, request: web.Request) -> web.Response:
        channel = self._channel(request)
        limit = min(int(request.query.get("limit", 50)), 100)
        before = int(request.query.get("before", 0)) or None
        after = int(request.query.get("after", 0)) or None
        found = [
            m
            for m in self._state.find_messages(
                lambda m: m.channel_id == channel.id and not m.ephemeral
            )
            if (before is None or m.id < before) and (after is None or m.id > after)
        ]
        found.sort(key=lambda m: m.id, reverse=True)
        return json_response([payloads.message(self._state, self._cdn, m) for m in found[:limit]])

    async def create_message(self, request: web.Request) -> web.Response:
        channel = self._channel(request)
        if channel.is_dm and not channel.recipients[0].accepts_dms:
            raise errors.cannot_dm()
        if not channel.bot_can_send:
            raise errors.missing_permissions()
        body = _body(request)
        message = await self._messaging.create(
            channel,
            body.payload,
            body.files,
            author=self._state.bot,
            via="channel",
            size_limit=self._size_limit(channel),
        )
        return json_response(payloads.message(self._state, self._cdn, message))

    async def get_message(self, request: web.Request) -> web.Response:
        channel = self._channel(request)
        return json_response(
            payloads.message(self._state, self._cdn, self._channel_message(request, channel))
        )

    async def edit_message(self, request: web.Request) -> web.Response:
        channel = self._channel(request)
        message = self._channel_message(request, channel)
        if message.author.id != self._state.bot.id:
            raise errors.DiscordError(403, 50005, "Cannot edit a message authored by another user")
        body = _body(request)
        await self._messaging.edit(
            message,
            body.payload,
            body.files,
            via="channel-edit",
            size_limit=self._size_limit(channel),
        )
        return json_response(payloads.message(self._state, self._cdn, message))

    async def delete_message(self, request: web.Request) -> web.Response:
        channel = self._channel(request)
        await self._messaging.delete(self._channel_message(request, channel))
        return no_content()

    async def add_reaction(self, request: web.Request) -> web.Response:
        channel = self._channel(request)
        message = self._channel_message(request, channel)
        self._state.reactions.append((message.id, self._state.bot.id, request.match_info["emoji"]))
        self._state.touch()
        return no_content()

    async def remove_reaction(self, request: web.Request) -> web.Response:
        channel = self._channel(request)
        message = self._channel_message(request, channel)
        entry = (message.id, self._state.bot.id, request.match_info["emoji"])
        if entry in self._state.reactions:
            self._state.reactions.remove(entry)
        self._state.touch()
        return no_content()

    async def typing(self, request: web.Request) -> web.Response:
        self._channel(request)
        return no_content()

    # ---- guilds ------------------------------------------------------------------------

    def _guild(self, request: web.Request) -> Guild:
        guild = self._state.guilds.get(_id(request, "guild_id"))
        if guild is None:
            raise errors.unknown_guild()
        return guild

    async def get_guild(self, request: web.Request) -> web.Response:
        return json_response(payloads.guild(self._guild(request)))

    async def get_guild_channels(self, request: web.Request) -> web.Response:
        return json_response([payloads.channel(c) for c in self._guild(request).channels.values()])

    async def get_guild_roles(self, request: web.Request) -> web.Response:
        return json_response([payloads.role(r) for r in self._guild(request).roles.values()])

    async def get_member(self, request: web.Request) -> web.Response:
        member = self._guild(request).members.get(_id(request, "user_id"))
        if member is None:
            raise errors.unknown_member()
        return json_response(payloads.member(self._state, member))
