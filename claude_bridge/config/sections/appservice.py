"""The ``appservice`` section: the listener Synapse talks to, and the registration's ids and
tokens."""

from __future__ import annotations

from pydantic import Field

from claude_bridge.config.sections.base import Section

GENERATE = "generate"
"""Placeholder for a token that ``generate-registration`` fills in."""


class AppserviceConfig(Section):
    hostname: str = Field(
        "127.0.0.1", description="Address the appservice listener (Synapse → bridge) binds to."
    )
    port: int = Field(29340, ge=1, le=65535, description="Port of the appservice listener.")
    address: str = Field(
        "http://127.0.0.1:29340",
        description="URL at which the homeserver reaches the appservice listener.",
    )
    id: str = Field("claude", description="Appservice id in the registration.")
    bot_username: str = Field(
        "claudebot",
        description="Localpart of the bridge bot (the registration's sender_localpart).",
    )
    as_token: str = Field(
        GENERATE,
        description="Token the bridge uses towards the homeserver (set by generate-registration).",
    )
    hs_token: str = Field(
        GENERATE,
        description="Token the homeserver uses towards the bridge (set by generate-registration).",
    )
