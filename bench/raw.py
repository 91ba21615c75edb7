"""The raw ceiling: the same messages sent straight to Synapse as the appservice, no bridge.

A ghost in the bridge's namespace (``@claude-raw…``), speaking through the appservice's
``as_token`` with ``?user_id=``, PUTs exactly the content the bridge's renderer makes of the same
hook events, into rooms the observer (alice) has joined. Every bridge figure is compared with
these, measured in the same run on the same Synapse and read by the same syncing user.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from dataclasses import dataclass
from typing import Any

from bench.payloads import Session, new_tag
from bench.stack import Stack, register_ghost
from bench.stats import latency_summary
from claude_bridge.events.parse import parse_hook_event
from claude_bridge.render import RenderContext, render_event
from tests.matrix_client import MatrixTestClient


def rendered(session: Session, body: bytes) -> list[dict[str, Any]]:
    """The timeline messages the bridge renders this hook input to (state events left out)."""
    event = parse_hook_event(json.loads(body))
    ctx = RenderContext(
        thread_id=session.session_id,
        project="bench-app",
        operators=("@alice:localhost", "@admin:localhost"),
        extra={"cwd": session.cwd, "session_id": session.session_id, "title": "bench"},
    )
    return [dict(m.content) for m in render_event(event, ctx) if m.state_key is None]


@dataclass
class RawRoom:
    room_id: str
    client: MatrixTestClient


class Raw:
    """The raw-ceiling side: one ghost, ``rooms`` rooms joined by the observer."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.rooms: list[RawRoom] = []
        self._ghosts: list[MatrixTestClient] = []

    async def setup(self, rooms: int = 10) -> None:
        tag = new_tag()
        for i in range(rooms):
            # One ghost per room, as the bridge has one ghost per session.
            ghost = await register_ghost(self.stack, f"claude-raw-{tag}-{i}")
            self._ghosts.append(ghost)
            alias = f"claude-thread-raw-{tag}-{i}"
            room_id = await ghost.create_room(
                name=f"raw ceiling {i}", invite=["@alice:localhost"], alias_localpart=alias
            )
            await self.stack.observer.wait_invite(alias, 30)
            await self.stack.alice.join(room_id)
            self.rooms.append(RawRoom(room_id, ghost))

    async def close(self) -> None:
        for ghost in self._ghosts:
            await ghost.close()

    @staticmethod
    def contents(n: int) -> tuple[list[dict[str, Any]], list[str]]:
        """``n`` rendered PreToolUse lines and their markers (same shape the bridge sends)."""
        session = Session(new_tag())
        out, marks = [], []
        for _ in range(n):
            body, mark = session.pre()
            out.append(rendered(session, body)[0])
            marks.append(mark)
        return out, marks

    @staticmethod
    async def put(room: RawRoom, content: dict[str, Any]) -> float:
        start = time.perf_counter()
        await room.client.send_event(room.room_id, "m.room.message", content)
        return time.perf_counter() - start

    async def sequential(self, n: int, timeout: float) -> dict[str, float]:
        """``n`` messages one after another into one room: messages/s until all are readable."""
        contents, marks = self.contents(n)
        room = self.rooms[0]
        start = time.perf_counter()
        for content in contents:
            await self.put(room, content)
        put_done = time.perf_counter()
        last_seen = await self.stack.observer.wait_marker(marks[-1], timeout)
        return {
            "n": n,
            "rate": n / (max(last_seen, put_done) - start),
            "rate_put": n / (put_done - start),
        }

    async def concurrent(self, n: int, timeout: float, rooms: int = 10) -> dict[str, float]:
        """``n`` messages spread over ``rooms`` rooms, one sender per room, all at once."""
        per_room = n // rooms
        batches = [self.contents(per_room) for _ in range(rooms)]

        async def worker(room: RawRoom, contents: list[dict[str, Any]]) -> None:
            for content in contents:
                await self.put(room, content)

        start = time.perf_counter()
        await asyncio.gather(*(worker(self.rooms[i], batches[i][0]) for i in range(rooms)))
        put_done = time.perf_counter()
        seen = [await self.stack.observer.wait_marker(b[1][-1], timeout) for b in batches]
        total = per_room * rooms
        return {
            "n": total,
            "rate": total / (max(*seen, put_done) - start),
            "rate_put": total / (put_done - start),
        }

    async def latency(self, k: int, timeout: float, pause: float = 0.03) -> dict[str, Any]:
        """Idle latency: one message at a time, PUT → readable by the syncing user."""
        contents, marks = self.contents(k)
        room = self.rooms[0]
        seen_ms, put_ms = [], []
        for content, mark in zip(contents, marks, strict=True):
            start = time.perf_counter()
            took = await self.put(room, content)
            seen = await self.stack.observer.wait_marker(mark, timeout)
            seen_ms.append((seen - start) * 1000)
            put_ms.append(took * 1000)
            await asyncio.sleep(pause)
        return {"seen": latency_summary(seen_ms), "put": latency_summary(put_ms)}

    async def create_room(self, k: int, timeout: float, pause: float = 0.05) -> dict[str, Any]:
        """Synapse's own create-room time, with the body the router sends (alias, name, topic,
        operators invited, thread state, power levels), by a fresh ghost each time."""
        created_ms, invited_ms = [], []
        operators = self.stack.operators
        for _ in range(k):
            tag = new_tag()
            ghost = await register_ghost(self.stack, f"claude-rawroom-{tag}")
            try:
                alias = f"claude-thread-rawroom-{tag}"
                session_id = str(uuid.uuid4())
                body = {
                    "room_alias_name": alias,
                    "name": f"bench-app · Claude session {session_id[:8]}",
                    "topic": f"Claude Code session · bench-app · /home/dev/bench-app · {session_id}",
                    "preset": "private_chat",
                    "invite": operators,
                    "initial_state": [
                        {
                            "type": "org.claude_bridge.thread",
                            "state_key": "",
                            "content": {"status": "active", "session_id": session_id},
                        }
                    ],
                    "power_level_content_override": {
                        "users": {
                            "@claudebot:localhost": 100,
                            **{user: 50 for user in operators},
                        }
                    },
                }
                start = time.perf_counter()
                await ghost.request("POST", "/_matrix/client/v3/createRoom", body=body)
                created = time.perf_counter()
                _, invited = await self.stack.observer.wait_invite(alias, timeout)
                created_ms.append((created - start) * 1000)
                invited_ms.append((max(invited, created) - start) * 1000)
            finally:
                await ghost.close()
            await asyncio.sleep(pause)
        return {"invite_seen": latency_summary(invited_ms), "create": latency_summary(created_ms)}
