"""Where a job's messages are: the typed record the bot keeps with each job.

The job layer stores it as an opaque JSON object; :meth:`DeliveryRecord.of` and
:meth:`DeliveryRecord.to_dict` are the only code that knows its keys.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

from jobs import Job

Via = Literal["interaction", "channel", "dm", "found"]


@dataclass(frozen=True)
class DeliveryRecord:
    application_id: int | None = None
    token: str | None = None
    """The interaction's webhook token: edits and follow-ups for 15 minutes."""
    token_at: float = 0.0
    channel_id: int | None = None
    guild_id: int | None = None
    message_id: int | None = None
    """The job's public message (progress, then usually the clip)."""
    card: bool = False
    """The message is a Components V2 card (every job's message since the cards; an older
    one, an embed, becomes a card at its next edit)."""
    picture: str | None = None
    """The file that message shows: the photo's thumbnail, then the preview frame."""
    progress_gone: bool = False
    """The message (or its channel) was deleted: post anew instead of editing."""
    token_expired: bool = False
    upload_started: bool = False
    """An upload was tried: look for it before posting the clip again."""
    private: bool = False
    """The member asked for a private result: the job's messages are ephemeral, and after the
    token only a DM reaches them (never a channel message)."""
    channel_open: bool = True
    """The bot may post in the channel. False where only the member installed the app (a
    guild without the bot, a group DM): the interaction, then a DM, are the only roads."""
    told_dm: bool = False
    """The member was told the clip will come by DM (it outlives the token)."""
    delivered_via: Via | None = None
    result_message_id: int | None = None
    result_url: str | None = None

    @classmethod
    def of(cls, job: Job) -> DeliveryRecord:
        return cls.from_dict(job.delivery)

    @classmethod
    def from_dict(cls, data: Any) -> DeliveryRecord:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in dict(data or {}).items() if k in names})

    def to_dict(self) -> dict[str, Any]:
        return {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if getattr(self, f.name) != f.default
        }

    def replace(self, **changes: Any) -> DeliveryRecord:
        return dataclasses.replace(self, **changes)

    @property
    def channel_allowed(self) -> bool:
        """Whether a message may go to the channel (not private, and the bot is there)."""
        return self.channel_open and not self.private

    @property
    def has_message(self) -> bool:
        """The job's message exists and may be edited."""
        return bool(self.message_id) and not self.progress_gone
