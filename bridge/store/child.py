"""The store process: `python -m bridge.store.child PATH OPTIONS_JSON`, started by
`bridge.store.process.StoreProcess` (its docstring has the protocol). Serves one SqliteStore
over stdin/stdout until told to close or until stdin ends, then finishes every call it has
received, closes the store and exits.

The process does nothing but the store, so its main thread is the writer: it reads what the
bridge has sent (every complete frame one read returns: the calls that arrived while the last
commit synced), runs the writes in order as one transaction per `commit_max_batch`, and answers
them once committed. No event loop, no writer thread, no future per call: the wake-ups and GIL
hand-offs between them cost more CPU than the SQL of a small batch. Reads run on a few threads
of their own (WAL lets them proceed beside the writer) and answer from there.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from bridge.store.base import StoreUnavailable
from bridge.store.process import CLOSE, LENGTH, encode
from bridge.store.sqlite import READS, WRITES, SqliteStore, _Op, _Result, _Writer, write_weight

log = logging.getLogger("bridge.store")

READ_THREADS = 4


def _unsendable_answer(answer: tuple[Any, ...], exc: Exception) -> tuple[Any, ...]:
    return (answer[0], False, StoreUnavailable(f"the answer cannot be sent: {exc}"))


class Pipe:
    """Request frames in from one file descriptor, answer frames out to another. Answers are
    written whole under a lock (reader threads answer too); once the bridge is gone they are
    dropped, and the calls still run."""

    def __init__(self, fd_in: int, fd_out: int) -> None:
        self._in = fd_in
        self._out = fd_out
        self._buffer = bytearray()
        self._lock = threading.Lock()
        self._gone = False

    def receive(self) -> list[tuple[Any, ...]] | None:
        """The requests of every complete frame at hand, waiting for one when there is none;
        None at end of file (a frame cut short there was never fully sent: it is dropped)."""
        while True:
            requests = self._parse()
            if requests:
                return requests
            chunk = os.read(self._in, 1 << 20)
            if not chunk:
                return None
            self._buffer += chunk

    def _parse(self) -> list[tuple[Any, ...]]:
        buffer = self._buffer
        requests: list[tuple[Any, ...]] = []
        pos = 0
        with memoryview(buffer) as view:
            while len(buffer) - pos >= LENGTH.size:
                (size,) = LENGTH.unpack_from(buffer, pos)
                end = pos + LENGTH.size + size
                if end > len(buffer):
                    break
                requests.extend(pickle.loads(view[pos + LENGTH.size:end]))  # noqa: S301
                pos = end
        if pos:
            del buffer[:pos]
        return requests

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


def serve_requests(store: SqliteStore, writer: _Writer, requests: list[tuple[Any, ...]],
                   pipe: Pipe, readers: ThreadPoolExecutor) -> bool:
    """Run one read's worth of requests in order; False when told to close (what came before
    the close is done)."""
    batch: list[_Op] = []
    weight = 0
    going = True
    for request_id, method, args in requests:
        if method == CLOSE:
            going = False
            break
        fn = WRITES.get(method)
        if fn is not None:
            op = _Op(fn, args, request_id, write_weight(fn, args))
            batch.append(op)
            weight += op.weight
            if weight >= writer.max_batch:
                pipe.send(_answers(writer.run(batch)))
                batch, weight = [], 0
            continue
        read = READS.get(method)
        if read is not None:
            readers.submit(_read, store, read, request_id, args, pipe)
        else:
            pipe.send([(request_id, False, StoreUnavailable(f"unknown store call {method!r}"))])
    if batch:
        pipe.send(_answers(writer.run(batch)))
    return going


def serve(path: str, options: dict[str, Any], *, fd_in: int = 0, fd_out: int = 1) -> int:
    pipe = Pipe(fd_in, fd_out)
    store = SqliteStore(path, **options)
    try:
        writer = store.open_sync()
    except Exception as exc:
        pipe.send([(0, False, StoreUnavailable(str(exc)))])
        return 1
    pipe.send([(0, True, "ready")])
    readers = ThreadPoolExecutor(READ_THREADS, thread_name_prefix="bridge-store-reader")
    try:
        while True:
            requests = pipe.receive()
            if requests is None:
                break  # the bridge is gone: what it sent is done, stop
            if not serve_requests(store, writer, requests, pipe, readers):
                break
    finally:
        readers.shutdown(wait=True)
        store.close_sync()
    return 0


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
