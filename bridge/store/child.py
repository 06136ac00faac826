"""The store process: `python -m bridge.store.child PATH OPTIONS_JSON`, started by
`bridge.store.process.StoreProcess` (its docstring has the protocol). Serves one SqliteStore
over stdin/stdout and, when the first frame carries an `OutboundSetup`, runs the outbound side
(bridge.outbound: SMPP binds and dispatcher) on the same store. Runs until told to close or
until stdin ends, then finishes every call it has received, lets the submits in flight finish
(bounded), unbinds, closes the store and exits.

One event loop on the main thread does it all, and the SQLite writer runs on that thread too,
between iterations (`SqliteStore.open_on_loop`): what arrived during one iteration, requests
from the pipe and the dispatcher's records alike, is one transaction, answered once committed.
No writer thread and no future per pipe call: the wake-ups and GIL hand-offs between a loop
and a writer thread cost more CPU than the SQL of a small batch. Reads run on a few threads of
their own (WAL lets them proceed beside the writer) and answer from there.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any

from bridge.logs import setup_logging
from bridge.outbound import Outbound, OutboundSetup
from bridge.store.base import StoreUnavailable
from bridge.store.process import (
    CLOSE,
    OUTBOUND_METRICS,
    OUTBOUND_STATUS,
    WAIT_BOUND,
    FrameBuffer,
    encode,
)
from bridge.store.rows import AcceptRow
from bridge.store.sqlite import READS, SqliteStore, _Result

log = logging.getLogger("bridge.store")

READ_THREADS = 4
#: How long submits in flight may take to finish when the bridge is gone without saying.
DRAIN_S = 10.0


def _unsendable_answer(answer: tuple[Any, ...], exc: Exception) -> tuple[Any, ...]:
    return (answer[0], False, StoreUnavailable(f"the answer cannot be sent: {exc}"))


class Pipe:
    """Request frames in from one file descriptor, answer frames out to another. Answers are
    written whole under a lock (reader threads answer too); once the bridge is gone they are
    dropped, and the calls still run."""

    def __init__(self, fd_in: int, fd_out: int) -> None:
        self.fd_in = fd_in
        self._out = fd_out
        self._frames = FrameBuffer()
        self._lock = threading.Lock()
        self._gone = False

    def first(self) -> Any:
        """The first frame's value, waiting for it (before the loop serves anything); raises
        EOFError when the bridge went away before sending it whole."""
        while True:
            whole, value = self._frames.value()
            if whole:
                return value
            chunk = os.read(self.fd_in, 1 << 16)
            if not chunk:
                raise EOFError("no setup frame")
            self._frames.append(chunk)

    def receive(self) -> list[tuple[Any, ...]] | None:
        """The requests of every complete frame one read brings; None at end of file (a frame
        cut short there was never fully sent: it is dropped). Call when fd_in is readable."""
        chunk = os.read(self.fd_in, 1 << 20)
        if not chunk:
            return None
        return self._frames.feed(chunk)

    def buffered(self) -> list[tuple[Any, ...]]:
        """The requests of the complete frames already read."""
        return self._frames.items()

    def send(self, answers: list[tuple[Any, ...]]) -> None:
        data = encode(answers, _unsendable_answer)
        if data is None:
            return
        with self._lock:
            if self._gone:
                return
            view = memoryview(data)
            try:
                while view:
                    view = view[os.write(self._out, view):]
            except BrokenPipeError:
                self._gone = True


def _answers(results: list[_Result]) -> list[tuple[Any, ...]]:
    return [(request_id, exc is None, value if exc is None else exc)
            for request_id, value, exc in results]


def _read(store: SqliteStore, fn: Callable[..., Any], request_id: int, args: tuple[Any, ...],
          pipe: Pipe) -> None:
    try:
        answer = (request_id, True, store.read_sync(fn, args))
    except Exception as exc:
        answer = (request_id, False, exc)
    pipe.send([answer])


async def _status(outbound: Outbound) -> Any:
    return outbound.status()


async def _metrics(outbound: Outbound) -> bytes:
    return outbound.metrics_text()


async def _wait_bound(outbound: Outbound, timeout: float) -> bool:
    return await outbound.wait_bound(timeout)


_OUTBOUND_CALLS: dict[str, Callable[..., Awaitable[Any]]] = {
    OUTBOUND_STATUS: _status, OUTBOUND_METRICS: _metrics, WAIT_BOUND: _wait_bound,
}


class _Server:
    """Hands each request to the writer, a reader thread or the outbound side, in order."""

    def __init__(self, store: SqliteStore, pipe: Pipe, outbound: Outbound | None) -> None:
        self.store = store
        self.pipe = pipe
        self.outbound = outbound
        self.readers = ThreadPoolExecutor(READ_THREADS, thread_name_prefix="bridge-store-reader")
        self.calls: set[asyncio.Future[Any]] = set()
        #: Accept requests waiting for their commit: their messages go to the dispatcher then.
        self.accepts: dict[int, tuple[AcceptRow, ...]] = {}
        self.ended: asyncio.Future[float] = asyncio.get_running_loop().create_future()

    def answer(self, results: list[_Result]) -> None:
        """Committed pipe writes: accepted messages to the dispatcher, then the answers."""
        if self.accepts:
            for request_id, value, exc in results:
                rows = self.accepts.pop(request_id, None)
                if rows is not None and exc is None and self.outbound is not None:
                    self.outbound.accepted(rows, value)
        self.pipe.send(_answers(results))

    def readable(self) -> None:
        requests = self.pipe.receive()
        if requests is None:
            self._end(DRAIN_S)  # the bridge is gone: finish what it sent, drain, unbind, stop
            return
        self.serve(requests)

    def serve(self, requests: list[tuple[Any, ...]]) -> None:
        for request_id, method, args in requests:
            if method == CLOSE:
                self._end(float(args[0]) if args else DRAIN_S)
                return
            self.request(request_id, method, args)

    def request(self, request_id: int, method: str, args: tuple[Any, ...]) -> None:
        if method == "accept" and self.outbound is not None:
            self.accepts[request_id] = args[0]
        if self.store.write_request(method, args, request_id):
            return
        read = READS.get(method)
        if read is not None:
            self.readers.submit(_read, self.store, read, request_id, args, self.pipe)
            return
        call = _OUTBOUND_CALLS.get(method) if self.outbound is not None else None
        if call is None:
            self.pipe.send([(request_id, False,
                             StoreUnavailable(f"unknown store call {method!r}"))])
            return
        future = asyncio.ensure_future(call(self.outbound, *args))
        self.calls.add(future)
        future.add_done_callback(self.calls.discard)
        future.add_done_callback(partial(self._answer_call, request_id))

    def _answer_call(self, request_id: int, future: asyncio.Future[Any]) -> None:
        if future.cancelled():
            self.pipe.send([(request_id, False, StoreUnavailable("cancelled"))])
            return
        exc = future.exception()
        self.pipe.send([(request_id, exc is None, future.result() if exc is None else exc)])

    def _end(self, drain_s: float) -> None:
        asyncio.get_running_loop().remove_reader(self.pipe.fd_in)
        if not self.ended.done():
            self.ended.set_result(drain_s)


async def serve_async(path: str, options: dict[str, Any], pipe: Pipe) -> int:
    try:
        setup: OutboundSetup | None = pipe.first()
    except EOFError:
        return 1  # the bridge went away before it said what to run
    store = SqliteStore(path, **options)
    server = _Server(store, pipe, None)
    outbound: Outbound | None = None
    try:
        store.open_on_loop(server.answer)
        if setup is not None:
            setup_logging(setup.log_level)
            outbound = server.outbound = Outbound(setup, store)
            await outbound.start()
    except Exception as exc:
        log.error("the store process could not start: %s", exc)
        pipe.send([(0, False, exc if isinstance(exc, StoreUnavailable)
                    else StoreUnavailable(str(exc)))])
        with contextlib.suppress(Exception):
            await store.close()
        return 1
    pipe.send([(0, True, "ready")])
    asyncio.get_running_loop().add_reader(pipe.fd_in, server.readable)
    server.serve(pipe.buffered())  # what came in with the setup frame
    drain_s = DRAIN_S
    try:
        drain_s = await server.ended
        if server.calls:
            await asyncio.wait(server.calls)
    finally:
        if outbound is not None:
            await outbound.stop(drain_s)
        server.readers.shutdown(wait=True)  # reads already handed over still answer
        await store.close()  # runs the writes still queued, then closes
    return 0


def serve(path: str, options: dict[str, Any], *, fd_in: int = 0, fd_out: int = 1) -> int:
    return asyncio.run(serve_async(path, options, Pipe(fd_in, fd_out)))


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 2:
        print("usage: python -m bridge.store.child PATH OPTIONS_JSON (started by the bridge)",
              file=sys.stderr)
        return 2
    # Ctrl-C in a terminal reaches the whole process group: only the bridge decides when the
    # store stops (close, or end of file when the bridge is gone).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    return serve(args[0], json.loads(args[1]),
                 fd_in=sys.stdin.buffer.fileno(), fd_out=sys.stdout.buffer.fileno())


if __name__ == "__main__":
    raise SystemExit(main())
