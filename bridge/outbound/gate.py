"""Whether the outbound side may send: closed while the store cannot record what happens.

Why: a submit whose acknowledgement cannot be recorded is sent again after a restart, and a
receipt that cannot be recorded leaves its message looking unsent. On a full disk the
dispatcher used to go on submitting while every record failed, so thousands of delivered
messages stayed `queued` and went out again. Now:

- a record the SMSC's answer makes (a part submitted, a message failed or expired) is never
  dropped: `record` retries it until it is durable, in the worker that made it, so the part
  it describes is never sent twice by this process;
- any failed record (or receipt) closes the gate: no new submit goes out, so what a crash or
  a restart during the trouble can send twice is at most what the workers held in flight;
- while closed, the store is probed with a heartbeat (a small real write); the gate opens
  again when a probe or a retried record succeeds, by itself;
- the trouble is one log episode (bridge.logs.Episode), not a line per failed write.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from bridge.core.policy import doubling_delay
from bridge.logs import Episode
from bridge.store.base import StoreUnavailable

T = TypeVar("T")

log = logging.getLogger("bridge.dispatcher")


class RecordGate:
    """Open while the store records; `probe()` makes one small real write (a heartbeat)."""

    def __init__(self, probe: Callable[[], Awaitable[object]], *, retry_s: float = 0.5,
                 retry_max_s: float = 5.0) -> None:
        self._probe = probe
        self.retry_s = retry_s
        self.retry_max_s = retry_max_s
        self._open = asyncio.Event()
        self._open.set()
        self._prober: asyncio.Task[None] | None = None
        self.episode = Episode(log, "store records (outbound side paused)")
        self.closed_count = 0  # times the gate closed, for tests and metrics

    @property
    def is_open(self) -> bool:
        return self._open.is_set()

    async def wait_open(self) -> None:
        """Return at once while the store records; else when it does again."""
        if not self._open.is_set():
            await self._open.wait()

    def failed(self, reason: str) -> None:
        """A record or a receipt could not be written: close, and probe until one can."""
        self.episode.failed(reason)
        if self._open.is_set():
            self._open.clear()
            self.closed_count += 1
        if self._prober is None or self._prober.done():
            self._prober = asyncio.get_running_loop().create_task(self._probe_until_open())

    def succeeded(self) -> None:
        """A write went through: the store records again."""
        self._open.set()
        self.episode.succeeded()

    async def record(self, write: Callable[[], Awaitable[T]]) -> T:
        """`write()` until it is durable: StoreUnavailable closes the gate and is retried with
        a growing wait (the caller holds something the SMSC already has); any other error
        is a bug and goes up."""
        attempt = 0
        while True:
            try:
                value = await write()
            except StoreUnavailable as exc:
                self.failed(str(exc))
                await asyncio.sleep(doubling_delay(attempt, base_s=self.retry_s,
                                                   max_s=self.retry_max_s))
                attempt += 1
                continue
            self.succeeded()
            return value

    async def _probe_until_open(self) -> None:
        attempt = 0
        while not self._open.is_set():
            await asyncio.sleep(doubling_delay(attempt, base_s=self.retry_s,
                                               max_s=self.retry_max_s))
            attempt += 1
            try:
                await self._probe()
            except StoreUnavailable as exc:
                self.episode.failed(f"probe: {exc}")
                continue
            except Exception as exc:  # a probe that breaks must not leave the gate shut forever
                self.episode.failed(f"probe: {type(exc).__name__}: {exc}")
                continue
            self.succeeded()

    async def stop(self) -> None:
        if self._prober is not None:
            self._prober.cancel()
            await asyncio.gather(self._prober, return_exceptions=True)
            self._prober = None
