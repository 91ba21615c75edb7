"""``parse_hook_event``: a decoded hook body → the model its event kind names."""

from __future__ import annotations

from pydantic import ValidationError

from claude_bridge.events.catalogue import kind_of
from claude_bridge.events.models import HookEvent


class HookInputError(ValueError):
    """The body is not a hook input; ``str()`` says which field and why."""


def parse_hook_event(data: object) -> HookEvent:
    """Validate a decoded JSON body as the hook event its ``hook_event_name`` names (an event
    the catalogue does not list parses as the plain :class:`HookEvent`)."""
    if not isinstance(data, dict):
        raise HookInputError(f"hook input must be a JSON object, not {type(data).__name__}")
    model = kind_of(data.get("hook_event_name")).model
    try:
        return model.model_validate(data)
    except ValidationError as e:
        raise HookInputError(_describe(e)) from None


def _describe(error: ValidationError) -> str:
    parts = []
    for err in error.errors()[:5]:
        where = ".".join(str(p) for p in err["loc"]) or "body"
        parts.append(f"{where}: {err['msg']}")
    return "; ".join(parts)
