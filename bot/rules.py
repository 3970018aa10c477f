"""Where and by whom /animate may be used, and which prompts are refused, as plain functions of settings.

Each refusal is a sentence for the member that says why and, where it can, what to do.
"""

from __future__ import annotations

import html
import re
import unicodedata
from collections.abc import Iterable

from bot.settings import Settings


def place_refusal(
    settings: Settings,
    *,
    guild_id: int | None,
    channel_ids: Iterable[int],
    nsfw: bool,
    role_ids: Iterable[int] = (),
) -> str | None:
    """None when the bot may work here, for this member. `channel_ids`: the channel and, for a
    thread, its parent; `role_ids`: the member's roles in this guild."""
    if guild_id is None:
        if not settings.allow_dms:
            return "I don't make videos in direct messages here; please use a server channel."
        if (
            settings.allowed_guild_ids or settings.allowed_channel_ids
            or settings.nsfw_channels_only or settings.allowed_role_ids
        ):
            # A DM belongs to no guild or channel on the lists and carries no roles: it would
            # bypass them.
            return (
                "I only make videos in the channels this bot is set up for, not in direct "
                "messages."
            )
        return None
    if settings.allowed_guild_ids and guild_id not in settings.allowed_guild_ids:
        return "I'm not set up to make videos in this server."
    channels = set(channel_ids)
    if settings.allowed_channel_ids and not channels & set(settings.allowed_channel_ids):
        allowed = ", ".join(f"<#{c}>" for c in settings.allowed_channel_ids[:5])
        return f"I only make videos in {allowed}."
    if settings.nsfw_channels_only and not nsfw:
        return "I only make videos in age-restricted channels here."
    if settings.allowed_role_ids and not set(role_ids) & set(settings.allowed_role_ids):
        roles = ", ".join(f"<@&{r}>" for r in settings.allowed_role_ids[:5])
        return f"Only members with one of these roles can make videos here: {roles}."
    return None


def prompt_refusal(settings: Settings, *texts: str | None) -> str | None:
    """None when no blocked word or phrase appears in any of `texts`: whole words, matched
    after :func:`words_of` undid the usual disguises."""
    if not settings.blocked_words:
        return None
    said = [words_of(text) for text in texts if text]
    for entry in settings.blocked_words:
        phrase = words_of(entry)
        if phrase and any(_contains(words, phrase) for words in said):
            return (
                f"Your prompt contains “{entry}”, which isn't allowed here; "
                "please rephrase it. Nothing was charged."
            )
    return None


# Latin look-alikes that NFKC leaves alone (Cyrillic and Greek), as in Unicode's confusables.
_CONFUSABLES = str.maketrans(
    "аᴀвсԁеёһіїјкӏмнорԛѕтуԝхуьαβεηικμνορτυχϲϳ",
    "aabcdeehiijklmhopqstywxybabenikmvoptuxcj",
)
_SEPARATOR = re.compile(r"[\W_]+")
SPELLED = "·"
"""Joins the letters of a spelled-out word in :func:`words_of`."""


def words_of(text: str) -> list[str]:
    """The words a model would read in `text`, with disguises undone: HTML entities decoded,
    compatibility forms folded (NFKC: fullwidth, ligatures), accents, zero-width and format
    characters (soft hyphens, joiners) removed, Cyrillic and Greek look-alikes mapped to
    Latin, case folded, and punctuation, underscores and any spaces treated as one gap.
    Letters spelled out one by one ("n.u.d.e", "n u d e") are joined again."""
    text = html.unescape(html.unescape(text))
    text = unicodedata.normalize("NFKD", text)
    text = "".join(c for c in text if unicodedata.category(c) not in ("Mn", "Cf"))
    text = unicodedata.normalize("NFKC", text).casefold().translate(_CONFUSABLES)
    words: list[str] = []
    letters: list[str] = []
    for word in _SEPARATOR.split(text):
        if len(word) == 1:
            letters.append(word)
            continue
        words += _spelled(letters)
        letters = []
        if word:
            words.append(word)
    return words + _spelled(letters)


def _spelled(letters: list[str]) -> list[str]:
    """Three or more single letters in a row are one spelled-out word ("n·u·d·e")."""
    return [SPELLED.join(letters)] if len(letters) >= 3 else letters


def _contains(words: list[str], phrase: list[str]) -> bool:
    n = len(phrase)
    joined = [w.replace(SPELLED, "") for w in words]
    if any(joined[i : i + n] == phrase for i in range(len(words) - n + 1)):
        return True
    # A spelled-out run may carry a neighbouring one-letter word ("a n u d e"): within it,
    # a blocked word counts wherever it sits.
    return n == 1 and any(SPELLED in w and phrase[0] in j for w, j in zip(words, joined))
