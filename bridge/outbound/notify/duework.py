"""Work on rows the store keeps until they are done (delivery callbacks, mail back): take
the due ones, work a bounded number at once, look again as soon as one finishes, else
every `poll_s`. Each worker records its own outcome in the store; a row whose outcome was
never recorded (a crash, a stop cut short) is simply still due after a restart."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Collection
from typing import Generic, TypeVar

from bridge.logs import Episode

R = TypeVar("R")


class DueWork(Generic[R]):
    def __init__(self, name: str, *, concurrency: int, poll_s: float,
                 due: Callable[[int], Awaitable[list[R]]],
                 work: Callable[[R], Awaitable[None]],
                 ids: Callable[[R], Collection[int]]) -> None:
        """`due(limit)` reads up to `limit` due items; `work(item)` makes one attempt and
        records its outcome; `ids(item)`: the store rows it covers (one, or a batch's), none
        of which is taken again while it is in flight."""
        self.log = logging.getLogger(f"bridge.{name}")
        self.name = name
        #: A store that cannot be read is one log episode, not a line each poll.
        self._trouble = Episode(self.log, f"{name}: looks for due ones")
        self.concurrency = concurrency
        self.poll_s = poll_s
        self._due = due
        self._work = work
        self._ids = ids
        self._working: set[int] = set()  # rows in flight
        self._busy = 0  # attempts in flight
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
            free = self.concurrency - self._busy
            if free > 0:
                try:
                    # More than free: some of them may be in flight already.
                    items = await self._due(self.concurrency + free)
                except Exception as exc:  # the store is in trouble: look again later
                    self._trouble.failed(str(exc))
                    items = []
                else:
                    self._trouble.succeeded()
                for item in items:
                    if free == 0 or self._stopping:
                        break
                    ids = self._ids(item)
                    if not self._working.isdisjoint(ids):
                        continue
                    free -= 1
                    self._busy += 1
                    self._working.update(ids)
                    task = asyncio.create_task(self._attempt(item, ids))
                    self._tasks.add(task)
                    task.add_done_callback(self._tasks.discard)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.poll_s)

    async def _attempt(self, item: R, ids: Collection[int]) -> None:
        try:
            await self._work(item)
        except Exception:  # a store in trouble, or a bug: the rows stay due, after a pause
            self.log.exception("%s: rows %s not finished, they stay due", self.name,
                               sorted(ids))
            await asyncio.sleep(self.poll_s)
        finally:
            self._working.difference_update(ids)
            self._busy -= 1
            self._wake.set()  # a slot is free: look for more now, not at the next poll
