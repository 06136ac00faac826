"""Work on rows the store keeps until they are done (delivery callbacks, mail back): take
the due ones, work a bounded number at once, look again as soon as one finishes, else
every `poll_s`. Each worker records its own outcome in the store; a row whose outcome was
never recorded (a crash, a stop cut short) is simply still due after a restart."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Generic, Protocol, TypeVar


class _Row(Protocol):
    @property
    def id(self) -> int: ...


R = TypeVar("R", bound=_Row)


class DueWork(Generic[R]):
    def __init__(self, name: str, *, concurrency: int, poll_s: float,
                 due: Callable[[int], Awaitable[list[R]]],
                 work: Callable[[R], Awaitable[None]]) -> None:
        """`due(limit)` reads up to `limit` due rows; `work(row)` makes one attempt and
        records its outcome."""
        self.log = logging.getLogger(f"bridge.{name}")
        self.name = name
        self.concurrency = concurrency
        self.poll_s = poll_s
        self._due = due
        self._work = work
        self._working: set[int] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._wake = asyncio.Event()
        self._stopping = False
        self._runner: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._runner = asyncio.create_task(self._run())

    async def stop(self, timeout: float) -> None:
        """Stop looking; give the attempts in flight `timeout` seconds."""
        self._stopping = True
        self._wake.set()
        if self._runner is not None:
            await self._runner
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=timeout)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _run(self) -> None:
        while not self._stopping:
            self._wake.clear()
            free = self.concurrency - len(self._working)
            if free > 0:
                try:
                    # More than free: some of them may be in flight already.
                    rows = await self._due(self.concurrency + free)
                except Exception as exc:  # the store is in trouble: look again later
                    self.log.error("%s: cannot read the due ones: %s", self.name, exc)
                    rows = []
                for row in rows:
                    if free == 0 or self._stopping:
                        break
                    if row.id in self._working:
                        continue
                    free -= 1
                    self._working.add(row.id)
                    task = asyncio.create_task(self._attempt(row))
                    self._tasks.add(task)
                    task.add_done_callback(self._tasks.discard)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.poll_s)

    async def _attempt(self, row: R) -> None:
        try:
            await self._work(row)
        except Exception:  # a store in trouble, or a bug: the row stays due, after a pause
            self.log.exception("%s: row %d not finished, it stays due", self.name, row.id)
            await asyncio.sleep(self.poll_s)
        finally:
            self._working.discard(row.id)
            self._wake.set()  # a slot is free: look for more now, not at the next poll
