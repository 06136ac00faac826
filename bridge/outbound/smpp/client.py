"""SMPP 3.4 ESME client on asyncio: one `SmppBind` per [[smsc]] entry.

A bind is one transceiver connection, or a transmitter plus a receiver connection ("legs").
Each leg is an `asyncio.Protocol` with its own framing (4-byte length, 16..64 KiB), its own
sequence numbers (1..0x7FFFFFFF, wrapping) and a dict sequence → future for responses; each
leg has its own connect/bind/reconnect loop with exponential backoff and jitter.

Guarantees the dispatcher relies on:
- `submit` never has more than `config.window` submit_sm outstanding and honours `max_tps`.
- `submit` returns a `SubmitResult` exactly once per PDU sent; when the outcome cannot be
  known (no response within response_timeout_s, connection lost with the PDU possibly sent)
  it raises `SubmitOutcomeUnknown` (the caller resubmits: at-least-once). `NotBound` means
  nothing was sent.
- Receipts and MO are handed to the handlers and awaited *before* deliver_sm_resp is sent; a
  handler that raises makes the answer ESME_RX_T_APPN (0x64, "temporary application error",
  SMPP 3.4 §5.1.3, what Kannel answers when it cannot store), so the SMSC redelivers later.
- Concatenated MO is handed over part by part (`MoMessage.concat`): the store reassembles it,
  so parts arriving on different binds or instances, or across a restart, come together.

Only this package imports smpplib (through `bridge.outbound.smpp.codec`).
"""

from __future__ import annotations

import asyncio
import collections
import functools
import logging
import random
import socket
import ssl
import struct
import time
from dataclasses import dataclass
from typing import Awaitable, Callable

from bridge.config import SmscConfig
from bridge.core import reassembly
from bridge.core.encoding import decode_text
from bridge.core.health import TIMEOUT_FAULT, Circuit, submit_fault
from bridge.core.model import Address
from bridge.core.policy import doubling_delay
from bridge.core.receipts import Receipt, parse_receipt
from bridge.logs import Episode
from bridge.outbound.smpp import codec
from bridge.outbound.smpp.codec import SubmitSm, command_status_name
from bridge.outbound.smpp.health import LinkHealth, breaker_rule

__all__ = [
    "MoHandler", "MoMessage", "NotBound", "OutOfRouting", "ReceiptHandler", "SmppBind",
    "SubmitOutcomeUnknown",
    "SubmitResult", "SubmitSm", "TooLate", "TryLater", "command_status_name",
]

log = logging.getLogger("bridge.smpp")


@dataclass(frozen=True)
class SubmitResult:
    command_status: int
    message_id: str | None  # raw id as the SMSC sent it


class SubmitOutcomeUnknown(Exception):
    """Timed out or connection lost after the PDU may have left: the caller resubmits."""


class NotBound(Exception):
    """No bound transmitter (or the bind is stopping): nothing was sent."""


class OutOfRouting(NotBound):
    """The link was taken out of routing (its health) while the submit waited for the
    window: nothing was sent, another route should take it."""


class TooLate(NotBound):
    """The submit could not leave within the time it was given (the window or max_tps held
    it): nothing was sent."""


class TryLater(Exception):
    """A receipt or MO handler cannot take this deliver_sm now (its store is failing): the
    answer is 0x64 and the SMSC delivers it again later; logged as one episode per bind."""


@dataclass(frozen=True)
class MoMessage:
    smsc: str
    source: Address
    destination: Address
    text: str
    data_coding: int
    received_at: float  # wall clock (time.time())
    #: (reference, total, part) when this is one part of a concatenated SMS; None otherwise.
    concat: tuple[int, int, int] | None = None


ReceiptHandler = Callable[[str, Receipt], Awaitable[None]]
MoHandler = Callable[[MoMessage], Awaitable[None]]


class _LinkLost(Exception):
    pass


class _ResponseTimeout(Exception):
    pass


class _BindRefused(Exception):
    pass


#: (deadline on the loop's clock, sequence number, the response's future, seconds it may still
#: be answered after the deadline).
_Deadline = tuple[float, int, "asyncio.Future[bytes]", float]

_CMD_STATUS_SEQ = struct.Struct(">LLL")
_CLOCK_RESOLUTION = time.get_clock_info("monotonic").resolution  # as asyncio's loop uses
MAX_HANDLERS_PER_LINK = 64     # concurrent deliver_sm handlers before reading pauses
RECEIPT_ESM_MASK = 0x3C
RECEIPT_ESM_TYPE = 0x04
UDHI = 0x40

_BIND_COMMAND = {"transceiver": "bind_transceiver", "transmitter": "bind_transmitter",
                 "receiver": "bind_receiver"}


class _Link(asyncio.Protocol):
    """One TCP (or TLS) connection to the SMSC."""

    def __init__(self, owner: SmppBind, role: str) -> None:
        self.owner = owner
        self.role = role
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.pending: dict[int, asyncio.Future[bytes]] = {}
        # Response deadlines: requests share one timeout, so their deadlines arrive in order
        # and one timer for the oldest serves them all (no TimerHandle per submit). Entries
        # whose request was answered are dropped lazily (and all at once when they pile up behind
        # an old unanswered one). A submit past its timeout moves to `late`, with its own
        # deadline (`wait_ack_s` after it was sent), in order too: see `_expire_due`.
        self.deadlines: collections.deque[_Deadline] = collections.deque()
        self.late: collections.deque[_Deadline] = collections.deque()
        self.deadline_timer: asyncio.TimerHandle | None = None
        self.buffer = bytearray()
        self.closed: asyncio.Future[None] = self.loop.create_future()
        self.sequence = 0
        self.bound = False
        self.last_rx = time.monotonic()
        self.handlers: set[asyncio.Future[None]] = set()
        self.reading_paused = False
        self.can_write = asyncio.Event()
        self.can_write.set()
        self.wakeup = asyncio.Event()  # keepalive: probe now (suspect) or exit (closed)
        # PDUs written in one event-loop turn go out in one send() (TCP_NODELAY is on).
        self.out: list[bytes] = []
        self.flush_scheduled = False
        self.close_reason = "closed by the SMSC"

    @property
    def label(self) -> str:
        return f"smsc={self.owner.config.name} leg={self.role}"

    # ---------------------------------------------------------------- asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:  # pragma: no cover - not a TCP socket
                pass

    def connection_lost(self, exc: Exception | None) -> None:
        was_bound = self.bound
        self.bound = False
        reason = self.close_reason if exc is None else f"{self.close_reason}: {exc}"
        for fut in self.pending.values():
            if not fut.done():
                fut.set_exception(_LinkLost(reason))
        self.pending.clear()
        self.deadlines.clear()
        self.late.clear()
        if self.deadline_timer is not None:
            self.deadline_timer.cancel()
            self.deadline_timer = None
        self.can_write.set()
        self.wakeup.set()
        self.transport = None
        if not self.closed.done():
            self.closed.set_result(None)
        if was_bound:
            log.warning("%s connection lost (%s)", self.label, reason)
        self.owner._leg_changed()

    def pause_writing(self) -> None:
        self.can_write.clear()

    def resume_writing(self) -> None:
        self.can_write.set()

    def data_received(self, data: bytes) -> None:
        self.last_rx = time.monotonic()
        buf = self.buffer
        buf += data
        pos, size = 0, len(buf)
        while size - pos >= 4:
            length = int.from_bytes(buf[pos:pos + 4], "big")
            if length < codec.HEADER_LEN or length > codec.MAX_PDU_LEN:
                self._framing_error(length, bytes(buf[pos:pos + codec.HEADER_LEN]))
                return
            if size - pos < length:
                break
            frame = bytes(buf[pos:pos + length])
            pos += length
            self._dispatch(frame)
            if self.transport is None:
                return
        if pos:
            del buf[:pos]

    # ---------------------------------------------------------------- incoming PDUs

    def _framing_error(self, length: int, head: bytes) -> None:
        seq = int.from_bytes(head[12:16], "big") if len(head) >= 16 else 0
        log.error("%s malformed frame (command_length=%d); generic_nack and reconnect",
                  self.label, length)
        self.write(codec.encode_header_only(codec.GENERIC_NACK, seq, codec.ESME_RINVCMDLEN))
        self.close("malformed frame", abort=False)

    def _dispatch(self, frame: bytes) -> None:
        command_id, status, seq = _CMD_STATUS_SEQ.unpack_from(frame, 4)
        if command_id & codec.RESPONSE_BIT:
            pending = self.pending
            fut = pending.pop(seq, None)
            deadlines = self.deadlines
            # Responses come mostly in order: drop answered entries from the front now.
            while deadlines and pending.get(deadlines[0][1]) is not deadlines[0][2]:
                deadlines.popleft()
            if len(deadlines) > 2 * len(pending) + 64:  # answered ones behind an old request
                self.deadlines = collections.deque(
                    entry for entry in deadlines if pending.get(entry[1]) is entry[2])
            if fut is None:
                if command_id == codec.GENERIC_NACK:
                    log.warning("%s generic_nack status=0x%08X %s for unknown seq=%d",
                                self.label, status, command_status_name(status), seq)
                else:
                    log.info("%s late or unexpected response 0x%08X seq=%d ignored",
                             self.label, command_id, seq)
                return
            if not fut.done():
                fut.set_result(frame)
            return
        if command_id == codec.ENQUIRE_LINK:
            self.write(codec.encode_header_only(codec.ENQUIRE_LINK_RESP, seq))
        elif command_id == codec.DELIVER_SM:
            handling = self.owner._handle_deliver(self, seq, frame)
            if handling is None:
                return  # answered at once
            self.handlers.add(handling)
            handling.add_done_callback(self._handler_done)
            if len(self.handlers) >= MAX_HANDLERS_PER_LINK and not self.reading_paused \
                    and self.transport is not None:
                self.transport.pause_reading()
                self.reading_paused = True
        elif command_id == codec.UNBIND:
            log.warning("%s unbind received from the SMSC; unbind_resp sent, reconnecting",
                        self.label)
            self.write(codec.encode_header_only(codec.UNBIND_RESP, seq))
            self.close("unbound by the SMSC", abort=False)
        elif command_id == codec.ALERT_NOTIFICATION:
            log.info("%s alert_notification ignored", self.label)
        else:
            log.warning("%s unsupported command 0x%08X seq=%d: generic_nack", self.label,
                        command_id, seq)
            self.write(codec.encode_header_only(codec.GENERIC_NACK, seq, codec.ESME_RINVCMDID))

    def _handler_done(self, handling: asyncio.Future[None]) -> None:
        self.handlers.discard(handling)  # its outcome is the owner's (_deliver_sm_handled)
        if self.reading_paused and len(self.handlers) < MAX_HANDLERS_PER_LINK // 2 \
                and self.transport is not None:
            self.transport.resume_reading()
            self.reading_paused = False

    # ---------------------------------------------------------------- outgoing PDUs

    def next_seq(self) -> int:
        seq = self.sequence
        for _ in range(len(self.pending) + 1):
            seq = seq + 1 if seq < codec.MAX_SEQUENCE else 1
            if seq not in self.pending:
                break
        self.sequence = seq
        return seq

    def write(self, raw: bytes) -> bool:
        transport = self.transport
        if transport is None or transport.is_closing():
            return False
        self.out.append(raw)
        if not self.flush_scheduled:
            self.flush_scheduled = True
            self.loop.call_soon(self.flush)
        return True

    def flush(self) -> None:
        self.flush_scheduled = False
        out = self.out
        if not out:
            return
        transport = self.transport
        if transport is not None and not transport.is_closing():
            transport.write(out[0] if len(out) == 1 else b"".join(out))
        out.clear()

    def send_request(self, seq: int, raw: bytes, timeout: float,
                     late_s: float = 0.0) -> asyncio.Future[bytes]:
        """Send a request; its future gets the response frame, or `_ResponseTimeout` after
        `timeout` seconds. With `late_s`, a request still unanswered after `timeout` is
        overdue (the link is probed) and waits `late_s` more before it times out: an answer
        that comes in that time is still the answer."""
        transport = self.transport
        if transport is None or transport.is_closing():
            raise _LinkLost("not connected")
        loop = self.loop
        fut: asyncio.Future[bytes] = loop.create_future()
        self.pending[seq] = fut
        # Every request of a link has the bind's one response timeout: deadlines come in order.
        deadline = max(loop.time() + timeout, self.deadlines[-1][0] if self.deadlines else 0.0)
        self.deadlines.append((deadline, seq, fut, late_s))
        timer = self.deadline_timer
        if timer is None or timer.when() > deadline:  # the timer may wait for a late one
            if timer is not None:
                timer.cancel()
            self.deadline_timer = loop.call_at(deadline, self._expire_due)
        self.write(raw)
        return fut

    def _expire_due(self) -> None:
        """The deadline timer: a request past its deadline times out, or, when it may still be
        answered late, moves to `late` (and the peer is probed); a late one past its own
        deadline times out. Then wait for the earliest deadline still ahead."""
        self.deadline_timer = None
        now = self.loop.time() + _CLOCK_RESOLUTION  # call_at may fire this early
        overdue = 0
        for deadline, seq, fut, late_s in self._due(self.deadlines, now):
            if late_s > 0:
                self.late.append((max(deadline + late_s, self.late[-1][0] if self.late
                                      else 0.0), seq, fut, 0.0))
                overdue += 1
            else:
                self._time_out(seq, fut)
        for _, seq, fut, _ in self._due(self.late, now):
            self._time_out(seq, fut)
        if overdue:
            self.suspect()
            self.owner._overdue(overdue)
        ahead = [queue[0][0] for queue in (self.deadlines, self.late) if queue]
        if ahead:
            self.deadline_timer = self.loop.call_at(min(ahead), self._expire_due)

    def _due(self, queue: collections.deque[_Deadline], now: float) -> list[_Deadline]:
        """Take the unanswered entries whose deadline has passed off the front of `queue`
        (answered ones are dropped on the way); the first still ahead stays."""
        pending = self.pending
        due: list[_Deadline] = []
        while queue:
            entry = queue[0]
            if pending.get(entry[1]) is not entry[2]:  # answered already
                queue.popleft()
            elif entry[0] > now:
                break
            else:
                due.append(queue.popleft())
        return due

    def _time_out(self, seq: int, fut: asyncio.Future[bytes]) -> None:
        del self.pending[seq]
        if not fut.done():
            fut.set_exception(_ResponseTimeout())

    def suspect(self) -> None:
        """A response timed out: let the keepalive probe the peer now."""
        self.wakeup.set()

    def close(self, reason: str, *, abort: bool) -> None:
        self.close_reason = reason
        self.bound = False
        transport = self.transport
        if transport is None:
            return
        if abort:
            self.out.clear()
            transport.abort()
        else:
            self.flush()
            transport.close()


class SmppBind:
    """One logical upstream: a transceiver, or a transmitter + a receiver connection."""

    def __init__(self, config: SmscConfig, *, on_receipt: ReceiptHandler, on_mo: MoHandler,
                 ssl_context: ssl.SSLContext | None = None) -> None:
        self.config = config
        self._on_receipt = on_receipt
        self._on_mo = on_mo
        if ssl_context is None and config.tls:
            ssl_context = ssl.create_default_context(cafile=config.tls_ca)
            ssl_context.check_hostname = config.tls_verify_hostname
        self._ssl_context = ssl_context
        self._roles: tuple[str, ...] = (
            ("transceiver",) if config.bind == "transceiver" else ("transmitter", "receiver"))
        self._tx_role = self._roles[0]
        self._links: dict[str, _Link | None] = dict.fromkeys(self._roles)
        self._window = asyncio.Semaphore(max(1, config.window))
        self._interval = 1.0 / config.max_tps if config.max_tps > 0 else 0.0
        self.tps_share = 1  # instances binding this SMSC: max_tps is theirs together
        #: Clear while another instance holds this SMSC's bind (`[[smsc]] cluster_binds`).
        self._active = asyncio.Event()
        if config.cluster_binds <= 0:
            self._active.set()
        self._next_slot = 0.0
        self._stopping = False
        self._stopped = False
        self._stop_event = asyncio.Event()
        self._all_bound = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._tasks: list[asyncio.Task[None]] = []
        self._last_bind_error: str | None = None
        self._warned_password = False
        self._handler_failures = Episode(log, f"smsc={config.name} deliver_sm handling "
                                              f"(answered 0x64, the SMSC delivers again)")
        self.in_flight = 0
        # Answers after response_timeout_s: counted, taken, and logged as one episode.
        self._late = Episode(log, f"smsc={config.name} timely submit_sm_resp "
                                  f"(late answers are taken)")
        self.overdue = 0  # submits past response_timeout_s
        self.late_answers = 0  # ... that were answered after all
        self.timeouts = 0  # ... that were not, within wait_ack_s
        #: Every submit's outcome goes here once it is known: an answer (a late one too: it
        #: is the answer) by whose fault its status is; no answer within wait_ack_s as a
        #: timeout. The dispatcher routes by it.
        self.health = LinkHealth(config.name, breaker_rule(config))

    # ---------------------------------------------------------------- state

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def bound(self) -> bool:
        """True when submits can be sent (the transmitting leg is bound)."""
        link = self._links[self._tx_role]
        return not self._stopping and self._active.is_set() and link is not None and link.bound

    @property
    def holding(self) -> bool:
        """This instance holds (or is taking) the SMSC's bind."""
        return self._active.is_set()

    def resume(self) -> None:
        """Take the bind (this instance's turn under `cluster_binds`)."""
        if not self._active.is_set():
            log.info("smsc=%s this instance takes the bind", self.name)
            self._active.set()

    async def pause(self, drain_timeout: float = 10.0) -> None:
        """Leave the bind to another instance: take no more submits, let those in flight
        finish (bounded), unbind. Receipts then come through the holder's bind."""
        if not self._active.is_set():
            return
        log.info("smsc=%s this instance leaves the bind to another", self.name)
        self._active.clear()
        self._all_bound.clear()
        try:
            await asyncio.wait_for(self._idle.wait(), drain_timeout)
        except TimeoutError:
            pass
        await self._unbind_links()

    @property
    def fully_bound(self) -> bool:
        """Every leg bound (for transmitter+receiver, receipts and MO can flow too)."""
        return not self._stopping and all(
            link is not None and link.bound for link in self._links.values())

    @property
    def last_bind_error(self) -> str | None:
        return self._last_bind_error

    def _leg_changed(self) -> None:
        if self.fully_bound:
            self._all_bound.set()
        else:
            self._all_bound.clear()

    async def wait_bound(self, timeout: float) -> bool:
        """Wait until every leg is bound; False on timeout."""
        try:
            await asyncio.wait_for(self._all_bound.wait(), timeout)
        except TimeoutError:
            return self.fully_bound
        return self.fully_bound

    # ---------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        if self._tasks:
            return
        loop = asyncio.get_running_loop()
        for role in self._roles:
            self._tasks.append(loop.create_task(self._leg_loop(role),
                                                name=f"smpp-{self.config.name}-{role}"))

    async def stop(self, drain_timeout: float = 10.0) -> None:
        """Stop taking submits, wait for in-flight ones and running handlers, unbind, close."""
        if self._stopped:
            return
        self._stopped = True
        self._stopping = True
        self._stop_event.set()
        self._all_bound.clear()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + drain_timeout
        if self.in_flight:
            log.info("smsc=%s stopping: waiting for %d in-flight submit(s)", self.name,
                     self.in_flight)
            try:
                await asyncio.wait_for(self._idle.wait(), max(0.0, deadline - loop.time()))
            except TimeoutError:
                log.warning("smsc=%s stopping with %d submit(s) still in flight", self.name,
                            self.in_flight)
        handlers = {t for link in self._links.values() if link for t in link.handlers}
        if handlers:
            await asyncio.wait(handlers, timeout=max(0.0, deadline - loop.time()))
        await self._unbind_links()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for link in list(self._links.values()):
            if link is not None:
                for handling in list(link.handlers):
                    handling.cancel()
                if link.transport is not None:
                    link.close("stopped", abort=True)

    async def _unbind_links(self) -> None:
        """unbind each bound leg (not waiting long for the SMSC's answer) and close it."""
        for link in list(self._links.values()):
            if link is None or link.transport is None:
                continue
            if link.bound:
                seq = link.next_seq()
                try:
                    fut = link.send_request(seq, codec.encode_header_only(codec.UNBIND, seq),
                                            self.config.response_timeout_s)
                    await asyncio.wait_for(fut, 5.0)
                except (_LinkLost, _ResponseTimeout, asyncio.TimeoutError):
                    pass
                log.info("smsc=%s leg=%s unbound", self.name, link.role)
            link.close("unbound", abort=False)

    def _backoff(self, attempt: int) -> float:
        """Exponential from reconnect_min_s, capped at reconnect_max_s, with jitter: a uniform
        draw between the floor and the current cap, so a fleet does not reconnect in step."""
        cfg = self.config
        cap = doubling_delay(attempt, base_s=cfg.reconnect_min_s, max_s=cfg.reconnect_max_s)
        return random.uniform(min(cfg.reconnect_min_s, cap), cap)  # noqa: S311 - jitter

    async def _leg_loop(self, role: str) -> None:
        attempt = 0
        while not self._stopping:
            if not self._active.is_set():
                await self._until_active()
                continue
            link: _Link | None = None
            try:
                link = await self._connect(role)
            except _BindRefused:
                pass  # already logged and recorded
            except (OSError, TimeoutError, _LinkLost, _ResponseTimeout,
                    codec.CodecError) as exc:
                what = "timed out" if isinstance(exc, (TimeoutError, _ResponseTimeout)) else \
                    (str(exc) or type(exc).__name__)
                self._last_bind_error = f"{_BIND_COMMAND[role]} to {self.config.host}:" \
                                        f"{self.config.port} failed: {what}"
                log.warning("smsc=%s leg=%s %s", self.name, role, self._last_bind_error)
            if link is not None:
                attempt = 0
                if self._stopping:
                    link.close("stopped", abort=False)
                    break
                self._links[role] = link
                self._leg_changed()
                keepalive = asyncio.get_running_loop().create_task(self._keepalive(link))
                try:
                    await link.closed
                finally:
                    keepalive.cancel()
                    if self._links[role] is link:
                        self._links[role] = None
                    self._leg_changed()
                if self._stopping:
                    break
            delay = self._backoff(attempt)
            attempt += 1
            log.info("smsc=%s leg=%s reconnecting in %.2fs", self.name, role, delay)
            try:
                await asyncio.wait_for(self._stop_event.wait(), delay)
            except TimeoutError:
                pass

    async def _until_active(self) -> None:
        """Wait for this instance's turn to hold the bind, or for the stop."""
        waits = [asyncio.ensure_future(self._active.wait()),
                 asyncio.ensure_future(self._stop_event.wait())]
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for wait in waits:
                wait.cancel()

    async def _connect(self, role: str) -> _Link:
        cfg = self.config
        loop = asyncio.get_running_loop()
        ctx = self._ssl_context
        timeout = cfg.response_timeout_s
        _, link = await asyncio.wait_for(
            loop.create_connection(lambda: _Link(self, role), cfg.host, cfg.port, ssl=ctx,
                                   server_hostname=cfg.host if ctx is not None else None,
                                   ssl_handshake_timeout=timeout if ctx is not None else None),
            timeout + 1.0)
        command = _BIND_COMMAND[role]
        if len(cfg.password) > 8 and not self._warned_password:
            self._warned_password = True
            log.warning("smsc=%s password longer than 8 characters: SMPP 3.4 truncates it",
                        self.name)
        try:
            seq = link.next_seq()
            frame = await link.send_request(
                seq, codec.encode_bind(command, seq, system_id=cfg.system_id,
                                       password=cfg.password, system_type=cfg.system_type),
                timeout)
            status, smsc_system_id = codec.decode_bind_resp(frame)
        except BaseException:
            link.close("bind failed", abort=True)
            raise
        if status != codec.ESME_ROK:
            message = f"{command} refused: 0x{status:08X} {command_status_name(status)}"
            self._last_bind_error = message
            log.error("smsc=%s leg=%s %s", self.name, role, message)
            link.close("bind refused", abort=True)
            raise _BindRefused(message)
        link.bound = True
        self._last_bind_error = None
        log.info("smsc=%s leg=%s bound (%s) to %s:%d%s smsc_system_id=%s", self.name, role,
                 command, cfg.host, cfg.port, " tls" if ctx is not None else "",
                 smsc_system_id or "-")
        return link

    async def _keepalive(self, link: _Link) -> None:
        """enquire_link after enquire_link_s without traffic, or at once when a response timed
        out; no enquire_link_resp within response_timeout_s means a dead peer: drop."""
        cfg = self.config
        while link.transport is not None:
            idle = time.monotonic() - link.last_rx
            wait = cfg.enquire_link_s - idle
            if wait > 0 and not link.wakeup.is_set():
                try:
                    await asyncio.wait_for(link.wakeup.wait(), wait)
                except TimeoutError:
                    pass
                if link.transport is None:
                    return
                if not link.wakeup.is_set():
                    continue
            link.wakeup.clear()
            seq = link.next_seq()
            try:
                await link.send_request(seq, codec.encode_header_only(codec.ENQUIRE_LINK, seq),
                                        cfg.response_timeout_s)
            except _LinkLost:
                return
            except _ResponseTimeout:
                log.error("smsc=%s leg=%s dead peer: no enquire_link_resp within %.1fs; "
                          "reconnecting", self.name, link.role, cfg.response_timeout_s)
                link.close("dead peer", abort=True)
                return

    # ---------------------------------------------------------------- submit

    async def submit(self, sm: SubmitSm, *, within_s: float | None = None) -> SubmitResult:
        """`within_s`: the submit must leave within this many seconds (the other parts of
        its message went earlier, SPEC's part deadline), else TooLate and nothing is sent."""
        if not self.bound:
            raise NotBound(f"smsc={self.name} not bound")
        send_by = None if within_s is None else time.monotonic() + within_s
        async with self._window:
            if self._interval:
                await self._pace()
            if send_by is not None and time.monotonic() > send_by:
                raise TooLate(f"smsc={self.name} window or max_tps held the submit past "
                              f"its deadline")
            if self.health.circuit is Circuit.OPEN:  # tripped while this one waited
                raise OutOfRouting(f"smsc={self.name} out of routing")
            link = self._links[self._tx_role]
            if self._stopping or link is None or not link.bound:
                raise NotBound(f"smsc={self.name} not bound")
            if not link.can_write.is_set():
                await link.can_write.wait()
                if not link.bound:
                    raise NotBound(f"smsc={self.name} not bound")
            seq = link.next_seq()
            raw = codec.encode_submit(seq, sm)  # ValueError: nothing sent
            cfg = self.config
            late_s = max(0.0, cfg.wait_ack_s - cfg.response_timeout_s)
            try:
                fut = link.send_request(seq, raw, cfg.response_timeout_s, late_s)
            except _LinkLost:
                raise NotBound(f"smsc={self.name} not bound") from None
            self.in_flight += 1
            if self.in_flight == 1:
                self._idle.clear()
            sent = link.loop.time()
            try:
                frame = await fut
            except _ResponseTimeout:
                link.suspect()
                self.timeouts += 1
                self.health.record(TIMEOUT_FAULT)
                raise SubmitOutcomeUnknown(
                    f"smsc={self.name} no submit_sm_resp within "
                    f"{max(cfg.wait_ack_s, cfg.response_timeout_s):g}s (seq {seq})") from None
            except _LinkLost as exc:
                raise SubmitOutcomeUnknown(
                    f"smsc={self.name} connection lost with the submit in flight "
                    f"(seq {seq}): {exc}") from None
            finally:
                self.in_flight -= 1
                if self.in_flight == 0:
                    self._idle.set()
        self._answered_after(link.loop.time() - sent)
        command_id = int.from_bytes(frame[4:8], "big")
        if command_id == codec.GENERIC_NACK:
            status = int.from_bytes(frame[8:12], "big")
            log.warning("smsc=%s generic_nack 0x%08X %s for submit_sm seq=%d", self.name,
                        status, command_status_name(status), seq)
            return self._result(status, None)
        try:
            status, message_id = codec.decode_submit_resp(frame)
        except codec.CodecError as exc:
            raise SubmitOutcomeUnknown(f"smsc={self.name} undecodable submit_sm_resp: {exc}") \
                from None
        return self._result(status, message_id)

    def _result(self, status: int, message_id: str | None) -> SubmitResult:
        self.health.record(submit_fault(status))
        return SubmitResult(status, message_id)

    def _answered_after(self, seconds: float) -> None:
        """A submit_sm_resp came: one later than `response_timeout_s` is still the answer
        (taken, counted, logged once per episode of late answers)."""
        if seconds > self.config.response_timeout_s:
            self.late_answers += 1
            self._late.failed(f"a submit_sm_resp came after {seconds:.1f} s; taken")
        elif self._late.active:
            self._late.succeeded()

    def _overdue(self, n: int) -> None:
        """`n` of a link's submits went past `response_timeout_s` unanswered (their answers
        may still come)."""
        self.overdue += n

    def share_tps(self, holders: int) -> None:
        """`max_tps` is the limit of the whole cluster: with `holders` instances bound to this
        SMSC, this one takes its share (each instance sees the same live holders, so the
        shares add up to the limit, give or take a heartbeat while one joins or leaves)."""
        self.tps_share = max(1, holders)
        if self.config.max_tps > 0:
            self._interval = self.tps_share / self.config.max_tps

    async def _pace(self) -> None:
        now = time.monotonic()
        slot = max(now, self._next_slot)
        self._next_slot = slot + self._interval
        if slot > now:
            await asyncio.sleep(slot - now)

    # ---------------------------------------------------------------- deliver_sm

    def _handle_deliver(self, link: _Link, seq: int,
                        frame: bytes) -> asyncio.Future[None] | None:
        """Start handling a deliver_sm: the future whose completion answers it (see
        `_deliver_sm_handled`), or None when it was answered at once.

        A receipt runs without a task of its own when the receipt handler returns a future
        (the dispatcher does): parse, hand over, answer from a done callback."""
        try:
            pdu = codec.decode_deliver(frame)
        except codec.CodecError as exc:
            log.warning("%s malformed deliver_sm seq=%d rejected (0x65): %s", link.label, seq,
                        exc)
            link.write(codec.encode_deliver_sm_resp(seq, codec.ESME_RX_P_APPN))
            return None
        handling: asyncio.Future[None]
        receipted_id = pdu.receipted_message_id
        if (pdu.esm_class & RECEIPT_ESM_MASK) == RECEIPT_ESM_TYPE or receipted_id is not None:
            try:
                waiter = self._deliver_receipt(pdu, receipted_id)
            except Exception as exc:
                self._answer_deliver_sm(link, seq, exc)
                return None
            if waiter is None:
                self._answer_deliver_sm(link, seq, None)
                return None
            handling = asyncio.ensure_future(waiter)
        else:
            handling = link.loop.create_task(self._deliver_mo(pdu))
        handling.add_done_callback(functools.partial(self._deliver_sm_handled, link, seq))
        return handling

    def _deliver_sm_handled(self, link: _Link, seq: int, handling: asyncio.Future[None]) -> None:
        if handling.cancelled():
            return  # stopping: no answer, the SMSC redelivers
        self._answer_deliver_sm(link, seq, handling.exception())

    def _answer_deliver_sm(self, link: _Link, seq: int, exc: BaseException | None) -> None:
        status = codec.ESME_ROK
        if exc is not None:
            # The store failing (a full disk) fails every deliver_sm: one episode, not a line
            # (and a traceback) each; a bug elsewhere still shows its traceback.
            if isinstance(exc, TryLater):
                self._handler_failures.failed(f"{type(exc).__name__}: {exc}")
            else:
                log.error("%s deliver_sm seq=%d handler failed; answering 0x64 so the SMSC "
                          "redelivers", link.label, seq, exc_info=exc)
            status = codec.ESME_RX_T_APPN
        else:
            self._handler_failures.succeeded()
        if not link.write(codec.encode_deliver_sm_resp(seq, status)):
            log.info("%s deliver_sm_resp seq=%d not sent: connection gone (SMSC redelivers)",
                     link.label, seq)

    def _deliver_receipt(self, pdu: codec.DeliverSm,
                         receipted_id: str | None) -> Awaitable[None] | None:
        receipt = parse_receipt(pdu.payload, receipted_message_id=receipted_id,
                                message_state=pdu.message_state)
        if receipt is None:
            log.warning("smsc=%s receipt without a message id ignored (esm_class=0x%02X)",
                        self.name, pdu.esm_class)
            return None
        if log.isEnabledFor(logging.DEBUG):
            log.debug("smsc=%s receipt smsc_id=%s stat=%s", self.name, receipt.message_id,
                      receipt.stat)
        return self._on_receipt(self.name, receipt)

    def _decode(self, body: bytes, data_coding: int) -> str:
        try:
            return decode_text(body, data_coding)
        except Exception as exc:
            log.warning("smsc=%s MO data_coding=0x%02X undecodable (%s); read as Latin-1",
                        self.name, data_coding, exc)
            return body.decode("latin-1")

    async def _deliver_mo(self, pdu: codec.DeliverSm) -> None:
        """Hand an inbound SMS over, a part of a concatenated one as that part (`concat`):
        the store puts the parts together, whichever bind or instance each came through, and
        keeps them across a restart; the SMSC gets its deliver_sm_resp once the part is
        stored."""
        body = pdu.payload
        info: tuple[int, int, int] | None = None
        if pdu.esm_class & UDHI:
            udh, body = reassembly.split_udh(pdu.payload)
            info = reassembly.concat_info(udh)
        if info is None:
            ref = pdu.tlv_int("sar_msg_ref_num")
            total = pdu.tlv_int("sar_total_segments")
            part = pdu.tlv_int("sar_segment_seqnum")
            if ref is not None and total is not None and part is not None:
                info = (ref, total, part)
        if info is not None and not (info[1] > 1 and 1 <= info[2] <= info[1]):
            info = None  # impossible numbering: a message by itself
        await self._on_mo(MoMessage(
            smsc=self.name, source=pdu.source, destination=pdu.destination,
            text=self._decode(body, pdu.data_coding), data_coding=pdu.data_coding,
            received_at=time.time(), concat=info))
        log.info("smsc=%s MO received%s, data_coding=0x%02X", self.name,
                 f" (part {info[2]}/{info[1]} ref={info[0]})" if info else "", pdu.data_coding)
