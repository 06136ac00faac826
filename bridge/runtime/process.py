"""The SQLite store in a process of its own, behind the same `Store` interface.

Why: in the bridge process the store's writer thread competes for the GIL with the event loop
that serves SMTP, SOAP and SMPP. Measured with `python -m bridge.bench.soap`, a store that costs
nothing more than doubles end-to-end msgs/s, so the writer's Python work and the GIL hand-offs
around every SQLite statement, not the fsync, were the limit. Here the bridge only pickles each
call; the store process runs the SQLite writer (group commit) on its event loop's thread and
readers on threads of their own, on the other core (bridge.runtime.child says why no writer
thread there).

The child is `bridge.runtime.child`. Protocol, over its stdin/stdout: frames of a 4-byte
big-endian length and a pickled list. The first item to the child is (its `StoreSpec`, its
`OutboundSetup` or None): the store to open (SQLite or PostgreSQL), and with a setup it also
runs the SMPP binds and the dispatcher (bridge.runtime.outbound); then
requests `(id, method, args)`: a Store method's name and the positional arguments of the
store operation it names (`bridge.store.sqlite.WRITES` and `READS`, built for both stores by
`bridge.store.rows.CallsByName`); answers `(id, ok, value_or_exception)`; the first answer is
"ready" (or the reason opening failed). Calls are written in the order they are made and the
child's single writer applies them in that order, so the ordering guarantee holds across the
pipe. The calls of one loop iteration travel in one frame. A frame that does not decode, on
either side, ends the pipe: the child stops, the bridge fails every call and stops.

Lifetime: `close()` sends `__close__`; the child finishes every issued call, closes the store
and exits. When the bridge dies, the child sees end of file and does the same: nothing it has
received is dropped. When the child dies, every pending and later call fails with
`StoreUnavailable` (clients get STORE_UNAVAILABLE and retry; nothing is acknowledged).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import pickle
import struct
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bridge.core.console import OutboundPicture
from bridge.store import StoreSpec
from bridge.store.base import StoreUnavailable
from bridge.store.rows import CallsByName

if TYPE_CHECKING:  # the child imports bridge.runtime.outbound; a plain store client does not need to
    from bridge.runtime.outbound import OutboundSetup, OutboundStatus

log = logging.getLogger("bridge.store")

LENGTH = struct.Struct(">I")
CLOSE = "__close__"
#: Calls the child answers from the outbound side (bridge.runtime.outbound) when it runs one.
OUTBOUND_STATUS = "__outbound_status__"
OUTBOUND_METRICS = "__outbound_metrics__"
OUTBOUND_PICTURE = "__outbound_picture__"
WAIT_BOUND = "__wait_bound__"

Refuse = Callable[[tuple[Any, ...], Exception], "tuple[Any, ...] | None"]


def frame(value: Any) -> bytes:
    body = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    return LENGTH.pack(len(body)) + body


def encode(items: list[tuple[Any, ...]], refuse: Refuse) -> bytes | None:
    """One frame holding `items`. An item pickle refuses goes to `refuse`, which returns what
    to send instead (None: nothing), so one bad item never costs the others; None when nothing
    is left to send."""
    try:
        return frame(items)
    except Exception:
        kept = [good for good in (_sendable(item, refuse) for item in items) if good is not None]
        return frame(kept) if kept else None


def _sendable(item: tuple[Any, ...], refuse: Refuse) -> tuple[Any, ...] | None:
    try:
        pickle.dumps(item, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as exc:
        return refuse(item, exc)
    return item


class FrameBuffer:
    """Frames in as bytes arrive, in whatever pieces the pipe delivers them."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[tuple[Any, ...]]:
        """The items of every frame `data` completes (each frame holds a list). A frame that
        does not decode raises, after it and the frames before it have left the buffer."""
        self._buffer += data
        buffer = self._buffer
        items: list[tuple[Any, ...]] = []
        pos = 0
        try:
            with memoryview(buffer) as view:
                while len(buffer) - pos >= LENGTH.size:
                    (size,) = LENGTH.unpack_from(buffer, pos)
                    end = pos + LENGTH.size + size
                    if end > len(buffer):
                        break
                    start, pos = pos + LENGTH.size, end
                    items.extend(pickle.loads(view[start:end]))  # noqa: S301 - our processes
        finally:
            del buffer[:pos]
        return items


class Outbox:
    """Calls (or answers) made during one loop iteration leave as one frame holding their
    list: one pickle, one write. An item pickle refuses goes to `refuse`, which returns what
    to send instead (None: nothing), so one bad item never costs the others."""

    def __init__(self, write: Callable[[bytes], Any], refuse: Refuse) -> None:
        self._write = write
        self._refuse = refuse
        self._items: list[tuple[Any, ...]] = []

    def put(self, item: tuple[Any, ...]) -> None:
        if not self._items:
            asyncio.get_running_loop().call_soon(self.flush)
        self._items.append(item)

    def flush(self) -> None:
        if not self._items:
            return
        items, self._items = self._items, []
        data = encode(items, self._refuse)
        if data is not None:
            self._write(data)


def _kill(transport: asyncio.SubprocessTransport) -> None:
    with contextlib.suppress(ProcessLookupError):  # it has exited already
        transport.kill()


class _Answers(asyncio.SubprocessProtocol):
    """The child's stdout, parsed as it arrives: each answer completes its call's future in
    this callback, with no reader task or StreamReader between, a loop iteration less for
    every answer the bridge waits for (an SMTP 250 or a SOAP response waits for one)."""

    def __init__(self, store: StoreProcess) -> None:
        self.store = store
        self.frames = FrameBuffer()
        self.transport: asyncio.SubprocessTransport | None = None
        self.exited: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.SubprocessTransport)
        self.transport = transport

    def pipe_data_received(self, fd: int, data: bytes) -> None:
        pending = self.store._pending
        try:
            answers = self.frames.feed(data)
        except Exception:  # the pipe cannot be trusted any more: as if the process had died
            log.exception("unreadable answer from the store process for %s", self.store.label)
            if self.transport is not None:
                _kill(self.transport)  # its output closes: _output_ended fails every call
            return
        for request_id, ok, value in answers:
            future = pending.pop(request_id, None)
            if future is None or future.done():
                continue
            if ok:
                future.set_result(value)
            else:
                future.set_exception(value)
                future.exception()  # a dropped fire-and-forget write must not warn

    def pipe_connection_lost(self, fd: int, exc: Exception | None) -> None:
        if fd == 1:
            self.store._output_ended()

    def process_exited(self) -> None:
        if not self.exited.done():
            self.exited.set_result(None)


class StoreProcess(CallsByName):
    """The store a `StoreSpec` names, running in a child process (see module docstring); a
    path is short for a SQLite file with `options`."""

    def __init__(self, spec: StoreSpec | Path | str, **options: Any) -> None:
        self.spec = StoreSpec.of(spec, **options)
        self.label = self.spec.label
        #: The SQLite file (None for PostgreSQL).
        self.path: Path | None = self.spec.sqlite
        self._transport: asyncio.SubprocessTransport | None = None
        self._answers: _Answers | None = None
        self._outbox: Outbox | None = None
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._ids = itertools.count(1)
        self._broken: str | None = "the store is not open"

    # -------------------------------------------------------------- lifecycle

    async def open(self, outbound: OutboundSetup | None = None) -> None:
        """Start the child; with `outbound` it also runs the SMPP binds and the dispatcher
        (the setup travels as the first frame, not on the command line: it holds secrets)."""
        if self._transport is not None:
            return
        loop = asyncio.get_running_loop()
        ready: asyncio.Future[Any] = loop.create_future()
        self._pending = {0: ready}  # the child's first answer: "ready", or why it cannot open
        transport, answers = await loop.subprocess_exec(
            lambda: _Answers(self), sys.executable, "-m", "bridge.runtime.child",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE, stderr=None, start_new_session=True)
        stdin = transport.get_pipe_transport(0)
        assert isinstance(stdin, asyncio.WriteTransport)
        stdin.write(frame([(self.spec, outbound)]))
        try:
            await asyncio.wait_for(ready, 60)
        except BaseException as exc:
            _kill(transport)
            await answers.exited
            transport.close()
            if isinstance(exc, asyncio.TimeoutError):
                raise StoreUnavailable(f"the store process for {self.label} was not ready "
                                       f"in 60 s") from exc
            raise  # the child's own reason, or that it exited before it was ready
        self._transport, self._answers = transport, answers
        self._outbox = Outbox(stdin.write, self._unsendable)
        self._broken = None

    @property
    def pid(self) -> int | None:
        """The store process's id while it runs (for CPU accounting in the bench)."""
        return self._transport.get_pid() if self._transport is not None else None

    def healthy(self) -> bool:
        return self._broken is None

    async def close(self, drain_timeout: float = 10.0) -> None:
        """The child stops its outbound side (submits in flight get `drain_timeout`), finishes
        every call it has received, closes the store and exits."""
        transport, answers = self._transport, self._answers
        if transport is None or answers is None:
            return
        if self._broken is None:
            self._call(CLOSE, drain_timeout)
            assert self._outbox is not None
            self._outbox.flush()
        self._broken = "the store is closed"
        try:
            await asyncio.wait_for(asyncio.shield(answers.exited), 60)
        except asyncio.TimeoutError:
            log.error("store process did not finish in 60 s; killing it")
            _kill(transport)
            await answers.exited
        transport.close()
        self._transport = self._answers = None

    def _output_ended(self) -> None:
        """The child's stdout closed: it has exited (or is about to), so no answer will come."""
        lost = self._broken is None
        if lost:
            self._broken = "the store process exited"
            log.error("store process for %s exited unexpectedly", self.label)
        reason = self._broken if self._transport is not None else \
            f"the store process for {self.label} exited before it was ready"
        for future in self._pending.values():
            if not future.done():
                future.set_exception(StoreUnavailable(reason))
                future.exception()
        self._pending.clear()
        if lost and self.on_lost is not None:
            self.on_lost()

    def _unsendable(self, request: tuple[Any, ...], exc: Exception) -> None:
        future = self._pending.pop(request[0], None)
        if future is not None and not future.done():
            future.set_exception(StoreUnavailable(f"store call {request[1]} cannot be sent: {exc}"))
            future.exception()
        return None

    def _call(self, method: str, *args: Any) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if self._broken is not None or self._outbox is None:
            future.set_exception(StoreUnavailable(self._broken or "the store is not open"))
            future.exception()
            return future
        request_id = next(self._ids)
        self._pending[request_id] = future
        self._outbox.put((request_id, method, args))
        return future

    # -------------------------------------------------------------- the outbound side

    async def outbound_status(self) -> OutboundStatus:
        result: OutboundStatus = await self._call(OUTBOUND_STATUS)
        return result

    async def outbound_metrics(self) -> bytes:
        result: bytes = await self._call(OUTBOUND_METRICS)
        return result

    async def wait_bound(self, timeout: float) -> bool:
        result: bool = await self._call(WAIT_BOUND, timeout)
        return result

    async def outbound_picture(self) -> OutboundPicture:
        """The outbound side as the status page shows it (bridge.ingress.console)."""
        result: OutboundPicture = await self._call(OUTBOUND_PICTURE)
        return result

    # -------------------------------------------------------------- the Store interface

    def _write(self, method: str, args: tuple[Any, ...]) -> asyncio.Future[Any]:
        return self._call(method, *args)

    async def _read(self, method: str, args: tuple[Any, ...]) -> Any:
        return await self._call(method, *args)
