"""The store process: `python -m bridge.store.child PATH OPTIONS_JSON`, started by
`bridge.store.process.StoreProcess` (its docstring has the protocol). Serves one SqliteStore
over stdin/stdout until told to close or until stdin ends, then finishes every call it has
received, closes the store and exits."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import sys
from collections.abc import Sequence
from functools import partial
from typing import Any

from bridge.store.process import CLOSE, METHODS, Outbox, read_frame
from bridge.store.base import StoreUnavailable
from bridge.store.sqlite import SqliteStore


def _answer(outbox: Outbox, request_id: int, future: asyncio.Future[Any]) -> None:
    if future.cancelled():
        outbox.put((request_id, False, StoreUnavailable("cancelled")))
        return
    exc = future.exception()
    outbox.put((request_id, exc is None, future.result() if exc is None else exc))


def _unsendable_answer(answer: tuple[Any, ...], exc: Exception) -> tuple[Any, ...]:
    return (answer[0], False, StoreUnavailable(f"the answer cannot be sent: {exc}"))


def _start_calls(store: SqliteStore, requests: list[tuple[Any, ...]], outbox: Outbox,
                 in_flight: set[asyncio.Future[Any]]) -> bool:
    """Hand one frame's calls to the store in order; False when told to close."""
    for request_id, method, args, kwargs in requests:
        if method == CLOSE:
            return False
        if method not in METHODS:
            outbox.put((request_id, False, StoreUnavailable(f"unknown store call {method!r}")))
            continue
        try:
            # Write methods queue their operation here, synchronously, in arrival order.
            future = asyncio.ensure_future(getattr(store, method)(*args, **kwargs))
        except Exception as exc:
            outbox.put((request_id, False, exc))
            continue
        in_flight.add(future)
        future.add_done_callback(in_flight.discard)
        future.add_done_callback(partial(_answer, outbox, request_id))
    return True


async def serve(path: str, options: dict[str, Any]) -> int:
    loop = asyncio.get_running_loop()
    transport, _ = await loop.connect_write_pipe(asyncio.Protocol, sys.stdout.buffer)
    outbox = Outbox(transport.write, _unsendable_answer)
    store = SqliteStore(path, **options)
    try:
        await store.open()
    except Exception as exc:
        outbox.put((0, False, StoreUnavailable(str(exc))))
        outbox.flush()
        transport.close()
        return 1
    reader = asyncio.StreamReader(limit=2**30)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin.buffer)
    outbox.put((0, True, "ready"))
    in_flight: set[asyncio.Future[Any]] = set()
    try:
        while True:
            try:
                requests = await read_frame(reader)
            except asyncio.IncompleteReadError:
                break  # the bridge is gone: finish what it sent, then stop
            if not _start_calls(store, requests, outbox, in_flight):
                break
        if in_flight:
            await asyncio.wait(in_flight)
    finally:
        await store.close()
        outbox.flush()
        with contextlib.suppress(Exception):
            transport.close()
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
    return asyncio.run(serve(args[0], json.loads(args[1])))


if __name__ == "__main__":
    raise SystemExit(main())
