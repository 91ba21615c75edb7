"""What host runners' jobs look like in Matrix (issue 15): the room a ``new`` session gets before
its first hook, a runner's refusal told to whoever asked, a session's exit told in its room.

Every text goes out through the client, whose one scrubber covers it (a pane's last lines can
hold anything the session printed).
"""

from __future__ import annotations

from claude_bridge.control.parts import Parts
from claude_bridge.control.room import RoomReplies
from claude_bridge.control.runner_wire import Exit
from claude_bridge.control.runners import Runners
from claude_bridge.ids import SessionID, thread_id_for
from claude_bridge.log import get_logger
from claude_bridge.matrix.client import MatrixError
from claude_bridge.room_state import ENDED, THREAD_STATE
from claude_bridge.store import Thread
from claude_bridge.store.runner_jobs import DONE, EXIT, RunnerJob
from claude_bridge.store.runners import Runner

log = get_logger("runners")

TAIL_LINES = 30


def tmux_name(project: str, session_id: str) -> str:
    """The tmux session a runner starts (``RUNNER_CONTRACT``); tmux turns ``.`` and ``:`` into
    ``_`` in names."""
    return f"claude-{project}-{session_id[:8]}".replace(".", "_").replace(":", "_")


def attach_hint(runner: Runner, session_id: str, project: str) -> str:
    running = runner.session(session_id)
    name = running.tmux if running is not None else tmux_name(project, session_id)
    return f"`tmux attach -t {name}`"


def fence(text: str) -> str:
    """``text`` in a code block that no line of it can close."""
    ticks = "```"
    while ticks in text:
        ticks += "`"
    return f"{ticks}\n{text}\n{ticks}"


class RunnerRooms:
    def __init__(self, parts: Parts, runners: Runners, replies: RoomReplies) -> None:
        self.p = parts
        self.runners = runners
        self.replies = replies
        runners.on_failed = self.failed
        runners.on_exit = self.exited

    async def open_thread(
        self, runner: Runner, project: str, session_id: str, requester: str
    ) -> Thread:
        """The thread and room of a session about to start: owned by the runner's token, so its
        hooks land here; says who started it where, and how to attach. The requester is
        invited."""
        thread_id = thread_id_for(session_id)
        names = self.p.router.names
        thread = await self.p.threads.ensure(
            Thread(
                id=thread_id,
                session_id=SessionID(session_id),
                ghost_mxid=names.ghost(thread_id),
                alias=names.alias(thread_id),
                project_name=project,
                # Where it runs, as a session started at the host records its cwd: the room's
                # topic and project space, `!claude file` (None from a runner that does not say).
                project_path=runner.project_dirs.get(project),
                token_name=runner.token_name,
            )
        )
        room_id = await self.p.router.ensure_room(thread)
        await self.p.client.invite(thread.ghost_mxid, room_id, requester)
        text = (
            f"🚀 Started from Matrix by {requester} on host `{runner.host}`, in project "
            f"`{project}`. At the host: {attach_hint(runner, session_id, project)}"
        )
        await self.replies.send(
            thread, room_id, f"started.{session_id}", text, as_reply=False, mention=requester
        )
        return thread

    async def failed(self, job: RunnerJob) -> None:
        """The runner refused the job or it failed: tell whoever asked, where they asked."""
        reason = job.error or "no reason given"
        if job.kind == "type":
            # The runner's reason says when the message may have reached the pane after all
            # (it stopped in the middle of typing it: not repeated).
            text = (
                f"⚠️ {job.requested_by}: your message could not be typed into the session on "
                f"`{job.host}`: {reason}. Send it again if Claude still needs it."
            )
        else:
            what = f"`{job.kind}`" + (f" in `{job.project}`" if job.project else "")
            text = f"⚠️ {job.requested_by}: the runner on `{job.host}` could not do {what}: {reason}"
        await self._tell(job, text, f"job.{job.id}")
        thread = await self.p.threads.for_session(job.session_id)
        if thread is not None:
            await self.p.audit.record(thread.id, job.requested_by, "runner job failed", job.id)
        # A session that never started leaves a room that must not look live (unless the runner
        # says it runs it after all: it died after starting it).
        if (
            job.kind == "new"
            and thread is not None
            and thread.room_id is not None
            and self.runners.running(job.session_id, thread.token_name) is None
        ):
            await self.mark_ended(thread)

    async def stranded(self, job: RunnerJob, requeued: bool) -> None:
        """A ``type`` job's runner went offline without answering (``RunnerTyping.stranded``):
        the message is queued again, or it may not have been typed; either way the room knows."""
        offline = f"the runner on `{job.host}` went offline"
        if requeued:
            text = (
                f"⚠️ {job.requested_by}: {offline} before it could type your message: it is "
                "queued again. The session's next hook carries it, or the runner types it "
                "when it is back."
            )
        else:
            text = (
                f"⚠️ {job.requested_by}: {offline} before saying whether it typed your message: "
                "Claude may not have it. If the runner comes back it finishes the job (the room "
                "then shows the typed prompt, or says it failed); else send it again."
            )
        await self._tell(job, text, f"job.{job.id}.{'requeued' if requeued else 'offline'}")

    async def _tell(self, job: RunnerJob, text: str, key: str) -> None:
        """``text`` to whoever asked, where they asked, and in the session's room."""
        thread = await self.p.threads.for_session(job.session_id)
        if job.origin_room is not None:
            origin = await self.p.threads.get_by_room(job.origin_room)
            await self.replies.send(
                origin,
                job.origin_room,
                key,
                text,
                reply_to=job.origin_event,
                mention=job.requested_by,
                as_reply=job.origin_event is not None,
            )
        if thread is not None and thread.room_id and thread.room_id != job.origin_room:
            await self.replies.send(thread, thread.room_id, f"{key}.room", text, as_reply=False)

    async def exited(self, runner: Runner, exit_: Exit) -> None:
        """A session of the runner exited: once per launch, a notice in its room with the exit
        status and the pane's last lines, and the room marked ended."""
        thread = await self.p.threads.for_session(exit_.session_id)
        if thread is None or thread.token_name != runner.token_name or thread.room_id is None:
            log.info("exit of a session not this runner's", session_id=exit_.session_id)
            return
        launch = await self.runners.jobs.last_launch(exit_.session_id)
        record = RunnerJob.for_session(
            runner,
            thread,
            EXIT,
            id=f"exit:{launch.id if launch else exit_.session_id}",
            requested_by=runner.token_name,
            text=exit_.tail,
            state=DONE,
        )
        if not await self.runners.jobs.add(record):
            return  # told before: a repeated report
        status = "unknown status" if exit_.status is None else f"status {exit_.status}"
        lines = "\n".join(exit_.tail.rstrip("\n").splitlines()[-TAIL_LINES:])
        text = f"⏹️ Claude Code exited on `{runner.host}` ({status})."
        if lines.strip():
            text += " The last lines of its pane:\n\n" + fence(lines)
        await self.replies.send(thread, thread.room_id, record.id, text, as_reply=False)
        await self.p.audit.record(
            thread.id, runner.token_name, "runner exit", f"{runner.host} {status}"
        )
        await self.mark_ended(thread)

    async def mark_ended(self, thread: Thread) -> None:
        assert thread.room_id is not None
        await self.p.threads.set_status(thread.id, "ended", ENDED)
        router = self.p.router
        try:
            await self.p.client.send_state(
                thread.ghost_mxid, thread.room_id, "m.room.topic", "", router.topic(thread, ENDED)
            )
            await self.p.client.send_state(
                thread.ghost_mxid,
                thread.room_id,
                THREAD_STATE,
                "",
                router.thread_state(thread, ENDED),
            )
        except MatrixError as e:
            log.warning("could not mark the room ended", thread_id=thread.id, error=str(e))
