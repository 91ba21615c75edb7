"""Which event loop the bridge process runs on.

uvloop (libuv) runs the same asyncio code with the loop, its transports and its timers in C.
asyncpg, aiohttp and mautrix all support it (mautrix's own ``Program`` uses it when it is
installed). Measured on the same machine in the same hour (``bench run --postgres --only
ack,burst``, docs/benchmarks.md): one session's burst 1,007 → 1,225 ev/s, 50 sessions back to
back 2,433 → 2,917 ev/s, the 50-session p99 5.96 → 5.39 ms; a held connection is a C object
instead of a dozen Python ones, which the garbage collector no longer walks.
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
    """``uvloop`` or ``asyncio``, for the start-up log and the bench's results."""
    return "uvloop" if type(loop).__module__.startswith("uvloop") else "asyncio"
