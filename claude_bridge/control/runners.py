"""Host runners (issue 15): who is online, the jobs waiting for each, and one runner's poll.

A runner is (hook token name, host). Its poll (``runner_poll.py`` reads the body) records what
it announced, settles the results it brings, reports the exits, and then answers with every job
of that runner that has no result yet — at once if there is one, else when one is submitted or
``wait`` runs out. A job is handed out again in every answer until its result comes back: the
runner makes running one twice harmless, and the bridge never hands a job to another runner.

Two polls of one (token, host) open at once: the newer wins, the older is answered 409. Online
means a poll is open now or one ended less than ``2 × wait`` seconds ago (at least
``MIN_GRACE``), as recorded in the ``runners`` table, so a restarted bridge knows it too.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from claude_bridge.control.runner_wire import Exit, Poll
from claude_bridge.control.signals import Signals
from claude_bridge.log import get_logger
from claude_bridge.store.database import now_ms
from claude_bridge.store.runner_jobs import RunnerJob, RunnerJobStore
from claude_bridge.store.runners import Runner, RunnerStore

log = get_logger("runners")

MIN_GRACE = 3.0
"""Seconds a runner stays online after a poll ended, whatever its ``wait``."""


def runner_key(token_name: str, host: str) -> str:
    return f"runner:{token_name}:{host}"


@dataclass(frozen=True)
class Answer:
    status: int
    body: dict[str, object]


class Superseded(Exception):
    """A newer poll of the same runner is open."""


OnFailed = Callable[[RunnerJob], Awaitable[None]]
OnExit = Callable[[Runner, Exit], Awaitable[None]]
OnDone = Callable[[RunnerJob], Awaitable[None]]
OnPolled = Callable[[Runner], Awaitable[None]]


async def _nothing(*_: object) -> None:
    return None


class Runners:
    def __init__(self, store: RunnerStore, jobs: RunnerJobStore, signals: Signals) -> None:
        self.store = store
        self.jobs = jobs
        self.signals = signals
        self.on_failed: OnFailed = _nothing
        self.on_done: OnDone = _nothing
        self.on_exit: OnExit = _nothing
        self.on_polled: OnPolled = _nothing
        """After a poll's results and exits: what its sessions may be handed now (typing)."""
        self._open: dict[tuple[str, str], int] = {}
        self._newest: dict[tuple[str, str], int] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        # What each runner last announced, and when it was last seen: the commands and the
        # background waiter ask without a query (the table has the same, for a restart).
        self._known: dict[tuple[str, str], Runner] = {}
        # Where each runner's host keeps operators' files (its X-Claude-Bridge-Files header):
        # announced with every poll, so kept in memory only.
        self._files_roots: dict[tuple[str, str], str] = {}

    def files_root(self, runner: Runner) -> str | None:
        return self._files_roots.get((runner.token_name, runner.host))

    async def load(self) -> None:
        self._known = {(r.token_name, r.host): r for r in await self.store.all()}

    # --- what the commands ask ---------------------------------------------------------------

    def online(self, runner: Runner, now: int | None = None) -> bool:
        if self._open.get((runner.token_name, runner.host), 0) > 0:
            return True
        grace = max(2 * runner.wait, MIN_GRACE) * 1000
        return (now or now_ms()) - runner.last_seen < grace

    def all(self) -> list[Runner]:
        return sorted(self._known.values(), key=lambda r: (r.host, r.token_name))

    def running(self, session_id: str, token_name: str | None) -> Runner | None:
        """The online runner of ``token_name`` (the session's owner) that runs the session now,
        if any: what another token's runner claims to run counts for nothing."""
        for runner in self._known.values():
            if (
                runner.token_name == token_name
                and runner.session(session_id) is not None
                and self.online(runner)
            ):
                return runner
        return None

    def _seen(self, runner: Runner) -> None:
        self._known[(runner.token_name, runner.host)] = dataclasses.replace(
            runner, last_seen=now_ms()
        )

    async def submit(self, job: RunnerJob) -> bool:
        """Store the job (committed before anyone is told) and wake its runner's poll."""
        added = await self.jobs.add(job)
        self.signals.fire(runner_key(job.token_name, job.host))
        return added

    # --- the poll ------------------------------------------------------------------------------

    async def poll(
        self,
        token_name: str,
        poll: Poll,
        connected: Callable[[], bool],
        *,
        files_root: str | None = None,
    ) -> Answer:
        key = (token_name, poll.host)
        if files_root is None:
            self._files_roots.pop(key, None)
        else:
            self._files_roots[key] = files_root
        generation = self._newest.get(key, 0) + 1
        self._newest[key] = generation
        self.signals.fire(runner_key(*key))  # an older poll of this runner ends now: 409
        self._open[key] = self._open.get(key, 0) + 1
        try:
            runner = Runner(
                token_name=token_name,
                host=poll.host,
                projects=poll.projects,
                accept_from=poll.accept_from,
                max_sessions=poll.max_sessions,
                sessions=poll.sessions,
                wait=round(poll.wait),
            )
            await self.store.save(runner)
            self._seen(runner)
            await self._settle(runner, poll)
            self._later(self.on_polled(runner))
            return await self._jobs(key, generation, poll.wait, connected)
        finally:
            self._open[key] -= 1
            if not self._open[key]:
                del self._open[key]
            if (known := self._known.get(key)) is not None:
                self._seen(known)
            try:
                await self.store.seen(token_name, poll.host)
            except Exception as e:  # the poll's answer matters more than this timestamp
                log.warning("could not record the runner's poll end", error=repr(e))

    async def _settle(self, runner: Runner, poll: Poll) -> None:
        for result in poll.results:
            job = await self.jobs.finish(
                result.job_id, runner.token_name, runner.host, result.ok, result.error
            )
            if job is None:
                continue  # settled before (a repeated result), or not this runner's job
            log.info("runner job settled", job=job.id, kind=job.kind, ok=result.ok)
            self._later(self.on_done(job) if result.ok else self.on_failed(job))
        for exit_ in poll.exits:
            self._later(self.on_exit(runner, exit_))

    def _later(self, work: Awaitable[None]) -> None:
        """Matrix work off the poll's path: the answer must not wait for the homeserver."""

        async def run() -> None:
            try:
                await work
            except Exception:
                log.exception("runner follow-up failed")

        task = asyncio.ensure_future(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _jobs(
        self,
        key: tuple[str, str],
        generation: int,
        wait: float,
        connected: Callable[[], bool],
    ) -> Answer:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        with self.signals.listen(runner_key(*key)) as wake:
            while True:
                if self._newest.get(key) != generation:
                    return Answer(409, {"error": _SUPERSEDED.format(host=key[1])})
                if self.signals.closed:
                    return Answer(503, {"error": "the bridge is stopping; poll again later"})
                jobs = await self.jobs.open_for(*key)
                if jobs:
                    await self.jobs.mark_sent([j.id for j in jobs if j.state == "queued"])
                    return Answer(200, {"jobs": [j.wire() for j in jobs]})
                if not await self.signals.wait(wake, deadline, connected):
                    return Answer(200, {"jobs": []})

    async def drain(self) -> None:
        """Let the follow-ups in flight finish (the bridge is stopping)."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=5)


_SUPERSEDED = (
    "a newer runner for host {host!r} with this token is polling now: this one is superseded "
    "(two runners with the same token and --host cannot run at once)"
)
