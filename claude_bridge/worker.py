"""A long-running background task that sleeps until it is told there is work.

Inbound processing, delivery receipts and the recovery watch share this life cycle: ``notify()``
wakes the loop, ``start()`` begins it (already woken when ``wake_on_start``, for work a previous
run left behind), ``stop()`` cancels it and waits for it to end.
"""

from __future__ import annotations

import asyncio
import contextlib
from abc import ABC, abstractmethod


class Worker(ABC):
    name = "worker"
    wake_on_start = True

    def __init__(self) -> None:
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def notify(self) -> None:
        self._wake.set()

    async def start(self) -> None:
        if self.wake_on_start:
            self._wake.set()
        self._task = asyncio.create_task(self._run(), name=self.name)

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    @abstractmethod
    async def _run(self) -> None: ...
