"""The built-in SMSC simulator: a real SMPP 3.4 server on loopback (asyncio).

One task per session reads frames with `readexactly` and answers synchronously; answers are
appended to a per-session buffer that is written once per event-loop turn (all PDUs that arrived
in one TCP read are answered with one write). Receipts and delayed responses sit in time-ordered
deques served by a single `call_later` timer each (no task or timer per message).

Decoding is the simulator's own (bridge.simulator.pdu / .text): it imports neither smpplib nor
bridge.core, so the bridge's encoder and this decoder cannot share a bug.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import re
import socket
import ssl
import time
from dataclasses import dataclass
from typing import Callable, Deque, Literal, Sequence

from bridge.config import SimulatorConfig
from bridge.simulator import pdu as P
from bridge.simulator.text import (
    ConcatInfo,
    concat_udh8,
    concat_udh16,
    decode_text,
    encode_gsm7,
    encode_latin1,
    encode_ucs2,
    is_gsm7,
    parse_udh,
    split_gsm7,
    split_octets,
    split_ucs2,
)

__all__ = ["SmscSimulator", "ReceivedSubmit", "ReceivedMessage", "ConcatInfo", "run_simulator",
           "Verdict"]

log = logging.getLogger("bridge.simulator")

Verdict = Literal["ok", "throttle", "error", "nack", "silent", "drop"]
BindMode = Literal["transmitter", "receiver", "transceiver"]

_BIND_MODES: dict[int, BindMode] = {
    P.BIND_TRANSMITTER: "transmitter", P.BIND_RECEIVER: "receiver",
    P.BIND_TRANSCEIVER: "transceiver",
}
_WRITE_HIGH_WATER = 1 << 20
_MAX_PENDING_DELIVERIES = 200_000
_UNSAFE_RECEIPT_CHARS = re.compile(r"[^A-Za-z0-9 .,!?;:'\"()+\-/%&*#=<>]")
_unpack_header_from = P._HEADER.unpack_from  # → (length, command_id, status, sequence)
_READ_SIZE = 1 << 16
_MAX_PART_THROTTLES = 100_000  # messages whose throttled part the simulator remembers


@dataclass(frozen=True, slots=True)
class ReceivedSubmit:
    """One submit_sm the simulator accepted (answered or about to be answered with status 0)."""
    sequence: int
    message_id: str
    system_id: str
    source: str
    source_ton: int
    source_npi: int
    destination: str
    dest_ton: int
    dest_npi: int
    esm_class: int
    protocol_id: int
    priority_flag: int
    schedule_delivery_time: str
    validity_period: str
    registered_delivery: int
    data_coding: int
    short_message: bytes
    udh: bytes               # the whole UDH incl. its length octet; b"" without UDHI
    user_data: bytes         # short_message (or message_payload) after the UDH
    concat: ConcatInfo | None
    tlvs: dict[int, bytes]
    text: str                # user_data decoded per data_coding by the simulator's own decoder
    received_at: float       # time.time()
    service_type: str = ""


@dataclass(frozen=True, slots=True)
class ReceivedMessage:
    """One message as the SMSC received it, for checking what a dispatcher achieved: a
    single-part submit, or every accepted part of a concatenated one (same source,
    destination, reference and total), in arrival order, resends included."""
    source: str
    destination: str
    ref_kind: Literal[8, 16, "sar"] | None  # where the reference came from; None: one part
    ref: int | None
    total: int
    parts: tuple[ReceivedSubmit, ...]
    arrivals: dict[int, int]  # part number → how many times it was accepted
    complete: bool            # every part 1..total arrived at least once
    spread_s: float           # from the first part's arrival to the last's

    @property
    def text(self) -> str:
        """The parts' texts in part order, each part's first arrival; gaps left out."""
        first: dict[int, str] = {}
        for part in self.parts:
            first.setdefault(_part_number(part), part.text)
        return "".join(first[seq] for seq in sorted(first))


class _Session:
    """One TCP connection."""

    __slots__ = ("sim", "reader", "writer", "transport", "peer", "mode", "system_id", "out",
                 "flush_scheduled", "seq", "unacked", "in_flight", "submits_seen", "pdus",
                 "dead", "closed", "unbinding", "delayed", "delayed_timer", "rx", "idle_timer",
                 "task", "loop")

    def __init__(self, sim: SmscSimulator, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter) -> None:
        self.sim = sim
        self.reader = reader
        self.writer = writer
        self.transport = writer.transport
        self.loop = asyncio.get_running_loop()
        self.peer: str = str(writer.get_extra_info("peername"))
        self.mode: BindMode | None = None
        self.system_id = ""
        self.out: list[bytes] = []
        self.flush_scheduled = False
        self.seq = 0
        self.unacked: dict[int, bytes] = {}  # deliver_sm sequence → body, awaiting its resp
        self.in_flight = 0
        self.submits_seen = 0
        self.pdus = 0
        self.dead = False
        self.closed = False
        self.unbinding = False
        self.delayed: Deque[tuple[float, bytes, ReceivedSubmit, int, bool]] = collections.deque()
        self.delayed_timer: asyncio.TimerHandle | None = None
        self.rx = True
        self.idle_timer: asyncio.TimerHandle | None = None
        self.task: asyncio.Task[None] | None = None

    @property
    def can_receive(self) -> bool:
        return (self.mode == "receiver" or self.mode == "transceiver") and not self.closed \
            and not self.dead

    @property
    def can_transmit(self) -> bool:
        return self.mode == "transmitter" or self.mode == "transceiver"

    def next_seq(self) -> int:
        self.seq = self.seq + 1 if self.seq < 0x7FFFFFFF else 1
        return self.seq

    def send(self, data: bytes) -> None:
        if self.closed or self.dead:
            return
        self.out.append(data)
        if not self.flush_scheduled:
            self.flush_scheduled = True
            self.loop.call_soon(self.flush)

    def flush(self) -> None:
        self.flush_scheduled = False
        if self.out:
            data = b"".join(self.out) if len(self.out) > 1 else self.out[0]
            self.out.clear()
            if not self.closed and not self.transport.is_closing():
                self.transport.write(data)

    def deliver(self, body: bytes) -> None:
        """Send a deliver_sm and remember it until its deliver_sm_resp arrives."""
        seq = self.next_seq()
        self.unacked[seq] = body
        self.send(P.encode_pdu(P.DELIVER_SM, 0, seq, body))

    def close(self) -> None:
        """Write what is buffered, then close."""
        if self.closed:
            return
        self.flush()
        self.closed = True
        self.transport.close()

    def cancel_timers(self) -> None:
        for handle in (self.delayed_timer, self.idle_timer):
            if handle is not None:
                handle.cancel()
        self.delayed_timer = self.idle_timer = None
        self.delayed.clear()


class SmscSimulator:
    """SMPP 3.4 SMSC on loopback. Counters and `submits` are public for tests and benchmarks;
    `messages()` groups the submits into messages, to check a dispatcher's outcome.

    `submits` keeps the newest `history` accepted submits (None = all; trimmed in batches; about
    0.8 KB each), `accepted` counts them all. `enquire_link_interval` > 0: the simulator sends enquire_link on
    a session idle that long. `id_base`: the first message id (default: time-based with 0xA in
    the top nibble, so hex ids always hold a letter and never read as decimal). `strict`:
    refuse an alphanumeric sender with TON 1 or above 11 characters, an empty destination.

    Hooks for misbehaving variants (bridge.simulator.misbehaving): `bind_status`,
    `submit_verdict`, `content_verdict`, `after_response`, `format_receipt`, `format_submit_id`,
    `format_receipt_id`, and the attributes `dead_after`, `receipt_first`, `receipt_first_lag_s`.
    """

    def __init__(self, config: SimulatorConfig, *, ssl_context: ssl.SSLContext | None = None,
                 enquire_link_interval: float = 0.0, id_base: int | None = None,
                 strict: bool = True, history: int | None = 100_000) -> None:
        self.config = config
        self.history = history
        self.ssl_context = ssl_context
        self.enquire_link_interval = enquire_link_interval
        self.strict = strict
        self.port = 0
        self.submits: list[ReceivedSubmit] = []
        self.accepted = 0  # every submit_sm accepted, including those trimmed from `submits`
        self.throttled = 0
        self.errored = 0  # submits answered with config.error_status
        self.binds = 0
        self.bind_failures = 0
        self.connections = 0
        self.unbinds_received = 0
        self.unbinds_sent = 0
        self.unbind_resps_received = 0
        self.max_in_flight = 0
        self.rejected: list[tuple[int, int]] = []  # (sequence, status) of refused submit_sm
        self.nacks_sent = 0
        self.nacks_received = 0
        self.silenced = 0
        self.receipts_sent = 0
        self.mo_sent = 0
        self.deliver_sm_errors: list[int] = []
        self.enquire_links_received = 0
        self.enquire_links_sent = 0
        self.enquire_link_resps_received = 0
        self.drops = 0
        self.malformed = 0
        # hooks used by misbehaving variants
        self.dead_after = 0
        self.receipt_first = False
        self.receipt_first_lag_s = 0.02
        self.nack_status = P.ESME_RSYSERR

        if id_base is None:
            # 0xA in the top nibble keeps a letter in every hex id (so hex and decimal forms
            # never coincide); milliseconds below keep ids unique across restarts.
            id_base = (0xA << 52) | ((int(time.time() * 1000) & ((1 << 41) - 1)) << 11)
        self._next_id = id_base
        self._submit_count = 0
        self._receipt_count = 0
        self._mo_ref = 0
        self._reply_count = 0
        self._replies: Deque[tuple[float, ReceivedSubmit]] = collections.deque()
        self._reply_timer: asyncio.TimerHandle | None = None
        self._dropped_once = False
        self._first_parts_answered = 0  # OKs of part 1 of concatenated messages
        # (source, destination, ref kind, ref) → part throttle_part's throttles so far
        self._part_throttles: dict[tuple[str, str, int | str, int], int] = {}
        self._server: asyncio.AbstractServer | None = None
        self._sessions: set[_Session] = set()
        self._receivers: dict[str, list[_Session]] = {}
        self._rr = 0
        self._pending: dict[str, Deque[bytes]] = {}  # deliver_sm bodies awaiting a receiver
        self._receipts: Deque[tuple[float, ReceivedSubmit, int, _Session]] = collections.deque()
        self._receipt_timer: asyncio.TimerHandle | None = None
        self._by_id: dict[str, tuple[int, ReceivedSubmit]] = {}
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._date_cache: dict[int, str] = {}
        self._loop: asyncio.AbstractEventLoop | None = None

    # ------------------------------------------------------------------ lifecycle

    async def start(self, port: int | None = None) -> int:
        """Listen on config.host:config.port (0 = ephemeral), or on `port` when given (e.g.
        `await sim.start(port=sim.port)` after `stop()` to play an SMSC restart); returns the
        actual port."""
        self._loop = asyncio.get_running_loop()
        self._server = await asyncio.start_server(
            self._on_connect, self.config.host, self.config.port if port is None else port,
            ssl=self.ssl_context,
            reuse_address=True, limit=P.MAX_PDU_LEN)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def stop(self) -> None:
        """Close the listener and every session; pending receipts and replies are discarded."""
        if self._server is not None:
            self._server.close()
        if self._receipt_timer is not None:
            self._receipt_timer.cancel()
            self._receipt_timer = None
        self._receipts.clear()
        if self._reply_timer is not None:
            self._reply_timer.cancel()
            self._reply_timer = None
        self._replies.clear()
        tasks = []
        for session in list(self._sessions):
            session.cancel_timers()
            session.closed = True
            session.transport.abort()
            if session.task is not None and session.task is not asyncio.current_task():
                session.task.cancel()
                tasks.append(session.task)
        if tasks:
            await asyncio.wait(tasks, timeout=5.0)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None
        for _, fut in self._waiters:
            if not fut.done():
                fut.cancel()
        self._waiters.clear()

    # ------------------------------------------------------------------ public helpers

    @property
    def sessions(self) -> int:
        return len(self._sessions)

    @property
    def bound_sessions(self) -> list[tuple[str, str]]:
        """(mode, system_id) of every bound session."""
        return [(s.mode, s.system_id) for s in self._sessions if s.mode is not None]

    @property
    def unacked_deliveries(self) -> int:
        """deliver_sm sent (receipts and MO) whose deliver_sm_resp has not arrived."""
        return sum(len(s.unacked) for s in self._sessions)

    @property
    def pending_deliveries(self) -> int:
        """deliver_sm waiting for a receiver/transceiver bind (none bound, or re-queued after
        a session closed with them unacknowledged)."""
        return sum(len(q) for q in self._pending.values())

    def submit(self, message_id: str) -> ReceivedSubmit | None:
        found = self._by_id.get(message_id)
        return found[1] if found else None

    def texts_to(self, destination: str) -> list[str]:
        """Message texts to one destination in order of their first part: concatenated parts
        joined by (source, ref kind, ref, total) whether UDH 8/16-bit or SAR; a part sent again
        (same number, same text) is ignored, a reference reused after its message was complete
        starts a new message; messages still missing a part are left out."""
        groups: list[tuple[tuple[object, ...] | None, dict[int, str], int]] = []
        open_groups: dict[tuple[object, ...], int] = {}
        for s in self.submits:
            if s.destination != destination:
                continue
            c = s.concat
            if c is None or c.total <= 1:
                groups.append((None, {1: s.text}, 1))
                continue
            key: tuple[object, ...] = (s.source, c.ref_bits, c.ref, c.total)
            index = open_groups.get(key)
            if index is not None:
                parts = groups[index][1]
                if len(parts) >= c.total:
                    if parts.get(c.seq) == s.text:
                        continue  # a part sent again after its message was complete
                    index = None  # a new message reusing the reference
            if index is None:
                open_groups[key] = len(groups)
                groups.append((key, {c.seq: s.text}, c.total))
            else:
                groups[index][1].setdefault(c.seq, s.text)
        texts = []
        for _, parts, total in groups:
            if len(parts) == total:
                texts.append("".join(parts[i] for i in range(1, total + 1)))
        return texts

    def messages(self, destination: str | None = None) -> list[ReceivedMessage]:
        """The accepted submits still in `submits` (to `destination` only, when given) as
        messages, in order of each one's first arrival. Parts are grouped by source,
        destination, reference and total alone, so a message sent again with a new
        reference is a second message, and one sent again with the same reference counts
        its parts twice."""
        groups: dict[tuple[object, ...], list[ReceivedSubmit]] = {}
        for s in self.submits:
            if destination is not None and s.destination != destination:
                continue
            c = s.concat
            key: tuple[object, ...] = ((s.source, s.destination, c.ref_bits, c.ref, c.total)
                                       if c is not None and c.total > 1 else (s.message_id,))
            groups.setdefault(key, []).append(s)
        return [_message(parts) for parts in groups.values()]

    async def wait_for_submits(self, n: int, timeout: float = 10.0) -> None:
        """Until at least n submits were accepted; TimeoutError otherwise."""
        if self.accepted >= n:
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (n, fut)
        self._waiters.append(entry)
        try:
            await asyncio.wait_for(fut, timeout)
        finally:
            if entry in self._waiters:
                self._waiters.remove(entry)

    async def wait_until(self, predicate: Callable[[], bool], timeout: float = 10.0) -> None:
        """Poll predicate every 5 ms until true; TimeoutError after timeout."""
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() >= deadline:
                raise TimeoutError(f"condition not met within {timeout} s")
            await asyncio.sleep(0.005)

    async def wait_for_binds(self, n: int = 1, timeout: float = 10.0,
                             receivers: bool = False) -> None:
        """Until n sessions are bound (receiver-capable ones only when receivers=True)."""
        def ready() -> bool:
            live = [s for s in self._sessions if s.mode is not None and not s.closed]
            if receivers:
                live = [s for s in live if s.can_receive]
            return len(live) >= n
        await self.wait_until(ready, timeout)

    # ------------------------------------------------------------------ hooks

    def bind_status(self, bind: P.Bind) -> int:
        if bind.system_id != self.config.system_id:
            return P.ESME_RINVSYSID
        if bind.password != self.config.password:
            return P.ESME_RINVPASWD
        return P.ESME_ROK

    def submit_verdict(self, session: _Session, n_total: int, n_session: int) -> Verdict:
        """What to do with the n-th submit_sm (counted after bind, from 1; n_total over every
        session, whatever the answer). One verdict a submit, so when several counters fall on
        the same one the first of drop_after, throttle_every, error_every, silent_every wins:
        a test can tell from the configuration alone what each submit gets."""
        cfg = self.config
        if cfg.drop_after and not self._dropped_once and n_total >= cfg.drop_after:
            self._dropped_once = True
            return "drop"
        if cfg.throttle_every and n_total % cfg.throttle_every == 0:
            return "throttle"
        if cfg.error_every and n_total % cfg.error_every == 0:
            return "error"
        if cfg.silent_every and n_total % cfg.silent_every == 0:
            return "silent"
        return "ok"

    def content_verdict(self, session: _Session, submit: ReceivedSubmit) -> Verdict:
        """What to do with a submit_sm that `submit_verdict` let through and that decoded, by
        what it holds: part `throttle_part` of a concatenated message is throttled, always or
        only its first `throttle_part_times` arrivals per message (keyed by source,
        destination and reference: a message sent again with a new reference starts afresh)."""
        cfg = self.config
        c = submit.concat
        if not cfg.throttle_part or c is None or c.total <= 1 or c.seq != cfg.throttle_part:
            return "ok"
        if not cfg.throttle_part_times:
            return "throttle"
        key = (submit.source, submit.destination, c.ref_bits, c.ref)
        seen = self._part_throttles.get(key, 0)
        if seen >= cfg.throttle_part_times:
            return "ok"
        self._part_throttles[key] = seen + 1
        if len(self._part_throttles) > _MAX_PART_THROTTLES:
            del self._part_throttles[next(iter(self._part_throttles))]
        return "throttle"

    def after_response(self, session: _Session, submit: ReceivedSubmit) -> None:
        """Called once the submit_sm_resp (status 0) of `submit` is queued for writing."""

    def format_submit_id(self, n: int) -> str:
        return format(n, "x") if self.config.id_format == "hex" else str(n)

    def format_receipt_id(self, n: int) -> str:
        fmt = self.config.receipt_id_format
        if fmt == "hex":
            return format(n, "x")
        if fmt == "padded":
            return f"{n:020d}"
        return str(n)

    def format_receipt(self, submit: ReceivedSubmit | None, receipt_id: str, stat: str,
                       err: str, submit_time: float, done_time: float, *,
                       dlvrd: str | None = None, message_state: int | None = None,
                       text: str | None = None) -> tuple[bytes, dict[int, bytes]]:
        """(short_message, TLVs) of a receipt: SMPP 3.4 Appendix B text + receipted_message_id
        and message_state."""
        snippet = text if text is not None else (submit.text if submit else "")
        body = P.receipt_text(receipt_id, stat, submit_date=self._date10(submit_time),
                              done_date=self._date10(done_time), dlvrd=dlvrd, err=err,
                              text=_UNSAFE_RECEIPT_CHARS.sub("?", snippet[:20]))
        return body.encode("latin-1"), P.receipt_tlvs(receipt_id, stat, message_state)

    def _date10(self, t: float) -> str:
        minute = int(t // 60)
        cached = self._date_cache.get(minute)
        if cached is None:
            if len(self._date_cache) > 256:
                self._date_cache.clear()
            cached = self._date_cache[minute] = time.strftime("%y%m%d%H%M", time.gmtime(t))
        return cached

    # ------------------------------------------------------------------ sessions

    async def _on_connect(self, reader: asyncio.StreamReader,
                          writer: asyncio.StreamWriter) -> None:
        session = _Session(self, reader, writer)
        session.task = asyncio.current_task()
        sock = writer.get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass
        self.connections += 1
        self._sessions.add(session)
        if self.enquire_link_interval > 0:
            session.idle_timer = session.loop.call_later(self.enquire_link_interval,
                                                         self._idle_check, session)
        try:
            await self._read_loop(session)
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError, OSError):
            pass
        except asyncio.CancelledError:
            pass
        except Exception:  # a simulator bug: say so loudly, end only this session
            log.exception("simulator session %s failed", session.peer)
            session.transport.abort()
        finally:
            self._end_session(session)

    async def _read_loop(self, session: _Session) -> None:
        """Read what the socket has (one `read`, not two `readexactly` per PDU) and handle
        every complete PDU in it, in order; a partial one waits for the next read."""
        read = session.reader.read
        transport = session.transport
        handlers = self._handlers
        unpack_from = _unpack_header_from
        buf = bytearray()
        while not session.closed:
            data = await read(_READ_SIZE)
            if not data:
                return  # end of stream
            buf += data
            size = len(buf)
            pos = 0
            while size - pos >= 16:
                length, command_id, status, sequence = unpack_from(buf, pos)
                if length < P.HEADER_LEN or length > P.MAX_PDU_LEN:
                    # The framing cannot be trusted any more: nack and close (§4.3.1).
                    self.malformed += 1
                    session.send(P.generic_nack(sequence, P.ESME_RINVCMDLEN))
                    session.close()
                    return
                if size - pos < length:
                    break
                body = bytes(buf[pos + 16:pos + length]) if length > 16 else b""
                pos += length
                session.rx = True
                if session.dead:
                    continue
                session.pdus += 1
                if self.dead_after and session.pdus > self.dead_after:
                    session.dead = True
                    session.out.clear()
                    continue
                handler = handlers.get(command_id)
                if handler is not None:
                    handler(self, session, command_id, status, sequence, body)
                elif not command_id & P.RESPONSE_BIT:
                    self.nacks_sent += 1
                    session.send(P.generic_nack(sequence, P.ESME_RINVCMDID))
                if session.closed:
                    return
                if transport.get_write_buffer_size() > _WRITE_HIGH_WATER:
                    await session.writer.drain()
            if pos:
                del buf[:pos]

    def _end_session(self, session: _Session) -> None:
        session.cancel_timers()
        session.closed = True
        self._sessions.discard(session)
        if session.mode is not None:
            receivers = self._receivers.get(session.system_id)
            if receivers and session in receivers:
                receivers.remove(session)
        # deliver_sm never acknowledged go to the next receiver (an SMSC retries them).
        if session.unacked:
            queue = self._pending.setdefault(session.system_id, collections.deque())
            queue.extend(session.unacked.values())
            session.unacked.clear()
            self._deliver_pending(session.system_id)
        if not session.transport.is_closing():
            session.transport.close()
        if session.mode is not None:
            log.info("session closed mode=%s system_id=%s peer=%s", session.mode,
                     session.system_id, session.peer)

    def _idle_check(self, session: _Session) -> None:
        if session.closed:
            return
        if not session.rx and session.mode is not None and not session.dead:
            self.enquire_links_sent += 1
            session.send(P.enquire_link(session.next_seq()))
        session.rx = False
        session.idle_timer = session.loop.call_later(self.enquire_link_interval,
                                                     self._idle_check, session)

    # ------------------------------------------------------------------ PDU handlers

    def _on_bind(self, session: _Session, command_id: int, status: int, seq: int,
                 body: bytes) -> None:
        if session.mode is not None:
            session.send(P.encode_bind_resp(command_id, P.ESME_RALYBND, seq, ""))
            return
        try:
            bind = P.decode_bind(command_id, body)
        except P.PduError as exc:
            self.malformed += 1
            session.send(P.encode_bind_resp(command_id, exc.status, seq, ""))
            return
        mode = _BIND_MODES[command_id]
        result = self.bind_status(bind)
        if result:
            self.bind_failures += 1
            log.info("bind refused mode=%s system_id=%s status=0x%02X peer=%s", mode,
                     bind.system_id, result, session.peer)
            session.send(P.encode_bind_resp(command_id, result, seq, ""))
            return
        session.mode = mode
        session.system_id = bind.system_id
        self.binds += 1
        session.send(P.encode_bind_resp(command_id, P.ESME_ROK, seq, self.config.system_id))
        log.info("bind mode=%s system_id=%s peer=%s", mode, bind.system_id, session.peer)
        if session.can_receive:
            self._receivers.setdefault(bind.system_id, []).append(session)
            self._deliver_pending(bind.system_id)

    def _on_submit(self, session: _Session, command_id: int, status: int, seq: int,
                   body: bytes) -> None:
        if not session.can_transmit:
            session.send(P.encode_submit_sm_resp(seq, P.ESME_RINVBNDSTS, ""))
            return
        self._submit_count += 1
        session.submits_seen += 1
        session.in_flight += 1
        if session.in_flight > self.max_in_flight:
            self.max_in_flight = session.in_flight
        verdict = self.submit_verdict(session, self._submit_count, session.submits_seen)
        if verdict != "ok":
            self._apply_verdict(session, seq, verdict)
            return
        n = self._next_id
        message_id = self.format_submit_id(n)
        try:
            submit = self._decode_submit(session, seq, body, message_id)
        except P.PduError as exc:
            session.in_flight -= 1
            self.rejected.append((seq, exc.status))
            session.send(P.encode_submit_sm_resp(seq, exc.status, ""))
            return
        verdict = self.content_verdict(session, submit)
        if verdict != "ok":
            self._apply_verdict(session, seq, verdict)
            return
        self._accept(session, seq, submit, n)

    def _accept(self, session: _Session, seq: int, submit: ReceivedSubmit, n: int) -> None:
        """Record `submit` under id n and answer it (now, or later with response_delay_s)."""
        message_id = submit.message_id
        self._next_id = n + 1
        self.submits.append(submit)
        self._by_id[message_id] = (n, submit)
        self.accepted += 1
        if self.history is not None and len(self.submits) > self.history + self.history // 4 + 1:
            self._trim_history()
        if self._waiters:
            self._wake_waiters()
        resp = P.encode_submit_sm_resp(seq, 0, message_id)
        if self.receipt_first:
            self._receipt_now(submit, n, session)
            self._respond_later(session, self.receipt_first_lag_s, resp, submit, n, False)
        elif self._delays(self._submit_count):
            self._respond_later(session, self.config.response_delay_s, resp, submit, n, True)
        else:
            session.in_flight -= 1
            session.send(resp)
            self._responded(session, submit, n, True)

    def _apply_verdict(self, session: _Session, seq: int, verdict: Verdict) -> None:
        if verdict == "throttle":
            session.in_flight -= 1
            self.throttled += 1
            session.send(P.encode_submit_sm_resp(seq, P.ESME_RTHROTTLED, ""))
        elif verdict == "error":
            session.in_flight -= 1
            self.errored += 1
            session.send(P.encode_submit_sm_resp(seq, self.config.error_status, ""))
        elif verdict == "nack":
            session.in_flight -= 1
            self.nacks_sent += 1
            session.send(P.generic_nack(seq, self.nack_status))
        elif verdict == "silent":
            self.silenced += 1
        elif verdict == "drop":
            self._drop(session, f"after {session.submits_seen} submits")

    def _drop(self, session: _Session, when: str) -> None:
        """Close the connection without unbind; what is already queued for it is written,
        responses still waiting for response_delay_s never are."""
        self.drops += 1
        log.info("dropping connection system_id=%s %s", session.system_id, when)
        session.delayed.clear()
        session.close()

    def _decode_submit(self, session: _Session, seq: int, body: bytes,
                       message_id: str) -> ReceivedSubmit:
        sm = P.decode_sm_body(body)
        if self.strict:
            _check_addresses(sm)
        tlvs = sm.tlvs
        data = sm.short_message
        payload = tlvs.get(P.TAG_MESSAGE_PAYLOAD) if tlvs else None
        if payload is not None:
            if data:
                raise P.PduError("short_message and message_payload both used",
                                 P.ESME_ROPTPARNOTALLWD)
            data = payload
        concat: ConcatInfo | None = None
        if sm.esm_class & 0x40:
            try:
                udh, user_data = parse_udh(data)
            except ValueError as exc:
                raise P.PduError(f"UDH: {exc}", P.ESME_RINVESMCLASS) from None
            udh_raw = udh.raw
            concat = udh.concat
        else:
            udh_raw, user_data = b"", data
        if tlvs and P.TAG_SAR_MSG_REF_NUM in tlvs:
            concat = _sar(tlvs)
        return ReceivedSubmit(
            seq, message_id, session.system_id, sm.source_addr, sm.source_addr_ton, sm.source_addr_npi,
            sm.destination_addr, sm.dest_addr_ton, sm.dest_addr_npi, sm.esm_class,
            sm.protocol_id, sm.priority_flag, sm.schedule_delivery_time, sm.validity_period,
            sm.registered_delivery, sm.data_coding, sm.short_message, udh_raw, user_data,
            concat, tlvs, decode_text(user_data, sm.data_coding), time.time(), sm.service_type)

    def _delays(self, n_total: int) -> bool:
        """Whether the n-th submit's response waits response_delay_s: all of them, or with
        delay_every only every Nth (counted as in submit_verdict), the others answered at once,
        so that a client sees some responses late and out of order."""
        cfg = self.config
        return cfg.response_delay_s > 0 and (not cfg.delay_every
                                             or n_total % cfg.delay_every == 0)

    def _respond_later(self, session: _Session, delay: float, resp: bytes,
                       submit: ReceivedSubmit, n: int, receipt: bool) -> None:
        session.delayed.append((session.loop.time() + delay, resp, submit, n, receipt))
        if session.delayed_timer is None:
            session.delayed_timer = session.loop.call_later(delay, self._flush_delayed, session)

    def _flush_delayed(self, session: _Session) -> None:
        session.delayed_timer = None
        if session.closed:
            return
        loop = session.loop
        now = loop.time() + 0.0005
        queue = session.delayed
        while queue and queue[0][0] <= now:
            _, resp, submit, n, receipt = queue.popleft()
            session.in_flight -= 1
            session.send(resp)
            self._responded(session, submit, n, receipt)
        if queue:
            session.delayed_timer = loop.call_later(max(0.0, queue[0][0] - loop.time()),
                                                    self._flush_delayed, session)

    def _responded(self, session: _Session, submit: ReceivedSubmit, n: int,
                   receipt: bool) -> None:
        if receipt and submit.registered_delivery & 0x03 and self.config.receipts:
            self._receipts.append((session.loop.time() + self.config.receipt_delay_s, submit,
                                   n, session))
            if self._receipt_timer is None:
                self._receipt_timer = session.loop.call_later(
                    self.config.receipt_delay_s, self._flush_receipts)
        self._reply_later(submit)
        self.after_response(session, submit)
        self._drop_between_parts(session, submit)

    def _drop_between_parts(self, session: _Session, submit: ReceivedSubmit) -> None:
        """drop_between_parts = N: the OK of part 1 of the Nth concatenated message (counted at
        these OKs) is the last thing its connection carries, so the client holds a message
        half sent; once, as drop_after, so that the retry can succeed."""
        c = submit.concat
        if not self.config.drop_between_parts or c is None or c.total <= 1 or c.seq != 1:
            return
        self._first_parts_answered += 1
        if self._first_parts_answered == self.config.drop_between_parts:
            self._drop(session, f"after part 1 of {c.total} to {submit.destination}")

    def _trim_history(self) -> None:
        """Keep the newest `history` submits (a long-running embedded simulator stays bounded)."""
        assert self.history is not None
        cut = len(self.submits) - self.history
        for old in self.submits[:cut]:
            self._by_id.pop(old.message_id, None)
        del self.submits[:cut]

    def _wake_waiters(self) -> None:
        count = self.accepted
        for n, fut in self._waiters:
            if count >= n and not fut.done():
                fut.set_result(None)

    def _on_deliver_sm_resp(self, session: _Session, command_id: int, status: int, seq: int,
                            body: bytes) -> None:
        delivered = session.unacked.pop(seq, None)
        if delivered is not None and status:
            self.deliver_sm_errors.append(status)
            if self.config.redeliver_s > 0:  # as an SMSC does: the ESME could not take it yet
                session.loop.call_later(self.config.redeliver_s, self._route,
                                        session.system_id, delivered, None)

    def _on_enquire_link(self, session: _Session, command_id: int, status: int, seq: int,
                         body: bytes) -> None:
        self.enquire_links_received += 1
        session.send(P.enquire_link_resp(seq))

    def _on_enquire_link_resp(self, session: _Session, command_id: int, status: int, seq: int,
                              body: bytes) -> None:
        self.enquire_link_resps_received += 1

    def _on_unbind(self, session: _Session, command_id: int, status: int, seq: int,
                   body: bytes) -> None:
        self.unbinds_received += 1
        log.info("unbind mode=%s system_id=%s peer=%s", session.mode, session.system_id,
                 session.peer)
        session.send(P.unbind_resp(seq))
        session.close()

    def _on_unbind_resp(self, session: _Session, command_id: int, status: int, seq: int,
                        body: bytes) -> None:
        self.unbind_resps_received += 1
        if session.unbinding:
            session.close()

    def _on_generic_nack(self, session: _Session, command_id: int, status: int, seq: int,
                         body: bytes) -> None:
        self.nacks_received += 1
        if session.unacked.pop(seq, None) is not None:
            self.deliver_sm_errors.append(status)

    _handlers: dict[int, Callable[[SmscSimulator, _Session, int, int, int, bytes], None]] = {
        P.BIND_TRANSMITTER: _on_bind, P.BIND_RECEIVER: _on_bind, P.BIND_TRANSCEIVER: _on_bind,
        P.SUBMIT_SM: _on_submit, P.DELIVER_SM_RESP: _on_deliver_sm_resp,
        P.ENQUIRE_LINK: _on_enquire_link, P.ENQUIRE_LINK_RESP: _on_enquire_link_resp,
        P.UNBIND: _on_unbind, P.UNBIND_RESP: _on_unbind_resp, P.GENERIC_NACK: _on_generic_nack,
    }

    def send_unbind(self, session: _Session, close_after: float = 5.0) -> None:
        """The SMSC ends the session: unbind, then close on unbind_resp (or after close_after)."""
        if session.closed or session.unbinding:
            return
        session.unbinding = True
        self.unbinds_sent += 1
        log.info("sending unbind system_id=%s peer=%s", session.system_id, session.peer)
        session.send(P.unbind(session.next_seq()))
        session.loop.call_later(close_after, session.close)

    # ------------------------------------------------------------------ receipts

    def _flush_receipts(self) -> None:
        self._receipt_timer = None
        queue = self._receipts
        if not queue:
            return
        loop = self._loop or asyncio.get_running_loop()
        now = loop.time() + 0.0005
        while queue and queue[0][0] <= now:
            _, submit, n, origin = queue.popleft()
            self._emit_receipt(submit, n, origin)
        if queue:
            self._receipt_timer = loop.call_later(max(0.0, queue[0][0] - loop.time()),
                                                  self._flush_receipts)

    def _receipt_now(self, submit: ReceivedSubmit, n: int, origin: _Session) -> None:
        if submit.registered_delivery & 0x03 and self.config.receipts:
            self._emit_receipt(submit, n, origin)

    def _emit_receipt(self, submit: ReceivedSubmit, n: int, origin: _Session | None) -> None:
        self._receipt_count += 1
        every = self.config.fail_receipt_every
        failed = bool(every) and self._receipt_count % every == 0
        if not failed and submit.registered_delivery & 0x03 == 0x02:
            return  # receipt requested on failure only
        stat, err = ("UNDELIV", "001") if failed else ("DELIVRD", "000")
        short_message, tlvs = self.format_receipt(submit, self.format_receipt_id(n), stat, err,
                                                  submit.received_at, time.time())
        body = _receipt_body(submit, short_message, tlvs)
        self.receipts_sent += 1
        self._route(submit.system_id, body, origin)

    async def send_receipt(self, message_id: str, stat: str = "DELIVRD", *, err: str = "000",
                           dlvrd: str | None = None, message_state: int | None = None,
                           text: str | None = None, receipt_id: str | None = None,
                           short_message: bytes | None = None,
                           tlvs: dict[int, bytes] | None = None) -> None:
        """A receipt for `message_id` (as given in submit_sm_resp) now, formatted like the
        automatic ones unless receipt_id / short_message / tlvs override it. Goes to a
        receiver of the submitter's system_id (of config.system_id for an unknown id)."""
        found = self._by_id.get(message_id)
        submit = found[1] if found else None
        if receipt_id is None:
            receipt_id = self.format_receipt_id(found[0]) if found else message_id
        now = time.time()
        sm, tl = self.format_receipt(submit, receipt_id, stat, err,
                                     submit.received_at if submit else now, now, dlvrd=dlvrd,
                                     message_state=message_state, text=text)
        if short_message is not None:
            sm = short_message
        if tlvs is not None:
            tl = tlvs
        if submit is not None:
            body = _receipt_body(submit, sm, tl)
            system_id = submit.system_id
        else:
            body = P.encode_sm_body(P.ShortMessage(esm_class=0x04, short_message=sm, tlvs=tl))
            system_id = self.config.system_id
        self.receipts_sent += 1
        self._route(system_id, body, None)
        await self._drain_receivers(system_id)

    # ------------------------------------------------------------------ delivery routing

    def _route(self, system_id: str, body: bytes, origin: _Session | None) -> None:
        """Deliver to the origin session when it can receive (transceiver), else round-robin
        over the receivers of system_id; none bound → pending until one binds."""
        if origin is not None and origin.can_receive:
            origin.deliver(body)
            return
        receivers = self._receivers.get(system_id)
        if receivers:
            live = [s for s in receivers if s.can_receive]
            if live:
                self._rr += 1
                live[self._rr % len(live)].deliver(body)
                return
        queue = self._pending.setdefault(system_id, collections.deque())
        if len(queue) >= _MAX_PENDING_DELIVERIES:
            queue.popleft()
        queue.append(body)

    def _deliver_pending(self, system_id: str) -> None:
        queue = self._pending.get(system_id)
        if not queue:
            return
        live = [s for s in self._receivers.get(system_id, ()) if s.can_receive]
        if not live:
            return
        i = 0
        while queue:
            live[i % len(live)].deliver(queue.popleft())
            i += 1

    async def _drain_receivers(self, system_id: str) -> None:
        for session in list(self._receivers.get(system_id, ())):
            session.flush()
            if not session.closed and not session.transport.is_closing():
                try:
                    await session.writer.drain()
                except (ConnectionError, RuntimeError):
                    pass

    # ------------------------------------------------------------------ MO

    async def send_mo(self, source: str, destination: str, text: str, *,
                      encoding: Literal["gsm7", "ucs2", "latin1"] = "gsm7",
                      concat: Literal["udh8", "udh16", "sar", "none"] = "udh8",
                      parts_text: Sequence[str] | None = None,
                      data_coding: int | None = None) -> None:
        """A mobile-originated message to every bound receiver/transceiver session (queued
        until one binds when none is); `mo_bodies` says how it is split."""
        bodies = self.mo_bodies(source, destination, text, encoding=encoding, concat=concat,
                                parts_text=parts_text, data_coding=data_coding)
        system_id = self.config.system_id
        receivers = [s for s in self._sessions if s.can_receive]
        self.mo_sent += 1
        if not receivers:
            queue = self._pending.setdefault(system_id, collections.deque())
            queue.extend(bodies)
            return
        for session in receivers:
            for body in bodies:
                session.deliver(body)
        for session in receivers:
            session.flush()
            if not session.transport.is_closing():
                try:
                    await session.writer.drain()
                except (ConnectionError, RuntimeError):
                    pass

    def mo_bodies(self, source: str, destination: str, text: str, *,
                  encoding: Literal["gsm7", "ucs2", "latin1"] = "gsm7",
                  concat: Literal["udh8", "udh16", "sar", "none"] = "udh8",
                  parts_text: Sequence[str] | None = None,
                  data_coding: int | None = None) -> list[bytes]:
        """The deliver_sm bodies of one MO. Split when too long for one deliver_sm (GSM 160 /
        153, Latin-1 140 / 134, UCS2 70 / 67 characters; 16-bit UDH one octet less), escape
        pairs and surrogate pairs kept whole; `parts_text` gives the parts explicitly.
        concat="none" sends a long text whole in message_payload. A leading '+' on a number is
        dropped (TON 1 numbers carry none in SMPP)."""
        encode: Callable[[str], bytes]
        if encoding == "gsm7":
            dc, encode, single = 0x00, encode_gsm7, 160
        elif encoding == "latin1":
            dc, encode, single = 0x03, encode_latin1, 140
        elif encoding == "ucs2":
            dc, encode, single = 0x08, encode_ucs2, 140
        else:
            raise ValueError(f"unknown encoding {encoding!r}")
        if data_coding is not None:
            dc = data_coding
        udh16 = concat == "udh16"
        if encoding == "gsm7":
            per_part = 152 if udh16 else 153
        elif encoding == "ucs2":
            per_part = 132 if udh16 else 134
        else:
            per_part = 133 if udh16 else 134
        if parts_text is not None:
            parts = [encode(p) for p in parts_text]
        else:
            whole = encode(text)
            if len(whole) <= single or concat == "none":
                parts = [whole]
            elif encoding == "gsm7":
                parts = split_gsm7(text, per_part)
            elif encoding == "ucs2":
                parts = split_ucs2(text, per_part)
            else:
                parts = split_octets(whole, per_part)
        src, src_ton, src_npi = _mo_address(source)
        dst, dst_ton, dst_npi = _mo_address(destination)
        bodies: list[bytes] = []
        total = len(parts)
        self._mo_ref = (self._mo_ref + 1) & 0xFFFF
        ref = self._mo_ref
        for i, part in enumerate(parts, 1):
            udh = b""
            tlvs: dict[int, bytes] = {}
            if total > 1 and concat == "udh8":
                udh = concat_udh8(ref & 0xFF, total, i)
            elif total > 1 and concat == "udh16":
                udh = concat_udh16(ref, total, i)
            elif total > 1 and concat == "sar":
                tlvs = {P.TAG_SAR_MSG_REF_NUM: ref.to_bytes(2, "big"),
                        P.TAG_SAR_TOTAL_SEGMENTS: bytes((total,)),
                        P.TAG_SAR_SEGMENT_SEQNUM: bytes((i,))}
            pdu = P.build_mo(0, source=src, destination=dst, user_data=part, data_coding=dc,
                             udh=udh, source_ton=src_ton, source_npi=src_npi, dest_ton=dst_ton,
                             dest_npi=dst_npi, tlvs=tlvs)
            bodies.append(pdu[P.HEADER_LEN:])
        return bodies

    def _reply_later(self, submit: ReceivedSubmit) -> None:
        """Every `reply_every`th message (counted at its last part) is answered by its handset:
        an MO from its destination to its sender, twice the receipt delay after the submit (so
        after its receipt), to the submitter's receivers (queued until one binds)."""
        every = self.config.reply_every
        if not every or (submit.concat is not None and submit.concat.seq != submit.concat.total):
            return
        self._reply_count += 1
        if self._reply_count % every:
            return
        loop = self._loop or asyncio.get_running_loop()
        self._replies.append((loop.time() + 2 * self.config.receipt_delay_s, submit))
        if self._reply_timer is None:
            self._reply_timer = loop.call_later(2 * self.config.receipt_delay_s,
                                                self._flush_replies)

    def _flush_replies(self) -> None:
        self._reply_timer = None
        loop = self._loop or asyncio.get_running_loop()
        now = loop.time() + 0.0005
        while self._replies and self._replies[0][0] <= now:
            _, submit = self._replies.popleft()
            number = submit.destination
            source = f"+{number}" if submit.dest_ton == 1 and number.isdigit() else number
            text = self.config.reply_text
            for body in self.mo_bodies(source, submit.source, text,
                                       encoding="gsm7" if is_gsm7(text) else "ucs2"):
                self._route(submit.system_id, body, None)
            self.mo_sent += 1
        if self._replies:
            self._reply_timer = loop.call_later(max(0.0, self._replies[0][0] - loop.time()),
                                                self._flush_replies)


# ------------------------------------------------------------------ helpers

def _sar(tlvs: dict[int, bytes]) -> ConcatInfo:
    try:
        ref = P.tlv_int(tlvs[P.TAG_SAR_MSG_REF_NUM])
        total = P.tlv_int(tlvs[P.TAG_SAR_TOTAL_SEGMENTS])
        seq = P.tlv_int(tlvs[P.TAG_SAR_SEGMENT_SEQNUM])
    except KeyError:
        raise P.PduError("SAR TLVs incomplete", 0xC3) from None  # ESME_RMISSINGOPTPARAM
    if total == 0 or seq == 0 or seq > total:
        raise P.PduError(f"SAR segment {seq} of {total}", 0xC4)  # ESME_RINVOPTPARAMVAL
    return ConcatInfo(ref, total, seq, "sar")


def _part_number(submit: ReceivedSubmit) -> int:
    c = submit.concat
    return c.seq if c is not None and c.total > 1 else 1


def _message(parts: list[ReceivedSubmit]) -> ReceivedMessage:
    """The ReceivedMessage of one group of `SmscSimulator.messages`."""
    first = parts[0]
    c = first.concat if first.concat is not None and first.concat.total > 1 else None
    total = c.total if c is not None else 1
    arrivals = dict(sorted(collections.Counter(_part_number(p) for p in parts).items()))
    return ReceivedMessage(
        first.source, first.destination, c.ref_bits if c else None, c.ref if c else None,
        total, tuple(parts), arrivals, all(seq in arrivals for seq in range(1, total + 1)),
        parts[-1].received_at - first.received_at)


def _check_addresses(sm: P.ShortMessage) -> None:
    """What a strict SMSC refuses: an alphanumeric sender with TON 1 (international), an
    alphanumeric sender above 11 characters, an empty destination."""
    source = sm.source_addr
    if sm.source_addr_ton == 1 and not source.lstrip("+").isdigit():
        raise P.PduError(f"source {source!r} with TON 1 is not a number", P.ESME_RINVSRCADR)
    if sm.source_addr_ton == 5 and len(source) > 11:
        raise P.PduError(f"alphanumeric source {source!r} above 11 characters",
                         P.ESME_RINVSRCADR)
    if not sm.destination_addr:
        raise P.PduError("empty destination", P.ESME_RINVDSTADR)


def _receipt_body(submit: ReceivedSubmit, short_message: bytes,
                  tlvs: dict[int, bytes]) -> bytes:
    """deliver_sm body of a receipt: from the handset (original destination) to the original
    sender, esm_class 0x04, data_coding 0."""
    parts = [b"\x00", bytes((submit.dest_ton, submit.dest_npi)),
             submit.destination.encode("latin-1"), b"\x00",
             bytes((submit.source_ton, submit.source_npi)), submit.source.encode("latin-1"),
             b"\x00\x04\x00\x00\x00\x00\x00\x00\x00\x00"]
    if len(short_message) > P.MAX_SHORT_MESSAGE:
        tlvs = {**tlvs, P.TAG_MESSAGE_PAYLOAD: short_message}
        short_message = b""
    parts += (bytes((len(short_message),)), short_message)
    if tlvs:
        parts.append(P.encode_tlvs(tlvs))
    return b"".join(parts)


def _mo_address(number: str) -> tuple[str, int, int]:
    digits = number[1:] if number.startswith("+") else number
    if digits.isdigit():
        if len(digits) <= 6:
            return digits, 3, 0  # short code
        return digits, 1, 1
    return number, 5, 0


async def run_simulator(config: SimulatorConfig) -> None:
    """Serve until cancelled, logging one line per bind / unbind."""
    sim = SmscSimulator(config)
    port = await sim.start()
    log.info("SMSC simulator listening on %s:%d system_id=%s", config.host, port,
             config.system_id)
    try:
        await asyncio.Event().wait()
    finally:
        await sim.stop()
        log.info("SMSC simulator stopped: %d binds, %d submits", sim.binds, len(sim.submits))
