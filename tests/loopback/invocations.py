"""Turning what a test "types" or "clicks" into interaction payloads Discord would send.

Commands are looked up among those the bot actually synced, and options are checked the
way the Discord client checks them (names, types, required, choices, ranges), so a test
that types `/animate image:<photo>` fails loudly when the bot's command signature changed,
instead of sending the bot something Discord never would.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from . import components as comp
from . import payloads
from .cdn import Cdn
from .ids import interaction_token
from .media import content_type_for, image_size, sniff_filename
from .state import (
    ALL_PERMISSIONS,
    Attachment,
    Channel,
    DiscordState,
    Interaction,
    Member,
    Message,
    MiB,
    Role,
    User,
)

(
    SUB_COMMAND,
    SUB_COMMAND_GROUP,
    STRING,
    INTEGER,
    BOOLEAN,
    USER,
    CHANNEL,
    ROLE,
    MENTIONABLE,
    NUMBER,
    ATTACHMENT,
) = range(1, 12)
OPTION_TYPE_NAMES = {
    STRING: "string",
    INTEGER: "integer",
    BOOLEAN: "boolean",
    USER: "user",
    CHANNEL: "channel",
    ROLE: "role",
    MENTIONABLE: "mentionable",
    NUMBER: "number",
    ATTACHMENT: "attachment",
}


class CommandUnavailable(AssertionError):
    """The Discord client would not offer this command to this user here (not synced,
    missing `default_member_permissions`, DMs disabled, NSFW command in a SFW channel)."""


@dataclass(frozen=True)
class Upload:
    """A file a test attaches; bytes alone work too (the name is then sniffed)."""

    data: bytes
    filename: str | None = None
    content_type: Literal["auto"] | str | None = "auto"
    """'auto': from the extension, as Discord does; None: Discord sent no content_type."""
    description: str | None = None
    declared_size: int | None = None
    """The size the interaction payload claims, when a test forges it."""


def store_upload(
    state: DiscordState,
    value: bytes | bytearray | Upload,
    *,
    channel_id: int,
    ephemeral: bool = True,
) -> Attachment:
    upload = value if isinstance(value, Upload) else Upload(bytes(value))
    filename = upload.filename or sniff_filename(upload.data)
    content_type = (
        content_type_for(filename) if upload.content_type == "auto" else upload.content_type
    )
    size = (
        image_size(upload.data)
        if (content_type or content_type_for(filename) or "").startswith("image/")
        else None
    )
    return state.add_attachment(
        upload.data,
        filename,
        channel_id=channel_id,
        content_type=content_type,
        width=size[0] if size else None,
        height=size[1] if size else None,
        description=upload.description,
        ephemeral=ephemeral,
        declared_size=upload.declared_size,
    )


def find_command(
    state: DiscordState, name: str, *, guild_id: int | None, kind: int = 1
) -> dict[str, Any]:
    scopes = ([guild_id] if guild_id is not None else []) + [None]
    for scope in scopes:
        for command in state.commands.get(scope, []):
            if command["name"] == name and command.get("type", 1) == kind:
                return command
    synced = sorted({c["name"] for c in state.all_commands() if c.get("type", 1) == kind})
    raise CommandUnavailable(
        f"no synced command {name!r} (type {kind}) for this context; synced: {synced}"
    )


USER_APP_PERMISSIONS = (1 << 10) | (1 << 11) | (1 << 14) | (1 << 15) | (1 << 16)
"""What a user-installed app may do where the bot is not: view, send (through the interaction),
embed links, attach files, read history."""


def check_available(
    state: DiscordState, command: dict[str, Any], user: User, channel: Channel
) -> None:
    """What the Discord client checks before it lets a user run a command."""
    guild = state.guild_of(channel)
    if not state.bot_in(channel):
        # Only the user's own install of the app reaches here: a global command that allows
        # user installs (integration type 1) in this context (0 guild, 2 private channel).
        context = 0 if guild is not None else 2
        if command.get("guild_id") or 1 not in (command.get("integration_types") or [0]):
            raise CommandUnavailable(f"/{command['name']} cannot be installed by users")
        contexts = command.get("contexts")
        if contexts is not None and context not in contexts:
            raise CommandUnavailable(f"/{command['name']} is not available in context {context}")
        return
    if guild is None:
        contexts = command.get("contexts")
        if (
            command.get("guild_id")
            or command.get("dm_permission") is False
            or (contexts is not None and 1 not in contexts)
        ):
            raise CommandUnavailable(f"/{command['name']} is not available in DMs")
        return
    contexts = command.get("contexts")
    if contexts is not None and 0 not in contexts:
        raise CommandUnavailable(f"/{command['name']} is not available in guilds")
    required = command.get("default_member_permissions")
    if required is not None and (guild.permissions_of(user.id) & int(required)) != int(required):
        raise CommandUnavailable(
            f"{user.username} lacks default_member_permissions={required} for /{command['name']}"
        )
    if command.get("nsfw") and not channel.nsfw:
        raise CommandUnavailable(
            f"/{command['name']} is age-restricted and #{channel.name} is not NSFW"
        )


class _Resolved:
    def __init__(self, state: DiscordState, cdn: Cdn, channel: Channel) -> None:
        self._state, self._cdn, self._channel = state, cdn, channel
        self.data: dict[str, dict[str, Any]] = {}

    def _put(self, kind: str, key: int, value: dict[str, Any]) -> None:
        self.data.setdefault(kind, {})[str(key)] = value

    def user(self, user: User) -> None:
        self._put("users", user.id, payloads.user(user))
        guild = self._state.guild_of(self._channel)
        if guild is not None and user.id in guild.members:
            member = payloads.member(
                self._state,
                guild.members[user.id],
                with_user=False,
                permissions=guild.permissions_of(user.id),
            )
            self._put("members", user.id, member)

    def role(self, role: Role) -> None:
        self._put("roles", role.id, payloads.role(role))

    def channel(self, channel: Channel) -> None:
        data = {
            k: v
            for k, v in payloads.channel(channel).items()
            if k in ("id", "name", "type", "nsfw", "parent_id", "guild_id")
        }
        self._put("channels", channel.id, {**data, "permissions": str(ALL_PERMISSIONS)})

    def attachment(self, attachment: Attachment) -> None:
        self._put("attachments", attachment.id, payloads.attachment(self._cdn, attachment))

    def message(self, message: Message) -> None:
        self._put("messages", message.id, payloads.message(self._state, self._cdn, message))


def build_options(
    state: DiscordState,
    cdn: Cdn,
    command: dict[str, Any],
    path: list[str],
    options: Mapping[str, Any],
    channel: Channel,
    *,
    focused: str | None = None,
) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]]]:
    """The `options` list (nested for subcommands) and `resolved` map of an interaction."""
    resolved = _Resolved(state, cdn, channel)
    node: dict[str, Any] = command
    chain: list[dict[str, Any]] = []
    for name in path:
        subs = {
            o["name"]: o
            for o in node.get("options") or []
            if o["type"] in (SUB_COMMAND, SUB_COMMAND_GROUP)
        }
        if name not in subs:
            where = " ".join([command["name"], *path])
            raise AssertionError(f"/{where} has no subcommand {name!r}; has {sorted(subs)}")
        node = subs[name]
        chain.append(node)
    declared = {o["name"]: o for o in node.get("options") or []}
    slash = "/" + " ".join([command["name"], *path])
    if any(o["type"] in (SUB_COMMAND, SUB_COMMAND_GROUP) for o in declared.values()):
        raise AssertionError(f"{slash} needs a subcommand: one of {sorted(declared)}")
    unknown = set(options) - set(declared)
    if unknown:
        raise AssertionError(
            f"{slash} has no option(s) {sorted(unknown)}; declared: {sorted(declared)}"
        )
    leaf: list[dict[str, Any]] = []
    for name, spec in declared.items():
        if name not in options:
            if spec.get("required") and focused is None:
                raise AssertionError(f"option {name!r} of /{command['name']} is required")
            continue
        if name == focused:
            if not spec.get("autocomplete"):
                raise AssertionError(f"option {name!r} of /{command['name']} has no autocomplete")
            leaf.append(
                {"name": name, "type": spec["type"], "value": str(options[name]), "focused": True}
            )
            continue
        leaf.append(
            {
                "name": name,
                "type": spec["type"],
                "value": _option_value(spec, options[name], resolved, state, channel),
            }
        )
    if focused is not None and focused not in options:
        raise AssertionError(f"focused option {focused!r} needs a typed value in options")
    for sub in reversed(chain):
        leaf = [{"name": sub["name"], "type": sub["type"], "options": leaf}]
    return leaf, resolved.data


def _option_value(
    spec: dict[str, Any], value: Any, resolved: _Resolved, state: DiscordState, channel: Channel
) -> Any:
    kind, name = spec["type"], spec["name"]
    expected = OPTION_TYPE_NAMES.get(kind, kind)
    wrong = AssertionError(f"option {name!r} is a {expected}, got {type(value).__name__} {value!r}")
    scalar = {STRING: (str,), INTEGER: (int,), NUMBER: (int, float), BOOLEAN: (bool,)}.get(kind)
    if scalar is not None and (
        not isinstance(value, scalar) or (kind != BOOLEAN and isinstance(value, bool))
    ):
        raise wrong
    if kind == STRING and not spec.get("min_length", 0) <= len(value) <= spec.get(
        "max_length", 6000
    ):
        raise AssertionError(f"option {name!r}: length {len(value)} outside min/max_length")
    if kind in (INTEGER, NUMBER):
        low, high = spec.get("min_value"), spec.get("max_value")
        if (low is not None and value < low) or (high is not None and value > high):
            raise AssertionError(f"option {name!r}: {value} outside [{low}, {high}]")
    if kind in (STRING, INTEGER, NUMBER, BOOLEAN):
        choices = spec.get("choices")
        if choices and value not in [c["value"] for c in choices]:
            allowed = [c["value"] for c in choices]
            raise AssertionError(f"option {name!r}: {value!r} is not one of the choices {allowed}")
        return value
    if kind == ATTACHMENT:
        if isinstance(value, (bytes, bytearray, Upload)):
            value = store_upload(state, value, channel_id=channel.id)
        if not isinstance(value, Attachment):
            raise wrong
        resolved.attachment(value)
        return str(value.id)
    if kind in (USER, MENTIONABLE) and isinstance(value, (User, Member)):
        user = value.user if isinstance(value, Member) else value
        resolved.user(user)
        return str(user.id)
    if kind in (ROLE, MENTIONABLE) and isinstance(value, Role):
        resolved.role(value)
        return str(value.id)
    if kind == CHANNEL and isinstance(value, Channel):
        types = spec.get("channel_types")
        if types and value.type not in types:
            raise AssertionError(f"option {name!r}: channel type {value.type} not in {types}")
        resolved.channel(value)
        return str(value.id)
    raise wrong


def interaction_payload(
    state: DiscordState,
    cdn: Cdn,
    *,
    kind: int,
    data: dict[str, Any],
    user: User,
    channel: Channel,
    message: Message | None = None,
    locale: str | None = None,
    attachment_size_limit: int | None = None,
) -> Interaction:
    """Register an interaction and build the INTERACTION_CREATE payload Discord would send."""
    interaction_id = state.ids.next()
    token = interaction_token(interaction_id)
    guild = state.guild_of(channel)
    limit = attachment_size_limit or (guild.attachment_size_limit if guild else 10 * MiB)
    payload: dict[str, Any] = {
        "id": str(interaction_id),
        "application_id": str(state.application.id),
        "type": kind,
        "data": data,
        "channel_id": str(channel.id),
        "token": token,
        "version": 1,
        "locale": locale or user.locale,
        "entitlements": [],
        "entitlement_sku_ids": [],
        "attachment_size_limit": limit,
    }
    if guild is not None:
        if user.id not in guild.members:
            raise AssertionError(
                f"{user.username} is not a member of {guild.name}; add_member() first"
            )
        permissions = guild.permissions_of(user.id)
        payload.update(
            guild_id=str(guild.id),
            guild={
                "id": str(guild.id),
                "locale": guild.preferred_locale,
                "features": list(guild.features),
            },
            guild_locale=guild.preferred_locale,
            member=payloads.member(state, guild.members[user.id], permissions=permissions),
            channel={**payloads.channel(channel), "permissions": str(permissions)},
            app_permissions=str(guild.permissions_of(state.bot.id)),
            context=0,
            authorizing_integration_owners={"0": str(guild.id)},
        )
        if not state.bot_in(channel):  # the member's own install in a guild without the bot
            payload.update(
                app_permissions=str(USER_APP_PERMISSIONS),
                authorizing_integration_owners={"1": str(user.id)},
            )
    elif not state.bot_in(channel):  # a group DM: only the member's own install is there
        payload.update(
            user=payloads.user(user),
            channel=payloads.channel(channel),
            app_permissions=str(USER_APP_PERMISSIONS),
            context=2,
            authorizing_integration_owners={"1": str(user.id)},
        )
    else:
        payload.update(
            user=payloads.user(user),
            channel=payloads.channel(channel),
            app_permissions=str(ALL_PERMISSIONS & ~(1 << 3)),
            context=1,
            authorizing_integration_owners={"0": "0"},
        )
    if message is not None:
        payload["message"] = payloads.message(state, cdn, message)
    interaction = Interaction(
        id=interaction_id,
        token=token,
        type=kind,
        payload=payload,
        user=user,
        guild_id=guild.id if guild else None,
        channel_id=channel.id,
        created_at=state.clock.time(),
        attachment_size_limit=limit,
    )
    return interaction


def modal_uploads(
    state: DiscordState, cdn: Cdn, modal: dict[str, Any], values: Mapping[str, Any], channel: Channel
) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """Files chosen in a modal's file-upload fields (type 19), as Discord sends them: each is
    uploaded as an ephemeral attachment, the field's value becomes the attachment ids and the
    attachments go to `resolved`. Returns the values with ids and the `resolved` map."""
    out = dict(values)
    resolved = _Resolved(state, cdn, channel)
    for component in modal.get("components") or []:
        label = component.get("label") if component.get("type") == comp.LABEL else None
        field = component.get("component") if label is not None else None
        if not isinstance(field, dict) or field.get("type") != comp.FILE_UPLOAD:
            continue
        key = next((k for k in (label, field.get("custom_id")) if k in out), None)
        if key is None:
            continue
        chosen = out[key] if isinstance(out[key], (list, tuple)) else [out[key]]
        low, high = field.get("min_values", 1), field.get("max_values", 1)
        if chosen and not low <= len(chosen) <= high:
            raise AssertionError(f"modal field {label!r} takes {low}..{high} files")
        ids = []
        for upload in chosen:
            attachment = store_upload(state, upload, channel_id=channel.id)
            resolved.attachment(attachment)
            ids.append(attachment.id)
        out[key] = ids
    return out, resolved.data


def modal_submission(modal: dict[str, Any], values: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The `components` of a modal submit, mirroring the modal's layout, filled from `values`
    keyed by field label or custom_id. Checks required fields and lengths like the client."""
    remaining = dict(values)
    submitted: list[dict[str, Any]] = []

    def fill(field: dict[str, Any], label: str | None) -> dict[str, Any]:
        key = next(
            (
                k
                for k in (label, field.get("label"), field.get("custom_id"))
                if k is not None and k in remaining
            ),
            None,
        )
        value = remaining.pop(key) if key is not None else None
        out: dict[str, Any] = {"type": field["type"], "custom_id": field.get("custom_id")}
        if field.get("id") is not None:
            out["id"] = field["id"]
        name = label or field.get("label") or field.get("custom_id")
        if field["type"] == 4:
            text = "" if value is None else str(value)
            if field.get("required", True) and not text:
                raise AssertionError(f"modal field {name!r} is required")
            if text and not field.get("min_length", 0) <= len(text) <= field.get(
                "max_length", 4000
            ):
                raise AssertionError(
                    f"modal field {name!r}: length {len(text)} outside min/max_length"
                )
            out["value"] = text
        elif field["type"] == comp.RADIO_GROUP:
            # The client keeps a preselected option selected: untouched, the default is sent.
            options = [o["value"] for o in field.get("options") or []]
            chosen_one = (
                str(value) if value is not None
                else next((o["value"] for o in field.get("options") or [] if o.get("default")), None)
            )
            if chosen_one is not None and chosen_one not in options:
                raise AssertionError(f"modal field {name!r} has no option {chosen_one!r}")
            if field.get("required", True) and chosen_one is None:
                raise AssertionError(f"modal field {name!r} is required")
            out["value"] = chosen_one
        elif field["type"] == comp.CHECKBOX_GROUP:
            options = [o["value"] for o in field.get("options") or []]
            ticked = (
                [str(v) for v in (value if isinstance(value, (list, tuple)) else [value])]
                if value is not None
                else [o["value"] for o in field.get("options") or [] if o.get("default")]
            )
            if any(v not in options for v in ticked):
                raise AssertionError(f"modal field {name!r}: {ticked} not among {options}")
            low = field.get("min_values", 1 if field.get("required", True) else 0)
            high = field.get("max_values", len(options))
            if not (low <= len(ticked) <= high):
                raise AssertionError(f"modal field {name!r} takes {low}..{high} ticks")
            out["values"] = ticked
        elif field["type"] == comp.CHECKBOX:
            out["value"] = bool(field.get("default", False) if value is None else value)
        else:
            chosen = (
                []
                if value is None
                else (list(value) if isinstance(value, (list, tuple)) else [value])
            )
            if field.get("required", True) and not chosen:
                raise AssertionError(f"modal field {name!r} is required")
            out["values"] = [str(v) for v in chosen]
        return out

    for component in modal.get("components") or []:
        if component.get("type") == 1:
            row = {
                "type": 1,
                "components": [fill(child, None) for child in component.get("components") or []],
            }
            if component.get("id") is not None:
                row["id"] = component["id"]
            submitted.append(row)
        elif component.get("type") == 18:
            entry: dict[str, Any] = {
                "type": 18,
                "component": fill(component["component"], component.get("label")),
            }
            if component.get("id") is not None:
                entry["id"] = component["id"]
            submitted.append(entry)
        elif component.get("type") == 10:
            entry = {"type": 10}
            if component.get("id") is not None:
                entry["id"] = component["id"]
            submitted.append(entry)
    if remaining:
        raise AssertionError(f"modal {modal.get('title')!r} has no field(s) {sorted(remaining)}")
    return submitted
