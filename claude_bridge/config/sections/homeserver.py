"""The ``homeserver`` section: where the homeserver is and how long a request may take."""

from __future__ import annotations

from pydantic import Field, field_validator

from claude_bridge.config.sections.base import Section


class HomeserverConfig(Section):
    address: str = Field(
        "http://127.0.0.1:8008",
        description="Client-server API URL of the homeserver, as the bridge reaches it.",
    )
    domain: str = Field(
        "localhost", description="The homeserver's server name (the part after ':' in user ids)."
    )
    request_timeout: float = Field(
        30.0,
        gt=0,
        le=600,
        description="Seconds one homeserver request may take before it is abandoned and retried "
        "(same transaction id, so a send that did arrive is not doubled).",
    )

    @field_validator("address")
    @classmethod
    def _http_url(cls, v: str) -> str:
        if not v.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return v.rstrip("/")
