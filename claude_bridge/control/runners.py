"""Host runners (issue 15): who is online, the jobs waiting for each, and one runner's poll.

A runner is (hook token name, host). Its poll (``runner_poll.py`` reads the body) records what
it announced, settles the results it brings, reports the exits, and then answers with every job
of that runner that has no result yet — at once if there is one, else when one is submitted or
``wait`` runs out. A job is handed out again in every answer until its result comes back: the
runner makes running one twice harmless, and the bridge never hands a job to another runner.

Each runner process sends a random instance id with every poll (``INSTANCE_HEADER``, made at
start, kept in memory only: its sessions, which hold the same token, never see it). While a
runner is online (a poll open now, or one ended less than ``2 × wait`` seconds ago, at least
``MIN_GRACE``, as recorded in the ``runners`` table) (token, host) is bound to its instance: a
poll of another instance is answered 409 and changes nothing (no results, no exits, no jobs),
and the incumbent keeps its poll. Another instance gets in once the bound one has been offline
past that window, or at once after the bound one released it (a last poll with ``release``,
when it stops cleanly). Two polls of the bound instance open at once (it abandoned one to send
an exit): the newer wins, the older is answered 409. A poll without the header is the
instance ``LEGACY_INSTANCE``, so it cannot take a bound runner's place either. The binding is
in memory: after a bridge restart the first instance to poll binds.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from claude_bridge.control.runner_wire import LEGACY_INSTANCE, Exit, Poll
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
        # Which runner process holds each (token, host) (see the module's docstring), and the
        # runners that released theirs (offline at once, whatever their last poll).
        self._bound: dict[tuple[str, str], str] = {}
        self._released: set[tuple[str, str]] = set()

    def files_root(self, runner: Runner) -> str | None:
        return self._files_roots.get((runner.token_name, runner.host))

    async def load(self) -> None:
        self._known = {(r.token_name, r.host): r for r in await self.store.all()}

    # --- what the commands ask ---------------------------------------------------------------

    def online(self, runner: Runner, now: int | None = None) -> bool:
        key = (runner.token_name, runner.host)
        if self._open.get(key, 0) > 0:
            return True
        if key in self._released:
            return False
        grace = max(2 * runner.wait, MIN_GRACE) * 1000
        return (now or now_ms()) - runner.last_seen < grace

    def known(self, token_name: str, host: str) -> Runner | None:
        return self._known.get((token_name, host))

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
        instance: str = LEGACY_INSTANCE,
    ) -> Answer:
        key = (token_name, poll.host)
        if not self.bind(key, instance):
            log.warning("runner poll refused: another instance holds the host", host=poll.host)
            return Answer(409, {"error": _BOUND.format(host=poll.host)})
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
                project_dirs=poll.project_dirs,
            )
            await self.store.save(runner)
            self._seen(runner)
            await self._settle(runner, poll)
            if poll.release:
                self._release(key, instance)
                return Answer(200, {"jobs": []})
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

    def bind(self, key: tuple[str, str], instance: str) -> bool:
        """Whether a poll of ``instance`` may speak for ``key`` now; binds it if so."""
        bound = self._bound.get(key)
        if bound is not None and bound != instance:
            known = self._known.get(key)
            if known is not None and self.online(known):
                return False
        self._bound[key] = instance
        self._released.discard(key)
        return True

    def _release(self, key: tuple[str, str], instance: str) -> None:
        if self._bound.get(key) == instance:
            del self._bound[key]
            self._released.add(key)
            log.info("runner released its host", host=key[1])

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
                    # A queued job withdrawn since the read (its runner had gone offline, and
                    # its message went back to the queue) is not handed out after all.
                    marked = await self.jobs.mark_sent([j.id for j in jobs if j.state == "queued"])
                    jobs = [j for j in jobs if j.state != "queued" or j.id in marked]
                if jobs:
                    return Answer(200, {"jobs": [j.wire() for j in jobs]})
                if not await self.signals.wait(wake, deadline, connected):
                    return Answer(200, {"jobs": []})

    async def drain(self) -> None:
        """Let the follow-ups in flight finish (the bridge is stopping)."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=5)


_BOUND = (
    "another runner for host {host!r} with this token is online: this poll is refused, and "
    "takes that runner's place only once it has been offline for twice its poll's wait "
    "(two runners with the same token and --host cannot run at once)"
)
_SUPERSEDED = "a newer poll of this runner for host {host!r} is open: this one is superseded"
