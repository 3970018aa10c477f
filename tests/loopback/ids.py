"""Snowflakes and secrets the loopback mints, shaped like Discord's own.

Snowflakes carry their creation time (discord.py reads it back, e.g. for message-delete
sub-buckets and `Interaction.created_at`), so they are built from the loopback clock.
"""

from __future__ import annotations

import base64
import secrets

from .clock import Clock

DISCORD_EPOCH_MS = 1_420_070_400_000


class Snowflakes:
    """Strictly increasing snowflakes stamped with the loopback clock."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._last = 0

    def next(self) -> int:
        ms = int(self._clock.time() * 1000) - DISCORD_EPOCH_MS
        candidate = (ms << 22) | (1 << 17) | (1 << 12)
        self._last = max(candidate, self._last + 1)
        return self._last


def bot_token(bot_id: int) -> str:
    """A token in Discord's `base64(user id).timestamp.hmac` shape."""
    head = base64.urlsafe_b64encode(str(bot_id).encode()).decode().rstrip("=")
    return f"{head}.{secrets.token_urlsafe(4)}.{secrets.token_urlsafe(27)}"


def interaction_token(interaction_id: int) -> str:
    """A long opaque token, URL-safe like Discord's (it travels in URL paths)."""
    head = base64.urlsafe_b64encode(f"interaction:{interaction_id}:".encode()).decode().rstrip("=")
    return head + secrets.token_urlsafe(96)


def session_id() -> str:
    return secrets.token_hex(16)
