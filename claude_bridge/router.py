"""Session → thread: the room, its ghost and its alias. Creation is idempotent.

A thread row exists from the first hook event on (written with the event, so the event is
durable at once); the room is created later by delivery, one thread at a time, and a restart or a
lost reply finds the room again through its alias instead of creating a second one.
"""

from __future__ import annotations

import asyncio
import os.path
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from claude_bridge.config import Config
from claude_bridge.events.models import HookEvent
from claude_bridge.identicon import identicon_png
from claude_bridge.ids import MatrixNames, SessionID, thread_id_for
from claude_bridge.log import get_logger
from claude_bridge.matrix.client import MatrixClient, MatrixError
from claude_bridge.permissions import Permissions
from claude_bridge.room_policy import (
    THREAD_JOIN_RULE,
    creators_privileged,
    initial_state,
    power_levels,
)
from claude_bridge.room_state import (
    THREAD_STATE,
    WORKING,
    session_tag,
    thread_state,
    topic_content,
    topic_text,
)
from claude_bridge.spaces import ProjectSpaces
from claude_bridge.store import Thread, ThreadStore

log = get_logger("router")

SPACE_LINK_RETRY = 60.0
"""Seconds between tries at putting a thread's room into its project's space."""


class ThreadRouter:
    def __init__(
        self,
        config: Config,
        names: MatrixNames,
        threads: ThreadStore,
        client: MatrixClient,
        permissions: Permissions,
        spaces: ProjectSpaces | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.names = names
        self.clock = clock  # seconds, for the space-link throttle (tests move it on)
        self.spaces = spaces
        self.threads = threads
        self.client = client
        self.permissions = permissions
        self._locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        self._ready_ghosts: set[tuple[str, str]] = set()
        self._next_link: dict[str, float] = {}  # thread → earliest next try at its space link

    def new_thread(self, event: HookEvent, token_name: str | None) -> Thread:
        """The thread row for a session seen for the first time (no I/O)."""
        thread_id = thread_id_for(event.session_id)
        cwd = event.cwd or None
        # The project is named from the scrubbed path: the last part of a raw path could be
        # the tail of a secret cut at a slash (…/services/T0/B0/XyZ), too short to recognise.
        shown = self.client.scrub.text(cwd).rstrip("/") if cwd else None
        return Thread(
            id=thread_id,
            session_id=SessionID(event.session_id),
            ghost_mxid=self.names.ghost(thread_id),
            alias=self.names.alias(thread_id),
            project_path=cwd,
            project_name=os.path.basename(shown) if shown else None,
            token_name=token_name,
        )

    async def ensure_room(self, thread: Thread, starting: str | None = None) -> str:
        """The thread's room id, creating the room (and ghost) on first use; the room goes into
        its project's space then, or at a later event if that failed. ``starting``: where the
        session stands (``room_state``) by the event the room is made for."""
        room_id = thread.room_id or await self._room_for(thread, starting or WORKING)
        if self.spaces is not None and thread.space_linked_at is None:
            await self._link_space(thread, self.spaces)
        return room_id

    async def _room_for(self, thread: Thread, activity: str) -> str:
        async with self._locks[thread.id]:
            stored = await self.threads.get(thread.id)
            if stored and stored.room_id:
                thread.room_id, thread.space_linked_at = stored.room_id, stored.space_linked_at
                thread.activity = stored.activity
                return stored.room_id
            await self.ensure_ghost(thread.ghost_mxid, self.displayname(thread))
            # The space first, so the room is made with its link (one line fewer in the room).
            space = await self.spaces.space_for(thread) if self.spaces is not None else None
            # Straight to createRoom: a room left by a crash between creating it and recording
            # it is found through its alias when createRoom says the alias is taken.
            room_id, created = await self._create_room(thread, activity, space)
            # An adopted room's state is not known: the next change is told whatever it is.
            known = activity if created else None
            await self.threads.set_room(thread.id, room_id, known)
            thread.room_id, thread.activity = room_id, known
            return room_id

    async def _link_space(self, thread: Thread, spaces: ProjectSpaces) -> None:
        """At most once per ``SPACE_LINK_RETRY`` seconds per thread: a homeserver refusing the
        link must not cost every event of the session a round of requests."""
        now = self.clock()
        if now < self._next_link.get(thread.id, now):
            return
        self._next_link[thread.id] = now + SPACE_LINK_RETRY
        if await spaces.link(thread):
            thread.space_linked_at = await self.threads.set_space_linked(thread.id)
            del self._next_link[thread.id]

    def displayname(self, thread: Thread, role: str | None = None) -> str:
        """The ghost's name: the project, and the session's tag, so a hand-off from another
        session of the project does not look like the room's own Claude."""
        project = thread.project_name or "Claude Code"
        name = f"Claude · {project} · {session_tag(thread.session_id)}"
        return name + (f" · {role}" if role else "")

    def room_name(self, thread: Thread) -> str:
        """The name a room has until its first prompt names it (``render/conversation``)."""
        project = thread.project_name or "Claude Code"
        return f"Session {session_tag(thread.session_id)} · {project}"

    async def ensure_ghost(self, mxid: str, displayname: str) -> None:
        """Register the ghost and give it its name and avatar (an identicon, uploaded once:
        a ghost that has an avatar keeps it); asked once per process."""
        if (mxid, "") in self._ready_ghosts:
            return
        localpart = mxid[1:].split(":", 1)[0]
        await self.client.register(localpart)
        profile = await self.client.profile(mxid)
        if not profile.get("avatar_url"):
            url = await self.client.upload(mxid, identicon_png(mxid), "avatar.png", "image/png")
            await self.client.set_avatar_url(mxid, url)
        if profile.get("displayname") != displayname:
            await self.client.set_displayname(mxid, displayname)
        self._ready_ghosts.add((mxid, ""))

    async def ensure_member(self, thread: Thread, mxid: str, displayname: str) -> None:
        """Bring another ghost of this thread (e.g. a subagent's) into its room."""
        assert thread.room_id
        if (mxid, thread.room_id) in self._ready_ghosts:
            return
        await self.ensure_ghost(mxid, displayname)
        await self.client.invite(thread.ghost_mxid, thread.room_id, mxid)
        await self.client.join(mxid, thread.room_id)
        self._ready_ghosts.add((mxid, thread.room_id))

    def room_body(
        self, thread: Thread, activity: str, space: str | None, version: str, invite: list[str]
    ) -> dict[str, Any]:
        """The createRoom request of a thread's room: everything it starts with, so the room
        shows few lines before the first prompt (``activity``: what its topic says at once)."""
        # The ghost creates the room; from room version 12 on that makes it all-powerful.
        creators = {thread.ghost_mxid} if creators_privileged(version) else set()
        state = [
            {
                "type": THREAD_STATE,
                "state_key": "",
                "content": self.thread_state(thread, activity),
            },
            *initial_state(THREAD_JOIN_RULE),
            {"type": "m.room.topic", "state_key": "", "content": self.topic(thread, activity)},
        ]
        if space is not None:
            link = {"via": [self.names.domain], "canonical": True}
            state.append({"type": "m.space.parent", "state_key": space, "content": link})
        return {
            "room_alias_name": thread.alias[1:].split(":", 1)[0],
            "name": self.room_name(thread),
            "preset": "private_chat",
            "room_version": version,
            # Room version 11 dropped ``creator``; clients such as nheko 0.11 still read it.
            "creation_content": {"creator": thread.ghost_mxid},
            "invite": invite,
            "initial_state": state,
            "power_level_content_override": power_levels(
                None,
                bridge=(self.names.bot, thread.ghost_mxid),
                operators=invite,
                creators=creators,
            ),
        }

    async def _create_room(
        self, thread: Thread, activity: str, space: str | None
    ) -> tuple[str, bool]:
        """Create the thread's room, or adopt the one behind its alias: its room id, and
        whether it was created now."""
        invite = self.permissions.invitees()
        version = await self.client.default_room_version()
        body = self.room_body(thread, activity, space, version, invite)
        try:
            room_id = await self.client.create_room(thread.ghost_mxid, body)
        except MatrixError as e:
            if e.errcode != "M_ROOM_IN_USE":
                raise
            found = await self.client.resolve_alias(thread.alias)
            if not found:
                raise
            log.info("reusing the room behind the alias", thread_id=thread.id, room_id=found)
            await self.client.join(thread.ghost_mxid, found)
            # Synapse makes the alias before it sends the invites: a createRoom cut short (the
            # homeserver stopped, the answer lost) can leave a room nobody was invited to.
            for user in invite:
                try:
                    await self.client.invite(thread.ghost_mxid, found, user)
                except MatrixError as e:
                    if e.temporary:
                        raise  # delivery tries again
                    log.warning("not invited to the adopted room", user=user, error=str(e))
            return found, False
        log.info("created thread room", thread_id=thread.id, room_id=room_id, invited=invite)
        return room_id, True

    def topic(self, thread: Thread, activity: str, *, archived: bool = False) -> dict[str, Any]:
        """``m.room.topic`` content saying where the session stands (``room_state``)."""
        text = topic_text(
            activity, thread.project_name, thread.session_id, thread.project_path, archived=archived
        )
        return topic_content(text)

    def thread_state(
        self, thread: Thread, activity: str | None, *, archived: bool = False
    ) -> dict[str, Any]:
        return thread_state(
            session_id=thread.session_id,
            project=thread.project_name,
            cwd=thread.project_path,
            activity=activity,
            archived=archived,
        )

    async def query_alias(self, alias: str) -> bool:
        """Synapse asks about an alias in our namespace: create the room if it is a thread's."""
        thread_id = self.names.thread_of_alias(alias)
        thread = await self.threads.get(thread_id) if thread_id else None
        if thread is None:
            return False
        if self._locks[thread.id].locked():
            # We are creating this room right now and Synapse asks because we looked the alias
            # up: it does not exist yet, and waiting for ourselves would deadlock.
            return False
        await self.ensure_room(thread)
        return True

    async def query_user(self, user_id: str) -> bool:
        thread_id = self.names.thread_of_ghost(user_id)
        thread = await self.threads.get(thread_id) if thread_id else None
        if thread is None:
            return False
        await self.ensure_ghost(thread.ghost_mxid, self.displayname(thread))
        return True
