"""The aiohttp listeners (the SOAP listener, and the HTTP dialects' own when they have one),
with the limits aiohttp's server lacks: a deadline for a request's head, an idle timeout that
also holds before the first byte, and connection caps per listener and per client address
(bridge.ingress.connections, bridge.core.floods).

aiohttp has knobs for sizes (`max_line_size`, `max_field_size`, `max_headers`) and a
`keepalive_timeout`, but nothing that cuts a client sending one header line every few seconds
(3.14 closes a connection whose first request is incomplete after `keepalive_timeout`; older
versions never), and no connection cap. So each connection's protocol is wrapped in
`_Guarded`, which uses only asyncio's Protocol and Transport interfaces (connection_made,
data_received, eof_received, connection_lost, pause/resume_writing, get_write_buffer_size)
and aiohttp's public pieces: `AppRunner.server` as the protocol factory, a middleware, and
`request.transport`. It reads no private attribute of aiohttp and parses no HTTP itself, so
an upgrade of aiohttp leaves it working.

A connection is in one of three states:
- waiting: no request on it (just connected, or its last request answered): closed after
  `idle_timeout_s` without a byte;
- head: bytes of a request came, its handler has not started: closed with 408 when the head
  is not complete `header_timeout_s` after the first of them;
- working: a request's handler runs (the middleware marks its start and its end).
Waiting and head are idle for the connection table, from the connection or the last answer,
unless a response is still being written; an idle one is closed when a newcomer needs its
slot. A newcomer that gets no slot is answered 503 with Retry-After and closed before aiohttp
sees it. Never a 500, never a traceback: nothing here raises into aiohttp.
"""

from __future__ import annotations

import asyncio
import logging
import resource
import ssl
import time
from enum import Enum
from typing import Awaitable, Callable

from aiohttp import web

from bridge.config import HttpLimits
from bridge.core.floods import Room
from bridge.ingress.connections import ConnectionTable

log = logging.getLogger("bridge.listener")

_REFUSED = (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\n"
            b"Retry-After: 5\r\nConnection: close\r\nContent-Length: 38\r\n\r\n"
            b"too many connections, try again later\n")
_HEAD_TIMEOUT = (b"HTTP/1.1 408 Request Timeout\r\nContent-Type: text/plain\r\n"
                 b"Connection: close\r\nContent-Length: 27\r\n\r\n"
                 b"request head took too long\n")
BACKLOG = 511  # a burst of connects waits in the kernel's queue, not in SYN retries


class _State(Enum):
    WAITING = "waiting"
    HEAD = "head"
    WORKING = "working"


class GuardedListener:
    """One aiohttp application served on host:port within `limits`; `name` in the log."""

    def __init__(self, name: str, runner: web.AppRunner, limits: HttpLimits) -> None:
        self.name = name
        self.runner = runner
        self.limits = limits
        self.table = ConnectionTable(name, limits.connections, log=log)
        self.by_transport: dict[asyncio.BaseTransport, _Guarded] = {}
        self.server: asyncio.Server | None = None
        self.port = 0

    @web.middleware
    async def middleware(self, request: web.Request,
                         handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                         ) -> web.StreamResponse:
        """Marks the connection working while its request's handler runs."""
        guard = self.by_transport.get(request.transport) if request.transport else None
        if guard is not None:
            guard.started()
        try:
            return await handler(request)
        finally:
            if guard is not None:
                guard.finished()

    def protocol(self) -> asyncio.Protocol:
        return _Guarded(self)

    async def stop(self) -> None:
        """Stop accepting, then aiohttp's own shutdown of the application and connections."""
        if self.server is not None:
            self.server.close()
        await self.runner.cleanup()


async def serve(name: str, app: web.Application, host: str, port: int,
                tls: ssl.SSLContext | None, line: int, limits: HttpLimits) -> GuardedListener:
    """Serve `app` on host:port (TLS when given, request lines up to `line` octets)."""
    runner = web.AppRunner(app, access_log=None, max_line_size=line,
                           keepalive_timeout=limits.idle_timeout_s)
    listener = GuardedListener(name, runner, limits)
    app.middlewares.append(listener.middleware)
    await runner.setup()
    loop = asyncio.get_running_loop()
    listener.server = await loop.create_server(
        listener.protocol, host, port, ssl=tls, reuse_address=True, backlog=BACKLOG,
        ssl_handshake_timeout=limits.header_timeout_s if tls is not None else None)
    listener.port = int(listener.server.sockets[0].getsockname()[1])
    return listener


class TooLarge(Exception):
    """A request (its URL or its body) is larger than its listener's limit."""


async def read_body(request: web.Request, limit: int) -> bytes:
    """The whole body, refusing more than `limit` octets before reading them all (each
    listener answers TooLarge in its own words)."""
    if request.content_length is not None and request.content_length > limit:
        raise TooLarge()
    data = bytearray()
    async for chunk in request.content.iter_chunked(65536):
        data += chunk
        if len(data) > limit:
            raise TooLarge()
    return bytes(data)


class _Guarded(asyncio.Protocol):
    """One connection: aiohttp's protocol inside, made only once the connection has a slot."""

    def __init__(self, listener: GuardedListener) -> None:
        self._listener = listener
        self._inner: asyncio.Protocol | None = None
        self._transport: asyncio.Transport | None = None
        self.address = "unknown"
        self._state = _State.WAITING
        self._since = time.monotonic()
        self._timer: asyncio.TimerHandle | None = None
        self._deadline: float | None = None  # loop time; None while a request is worked on
        self._unsent = 0  # bytes waiting to be sent when the idle timer last fired

    # ---- asyncio's side

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        peer = transport.get_extra_info("peername")
        self.address = str(peer[0]) if isinstance(peer, tuple) and peer else "unknown"
        listener = self._listener
        if listener.table.admit(self) is not Room.FREE:
            transport.write(_REFUSED)
            transport.close()
            return
        server = listener.runner.server
        assert server is not None, "the runner is set up before the listener starts"
        self._inner = server()
        listener.by_transport[transport] = self
        self._inner.connection_made(transport)
        self._arm(listener.limits.idle_timeout_s)

    def data_received(self, data: bytes) -> None:
        if self._inner is None:
            return
        if self._state is _State.WAITING:
            self._state = _State.HEAD
            self._arm(self._listener.limits.header_timeout_s)
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received() if self._inner is not None else None

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._inner is None:
            return
        self._listener.table.release(self)
        if self._transport is not None:
            self._listener.by_transport.pop(self._transport, None)
        inner, self._inner = self._inner, None
        inner.connection_lost(exc)

    def pause_writing(self) -> None:
        if self._inner is not None:
            self._inner.pause_writing()

    def resume_writing(self) -> None:
        if self._inner is not None:
            self._inner.resume_writing()

    # ---- the middleware's side

    def started(self) -> None:
        self._state = _State.WORKING
        self._disarm()

    def finished(self) -> None:
        self._state = _State.WAITING
        self._since = time.monotonic()
        self._arm(self._listener.limits.idle_timeout_s)

    # ---- the table's side (bridge.ingress.connections.Slot)

    def idle_since(self) -> float | None:
        if self._state is _State.WORKING or self._writing():
            return None
        return self._since

    def evict(self) -> None:
        if self._transport is None:
            return
        if self._state is _State.HEAD:
            self._transport.write(_REFUSED)
        self._transport.close()

    # ---- deadlines

    def _writing(self) -> bool:
        return self._transport is not None and self._transport.get_write_buffer_size() > 0

    def _arm(self, delay: float) -> None:
        """The connection's deadline, `delay` from now. Moving it only sets a number: the one
        timer fires when it was due and, finding the deadline later, waits again; a new timer
        only when the deadline comes sooner than the timer (a request's head after an idle
        keep-alive). Three timers made and cancelled per request were a tenth of a sendsms
        request's time in this process."""
        loop = asyncio.get_running_loop()
        deadline = self._deadline = loop.time() + delay
        if self._timer is not None and self._timer.when() > deadline:
            self._timer.cancel()
            self._timer = None
        if self._timer is None:
            self._timer = loop.call_at(deadline, self._expired)

    def _disarm(self) -> None:
        """No deadline (a request is worked on, or the connection went): the timer, when it
        fires, finds none and lapses."""
        self._deadline = None

    def _expired(self) -> None:
        self._timer = None
        if self._deadline is None:
            return
        loop = asyncio.get_running_loop()
        if loop.time() < self._deadline:
            self._timer = loop.call_at(self._deadline, self._expired)
            return
        transport = self._transport
        if transport is None or self._inner is None or self._state is _State.WORKING:
            return
        unsent = transport.get_write_buffer_size()
        if unsent and unsent != self._unsent:  # an answer still going out, and moving
            self._unsent = unsent
            self._arm(self._listener.limits.idle_timeout_s)
            return
        if self._state is _State.HEAD:
            self._listener.table.episode.failed(
                f"request head from ip={self.address} not complete after "
                f"{self._listener.limits.header_timeout_s:g} s: closed with 408")
            transport.write(_HEAD_TIMEOUT)
        transport.close()


def raise_file_limit(needed: int) -> int:
    """Lift this process's open-file limit to `needed` (at most the hard limit), so that the
    listeners' caps, not the descriptors, are what turns clients away; the limit in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        if target > soft:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
    if soft != resource.RLIM_INFINITY and soft < needed:
        log.warning("open files limited to %d, below the %d the listeners' caps need: "
                    "raise the hard limit (LimitNOFILE=, ulimit -Hn)", soft, needed)
    return int(soft)
