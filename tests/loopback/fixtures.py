"""Pytest fixtures for the loopback Discord; import them into tests/conftest.py:

    from loopback.fixtures import loopback_discord  # noqa: F401

A test then takes `loopback_discord` and starts its client with
`async with loopback_discord.running(bot): ...`. Tests that need options (a team-owned
application, tighter rate limits, a boosted guild) build their own
`async with LoopbackDiscord(team=True) as discord:` instead.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest_asyncio

from .driver import LoopbackDiscord


@pytest_asyncio.fixture
async def loopback_discord() -> AsyncIterator[LoopbackDiscord]:
    """A started loopback Discord on its own port, with discord.py pointed at it."""
    async with LoopbackDiscord() as discord:
        discord.apply_endpoints()
        yield discord
