"""The store process: `python -m bridge.store.child PATH OPTIONS_JSON`, started by
`bridge.store.process.StoreProcess` (its docstring has the protocol). Serves one SqliteStore
over stdin/stdout, and when the first frame carries an `OutboundSetup`, also runs the outbound
side (bridge.outbound: SMPP binds and dispatcher) on the same store. Runs until told to close
or until stdin ends, then finishes every call it has received, lets the submits in flight
finish (bounded), unbinds, closes the store and exits."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from typing import Any

from bridge.logs import setup_logging
from bridge.outbound import Outbound, OutboundSetup
from bridge.store.base import AcceptOutcome, NewMessage, StoreUnavailable
from bridge.store.process import (
    CLOSE,
    METHODS,
    OUTBOUND_METRICS,
    OUTBOUND_STATUS,
    WAIT_BOUND,
    Outbox,
    read_frame,
)
from bridge.store.sqlite import SqliteStore

log = logging.getLogger("bridge.store")
#: How long submits in flight may take to finish when the bridge is gone without saying.
_DRAIN_S = 10.0


def _answer(outbox: Outbox, request_id: int, future: asyncio.Future[Any]) -> None:
    if future.cancelled():
        outbox.put((request_id, False, StoreUnavailable("cancelled")))
        return
    exc = future.exception()
    outbox.put((request_id, exc is None, future.result() if exc is None else exc))


def _unsendable_answer(answer: tuple[Any, ...], exc: Exception) -> tuple[Any, ...]:
    return (answer[0], False, StoreUnavailable(f"the answer cannot be sent: {exc}"))


def _start_calls(store: SqliteStore, outbound: Outbound | None, requests: list[tuple[Any, ...]],
                 outbox: Outbox, in_flight: set[asyncio.Future[Any]]) -> float | None:
    """Hand one frame's calls to the store in order; the drain timeout when told to close."""
    for request_id, method, args, kwargs in requests:
        if method == CLOSE:
            return float(args[0]) if args else _DRAIN_S
        try:
            if method in METHODS:
                # Write methods queue their operation here, synchronously, in arrival order.
                future = asyncio.ensure_future(getattr(store, method)(*args, **kwargs))
                if method == "accept" and outbound is not None:
                    future.add_done_callback(partial(_dispatch_accepted, outbound, args[0]))
            elif outbound is not None and method in _OUTBOUND_CALLS:
                future = asyncio.ensure_future(_OUTBOUND_CALLS[method](outbound, *args))
            else:
                outbox.put((request_id, False, StoreUnavailable(f"unknown store call {method!r}")))
                continue
        except Exception as exc:
            outbox.put((request_id, False, exc))
            continue
        in_flight.add(future)
        future.add_done_callback(in_flight.discard)
        future.add_done_callback(partial(_answer, outbox, request_id))
    return None


def _dispatch_accepted(outbound: Outbound, messages: Sequence[NewMessage],
                       future: asyncio.Future[list[AcceptOutcome]]) -> None:
    """Committed: the accepted messages go to the dispatcher before the bridge hears back."""
    if not future.cancelled() and future.exception() is None:
        outbound.accepted(messages, future.result())


async def _status(outbound: Outbound) -> Any:
    return outbound.status()


async def _metrics(outbound: Outbound) -> bytes:
    return outbound.metrics_text()


async def _wait_bound(outbound: Outbound, timeout: float) -> bool:
    return await outbound.wait_bound(timeout)


_OUTBOUND_CALLS: dict[str, Callable[..., Awaitable[Any]]] = {
    OUTBOUND_STATUS: _status, OUTBOUND_METRICS: _metrics, WAIT_BOUND: _wait_bound,
}


async def serve(path: str, options: dict[str, Any]) -> int:
    loop = asyncio.get_running_loop()
    transport, _ = await loop.connect_write_pipe(asyncio.Protocol, sys.stdout.buffer)
    outbox = Outbox(transport.write, _unsendable_answer)
    reader = asyncio.StreamReader(limit=2**30)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin.buffer)
    try:
        setup: OutboundSetup | None = await read_frame(reader)
    except asyncio.IncompleteReadError:
        return 1  # the bridge went away before it said what to run
    store = SqliteStore(path, **options)
    outbound: Outbound | None = None
    try:
        await store.open()
        if setup is not None:
            setup_logging(setup.log_level)
            outbound = Outbound(setup, store)
            await outbound.start()
    except Exception as exc:
        log.exception("the store process could not start")
        outbox.put((0, False, StoreUnavailable(str(exc))))
        outbox.flush()
        transport.close()
        with contextlib.suppress(Exception):
            await store.close()
        return 1
    outbox.put((0, True, "ready"))
    in_flight: set[asyncio.Future[Any]] = set()
    drain_s = _DRAIN_S
    try:
        while True:
            try:
                requests = await read_frame(reader)
            except asyncio.IncompleteReadError:
                break  # the bridge is gone: finish what it sent, drain, unbind, stop
            close = _start_calls(store, outbound, requests, outbox, in_flight)
            if close is not None:
                drain_s = close
                break
        if in_flight:
            await asyncio.wait(in_flight)
    finally:
        if outbound is not None:
            await outbound.stop(drain_s)
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
