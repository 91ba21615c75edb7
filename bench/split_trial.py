"""A trial of issue 17's ingest/delivery split, to measure before building it: a launcher.

    BENCH_BRIDGE_LAUNCHER=$PWD/bench/split_trial.py python -m bench run --only load \\
        --out bench/results/NAME.json

It runs the bridge's command line as two processes on the same database:

- *delivery* (a child, started first): the whole bridge as today — leader lock, migrations,
  appservice, control, delivery — with its hook listener moved to a spare loopback port;
- *ingest* (the launcher itself): only the store and the hook listener on the configured port.
  It validates, stores, answers, and tells delivery which thread has new work through a pipe
  (one thread id per line), as ``NOTIFY`` or a Unix socket would in a built split.

It is a measurement, not the split: the ingest side's control state is what the store holds
at its start plus what the hook path itself writes, so an operator's message, a ``!claude
stop`` or an approval decided in the delivery process does not wake an answer held here. The
load row holds nothing and sends nothing from Matrix, which is why it can be measured this way.
What a built split has to carry across is listed in docs/scaling.md. The bench marks such runs
dirty (``BENCH_BRIDGE_LAUNCHER``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from typing import Any

from claude_bridge.devenv.processes import die_with_parent, free_port


def _delivery(notes: int, ready: int) -> int:
    """The child: the whole bridge; its delivery is woken by the ingest side's notes."""
    os.environ["CLAUDE_BRIDGE__HOOKS__LISTEN"] = f"127.0.0.1:{free_port()}"
    from claude_bridge import app

    start = app.Bridge.start
    said = app.log.info

    def quiet_ready(event: str, *args: Any, **kw: Any) -> Any:
        # The bench waits for "bridge ready": the ingest side says it once it listens.
        return said("delivery ready" if event == "bridge ready" else event, *args, **kw)

    app.log.info = quiet_ready  # type: ignore[method-assign,assignment]

    async def start_fed(self: app.Bridge) -> None:
        await start(self)
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(notes, "rb", 0)
        )

        async def feed() -> None:
            while line := await reader.readline():
                self.delivery.notify(line.decode().strip())  # type: ignore[arg-type]

        self._feed = asyncio.ensure_future(feed())  # type: ignore[attr-defined]
        os.write(ready, b"1")
        os.close(ready)

    app.Bridge.start = start_fed  # type: ignore[method-assign]
    from claude_bridge.cli import main

    return main()


def _ingest(notes: int, ready: int) -> int:
    """The launcher: wait for the delivery side, then store and answer hooks only."""
    if not os.read(ready, 1):
        return 1  # the delivery side did not start: its log says why
    from claude_bridge import app

    async def start_ingest(self: app.Bridge) -> None:
        running = self._running
        running.push_async_callback(self.db.stop)
        running.push_async_callback(self.outbox.close)
        await self.db.start()
        await self.control.parts.controls.load_hint()
        await self.control.parts.inbox.load_hint()
        writer = os.fdopen(notes, "wb", 0)

        def notify(thread_id: str) -> None:
            with contextlib.suppress(BrokenPipeError):
                writer.write(thread_id.encode() + b"\n")

        self.hooks.ingest.notify = notify
        running.push_async_callback(self.hooks.stop)
        await self.hooks.start()
        app.log.info("bridge ready", hooks=self.config.hooks.listen, role="ingest")

    async def no_lock() -> None:
        return None

    app.Bridge.start = start_ingest  # type: ignore[method-assign]
    build = app.build

    def build_unlocked(*args: Any, **kw: Any) -> app.Bridge:
        bridge = build(*args, **kw)
        bridge.lock.release = no_lock  # type: ignore[method-assign]
        return bridge

    app.build = build_unlocked
    from claude_bridge.cli import main

    return main()


def _launch() -> int:
    notes_r, notes_w = os.pipe()
    ready_r, ready_w = os.pipe()
    dies_with_parent = die_with_parent()  # resolved before the fork, as it asks
    child = os.fork()
    if child == 0:
        if dies_with_parent is not None:
            dies_with_parent()
        os.close(notes_w)
        os.close(ready_r)
        os._exit(_delivery(notes_r, ready_w))
    os.close(notes_r)
    os.close(ready_w)
    try:
        return _ingest(notes_w, ready_r)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(child, signal.SIGTERM)
        os.waitpid(child, 0)


if __name__ == "__main__":
    sys.exit(_launch())
