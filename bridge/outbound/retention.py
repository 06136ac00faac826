"""Retention: final messages older than `[store] retention_days` leave the store, with their
parts, events and SMSC keys, so that the database stops growing with the traffic it has seen.

It runs with the outbound side (bridge.runtime.outbound): one process per database sweeps. Each sweep
deletes in batches, one write transaction each, so the accepts and receipts queued behind a
batch wait for it only briefly. Nothing that is not final is ever deleted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from bridge.store.base import Store

log = logging.getLogger("bridge.retention")

#: Seconds between sweeps.
INTERVAL_S = 60.0
#: Messages per delete transaction.
BATCH = 500


class Retention:
    def __init__(self, store: Store, retention_s: float, *,
                 clock: Callable[[], float] = time.time, interval_s: float = INTERVAL_S,
                 batch: int = BATCH) -> None:
        self.store = store
        self.retention_s = retention_s
        self.clock = clock
        self.interval_s = interval_s
        self.batch = batch
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def sweep(self) -> int:
        """Delete every message due to go now, a batch at a time; how many went."""
        before = self.clock() - self.retention_s
        total = 0
        while True:
            n = await self.store.purge(before=before, limit=self.batch)
            total += n
            if n < self.batch:
                break
        if total:
            log.info("retention: %d message(s) unchanged for %g day(s) deleted", total,
                     self.retention_s / 86400)
        return total

    async def _run(self) -> None:
        while True:
            try:
                await self.sweep()
            except Exception as exc:  # the store is in trouble: the next sweep tries again
                log.error("retention: sweep failed: %s", exc)
            await asyncio.sleep(self.interval_s)
