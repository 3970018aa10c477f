"""Walking message and modal component trees (classic action rows and Components V2).

Discord nests components: action rows hold buttons and selects, V2 sections hold an
`accessory`, containers hold `components`, modal labels hold one `component`. Clicking a
button "by label" means finding it anywhere in that tree.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

ACTION_ROW = 1
BUTTON = 2
STRING_SELECT = 3
TEXT_INPUT = 4
USER_SELECT = 5
ROLE_SELECT = 6
MENTIONABLE_SELECT = 7
CHANNEL_SELECT = 8
SECTION = 9
TEXT_DISPLAY = 10
THUMBNAIL = 11
MEDIA_GALLERY = 12
FILE = 13
SEPARATOR = 14
CONTAINER = 17
LABEL = 18
FILE_UPLOAD = 19
RADIO_GROUP = 21
CHECKBOX_GROUP = 22
CHECKBOX = 23

SELECT_TYPES = frozenset(
    {STRING_SELECT, USER_SELECT, ROLE_SELECT, MENTIONABLE_SELECT, CHANNEL_SELECT}
)
V2_TYPES = frozenset({SECTION, TEXT_DISPLAY, THUMBNAIL, MEDIA_GALLERY, FILE, SEPARATOR, CONTAINER})
"""Components only a message with the IS_COMPONENTS_V2 flag may hold."""
LINK_STYLE = 5
PREMIUM_STYLE = 6


def walk(components: list[dict[str, Any]] | None) -> Iterator[dict[str, Any]]:
    """Every component in the tree, depth first, parents before children."""
    for component in components or []:
        yield component
        yield from walk(component.get("components"))
        for key in ("accessory", "component"):
            child = component.get(key)
            if isinstance(child, dict):
                yield from walk([child])


def media(components: list[dict[str, Any]] | None) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """(component, its unfurled media item) for every Thumbnail, gallery item and File."""
    for c in walk(components):
        if c.get("type") == THUMBNAIL and isinstance(c.get("media"), dict):
            yield c, c["media"]
        elif c.get("type") == MEDIA_GALLERY:
            for item in c.get("items") or []:
                if isinstance(item.get("media"), dict):
                    yield c, item["media"]
        elif c.get("type") == FILE and isinstance(c.get("file"), dict):
            yield c, c["file"]


def texts(components: list[dict[str, Any]] | None) -> list[str]:
    return [str(c.get("content") or "") for c in walk(components) if c.get("type") == TEXT_DISPLAY]


def buttons(components: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    return [c for c in walk(components) if c.get("type") == BUTTON]


def selects(components: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    return [c for c in walk(components) if c.get("type") in SELECT_TYPES]


def assign_ids(components: list[dict[str, Any]] | None) -> None:
    """Number components the way Discord does when the sender left `id` out."""
    used = {c["id"] for c in walk(components) if isinstance(c.get("id"), int)}
    next_id = 1
    for component in walk(components):
        if component.get("id") is None:
            while next_id in used:
                next_id += 1
            component["id"] = next_id
            used.add(next_id)
