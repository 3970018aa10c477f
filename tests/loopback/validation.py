"""Discord's limits on what a bot sends, enforced so bot tests fail where Discord would.

discord.py checks few of these itself: a 2001-character message, a 101-character custom_id
or a sixth action row is only refused by Discord (50035 Invalid Form Body). The loopback
refuses them the same way instead of recording a message Discord would never have shown.
"""

from __future__ import annotations

import re
from typing import Any

from . import components as comp
from .errors import field_error, invalid_form_body, merge
from .state import COMPONENTS_V2

MAX_CONTENT = 2000
MAX_EMBEDS = 10
MAX_EMBED_TOTAL = 6000
MAX_FILES = 10
MAX_CUSTOM_ID = 100
MAX_BUTTON_LABEL = 80
COMMAND_NAME = re.compile(r"^[-_'\w]{1,32}$")


class _Errors:
    def __init__(self) -> None:
        self.tree: dict[str, Any] = {}

    def add(self, path: list[str | int], code: str, message: str) -> None:
        merge(self.tree, field_error(path, code, message))

    def raise_if_any(self) -> None:
        if self.tree:
            raise invalid_form_body(self.tree)


def _max_length(errors: _Errors, path: list[str | int], value: Any, limit: int) -> None:
    if isinstance(value, str) and len(value) > limit:
        errors.add(path, "BASE_TYPE_MAX_LENGTH", f"Must be {limit} or fewer in length.")


def _embed_length(embed: dict[str, Any]) -> int:
    total = len(embed.get("title") or "") + len(embed.get("description") or "")
    total += len((embed.get("footer") or {}).get("text") or "")
    total += len((embed.get("author") or {}).get("name") or "")
    for f in embed.get("fields") or []:
        total += len(f.get("name") or "") + len(f.get("value") or "")
    return total


def check_message(payload: dict[str, Any], *, file_count: int = 0) -> None:
    """Raise 50035 for a message body Discord would reject (create or edit)."""
    errors = _Errors()
    _max_length(errors, ["content"], payload.get("content"), MAX_CONTENT)
    embeds = payload.get("embeds") or []
    if len(embeds) > MAX_EMBEDS:
        errors.add(["embeds"], "BASE_TYPE_MAX_LENGTH", f"Must be {MAX_EMBEDS} or fewer in length.")
    for i, embed in enumerate(embeds):
        _max_length(errors, ["embeds", i, "title"], embed.get("title"), 256)
        _max_length(errors, ["embeds", i, "description"], embed.get("description"), 4096)
        fields = embed.get("fields") or []
        if len(fields) > 25:
            errors.add(
                ["embeds", i, "fields"], "BASE_TYPE_MAX_LENGTH", "Must be 25 or fewer in length."
            )
        for j, f in enumerate(fields):
            _max_length(errors, ["embeds", i, "fields", j, "name"], f.get("name"), 256)
            _max_length(errors, ["embeds", i, "fields", j, "value"], f.get("value"), 1024)
    if sum(_embed_length(e) for e in embeds) > MAX_EMBED_TOTAL:
        errors.add(["embeds"], "MAX_EMBED_SIZE_EXCEEDED", "Embed size exceeds maximum size of 6000")
    if file_count > MAX_FILES or len(payload.get("attachments") or []) > MAX_FILES:
        errors.add(
            ["attachments"], "BASE_TYPE_MAX_LENGTH", f"Must be {MAX_FILES} or fewer in length."
        )
    v2 = bool((payload.get("flags") or 0) & COMPONENTS_V2)
    _check_components(errors, payload.get("components") or [], v2=v2)
    if not v2 and any(c.get("type") in comp.V2_TYPES for c in comp.walk(payload.get("components"))):
        errors.add(
            ["components"], "COMPONENT_TYPE_REQUIRES_COMPONENTS_V2",
            "Layout and content components need MessageFlags.IS_COMPONENTS_V2",
        )
    if (payload.get("flags") or 0) & COMPONENTS_V2 and (
        payload.get("content") or payload.get("embeds")
    ):
        errors.add(
            ["content"],
            "MESSAGE_CANNOT_USE_LEGACY_FIELDS_WITH_COMPONENTS_V2",
            "The 'content' and 'embeds' fields cannot be used with MessageFlags.IS_COMPONENTS_V2",
        )
    errors.raise_if_any()


def _check_components(errors: _Errors, rows: list[dict[str, Any]], *, v2: bool) -> None:
    if not v2:
        if len(rows) > 5:
            errors.add(["components"], "BASE_TYPE_MAX_LENGTH", "Must be 5 or fewer in length.")
        for i, row in enumerate(rows):
            if row.get("type") != comp.ACTION_ROW:
                errors.add(
                    ["components", i, "type"],
                    "COMPONENT_LAYOUT_WIDTH_EXCEEDED",
                    "Top-level components must be action rows",
                )
                continue
            children = row.get("components") or []
            kinds = {c.get("type") for c in children}
            if (
                not children
                or len(children) > 5
                or (kinds & comp.SELECT_TYPES and len(children) > 1)
            ):
                errors.add(
                    ["components", i, "components"],
                    "COMPONENT_LAYOUT_WIDTH_EXCEEDED",
                    "The specified component exceeds the maximum width",
                )
    else:
        _check_v2(errors, rows)
    seen: set[str] = set()
    for c in comp.walk(rows):
        custom_id = c.get("custom_id")
        if c.get("type") == comp.BUTTON:
            _max_length(errors, ["components", "label"], c.get("label"), MAX_BUTTON_LABEL)
            if c.get("style") == comp.LINK_STYLE:
                if not c.get("url") or custom_id:
                    errors.add(
                        ["components", "url"],
                        "BUTTON_COMPONENT_URL_REQUIRED",
                        "A link button needs a url and no custom_id",
                    )
                continue
            if c.get("style") == comp.PREMIUM_STYLE:
                continue
        if c.get("type") in comp.SELECT_TYPES | {comp.BUTTON}:
            if not custom_id:
                errors.add(
                    ["components", "custom_id"], "BASE_TYPE_REQUIRED", "This field is required"
                )
            elif len(custom_id) > MAX_CUSTOM_ID:
                errors.add(
                    ["components", "custom_id"],
                    "BASE_TYPE_MAX_LENGTH",
                    f"Must be {MAX_CUSTOM_ID} or fewer in length.",
                )
            elif custom_id in seen:
                errors.add(
                    ["components", "custom_id"],
                    "COMPONENT_CUSTOM_ID_DUPLICATED",
                    "Component custom id cannot be duplicated",
                )
            else:
                seen.add(custom_id)
        if c.get("type") == comp.STRING_SELECT and not 1 <= len(c.get("options") or []) <= 25:
            errors.add(
                ["components", "options"],
                "BASE_TYPE_BAD_LENGTH",
                "Must be between 1 and 25 in length.",
            )


CONTAINER_CHILDREN = frozenset(
    {comp.ACTION_ROW, comp.TEXT_DISPLAY, comp.SECTION, comp.MEDIA_GALLERY, comp.SEPARATOR, comp.FILE}
)
TOP_LEVEL_V2 = CONTAINER_CHILDREN | {comp.CONTAINER}
MAX_V2_COMPONENTS = 40
MAX_V2_TEXT = 4000


def _check_v2(errors: _Errors, rows: list[dict[str, Any]]) -> None:
    """A Components V2 message: 40 components in all (nested ones count), 4000 characters
    of text in all, and each layout component's own shape."""
    if sum(1 for _ in comp.walk(rows)) > MAX_V2_COMPONENTS:
        errors.add(["components"], "BASE_TYPE_MAX_LENGTH", f"Must be {MAX_V2_COMPONENTS} or fewer in length.")
    if sum(len(text) for text in comp.texts(rows)) > MAX_V2_TEXT:
        errors.add(
            ["components"], "MAX_COMPONENT_TEXT_LENGTH_EXCEEDED",
            f"The total length of text in components must be {MAX_V2_TEXT} or fewer.",
        )
    for i, c in enumerate(rows):
        if c.get("type") not in TOP_LEVEL_V2:
            errors.add(["components", i, "type"], "UNION_TYPE_CHOICES", "Value is not a top-level component")
    for c in comp.walk(rows):
        kind = c.get("type")
        children = c.get("components") or []
        if kind == comp.CONTAINER:
            if not children:
                errors.add(["components", "components"], "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 10 in length.")
            for child in children:
                if child.get("type") not in CONTAINER_CHILDREN:
                    errors.add(["components", "components", "type"], "UNION_TYPE_CHOICES", "Not allowed in a container")
            colour = c.get("accent_color")
            if colour is not None and not 0 <= int(colour) <= 0xFFFFFF:
                errors.add(["components", "accent_color"], "NUMBER_TYPE_MAX", "Must be 16777215 or less.")
        elif kind == comp.ACTION_ROW:
            kinds = {child.get("type") for child in children}
            if not children or len(children) > 5 or (kinds & comp.SELECT_TYPES and len(children) > 1):
                errors.add(
                    ["components", "components"], "COMPONENT_LAYOUT_WIDTH_EXCEEDED",
                    "The specified component exceeds the maximum width",
                )
        elif kind == comp.SECTION:
            accessory = c.get("accessory") or {}
            if not 1 <= len(children) <= 3 or any(x.get("type") != comp.TEXT_DISPLAY for x in children):
                errors.add(["components", "components"], "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 3 text displays.")
            if accessory.get("type") not in (comp.THUMBNAIL, comp.BUTTON):
                errors.add(["components", "accessory"], "BASE_TYPE_REQUIRED", "A section needs a thumbnail or button accessory.")
        elif kind == comp.MEDIA_GALLERY:
            items = c.get("items") or []
            if not 1 <= len(items) <= 10:
                errors.add(["components", "items"], "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 10 in length.")
            for item in items:
                _max_length(errors, ["components", "items", "description"], item.get("description"), 1024)
        elif kind == comp.THUMBNAIL:
            _max_length(errors, ["components", "description"], c.get("description"), 1024)
        elif kind == comp.TEXT_DISPLAY and not c.get("content"):
            errors.add(["components", "content"], "BASE_TYPE_REQUIRED", "This field is required")
    for _, media in comp.media(rows):
        if not media.get("url"):
            errors.add(["components", "media", "url"], "BASE_TYPE_REQUIRED", "This field is required")


def check_modal(data: dict[str, Any]) -> None:
    errors = _Errors()
    if not data.get("custom_id") or len(data["custom_id"]) > MAX_CUSTOM_ID:
        errors.add(
            ["data", "custom_id"], "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 100 in length."
        )
    if not data.get("title") or len(data["title"]) > 45:
        errors.add(["data", "title"], "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 45 in length.")
    rows = data.get("components") or []
    if not 1 <= len(rows) <= 5:
        errors.add(
            ["data", "components"], "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 5 in length."
        )
    for c in comp.walk(rows):
        if c.get("type") == comp.TEXT_INPUT:
            _max_length(errors, ["data", "components", "label"], c.get("label"), 45)
            if not c.get("custom_id") or len(c["custom_id"]) > MAX_CUSTOM_ID:
                errors.add(
                    ["data", "components", "custom_id"],
                    "BASE_TYPE_BAD_LENGTH",
                    "Must be between 1 and 100 in length.",
                )
        if c.get("type") == comp.LABEL:
            _max_length(errors, ["data", "components", "label"], c.get("label"), 45)
            _max_length(errors, ["data", "components", "description"], c.get("description"), 100)
        if c.get("type") in (comp.RADIO_GROUP, comp.CHECKBOX_GROUP):
            options = c.get("options") or []
            low = 2 if c["type"] == comp.RADIO_GROUP else 1
            if not low <= len(options) <= 10:
                errors.add(
                    ["data", "components", "options"],
                    "BASE_TYPE_BAD_LENGTH",
                    f"Must be between {low} and 10 in length.",
                )
            for option in options:
                _max_length(errors, ["data", "components", "options", "label"], option.get("label"), 100)
                _max_length(
                    errors, ["data", "components", "options", "description"], option.get("description"), 100
                )
            if c["type"] == comp.RADIO_GROUP and sum(bool(o.get("default")) for o in options) > 1:
                errors.add(
                    ["data", "components", "options"],
                    "COMPONENT_INVALID_DEFAULT",
                    "A radio group can have at most one default option.",
                )
    errors.raise_if_any()


def check_choices(data: dict[str, Any]) -> None:
    errors = _Errors()
    choices = data.get("choices") or []
    if len(choices) > 25:
        errors.add(["data", "choices"], "BASE_TYPE_MAX_LENGTH", "Must be 25 or fewer in length.")
    for i, choice in enumerate(choices):
        if not 1 <= len(choice.get("name") or "") <= 100:
            errors.add(
                ["data", "choices", i, "name"],
                "BASE_TYPE_BAD_LENGTH",
                "Must be between 1 and 100 in length.",
            )
        _max_length(errors, ["data", "choices", i, "value"], choice.get("value"), 100)
    errors.raise_if_any()


def check_commands(commands: list[dict[str, Any]]) -> None:
    """What Discord refuses in a bulk overwrite: names, descriptions, option order and counts."""
    errors = _Errors()
    if len(commands) > 100:
        errors.add([], "BASE_TYPE_MAX_LENGTH", "Must be 100 or fewer in length.")
    seen: set[tuple[str, int]] = set()
    for i, command in enumerate(commands):
        kind = command.get("type", 1)
        name = command.get("name") or ""
        if (name, kind) in seen:
            errors.add(
                [i, "name"],
                "APPLICATION_COMMANDS_DUPLICATE_NAME",
                f"Application command names must be unique: {name}",
            )
        seen.add((name, kind))
        if kind == 1:
            _check_chat_input(errors, [i], command)
        elif not 1 <= len(name) <= 32:
            errors.add([i, "name"], "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 32 in length.")
        else:
            _check_localizations(errors, [i], command, chat_input=False)
    errors.raise_if_any()


LOCALES = frozenset(
    "id da de en-GB en-US es-ES es-419 fr hr it lt hu nl no pl pt-BR ro fi sv-SE vi tr cs el bg "
    "ru uk hi th zh-CN ja zh-TW ko".split()
)
"""Discord's locales: a localization under any other key is refused."""


def _check_localizations(
    errors: _Errors, path: list[str | int], node: dict[str, Any], *, chat_input: bool
) -> None:
    """Localized names follow the name rules, localized descriptions the description rules."""
    for field, limit in (("name_localizations", 32), ("description_localizations", 100)):
        for locale, text in (node.get(field) or {}).items():
            where = [*path, field, locale]
            if locale not in LOCALES:
                errors.add(where, "LOCALE_INVALID", f"Invalid locale {locale!r}")
            if not 1 <= len(text or "") <= limit:
                errors.add(where, "BASE_TYPE_BAD_LENGTH", f"Must be between 1 and {limit} in length.")
            if field == "name_localizations" and chat_input and (
                not COMMAND_NAME.match(text or "") or text != text.lower()
            ):
                errors.add(where, "APPLICATION_COMMAND_INVALID_NAME", f"Command name is invalid: {text!r}")


def _check_chat_input(errors: _Errors, path: list[str | int], node: dict[str, Any]) -> None:
    _check_localizations(errors, path, node, chat_input=True)
    name = node.get("name") or ""
    if not COMMAND_NAME.match(name) or name != name.lower():
        errors.add(
            [*path, "name"],
            "APPLICATION_COMMAND_INVALID_NAME",
            f"Command name is invalid: {name!r}",
        )
    if not 1 <= len(node.get("description") or "") <= 100:
        errors.add(
            [*path, "description"], "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 100 in length."
        )
    options = node.get("options") or []
    if len(options) > 25:
        errors.add([*path, "options"], "BASE_TYPE_MAX_LENGTH", "Must be 25 or fewer in length.")
    names = [o.get("name") for o in options]
    if len(set(names)) != len(names):
        errors.add(
            [*path, "options"],
            "APPLICATION_COMMAND_OPTIONS_NAME_ALREADY_EXISTS",
            "Option names must be unique",
        )
    optional_seen = False
    for j, option in enumerate(options):
        opath: list[str | int] = [*path, "options", j]
        if option.get("type") in (1, 2):
            _check_chat_input(errors, opath, option)
            continue
        _check_chat_input(errors, opath, {**option, "options": []})
        if option.get("required"):
            if optional_seen:
                errors.add(
                    opath,
                    "APPLICATION_COMMAND_OPTIONS_REQUIRED_INVALID",
                    "Required options must be placed before non-required options",
                )
        else:
            optional_seen = True
        for k, choice in enumerate(option.get("choices") or []):
            for locale, text in (choice.get("name_localizations") or {}).items():
                if locale not in LOCALES or not 1 <= len(text or "") <= 100:
                    errors.add(
                        [*opath, "choices", k, "name_localizations", locale],
                        "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 100 in length.",
                    )
        if len(option.get("choices") or []) > 25:
            errors.add(
                [*opath, "choices"], "BASE_TYPE_MAX_LENGTH", "Must be 25 or fewer in length."
            )
        if option.get("autocomplete") and option.get("choices"):
            errors.add(
                [*opath, "autocomplete"],
                "APPLICATION_COMMAND_AUTOCOMPLETE_INVALID",
                "Autocomplete cannot be set with choices",
            )
