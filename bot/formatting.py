"""Small text helpers shared by the cogs, so every message reads the same way."""

from __future__ import annotations

import datetime

import discord


def when(timestamp: float, style: str = "R") -> str:
    """A Discord timestamp tag: each member sees it in their own time zone and language."""
    moment = datetime.datetime.fromtimestamp(timestamp, tz=datetime.timezone.utc)
    return discord.utils.format_dt(moment, style)  # type: ignore[arg-type]


def credits(n: int, *, bold: bool = False, locale: discord.Locale | None = None) -> str:
    """'1 credit', '3 credits' (optionally with the number in bold), in `locale`."""
    from bot.i18n import tr

    number = f"**{n}**" if bold else str(n)
    return tr(locale, "{n} credit", n=number) if n == 1 else tr(locale, "{n} credits", n=number)
