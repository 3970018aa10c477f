"""`python -m bot`: validate settings, open the store, start workers, run the Discord client.

Every start-up problem ends in one readable line and exit code 2, never a traceback.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import sys
from collections.abc import Sequence

from bot.settings import Settings, SettingsError

log = logging.getLogger("bot")


INTERACTION_TOKEN = re.compile(r"(/(?:webhooks|interactions)/\d+/)[A-Za-z0-9._-]{20,}")
"""Interaction tokens in the URLs discord.py logs at DEBUG: 15-minute credentials."""


class RedactSecrets(logging.Filter):
    """Belt and braces: no log line may carry the token, or an interaction's token, whatever
    library printed it."""

    def __init__(self, *secrets: str) -> None:
        super().__init__()
        self.secrets = [s for s in secrets if s]

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = INTERACTION_TOKEN.sub(r"\1[redacted]", message)
        for secret in self.secrets:
            redacted = redacted.replace(secret, "[redacted]")
        if redacted != message:
            record.msg, record.args = redacted, None
        return True


def configure_logging(level: str, *secrets: str) -> None:
    import discord

    discord.utils.setup_logging(level=getattr(logging, level), root=True)
    redact = RedactSecrets(*secrets)
    for handler in logging.getLogger().handlers:
        handler.addFilter(redact)


def main(argv: Sequence[str] | None = None) -> int:
    try:
        settings = Settings.load()
        token = settings.token()
    except SettingsError as exc:
        print(f"animate-bot: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level, token)
    # The Ray processes started from here inherit the environment: keep the token out of it.
    os.environ.pop("DISCORD_TOKEN", None)
    if settings.hf_token_file is not None:
        # huggingface_hub reads the token from this file itself, in whichever worker needs it.
        os.environ["HF_TOKEN_PATH"] = str(settings.hf_token_file)

    from bot.app import StartupError, run

    try:
        return asyncio.run(run(settings, token))
    except StartupError as exc:
        print(f"animate-bot: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        log.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
