"""A loopback Discord for end-to-end bot tests: gateway + REST + CDN on 127.0.0.1.

The unmodified discord.py client talks to it over real websockets and HTTP, so bot tests
run the real client, protocol and bot code while the test plays Discord's users:

    from loopback import LoopbackDiscord, Upload

    async def test_animate(make_bot) -> None:
        async with LoopbackDiscord() as discord_:       # own port; closes everything on exit
            bot = make_bot()                            # any discord.Client / commands.Bot
            async with discord_.running(bot):           # endpoints + login + sync + gateway
                alice = discord_.add_member("alice")
                run = await discord_.slash("animate", {"image": Upload(PNG, "me.png")}, user=alice)
                assert (await run.acknowledged()).latency < 3.0      # deferred in time
                clip = await run.message(lambda m: bool(m.attachments), timeout=30)
                assert clip.file("clip.mp4")[4:8] == b"ftyp"         # the bytes the bot sent
                again = await discord_.click(clip, "Reroll", user=alice)

Faults, the way Discord produces them (see `faults`, `clock`, `gateway`):

    discord_.faults.rate_limit("POST /channels/*/messages", retry_after=0.2)  # 429 + Via
    discord_.faults.server_error("/webhooks/*", status=502)
    discord_.faults.expire_interactions()      # next callback: 10062, as if after 3 s
    discord_.clock.advance(16 * 60)            # tokens: 50027; after 24 h CDN URLs: 403
    async with discord_.gateway.outage():      # disconnect; events wait for the RESUME
        await discord_.post_message(discord_.general, "while you were away")

Name the server `discord_` in tests that import discord.py. Modules: `driver` (the API),
`server` (app and middleware), `gateway`, `rest`, `cdn`, `messaging` (message rules),
`invocations` (interactions from synced commands), `state` (records), `payloads` (Discord
JSON), `faults`, `clock`, `validation` (Discord's limits), `fixtures` (pytest fixture).
"""

from .driver import (
    CommandUnavailable,
    InteractionHandle,
    LoopbackDiscord,
    RateLimitPolicy,
    Upload,
)
from .state import (
    Attachment,
    Callback,
    Channel,
    Guild,
    Interaction,
    Member,
    Message,
    RecordedRequest,
    Role,
    User,
)

__all__ = [
    "Attachment",
    "Callback",
    "Channel",
    "CommandUnavailable",
    "Guild",
    "Interaction",
    "InteractionHandle",
    "LoopbackDiscord",
    "Member",
    "Message",
    "RateLimitPolicy",
    "RecordedRequest",
    "Role",
    "Upload",
    "User",
]
