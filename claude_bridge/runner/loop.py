"""The poll loop: one long-poll at a time to ``POST /claude/v1/runner/poll``, jobs carried out in
the order they come, their results and the sessions' exits sent with the next poll.

A result or an exit is dropped only once a poll that carried it was answered 200: until then it
goes again with every poll (the bridge takes a second copy as the same result). While a poll
waits, the sessions are watched every second; an exit found meanwhile cuts the wait short
(the poll is abandoned and sent again at once with the exit; jobs the bridge had put in the
abandoned answer are redelivered in the next one). Connection errors, timeouts and 5xx answers
are retried with exponential backoff (0.5 s doubling to 30 s, with jitter); 401 (bad token) ends
the runner with a clear message.

Each runner process makes a random instance id at start and sends it with every poll
(``INSTANCE_HEADER``): the bridge binds (token, host) to it while the runner is online, so a
session holding the same token cannot take the runner's place. The id lives in this object
only: never in the sessions' environment, on disk or in the log. 409 means another instance is
bound (a runner restarted after a crash, before the old one's window ran out; or a second
runner for the same token and host): the poll is retried with the same backoff, and the log
says why, until the bridge lets this one in. A clean stop sends a last poll with ``release``,
so the next runner gets in at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import secrets
from typing import Any

import aiohttp

from claude_bridge.log import get_logger
from claude_bridge.runner.config import RunnerConfig
from claude_bridge.runner.files import files_header
from claude_bridge.runner.jobs import Executor
from claude_bridge.runner.journal import Result
from claude_bridge.runner.sessions import Exit, Sessions
from claude_bridge.runner.tmux import TmuxError

log = get_logger(__name__)

POLL_PATH = "/claude/v1/runner/poll"
INSTANCE_HEADER = "X-Claude-Bridge-Runner-Instance"
EXIT_UNAUTHORIZED = 2


class Backoff:
    def __init__(self, first: float = 0.5, cap: float = 30.0) -> None:
        self.first, self.cap, self.failures = first, cap, 0

    def next_delay(self) -> float:
        delay = min(self.cap, self.first * 2**self.failures)
        self.failures += 1
        return delay * random.uniform(0.5, 1.0)

    def reset(self) -> None:
        self.failures = 0


class PollLoop:
    def __init__(
        self,
        config: RunnerConfig,
        executor: Executor,
        sessions: Sessions,
        http: aiohttp.ClientSession,
        *,
        watch_interval: float = 1.0,
    ) -> None:
        self.config = config
        self.executor = executor
        self.sessions = sessions
        self.http = http
        self.watch_interval = watch_interval
        self.results: dict[str, Result] = {}
        self.lock = asyncio.Lock()
        self.backoff = Backoff()
        self._wake = asyncio.Event()
        self._stop = asyncio.Event()
        self._sent_exits: set[str] = set()
        self.polls = 0
        self._instance = secrets.token_urlsafe(24)
        self._refused_since: float | None = None

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

    def body(self) -> dict[str, Any]:
        """The next poll. One that reports results or exits asks for an answer at once
        (``wait: 0``): a result is dropped, and an exited session killed, only once a poll that
        carried it was answered."""
        exits = self.sessions.pending_exits()
        return {
            "host": self.config.host,
            "projects": sorted(self.config.projects),
            "project_dirs": {name: str(d) for name, d in sorted(self.config.projects.items())},
            "max_sessions": self.config.max_sessions,
            "accept_from": self.config.accept_from,
            "sessions": self.sessions.report(),
            "results": [r.wire() for r in self.results.values()],
            "exits": [e.wire() for e in exits],
            "wait": 0 if self.results or exits else self.config.wait,
        }

    async def run(self) -> int:
        watcher = asyncio.create_task(self._watch())
        try:
            while not self._stop.is_set():
                code = await self.once()
                if code is not None:
                    return code
            await self.release()
            return 0
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher

    async def once(self) -> int | None:
        """One poll and what its answer asks for; an exit code when the runner must stop."""
        async with self.lock:
            await self._refresh()
            body = self.body()
            results = list(self.results.values())
            exits = self.sessions.pending_exits()
        self._sent_exits = {e.session_id for e in exits}
        self._wake.clear()
        answer = await self._post(body)
        if answer is None:
            return None
        status, data = answer
        if status == 200:
            self.backoff.reset()
            if self._refused_since is not None:
                waited = asyncio.get_running_loop().time() - self._refused_since
                log.info("runner.let_in", host=self.config.host, waited=round(waited, 1))
                self._refused_since = None
            await self._acknowledged(results, exits)
            jobs = data.get("jobs") if isinstance(data, dict) else None
            for job in jobs if isinstance(jobs, list) else []:
                if isinstance(job, dict):
                    async with self.lock:
                        result = await self.executor.execute(job)
                    self.results[result.job_id] = result
            return None
        if status == 401:
            log.error("runner.unauthorized", detail=str(data)[:300])
            print(
                f"claude-bridge runner: the bridge refused the hook token (401) at {self.config.url}",
                flush=True,
            )
            return EXIT_UNAUTHORIZED
        if status == 409:
            if self._refused_since is None:
                self._refused_since = asyncio.get_running_loop().time()
                log.warning(
                    "runner.host_taken",
                    host=self.config.host,
                    detail="another runner for this token and host is online (or was until "
                    "lately): retrying until the bridge lets this one in",
                )
            await self._pause()
            return None
        log.warning("runner.poll_refused", status=status, detail=str(data)[:500])
        await self._pause()
        return None

    def headers(self) -> dict[str, str]:
        headers = {"Authorization": f"Bearer {self.config.token}"}
        headers[INSTANCE_HEADER] = self._instance
        return headers | files_header(self.config.files_root)

    async def release(self) -> None:
        """The last poll of a clean stop: the results and exits not yet acknowledged, and
        ``release``, so that the next runner for this host is let in at once. Best effort: a
        runner that cannot say so is let in once its window has passed."""
        async with self.lock:
            body = self.body() | {"wait": 0, "release": True}
        try:
            async with self.http.post(
                self.config.url + POLL_PATH,
                json=body,
                headers=self.headers(),
                timeout=aiohttp.ClientTimeout(total=5),
            ) as response:
                log.info("runner.released", host=self.config.host, status=response.status)
        except (aiohttp.ClientError, TimeoutError, OSError) as e:
            log.warning("runner.release_failed", error=f"{type(e).__name__}: {e}")

    async def _post(self, body: dict[str, Any]) -> tuple[int, Any] | None:
        """The poll's status and JSON; None when it failed (after the backoff) or was cut
        short by an exit or a stop."""
        timeout = aiohttp.ClientTimeout(total=self.config.wait + 20)
        headers = self.headers()

        async def post() -> tuple[int, Any]:
            async with self.http.post(
                self.config.url + POLL_PATH, json=body, headers=headers, timeout=timeout
            ) as response:
                try:
                    data = await response.json(content_type=None)
                except ValueError:
                    data = await response.text()
                return response.status, data

        request = asyncio.create_task(post())
        woken = asyncio.create_task(self._wake.wait())
        try:
            await asyncio.wait({request, woken}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            woken.cancel()
        if not request.done():
            request.cancel()
            with contextlib.suppress(asyncio.CancelledError, aiohttp.ClientError):
                await request
            return None
        self.polls += 1
        try:
            return request.result()
        except (aiohttp.ClientError, TimeoutError, OSError) as e:
            log.warning("runner.poll_failed", error=f"{type(e).__name__}: {e}")
            await self._pause()
            return None

    async def _pause(self) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), self.backoff.next_delay())

    async def _acknowledged(self, results: list[Result], exits: list[Exit]) -> None:
        for result in results:
            if self.results.get(result.job_id) is result:
                del self.results[result.job_id]
        if exits:
            async with self.lock:
                await self.sessions.acknowledged(exits)

    async def _refresh(self) -> None:
        try:
            await self.sessions.refresh()
        except TmuxError as e:
            log.warning("runner.tmux_unreadable", error=str(e))

    async def _watch(self) -> None:
        """Every ``watch_interval``: an exit not yet sent cuts the current poll short."""
        while True:
            await asyncio.sleep(self.watch_interval)
            async with self.lock:
                await self._refresh()
                fresh = {e.session_id for e in self.sessions.pending_exits()} - self._sent_exits
            if fresh:
                self._wake.set()
