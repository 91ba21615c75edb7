"""Matrix relation content the bridge builds in more than one place."""

from __future__ import annotations

from typing import Any


def edit_content(original_event_id: str, new: dict[str, Any]) -> dict[str, Any]:
    """An ``m.replace`` edit of ``original_event_id`` to ``new``, with the ``* `` fallback that
    clients without edit support show."""
    edit = {
        **new,
        "body": f"* {new.get('body', '')}",
        "m.new_content": new,
        "m.relates_to": {"rel_type": "m.replace", "event_id": original_event_id},
    }
    if "formatted_body" in new:
        edit["formatted_body"] = f"* {new['formatted_body']}"
    return edit
