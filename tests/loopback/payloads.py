"""JSON shapes Discord sends, built from the loopback's records.

Field names and types follow Discord's API documentation (ids as strings, ISO timestamps,
permissions as strings), because discord.py indexes many of them without a default: a
missing key here is a KeyError inside the client, not a test failure with a clear message.
"""

from __future__ import annotations

from typing import Any

from .cdn import Cdn
from .state import (
    DM,
    GROUP_DM,
    Application,
    Attachment,
    Channel,
    DiscordState,
    Guild,
    Interaction,
    Member,
    Message,
    Role,
    User,
)


def user(u: User) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": str(u.id),
        "username": u.username,
        "discriminator": "0",
        "global_name": u.global_name,
        "avatar": u.avatar,
        "public_flags": 0,
        "flags": 0,
        "banner": None,
        "accent_color": None,
        "avatar_decoration_data": None,
        "collectibles": None,
        "primary_guild": None,
    }
    if u.bot:
        data["bot"] = True
    return data


def role(r: Role) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": str(r.id),
        "name": r.name,
        "color": 0,
        "colors": {"primary_color": 0, "secondary_color": None, "tertiary_color": None},
        "hoist": False,
        "icon": None,
        "unicode_emoji": None,
        "position": r.position,
        "permissions": str(r.permissions),
        "managed": r.managed,
        "mentionable": False,
        "flags": 0,
    }
    if r.bot_id is not None:
        data["tags"] = {"bot_id": str(r.bot_id)}
    return data


def member(
    state: DiscordState, m: Member, *, with_user: bool = True, permissions: int | None = None
) -> dict[str, Any]:
    data: dict[str, Any] = {
        "nick": m.nick,
        "avatar": None,
        "banner": None,
        "roles": [str(r) for r in m.roles],
        "joined_at": state.clock.iso(m.joined_at),
        "premium_since": None,
        "deaf": False,
        "mute": False,
        "flags": 0,
        "pending": False,
        "communication_disabled_until": None,
    }
    if with_user:
        data["user"] = user(m.user)
    if permissions is not None:
        data["permissions"] = str(permissions)
    return data


def channel(c: Channel) -> dict[str, Any]:
    if c.type in (DM, GROUP_DM):
        return {
            "id": str(c.id),
            "type": c.type,
            "last_message_id": str(c.last_message_id) if c.last_message_id else None,
            "recipients": [user(u) for u in c.recipients],
            "flags": 0,
        }
    return {
        "id": str(c.id),
        "type": c.type,
        "guild_id": str(c.guild_id),
        "name": c.name,
        "position": c.position,
        "permission_overwrites": [],
        "nsfw": c.nsfw,
        "topic": c.topic,
        "last_message_id": str(c.last_message_id) if c.last_message_id else None,
        "rate_limit_per_user": 0,
        "parent_id": None,
        "flags": 0,
    }


def guild(g: Guild) -> dict[str, Any]:
    """A guild object as REST returns it."""
    return {
        "id": str(g.id),
        "name": g.name,
        "icon": None,
        "splash": None,
        "discovery_splash": None,
        "owner_id": str(g.owner_id),
        "afk_channel_id": None,
        "afk_timeout": 300,
        "verification_level": 0,
        "default_message_notifications": 0,
        "explicit_content_filter": 0,
        "roles": [role(r) for r in g.roles.values()],
        "emojis": [],
        "stickers": [],
        "features": list(g.features),
        "mfa_level": 0,
        "application_id": None,
        "system_channel_id": None,
        "system_channel_flags": 0,
        "rules_channel_id": None,
        "vanity_url_code": None,
        "description": None,
        "banner": None,
        "premium_tier": g.premium_tier,
        "premium_subscription_count": 0,
        "preferred_locale": g.preferred_locale,
        "public_updates_channel_id": None,
        "nsfw_level": 0,
        "premium_progress_bar_enabled": False,
        "max_members": 500000,
        "max_video_channel_users": 25,
    }


def guild_create(state: DiscordState, g: Guild, *, join: bool = False) -> dict[str, Any]:
    """GUILD_CREATE: the guild plus its channels and members (all of them, so no chunking).

    After READY it lazily delivers guilds with `unavailable: false`; when the bot joins a
    guild later the key is absent (discord.py tells `guild_available` from `guild_join` so).
    """
    data = guild(g)
    data.update(
        joined_at=state.clock.iso(g.members[state.bot.id].joined_at),
        large=False,
        member_count=len(g.members),
        members=[member(state, m) for m in g.members.values()],
        channels=[channel(c) for c in g.channels.values()],
        threads=[],
        presences=[],
        voice_states=[],
        stage_instances=[],
        guild_scheduled_events=[],
        soundboard_sounds=[],
    )
    if not join:
        data["unavailable"] = False
    return data


def attachment(cdn: Cdn, a: Attachment) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": str(a.id),
        "filename": a.filename,
        "size": a.size,
        "url": cdn.url(a),
        "proxy_url": cdn.url(a, proxy=True),
    }
    for key in ("content_type", "width", "height", "description", "title"):
        value = getattr(a, key)
        if value is not None:
            data[key] = value
    if a.ephemeral:
        data["ephemeral"] = True
    return data


def message(state: DiscordState, cdn: Cdn, m: Message, *, gateway: bool = False) -> dict[str, Any]:
    """A message object; `gateway=True` adds guild_id and the author's member (MESSAGE_CREATE)."""
    data: dict[str, Any] = {
        "id": str(m.id),
        "type": m.type,
        "content": m.content,
        "channel_id": str(m.channel_id),
        "author": user(m.author),
        "attachments": [attachment(cdn, a) for a in m.attachments],
        "embeds": [dict(e) for e in m.embeds],
        "mentions": [user(state.users[u]) for u in m.mentions if u in state.users],
        "mention_roles": [],
        "mention_everyone": False,
        "pinned": False,
        "tts": m.tts,
        "timestamp": state.clock.iso(m.created_at),
        "edited_timestamp": state.clock.iso(m.edited_at) if m.edited_at else None,
        "flags": m.flags,
        "components": list(m.components),
    }
    if m.webhook_id is not None:
        data["webhook_id"] = str(m.webhook_id)
    if m.application_id is not None:
        data["application_id"] = str(m.application_id)
    if m.message_reference is not None:
        data["message_reference"] = m.message_reference
    if m.interaction_id is not None and m.interaction_id in state.interactions:
        data["interaction_metadata"] = interaction_metadata(
            state, state.interactions[m.interaction_id], m
        )
        i = state.interactions[m.interaction_id]
        if i.type == 2:
            data["interaction"] = {
                "id": str(i.id),
                "type": i.type,
                "name": i.payload["data"]["name"],
                "user": user(i.user),
            }
    if gateway and m.guild_id is not None:
        data["guild_id"] = str(m.guild_id)
        author = state.guilds[m.guild_id].members.get(m.author.id)
        if author is not None and m.webhook_id is None:
            data["member"] = member(state, author, with_user=False)
    return data


def interaction_metadata(state: DiscordState, i: Interaction, m: Message) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": str(i.id),
        "type": i.type,
        "user": user(i.user),
        "authorizing_integration_owners": i.payload.get("authorizing_integration_owners", {}),
    }
    if i.type == 2:
        data["name"] = i.payload["data"]["name"]
        data["command_type"] = i.payload["data"].get("type", 1)
    if m.id != i.original_message_id and i.original_message_id is not None:
        data["original_response_message_id"] = str(i.original_message_id)
    if i.type == 3 and i.component_message_id is not None:
        data["interacted_message_id"] = str(i.component_message_id)
    return data


def application(state: DiscordState, app: Application) -> dict[str, Any]:
    """GET /oauth2/applications/@me, with owner (or team) so the bot can find its operators."""
    owner = user(app.owner)
    team = None
    if app.team_members:
        team_id = str(app.team_id)
        owner = {**user(app.owner), "id": team_id, "username": f"team{team_id}", "flags": 1024}
        team = {
            "id": team_id,
            "name": f"{app.name} team",
            "icon": None,
            "owner_user_id": str(app.owner.id),
            "members": [
                {
                    "user": user(u),
                    "membership_state": 2,
                    "permissions": ["*"],
                    "team_id": team_id,
                    "role": "admin" if u is app.owner else "developer",
                }
                for u in app.team_members
            ],
        }
    return {
        "id": str(app.id),
        "name": app.name,
        "icon": None,
        "description": app.description,
        "summary": "",
        "type": None,
        "bot_public": True,
        "bot_require_code_grant": False,
        "verify_key": "0" * 64,
        "owner": owner,
        "team": team,
        "flags": app.flags,
        "bot": user(state.bot),
        "hook": True,
        "rpc_origins": [],
        "redirect_uris": [],
        "interactions_endpoint_url": None,
        "install_params": None,
        "integration_types_config": {"0": {}},
        "approximate_guild_count": len(state.guilds),
        "tags": [],
    }
