"""Which event loop the bridge process runs on.

uvloop (libuv) runs the same asyncio code with the loop, its transports and its timers in C.
asyncpg, aiohttp and mautrix all support it (mautrix's own ``Program`` uses it when it is
installed). Measured against asyncio's loop, same commit, same hour (docs/benchmarks.md,
"uvloop against asyncio's loop"): on SQLite every throughput row gained (50 sessions back to
back 3,048 → 3,511 ev/s, the one-connection burst 2,999 → 3,364) and the ack p99 under load
fell 17.2 → 13.3 ms; on Postgres, where each ack waits for the server's commit, two pairs
disagreed within the noise. A held connection stays mostly Python (aiohttp's request and the
handler's coroutine): about 53 objects against 64, so the collector's work changes little.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from enum import StrEnum


class EventLoop(StrEnum):
    AUTO = "auto"
    UVLOOP = "uvloop"
    ASYNCIO = "asyncio"


class EventLoopUnavailable(RuntimeError):
    pass


def loop_factory(choice: EventLoop) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """A factory for :class:`asyncio.Runner`; None: asyncio's own loop.

    ``auto`` takes uvloop where it is installed (it is a dependency on every platform it has
    wheels for) and asyncio's loop elsewhere; ``uvloop`` insists on it."""
    if choice == EventLoop.ASYNCIO:
        return None
    try:
        import uvloop
    except ImportError as e:
        if choice == EventLoop.UVLOOP:
            raise EventLoopUnavailable(
                "event_loop: uvloop is not installed (pip install uvloop), or use 'auto'"
            ) from e
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def loop_name(loop: asyncio.AbstractEventLoop) -> str:
    """``uvloop`` or ``asyncio``, for the start-up line (tests read it)."""
    return "uvloop" if type(loop).__module__.startswith("uvloop") else "asyncio"
