"""An operator's message to an idle runner session becomes a real user turn (issue 15).

When a session that a host runner runs sits at its prompt, the oldest queued message is claimed
for a ``type`` job instead of the background waiter: the runner pastes its text into the pane
(bracketed paste, then Enter), so Claude gets it as a prompt, and the room shows that prompt as
``🧑‍💻 @alice:example.org: …`` (``author``). A file goes with its job when the runner said where
its host keeps files (``X-Claude-Bridge-Files``; it fetches the file before typing), else it waits
as on any path that cannot carry files. One path claims a message: the claim is the inbox's
one conditional UPDATE, taken under a per-thread lock, and the waiter asks here first
(``Waiter``), stepping aside when a job took the message. Mid-turn the hook answers carry
messages as before; a hand-off is never typed.

One type job per session at a time: the next message waits for it (and is then carried by the
turn the typed prompt starts, or typed once Claude is back at its prompt). A crash between the
claim and the job is repaired at start (``load``): a message claimed for the runner without its
job gets it then.

A typed message is never lost silently. A runner that reports a ``type`` job failed has the
room told (``RunnerRooms.failed``). A runner that goes offline with a ``type`` job open
(``stranded``, checked every ``CHECK_EVERY`` seconds): a job it was never handed is taken back
and its message put back in the session's queue (the session may still run in tmux: its hooks
carry it, or the runner types it when it is back), and the room is told; a job it was handed
but never answered may or may not have been typed, so the room is told that, and the runner
finishes it if it comes back (answered from its journal, never typed twice).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import defaultdict
from collections.abc import Awaitable, Callable

from claude_bridge.control.file_carrier import FileCarrier
from claude_bridge.control.framing import typed_prompt
from claude_bridge.control.messages import attributed
from claude_bridge.control.parts import Parts
from claude_bridge.control.responder import Responder
from claude_bridge.control.runners import Runners
from claude_bridge.control.signals import thread_key
from claude_bridge.ids import thread_id_for
from claude_bridge.log import get_logger
from claude_bridge.store.database import now_ms
from claude_bridge.store.runner_jobs import QUEUED, RunnerJob
from claude_bridge.store.runners import Runner
from claude_bridge.store.session_messages import SessionMessage

log = get_logger("runners")

VIA = "runner"
TYPE = "type"
KEPT = 50
"""Typed prompts remembered per session, to attribute the prompts Claude Code reports."""
REMEMBER_MS = 24 * 3600 * 1000
CHECK_EVERY = 5.0
"""Seconds between looks for ``type`` jobs whose runner went offline."""

OFFLINE = "its runner went offline before answering; the room was told"
OnStranded = Callable[[RunnerJob, bool], Awaitable[None]]
"""Tell the room about a stranded ``type`` job; True: its message is queued again."""


async def _untold(job: RunnerJob, requeued: bool) -> None:
    log.warning("a stranded type job was not told", job=job.id, requeued=requeued)


def _same(prompt: str, typed: str) -> bool:
    return prompt.strip() == typed.strip()


class RunnerTyping:
    def __init__(
        self,
        parts: Parts,
        runners: Runners,
        responder: Responder,
        files: FileCarrier,
        on_delivered: Callable[[], None],
    ) -> None:
        self.p = parts
        self.files = files
        self.runners = runners
        self.responder = responder
        self.on_delivered = on_delivered
        self._locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        self._typed: defaultdict[str, list[tuple[str, str]]] = defaultdict(list)
        self._task: asyncio.Task[None] | None = None
        self.on_stranded: OnStranded = _untold
        self.check_every = CHECK_EVERY
        runners.on_polled = self.poke
        runners.on_done = self.done

    async def done(self, job: RunnerJob) -> None:
        """An interrupt went through: the session is at its prompt (no Stop says so), and what
        waits for it is typed now rather than at its next hook."""
        if job.kind == "interrupt":
            thread_id = thread_id_for(job.session_id)
            self.responder.interrupted(thread_id)
            await self.offer(thread_id)

    async def poke(self, runner: Runner) -> None:
        """A runner polled: its idle sessions get what waited for them (a message written while
        it was offline, the next one after a typed prompt)."""
        for session in runner.sessions:
            await self.offer(thread_id_for(session.session_id))

    def author(self, thread_id: str, prompt: str) -> str | None:
        """Who wrote ``prompt``, when the bridge had it typed into this session."""
        for text, sender in reversed(self._typed.get(thread_id, ())):
            if _same(prompt, text):
                return sender
        return None

    def _remember(self, job: RunnerJob) -> None:
        typed = self._typed[thread_id_for(job.session_id)]
        typed.append((job.text or "", job.requested_by))
        del typed[:-KEPT]

    async def load(self) -> None:
        """Remember recent typed prompts; give a job to a message claimed without one."""
        since = now_ms() - REMEMBER_MS
        for job in await self.runners.jobs.recent(TYPE, since):
            self._remember(job)
        for message in await self.p.inbox.delivered_via(VIA, since):
            if await self.runners.jobs.get(_job_id(message)) is None:
                thread = await self.p.threads.get(message.thread_id)
                runner = (
                    self.runners.running(thread.session_id, thread.token_name) if thread else None
                )
                launch = await self.runners.jobs.last_launch(message.thread_id)
                token, host = (
                    (runner.token_name, runner.host)
                    if runner
                    else (launch.token_name, launch.host)
                    if launch
                    else (None, None)
                )
                if token is None or host is None:
                    log.warning("a message claimed for a runner has none", message=message.id)
                    continue
                await self._submit(message, token, host)

    def start(self) -> None:
        self._task = asyncio.create_task(self._watch(), name="runner-typing-stranded")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _watch(self) -> None:
        while True:
            try:
                await self.stranded()
            except Exception as e:
                log.warning("looking for stranded type jobs failed; will try again", error=repr(e))
            await asyncio.sleep(self.check_every)

    async def stranded(self) -> int:
        """Deal with the open ``type`` jobs of offline runners (see the module's docstring); how
        many were put back in their queue."""
        requeued = 0
        for runner in self.runners.all():
            if self.runners.online(runner):
                continue
            for job in await self.runners.jobs.open_for(runner.token_name, runner.host):
                if job.kind != TYPE:
                    continue
                if job.state == QUEUED and await self._take_back(job):
                    requeued += 1
                    await self.on_stranded(job, True)
                elif job.state != QUEUED and await self.runners.jobs.note_open(job.id, OFFLINE):
                    await self.on_stranded(job, False)  # once: the note says it was told
        return requeued

    async def _take_back(self, job: RunnerJob) -> bool:
        """A type job its runner never got: withdrawn, and its message queued again."""
        message = await self.p.inbox.get(job.origin_event) if job.origin_event else None
        if message is None:
            return False
        async with self._locks[message.thread_id]:
            runner = self.runners.known(job.token_name, job.host)
            if runner is not None and self.runners.online(runner):
                return False  # back meanwhile: its poll hands the job out
            if not await self.runners.jobs.withdraw_queued(job.id):
                return False  # a poll took it meanwhile: the runner answers for it
            if await self.p.inbox.requeue(message.id, message.thread_id, VIA) is None:
                return False
        log.info("a type job's runner went offline: message queued again", job=job.id)
        await self.p.audit.record(message.thread_id, "bridge", "runner job withdrawn", job.id)
        self.p.signals.fire(thread_key(message.thread_id))  # a waiting hook answer takes it
        return True

    async def offer(self, thread_id: str) -> bool:
        """Claim the oldest queued message of an idle runner session for a ``type`` job. True:
        the runner has it, or a type job of the session is still out (the message waits)."""
        thread = await self.p.threads.get(thread_id)
        if thread is None:
            return False
        runner = self.runners.running(thread.session_id, thread.token_name)
        if runner is None:
            return False  # not a runner session (or its runner is offline): the usual paths
        if not self.responder.idle(thread_id):
            return False  # mid-turn: hook answers carry it
        async with self._locks[thread_id]:
            if await self.runners.jobs.open_kind(thread.session_id, TYPE) is not None:
                return True
            queued = await self.p.inbox.queued(thread_id, 1)
            if not queued:
                return False
            message = queued[0]
            if message.from_thread or not runner.accepts(message.sender):
                return False  # hand-offs go the usual way; so does a sender it refuses
            carrier = self.files.carrier(thread.session_id, self.runners.files_root(runner), False)
            if not await self.files.carriable([message], carrier):
                return False  # a file this runner can't fetch: it waits (the room is told)
            claimed = await self.p.inbox.claim_through(thread_id, message.id, VIA, None)
            if not claimed:
                return False  # a hook answer took it first
            claimed = await self.files.claimed(claimed, carrier)
            files = FileCarrier.to_fetch(claimed, carrier)
            await self._submit(claimed[0], runner.token_name, runner.host, files)
        self.on_delivered()
        return True

    async def _submit(
        self,
        message: SessionMessage,
        token_name: str,
        host: str,
        files: list[dict[str, object]] | None = None,
    ) -> None:
        thread = await self.p.threads.get(message.thread_id)
        # A file's message tells Claude where it is (``framing.with_file``); a text is typed as
        # it was written, unless it starts with `/` or `!`: Claude Code would run it as a slash
        # command or a shell command (no permission asked), so it is framed.
        text = (
            attributed(message) if message.has_file else typed_prompt(message.sender, message.body)
        )
        job = RunnerJob(
            id=_job_id(message),
            token_name=token_name,
            host=host,
            kind=TYPE,
            session_id=thread.session_id if thread else message.thread_id,
            requested_by=message.sender,
            project=thread.project_name if thread else None,
            text=text,
            room_id=message.room_id,
            origin_room=message.room_id,
            origin_event=message.event_id,
            files=json.dumps(files) if files else None,
        )
        self._remember(job)
        await self.runners.submit(job)
        detail = f"type on {host} (job {job.id}, message {message.event_id})"
        await self.p.audit.record(message.thread_id, message.sender, "runner job", detail)
        log.info("message typed into a runner session", thread_id=message.thread_id, job=job.id)


def _job_id(message: SessionMessage) -> str:
    return f"type.{message.id}"
