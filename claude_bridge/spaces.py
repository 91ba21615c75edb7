"""Project spaces: the thread rooms of one project are grouped in a Matrix space.

The bridge bot owns the spaces (they outlive any one session); each thread room is linked both
ways (``m.space.child`` in the space, ``m.space.parent`` in the room) so clients show the room
under its project. A room works without its space, so a failure is logged rather than holding up
the session's events; the router tries again at the thread's next event (``router.py``).
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from typing import Any

from claude_bridge.log import get_logger
from claude_bridge.matrix.client import MatrixClient, MatrixError
from claude_bridge.permissions import Permissions
from claude_bridge.room_policy import (
    SPACE_JOIN_RULE,
    creators_privileged,
    initial_state,
    power_levels,
)
from claude_bridge.store import Thread
from claude_bridge.store.spaces import SpaceStore

log = get_logger("spaces")


class ProjectSpaces:
    def __init__(
        self,
        store: SpaceStore,
        client: MatrixClient,
        permissions: Permissions,
        *,
        bot_mxid: str,
        domain: str,
    ) -> None:
        self.store = store
        self.client = client
        self.permissions = permissions
        self.bot_mxid = bot_mxid
        self.domain = domain
        self._locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)

    @staticmethod
    def project_key(thread: Thread) -> str | None:
        return thread.project_path or thread.project_name

    async def space_for(self, thread: Thread) -> str | None:
        """The room id of the thread's project space, made if need be; None when the thread has
        no project or the homeserver failed (``link`` tries again later)."""
        key = self.project_key(thread)
        if key is None:
            return None
        try:
            return await self._ensure_space(key, thread.project_name or key)
        except MatrixError as e:
            log.warning("no project space for the new room yet", thread_id=thread.id, error=str(e))
            return None

    async def link(self, thread: Thread) -> bool:
        """Put the thread's room into its project's space (both links are idempotent state).

        True when that is settled: linked, the thread has no project, or the homeserver
        refused for good (a 4xx: retrying would get the same answer); False when it failed in a
        way worth another try (unreachable, timed out, rate-limited, a server error).
        """
        key = self.project_key(thread)
        if key is None or thread.room_id is None:
            return True
        try:
            space = await self._ensure_space(key, thread.project_name or key)
            via = {"via": [self.domain]}
            await self.client.send_state(self.bot_mxid, space, "m.space.child", thread.room_id, via)
            await self.client.send_state(
                thread.ghost_mxid,
                thread.room_id,
                "m.space.parent",
                space,
                {**via, "canonical": True},
            )
            return True
        except MatrixError as e:
            again = "will try again" if e.temporary else "giving up"
            log.warning(
                f"could not link the room to its project space; {again}",
                thread_id=thread.id,
                error=str(e),
            )
            return not e.temporary

    def space_body(self, name: str, key: str, version: str, invite: list[str]) -> dict[str, Any]:
        """The createRoom request of a project's space."""
        creators = {self.bot_mxid} if creators_privileged(version) else set()
        return {
            "name": name,
            "topic": f"Claude Code sessions in {key}",
            "preset": "private_chat",
            "room_version": version,
            "invite": invite,
            # Room version 11 dropped ``creator``; nheko 0.11 still reads it, and without it
            # shows the space as an empty chat room.
            "creation_content": {"type": "m.space", "creator": self.bot_mxid},
            "initial_state": initial_state(SPACE_JOIN_RULE),
            # Only the bot changes the space; people with a level may look.
            "power_level_content_override": power_levels(
                None, bridge=(self.bot_mxid,), operators=invite, creators=creators
            ),
        }

    async def _ensure_space(self, key: str, project: str) -> str:
        async with self._locks[key]:
            existing = await self.store.get(key)
            if existing:
                return existing
            invite = self.permissions.invitees()
            name = f"Claude · {project}"
            version = await self.client.default_room_version()
            body = self.space_body(name, key, version, invite)
            room_id = await self.client.create_room(self.bot_mxid, body)
            log.info("created project space", project=key, room_id=room_id)
            return await self.store.add(key, room_id, name)
