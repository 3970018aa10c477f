"""Fetching a member's attachment: only Discord's own addresses, and never more bytes than the
limit, whatever the interaction payload declared."""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace

import aiohttp
import pytest
from aiohttp import web

from bot.attachments import AttachmentRefused, fetch, is_discord_url

PROXY = "http://127.0.0.1:8080/api/v10"


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("https://cdn.discordapp.com/attachments/1/2/cat.png?ex=1&hm=2", True),
        ("https://media.discordapp.net/attachments/1/2/cat.png", True),
        ("http://cdn.discordapp.com/attachments/1/2/cat.png", False),  # not over TLS
        ("https://cdn.discordapp.com:8443/attachments/1/2/cat.png", False),  # another port
        ("https://cdn.discordapp.com.evil.example/cat.png", False),
        ("http://127.0.0.1:8080/attachments/1/2/cat.png", True),  # the configured proxy
        ("http://127.0.0.1:6379/", False),  # the proxy's host, another service's port
        ("https://127.0.0.1:8080/attachments/1/2/cat.png", False),  # another scheme
        ("http://localhost:8080/attachments/1/2/cat.png", False),
        ("http://[::1", False),  # not even a URL
    ],
)
def test_only_discords_addresses(url: str, allowed: bool) -> None:
    assert is_discord_url(url, PROXY) is allowed


@pytest.mark.asyncio
async def test_a_download_stops_at_the_limit_whatever_the_payload_declared() -> None:
    sent = 0

    async def endless(request: web.Request) -> web.StreamResponse:
        nonlocal sent
        response = web.StreamResponse()
        await response.prepare(request)
        chunk = b"\x89PNG" + bytes(64 * 1024 - 4)
        try:
            for _ in range(100_000):  # 6 GiB if nobody stops reading
                await response.write(chunk)
                sent += len(chunk)
        except (ConnectionError, RuntimeError):
            pass
        return response

    app = web.Application()
    app.router.add_get("/attachments/1/2/big.png", endless)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    base = f"http://127.0.0.1:{port}/api/v10"
    attachment = SimpleNamespace(
        size=100, filename="big.png", url=f"http://127.0.0.1:{port}/attachments/1/2/big.png"
    )
    try:
        async with aiohttp.ClientSession() as session:
            started = time.monotonic()
            with pytest.raises(AttachmentRefused, match=r"photos can be at most 1\.0+ MiB"):
                await asyncio.wait_for(
                    fetch(attachment, session=session, max_bytes=2**20, api_base=base), 30
                )
            assert time.monotonic() - started < 10
    finally:
        await runner.cleanup()
    assert sent < 64 * 2**20  # the server was cut off long before it sent it all


@pytest.mark.asyncio
async def test_one_photo_per_member_at_a_time_and_few_decodes_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import threading

    import bot.attachments
    from bot.attachments import PhotoGate

    gate = PhotoGate(decodes=2)
    async with gate.turn(1):
        with pytest.raises(AttachmentRefused, match="one at a time"):
            async with gate.turn(1):
                pass
        async with gate.turn(2):  # another member is not held up
            pass
    async with gate.turn(1):  # the member's next photo, once the first was read
        pass
    # At most two decodes run at once (in threads); a third waits for a free one.
    lock, release = threading.Lock(), threading.Event()
    running, most = 0, 0

    def slow_decode(data: bytes, *, max_bytes: int) -> bytes:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        release.wait(5)
        with lock:
            running -= 1
        return data

    monkeypatch.setattr(bot.attachments, "check_photo", slow_decode)
    tasks = [asyncio.create_task(gate.judge(b"photo", max_bytes=10)) for _ in range(3)]
    await asyncio.sleep(0.2)
    assert (running, most) == (2, 2)
    release.set()
    assert await asyncio.gather(*tasks) == [b"photo"] * 3 and most == 2
