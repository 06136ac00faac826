"""The store process: `python -m bridge.runtime.child PATH OPTIONS_JSON`, started by
`bridge.runtime.process.StoreProcess` (its docstring has the protocol). Serves one SqliteStore
over stdin/stdout and, when the first frame carries an `OutboundSetup`, runs the outbound side
(bridge.runtime.outbound: SMPP binds and dispatcher) on the same store. Runs until told to close or
until stdin ends, then finishes every call it has received, lets the submits in flight finish
(bounded), unbinds, closes the store and exits.

One event loop on the main thread does it all, and the SQLite writer runs on that thread too,
between iterations (`SqliteStore.open_on_loop`): what arrived during one iteration, requests
from the pipe and the dispatcher's records alike, is one transaction, answered once committed.
No writer thread and no future per pipe call: the wake-ups and GIL hand-offs between a loop
and a writer thread cost more CPU than the SQL of a small batch. Reads run on a few threads of
their own (WAL lets them proceed beside the writer) and hand their answers to the loop.
Answers leave through a non-blocking pipe transport, so a bridge slow to read never stalls
the loop that also keeps the SMPP binds alive.

Only one store process at a time runs the outbound side of a database: a restarted bridge's
store process waits (bounded) for the lock the previous one holds until it has drained and
unbound, so the two never bind or resubmit side by side.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import signal
import sys
import time
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import IO, Any

from bridge.logs import setup_logging
from bridge.runtime.outbound import Outbound, OutboundSetup
from bridge.store.base import StoreUnavailable
from bridge.runtime.process import (
    CLOSE,
    OUTBOUND_METRICS,
    OUTBOUND_PICTURE,
    OUTBOUND_STATUS,
    WAIT_BOUND,
    FrameBuffer,
    Outbox,
)
from bridge.store.rows import AcceptRow
from bridge.store import PostgresStore, SqliteStore, StoreSpec
from bridge.store.common import Result as _Result

log = logging.getLogger("bridge.store")

#: How long submits in flight may take to finish when the bridge is gone without saying.
DRAIN_S = 10.0
#: How long a new store process waits for the previous one to release the outbound side.
LOCK_WAIT_S = 30.0


def _unsendable_answer(answer: tuple[Any, ...], exc: Exception) -> tuple[Any, ...]:
    return (answer[0], False, StoreUnavailable(f"the answer cannot be sent: {exc}"))


def _failure(exc: BaseException) -> StoreUnavailable:
    """What crosses the pipe for a failed call: our own exception type, which always unpickles
    on the other side (an arbitrary exception may pickle and then fail to load)."""
    if isinstance(exc, StoreUnavailable):
        return exc
    return StoreUnavailable(f"{type(exc).__name__}: {exc}")


def _answers(results: list[_Result]) -> list[tuple[Any, ...]]:
    return [(request_id, exc is None, value if exc is None else _failure(exc))
            for request_id, value, exc in results]


class _Server:
    """Hands each request to the writer, a reader thread or the outbound side, in order."""

    def __init__(self, fd_in: int, outbox: Outbox) -> None:
        self.store: SqliteStore | PostgresStore | None = None
        self.fd_in = fd_in
        self.frames = FrameBuffer()
        self.outbox = outbox
        self.outbound: Outbound | None = None
        self.outbound_lock: IO[bytes] | None = None  # held while this process lives
        self.loop = asyncio.get_running_loop()
        self.calls: set[asyncio.Future[Any]] = set()
        #: Accept requests waiting for their commit: their messages go to the dispatcher then.
        self.accepts: dict[int, tuple[AcceptRow, ...]] = {}
        #: Cancel requests waiting for their commit: the dispatcher forgets what they cancelled.
        self.cancels: set[int] = set()
        self.ended: asyncio.Future[float] = self.loop.create_future()

    def first(self) -> tuple[Any, list[tuple[Any, ...]]]:
        """The first frame's item ((store spec, outbound setup or None)) and what arrived
        with it, waiting for it before the loop serves anything; EOFError when the bridge
        went away before that."""
        while True:
            chunk = os.read(self.fd_in, 1 << 16)
            if not chunk:
                raise EOFError("no setup frame")
            items = self.frames.feed(chunk)
            if items:
                return items[0], items[1:]

    def answer(self, results: list[_Result]) -> None:
        """Committed pipe writes: the answers, sent at once (a client waits for each), then the
        accepted messages to the dispatcher. The messages are durable either way: if the
        hand-over fails, a restart sends them."""
        for answer in _answers(results):
            self.outbox.put(answer)
        self.outbox.flush()
        try:
            if self.accepts:
                for request_id, value, exc in results:
                    rows = self.accepts.pop(request_id, None)
                    if rows is not None and exc is None and self.outbound is not None:
                        self.outbound.accepted(rows, value)
        except Exception:
            log.exception("accepted messages could not reach the dispatcher; a restart sends them")
        if self.cancels:
            self._forget_cancelled(results)

    def _forget_cancelled(self, results: list[_Result]) -> None:
        """Committed cancels: their messages leave the dispatcher's lanes and schedule (its
        workers would find the fence closed anyway; this keeps what it holds honest)."""
        try:
            for request_id, value, exc in results:
                if request_id in self.cancels:
                    self.cancels.discard(request_id)
                    if exc is None and self.outbound is not None:
                        self.outbound.dispatcher.forget([o.message_id for o in value if o.done])
        except Exception:  # the cancels are committed; the fence keeps them from being sent
            log.exception("cancelled messages could not leave the dispatcher's queue")

    def readable(self) -> None:
        try:
            chunk = os.read(self.fd_in, 1 << 20)
            requests = self.frames.feed(chunk) if chunk else None
        except Exception:  # a frame that does not decode: the pipe cannot be trusted any more
            log.exception("unreadable request from the bridge; stopping")
            requests = None
        if requests is None:
            self._end(DRAIN_S)  # the bridge is gone: finish what it sent, drain, unbind, stop
            return
        self.serve(requests)

    def serve(self, requests: list[tuple[Any, ...]]) -> None:
        for request_id, method, args in requests:
            if method == CLOSE:
                self._end(float(args[0]) if args else DRAIN_S)
                return
            try:
                self.request(request_id, method, args)
            except Exception as exc:
                self.accepts.pop(request_id, None)
                self.cancels.discard(request_id)
                self.outbox.put((request_id, False, _failure(exc)))

    def request(self, request_id: int, method: str, args: tuple[Any, ...]) -> None:
        if method == "cancel":
            self.cancels.add(request_id)
        if method == "accept" and self.outbound is not None:
            self.accepts[request_id] = args[0]
            dispatcher = self.outbound.dispatcher  # held by this instance if it can send them
            args = (args[0], args[1], dispatcher.owner(), dispatcher.able())
        store = self.store
        assert store is not None
        if store.write_request(method, args, request_id) or \
                store.read_request(method, args, request_id):
            return
        outbound = self.outbound
        if outbound is None:
            raise StoreUnavailable(f"unknown store call {method!r}")
        if method == OUTBOUND_STATUS:
            self.outbox.put((request_id, True, outbound.status()))
        elif method == OUTBOUND_METRICS:
            self.outbox.put((request_id, True, outbound.metrics_text()))
        elif method == OUTBOUND_PICTURE:
            self.outbox.put((request_id, True, outbound.picture()))
        elif method == WAIT_BOUND:
            future = asyncio.ensure_future(outbound.wait_bound(*args))
            self.calls.add(future)
            future.add_done_callback(self.calls.discard)
            future.add_done_callback(partial(self._answer_call, request_id))
        else:
            raise StoreUnavailable(f"unknown store call {method!r}")

    def _answer_call(self, request_id: int, future: asyncio.Future[Any]) -> None:
        if future.cancelled():
            self.outbox.put((request_id, False, StoreUnavailable("cancelled")))
            return
        exc = future.exception()
        self.outbox.put((request_id, exc is None,
                         future.result() if exc is None else _failure(exc)))

    def _end(self, drain_s: float) -> None:
        self.loop.remove_reader(self.fd_in)
        if not self.ended.done():
            self.ended.set_result(drain_s)


async def _outbound_lock(path: str) -> IO[bytes]:
    """Exclusive for as long as this process lives (the kernel releases it at exit)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)  # a fresh data directory
    lock = open(f"{path}.outbound.lock", "ab")  # noqa: SIM115 - held until the process exits
    deadline = time.monotonic() + LOCK_WAIT_S
    while True:
        try:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            return lock
        except BlockingIOError:
            if time.monotonic() >= deadline:
                lock.close()
                raise StoreUnavailable(f"another store process still runs the outbound side of "
                                       f"{path} after {LOCK_WAIT_S:.0f} s") from None
            await asyncio.sleep(0.1)


class _Sent(asyncio.Protocol):
    def __init__(self) -> None:
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)


async def serve_async(fd_in: int, fd_out: int) -> int:
    loop = asyncio.get_running_loop()
    out = open(fd_out, "wb", buffering=0, closefd=False)  # noqa: SIM115 - the transport owns it
    transport, sent = await loop.connect_write_pipe(_Sent, out)
    outbox = Outbox(transport.write, _unsendable_answer)
    server = _Server(fd_in, outbox)
    spec: StoreSpec
    setup: OutboundSetup | None
    try:
        (spec, setup), early = server.first()
    except EOFError:
        return 1  # the bridge went away before it said what to run
    store = server.store = spec.build()
    try:
        if setup is not None:
            setup_logging(setup.log_level)
            if spec.sqlite is not None:  # one outbound side per file; PostgreSQL: leases
                server.outbound_lock = await _outbound_lock(str(spec.sqlite))
        await store.open_serving(server.answer)
        if setup is not None:
            server.outbound = Outbound(setup, store)
            store.observe_commits(server.outbound.metrics.store_commit)
            await server.outbound.start()
    except Exception as exc:
        log.error("the store process could not start: %s", exc)
        outbox.put((0, False, _failure(exc)))
        if server.outbound is not None:
            with contextlib.suppress(Exception):
                await server.outbound.stop(0)
        with contextlib.suppress(Exception):
            await store.close()
        await _close(outbox, transport, sent)
        return 1
    outbox.put((0, True, "ready"))
    loop.add_reader(fd_in, server.readable)
    server.serve(early)  # what came in with the setup frame
    drain_s = DRAIN_S
    try:
        drain_s = await server.ended
        if server.calls:
            await asyncio.wait(server.calls)
    finally:
        try:
            if server.outbound is not None:
                await server.outbound.stop(drain_s)
        except Exception:
            log.exception("the outbound side did not stop cleanly")
        finally:
            await store.close()  # answers the reads handed over, runs the queued writes
            await _close(outbox, transport, sent)
    return 0


async def _close(outbox: Outbox, transport: asyncio.WriteTransport, sent: _Sent) -> None:
    """Send what is still in the outbox and wait until it has left (or the bridge is gone)."""
    outbox.flush()
    transport.close()
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(sent.closed, 10)


def serve(*, fd_in: int = 0, fd_out: int = 1) -> int:
    return asyncio.run(serve_async(fd_in, fd_out))


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args:
        print("usage: python -m bridge.runtime.child (started by the bridge, which sends what "
              "to open in the first frame on standard input)", file=sys.stderr)
        return 2
    # Ctrl-C in a terminal reaches the whole process group: only the bridge decides when the
    # store stops (close, or end of file when the bridge is gone).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    return serve(fd_in=sys.stdin.buffer.fileno(), fd_out=sys.stdout.buffer.fileno())


if __name__ == "__main__":
    raise SystemExit(main())
