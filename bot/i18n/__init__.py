"""The bot in the member's language: Discord shows command names, descriptions and choices
from the translations sent with the command definitions, and replies follow the locale of
the interaction that asked.

One JSON file per locale in ``locales/``, keyed by the English text (gettext's way: the code
keeps reading in English, and a string without a translation falls back to it). Three tables:
``names`` (command, group and option names: Discord wants them lowercase, ≤ 32), ``texts``
(descriptions and choices, ≤ 100) and ``replies`` (what the bot says, with ``{placeholders}``
filled in after translation). ``tests/test_i18n.py`` checks every file has every key the
commands and the code use, the same placeholders, and Discord's length rules.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import string
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import discord
from discord import app_commands

log = logging.getLogger(__name__)

LOCALES_DIR = Path(__file__).with_name("locales")

LOCALES: dict[str, discord.Locale] = {
    "de": discord.Locale.german,
    "fr": discord.Locale.french,
    "es-ES": discord.Locale.spain_spanish,
    "pt-BR": discord.Locale.brazil_portuguese,
    "ja": discord.Locale.japanese,
}
"""File name (Discord's locale code) → locale. English is the code's own text."""

NAME_LOCATIONS = frozenset(
    {
        app_commands.TranslationContextLocation.command_name,
        app_commands.TranslationContextLocation.group_name,
        app_commands.TranslationContextLocation.parameter_name,
    }
)
TABLES = ("names", "texts", "replies")


@functools.cache
def catalog(code: str) -> Mapping[str, Mapping[str, str]]:
    """The tables of one locale file (empty tables when it is missing or unreadable: the
    English text is always there to fall back to)."""
    path = LOCALES_DIR / f"{code}.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        log.warning("no translations for %s (%s); using English", code, exc)
        data = {}
    return {table: dict(data.get(table) or {}) for table in TABLES}


def code_of(locale: discord.Locale | str | None) -> str | None:
    """Our file for a Discord locale: the exact one, else the language's (``pt-PT`` reads
    ``pt-BR``, ``es-419`` reads ``es-ES``); None for English and unknown locales."""
    if locale is None:
        return None
    value = locale.value if isinstance(locale, discord.Locale) else str(locale)
    if value in LOCALES:
        return value
    language = value.split("-")[0]
    return next((code for code in LOCALES if code.split("-")[0] == language), None)


def tr(locale: discord.Locale | str | None, text: str, /, **values: Any) -> str:
    """`text` (an English reply template) in `locale`, with `values` filled in. A missing
    translation or a broken one (a placeholder it lacks) falls back to English."""
    code = code_of(locale)
    translated = catalog(code)["replies"].get(text) if code else None
    if translated:
        try:
            return translated.format(**values)
        except (KeyError, IndexError, ValueError):
            log.warning("broken %s translation of %r; using English", code, text)
    return text.format(**values) if values else text


def placeholders(text: str) -> set[str]:
    """The ``{name}`` fields of a template."""
    return {name for _, name, _, _ in string.Formatter().parse(text) if name}


def digest() -> str:
    """A fingerprint of every locale file: a changed translation is a changed command
    definition, so the bot syncs again."""
    hasher = hashlib.sha256()
    for code in sorted(LOCALES):
        path = LOCALES_DIR / f"{code}.json"
        hasher.update(path.read_bytes() if path.is_file() else b"")
    return hasher.hexdigest()


class Translator(app_commands.Translator):
    """Command names, descriptions and choices for Discord's own localization fields."""

    async def translate(
        self,
        string: app_commands.locale_str,
        locale: discord.Locale,
        context: app_commands.TranslationContextTypes,
    ) -> str | None:
        code = code_of(locale)  # es-419 reads es-ES: closer than English
        if code is None:
            return None
        table = "names" if context.location in NAME_LOCATIONS else "texts"
        return catalog(code)[table].get(string.message)
