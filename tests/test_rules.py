"""Where the bot works and which prompts it refuses, as members try to get around them."""

from __future__ import annotations

from typing import Any

import pytest

from bot.rules import place_refusal, prompt_refusal, words_of
from bot.settings import Settings


def settings(**values: Any) -> Settings:
    return Settings.load(env_file=None, **values)


BLOCKED = settings(blocked_words="nude, blood bath")


@pytest.mark.parametrize(
    "prompt",
    [
        "a nude portrait",
        "a NUDE portrait",
        "a ｎｕｄｅ portrait",  # fullwidth letters
        "a &#110;ude portrait",  # an HTML entity
        "a &amp;#110;ude portrait",  # an entity inside an entity
        "a nu\u200bde portrait",  # zero-width space
        "a nu\u00adde portrait",  # soft hyphen
        "a nu\u2060de portrait",  # word joiner
        "a nud\u0435 portrait",  # Cyrillic е
        "a _nude_ portrait",
        "a nüde portrait",  # a combining accent
        "a n.u.d.e portrait",  # spelled out
        "a n u d e portrait",
        "the blood bath scene",
        "the blood\u00a0bath scene",  # non-breaking space inside the phrase
        "the blood   bath scene",  # doubled spaces
        "the blood_bath scene",
        "the blood-bath scene",
        "the Blood\nBath scene",
    ],
)
def test_disguised_blocked_words_are_refused(prompt: str) -> None:
    refusal = prompt_refusal(BLOCKED, prompt)
    assert refusal is not None and "isn't allowed here" in refusal and "Nothing was charged" in refusal


@pytest.mark.parametrize(
    "prompt", ["nudes at a museum", "denuded hills", "a bloodbath-free scene? no: a bath", "blood, then a bath"]
)
def test_whole_words_only(prompt: str) -> None:
    assert prompt_refusal(BLOCKED, prompt) is None


def test_every_text_that_reaches_the_model_is_checked() -> None:
    assert prompt_refusal(BLOCKED, "a calm lake", "avoid: nude") is not None
    assert prompt_refusal(BLOCKED, None, "") is None
    assert prompt_refusal(settings(), "nude") is None  # no list: nothing is refused


def test_the_blocked_list_is_read_with_the_same_eyes() -> None:
    listed = settings(blocked_words="ＮＵＤＥ, Blood_Bath")
    assert prompt_refusal(listed, "nude") is not None
    assert prompt_refusal(listed, "a blood bath") is not None
    assert words_of("I saw a cat") == ["i", "saw", "a", "cat"]


def test_dms_follow_the_allow_lists() -> None:
    dm = {"guild_id": None, "channel_ids": [], "nsfw": False}
    assert place_refusal(settings(), **dm) is None  # no lists: DMs work (ALLOW_DMS default)
    assert "direct messages" in (place_refusal(settings(allow_dms=False), **dm) or "")
    for rule in ({"allowed_guild_ids": "1"}, {"allowed_channel_ids": "2"}, {"nsfw_channels_only": True}):
        refusal = place_refusal(settings(**rule), **dm)
        assert refusal is not None and "not in direct messages" in refusal, rule
    # In the allowed guild and channel, the same settings let the member through.
    allowed = settings(allowed_guild_ids="1", allowed_channel_ids="2")
    assert place_refusal(allowed, guild_id=1, channel_ids=[2], nsfw=False) is None
