"""The SMSC simulator over real TCP on 127.0.0.1 (port 0), driven by a small test client written
here with plain asyncio and hand-built / codec-built PDUs."""

from __future__ import annotations

import asyncio
import logging
import re
import ssl
import struct
from dataclasses import replace
from typing import Any, AsyncIterator, Awaitable, Callable

import pytest

from bridge.config import SimulatorConfig
from bridge.simulator import (
    BindRefusingSimulator,
    DeadPeerSimulator,
    DroppingSimulator,
    GenericNackSimulator,
    ReceiptBeforeResponseSimulator,
    ReceiptFormatSimulator,
    SilentSubmitSimulator,
    SmscSimulator,
    ThrottlingSimulator,
    UnbindingSimulator,
    run_simulator,
)
from bridge.simulator import pdu as P
from bridge.simulator.text import ConcatInfo, decode_gsm7, decode_ucs2, parse_udh

HEADER = struct.Struct(">IIII")
TIMEOUT = 5.0

# ------------------------------------------------------------------ test client


class Client:
    """A minimal ESME: one reader task; responses matched to requests by sequence number;
    deliver_sm queued (and acknowledged unless auto_ack=False); server enquire_link and
    unbind answered."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 auto_ack: bool) -> None:
        self.reader = reader
        self.writer = writer
        self.auto_ack = auto_ack
        self.seq = 0
        self.pending: dict[int, asyncio.Future[tuple[P.Header, bytes]]] = {}
        self.deliveries: asyncio.Queue[tuple[P.Header, P.ShortMessage]] = asyncio.Queue()
        self.received: list[P.Header] = []  # every PDU in arrival order
        self.closed = asyncio.Event()
        self.task = asyncio.ensure_future(self._read())

    @classmethod
    async def connect(cls, port: int, *, ssl_context: ssl.SSLContext | None = None,
                      auto_ack: bool = True) -> Client:
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=ssl_context,
            server_hostname="127.0.0.1" if ssl_context else None)
        return cls(reader, writer, auto_ack)

    async def _read(self) -> None:
        try:
            while True:
                head = await self.reader.readexactly(16)
                header = P.decode_header(head)
                body = await self.reader.readexactly(header.length - 16)
                self.received.append(header)
                cid = header.command_id
                if cid == P.DELIVER_SM:
                    self.deliveries.put_nowait((header, P.decode_sm_body(body)))
                    if self.auto_ack:
                        self.writer.write(P.deliver_sm_resp(header.sequence))
                elif cid == P.ENQUIRE_LINK:
                    self.writer.write(P.enquire_link_resp(header.sequence))
                elif cid == P.UNBIND:
                    self.writer.write(P.unbind_resp(header.sequence))
                elif cid & P.RESPONSE_BIT:
                    fut = self.pending.pop(header.sequence, None)
                    if fut is not None and not fut.done():
                        fut.set_result((header, body))
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self.closed.set()
            for fut in self.pending.values():
                if not fut.done():
                    fut.set_exception(ConnectionError("closed"))

    def next_seq(self) -> int:
        self.seq += 1
        return self.seq

    def send_raw(self, data: bytes) -> None:
        self.writer.write(data)

    def request(self, data: bytes) -> asyncio.Future[tuple[P.Header, bytes]]:
        """Send a PDU (its sequence read from its header) and return the future response."""
        seq = HEADER.unpack_from(data)[3]
        fut: asyncio.Future[tuple[P.Header, bytes]] = asyncio.get_running_loop().create_future()
        self.pending[seq] = fut
        self.writer.write(data)
        return fut

    async def call(self, data: bytes, timeout: float = TIMEOUT) -> tuple[P.Header, bytes]:
        return await asyncio.wait_for(self.request(data), timeout)

    async def bind(self, command_id: int = P.BIND_TRANSCEIVER, system_id: str = "bridge",
                   password: str = "secret") -> int:
        header, _ = await self.call(P.encode_bind(self.next_seq(),
                                                  P.Bind(command_id, system_id, password)))
        assert header.command_id == command_id | P.RESPONSE_BIT
        return header.status

    def submit_nowait(self, **fields: Any) -> asyncio.Future[tuple[P.Header, bytes]]:
        return self.request(P.encode_submit_sm(self.next_seq(), make_sm(**fields)))

    async def submit(self, **fields: Any) -> tuple[int, str]:
        header, body = await asyncio.wait_for(self.submit_nowait(**fields), TIMEOUT)
        assert header.command_id == P.SUBMIT_SM_RESP
        return header.status, P.decode_submit_sm_resp(body)

    async def delivery(self, timeout: float = TIMEOUT) -> P.ShortMessage:
        return (await asyncio.wait_for(self.deliveries.get(), timeout))[1]

    async def close(self) -> None:
        self.writer.close()
        self.task.cancel()
        try:
            await self.task
        except asyncio.CancelledError:
            pass


def make_sm(**fields: Any) -> P.ShortMessage:
    defaults: dict[str, Any] = dict(source_addr="ACME", source_addr_ton=5, source_addr_npi=0,
                                    destination_addr="447400123456", dest_addr_ton=1,
                                    dest_addr_npi=1, short_message=b"Hello world",
                                    registered_delivery=1)
    defaults.update(fields)
    return P.ShortMessage(**defaults)


def receipt_fields(text: bytes) -> dict[str, str]:
    """Appendix B `key:value` pairs ("submit date" and "done date" have a space)."""
    pattern = re.compile(r"(id|sub|dlvrd|submit date|done date|stat|err|[Tt]ext):(\S*)")
    return {k.lower(): v for k, v in pattern.findall(text.decode("latin-1"))}


# ------------------------------------------------------------------ fixtures

def config(**overrides: Any) -> SimulatorConfig:
    return replace(SimulatorConfig(), enabled=True, host="127.0.0.1", port=0,
                   receipt_delay_s=0.01, **overrides)


Started = Callable[..., Awaitable[SmscSimulator]]


@pytest.fixture
async def start() -> AsyncIterator[Started]:
    """start(**config_overrides) or start(simulator_instance) → a running simulator."""
    sims: list[SmscSimulator] = []

    async def _start(sim: SmscSimulator | None = None, /, **overrides: Any) -> SmscSimulator:
        sim = sim or SmscSimulator(config(**overrides))
        await sim.start()
        sims.append(sim)
        return sim

    yield _start
    for sim in sims:
        await sim.stop()


@pytest.fixture
async def clients() -> AsyncIterator[list[Client]]:
    opened: list[Client] = []
    yield opened
    for c in opened:
        await c.close()


async def bound(sim: SmscSimulator, clients: list[Client], command_id: int = P.BIND_TRANSCEIVER,
                **kw: Any) -> Client:
    c = await Client.connect(sim.port, **kw)
    clients.append(c)
    assert await c.bind(command_id) == 0
    return c


# ------------------------------------------------------------------ bind

async def test_bind_ok_bad_password_bad_system_id(start: Started, clients: list[Client]) -> None:
    sim = await start()
    c = await Client.connect(sim.port)
    clients.append(c)
    assert await c.bind(password="wrong") == P.ESME_RINVPASWD
    assert await c.bind(system_id="nobody") == P.ESME_RINVSYSID
    header, body = await c.call(P.encode_bind(c.next_seq(),
                                              P.Bind(P.BIND_TRANSCEIVER, "bridge", "secret")))
    assert (header.command_id, header.status) == (P.BIND_TRANSCEIVER_RESP, 0)
    assert P.decode_cstring(body, 0)[0] == b"bridge"
    assert P.decode_tlvs(body, 7) == {P.TAG_SC_INTERFACE_VERSION: b"\x34"}
    assert await c.bind() == P.ESME_RALYBND
    assert (sim.binds, sim.bind_failures, sim.connections) == (1, 2, 1)
    assert sim.bound_sessions == [("transceiver", "bridge")]


async def test_submit_before_bind_and_on_a_receiver_bind(start: Started,
                                                         clients: list[Client]) -> None:
    sim = await start()
    c = await Client.connect(sim.port)
    clients.append(c)
    assert await c.submit() == (P.ESME_RINVBNDSTS, "")
    receiver = await bound(sim, clients, P.BIND_RECEIVER)
    assert await receiver.submit() == (P.ESME_RINVBNDSTS, "")
    assert sim.submits == []


# ------------------------------------------------------------------ submit and receipts

@pytest.mark.parametrize("id_format", ["hex", "dec"])
async def test_submit_resp_ids(start: Started, clients: list[Client], id_format: str) -> None:
    sim = await start(id_format=id_format)
    c = await bound(sim, clients)
    answers = [await c.submit(short_message=f"msg {i}".encode()) for i in range(3)]
    ids = [message_id for _, message_id in answers]
    assert all(status == 0 for status, _ in answers)
    assert len(set(ids)) == 3
    if id_format == "hex":
        assert all(re.fullmatch(r"a[0-9a-f]+", i) for i in ids)  # always a letter in hex ids
        assert [int(i, 16) for i in ids] == list(range(int(ids[0], 16), int(ids[0], 16) + 3))
    else:
        assert all(i.isdigit() for i in ids)
        assert [int(i) for i in ids] == list(range(int(ids[0]), int(ids[0]) + 3))
    first = sim.submits[0]
    assert first.message_id == ids[0] and first.system_id == "bridge"
    assert (first.source, first.source_ton, first.source_npi) == ("ACME", 5, 0)
    assert (first.destination, first.dest_ton, first.dest_npi) == ("447400123456", 1, 1)
    assert first.text == "msg 0" and first.registered_delivery == 1 and first.concat is None
    assert [s.sequence for s in sim.submits] == [2, 3, 4]
    assert sim.submit(ids[2]) is sim.submits[2]


async def test_explicit_id_base_gives_predictable_ids(start: Started,
                                                      clients: list[Client]) -> None:
    sim = await start(SmscSimulator(config(id_format="dec"), id_base=1000))
    c = await bound(sim, clients)
    assert await c.submit() == (0, "1000")
    assert await c.submit() == (0, "1001")


@pytest.mark.parametrize(("receipt_id_format", "expected"), [
    ("hex", lambda n: format(n, "x")), ("dec", str), ("padded", lambda n: f"{n:020d}"),
])
async def test_receipt_with_each_id_format(start: Started, clients: list[Client],
                                           receipt_id_format: str,
                                           expected: Callable[[int], str]) -> None:
    sim = await start(receipt_id_format=receipt_id_format)
    c = await bound(sim, clients)
    status, message_id = await c.submit(short_message=b"A message longer than twenty chars")
    assert status == 0
    receipt = await c.delivery()
    receipt_id = expected(int(message_id, 16))
    assert receipt.esm_class == 0x04 and receipt.data_coding == 0
    assert (receipt.source_addr, receipt.source_addr_ton, receipt.source_addr_npi) == \
        ("447400123456", 1, 1)
    assert (receipt.destination_addr, receipt.dest_addr_ton) == ("ACME", 5)
    fields = receipt_fields(receipt.short_message)
    assert fields["id"] == receipt_id
    assert (fields["sub"], fields["dlvrd"], fields["stat"], fields["err"]) == \
        ("001", "001", "DELIVRD", "000")
    assert re.fullmatch(r"\d{10}", fields["submit date"])
    assert re.fullmatch(r"\d{10}", fields["done date"])
    assert receipt.short_message.endswith(b"err:000 text:A message longer tha")  # 20 chars
    assert receipt.tlvs[P.TAG_RECEIPTED_MESSAGE_ID] == receipt_id.encode() + b"\x00"
    assert receipt.tlvs[P.TAG_MESSAGE_STATE] == b"\x02"
    await sim.wait_until(lambda: sim.unacked_deliveries == 0)
    assert sim.receipts_sent == 1


async def test_no_receipt_unless_requested(start: Started, clients: list[Client]) -> None:
    sim = await start()
    c = await bound(sim, clients)
    await c.submit(registered_delivery=0)
    await c.submit(registered_delivery=2)  # failure only: this one is delivered
    status, message_id = await c.submit(registered_delivery=1)
    receipt = await c.delivery()
    assert receipt_fields(receipt.short_message)["id"] == str(int(message_id, 16))
    assert c.deliveries.empty() and sim.receipts_sent == 1


async def test_receipts_off(start: Started, clients: list[Client]) -> None:
    sim = await start(receipts=False)
    c = await bound(sim, clients)
    await c.submit()
    with pytest.raises(TimeoutError):
        await c.delivery(timeout=0.1)


async def test_throttle_every(start: Started, clients: list[Client]) -> None:
    sim = await start(throttle_every=3)
    c = await bound(sim, clients)
    statuses = [(await c.submit())[0] for _ in range(6)]
    assert statuses == [0, 0, 0x58, 0, 0, 0x58]
    assert sim.throttled == 2 and len(sim.submits) == 4


async def test_fail_receipt_every(start: Started, clients: list[Client]) -> None:
    sim = await start(fail_receipt_every=2)
    c = await bound(sim, clients)
    for _ in range(4):
        await c.submit()
    receipts = [await c.delivery() for _ in range(4)]
    stats = [receipt_fields(r.short_message)["stat"] for r in receipts]
    assert stats == ["DELIVRD", "UNDELIV", "DELIVRD", "UNDELIV"]
    failed = receipts[1]
    fields = receipt_fields(failed.short_message)
    assert (fields["err"], fields["dlvrd"]) == ("001", "000")
    assert failed.tlvs[P.TAG_MESSAGE_STATE] == b"\x05"


async def test_drop_after_closes_once(start: Started, clients: list[Client]) -> None:
    sim = await start(drop_after=3)
    c = await bound(sim, clients)
    assert (await c.submit())[0] == 0
    assert (await c.submit())[0] == 0
    third = c.submit_nowait()
    await asyncio.wait_for(c.closed.wait(), TIMEOUT)
    with pytest.raises(ConnectionError):
        await third  # never answered
    assert sim.drops == 1 and len(sim.submits) == 2
    again = await bound(sim, clients)
    assert [(await again.submit())[0] for _ in range(5)] == [0] * 5  # once only
    assert not again.closed.is_set()


async def test_response_delay_and_max_in_flight(start: Started, clients: list[Client]) -> None:
    sim = await start(response_delay_s=0.05)
    c = await bound(sim, clients)
    window = [c.submit_nowait(short_message=f"{i}".encode()) for i in range(10)]
    answers = await asyncio.wait_for(asyncio.gather(*window), TIMEOUT)
    assert [h.status for h, _ in answers] == [0] * 10
    assert sim.max_in_flight == 10
    # answered in order, receipts only after their responses
    ids = [P.decode_submit_sm_resp(body) for _, body in answers]
    assert ids == [s.message_id for s in sim.submits]
    receipts = [await c.delivery() for _ in range(10)]
    assert [receipt_fields(r.short_message)["id"] for r in receipts] == \
        [str(int(i, 16)) for i in ids]


async def test_max_in_flight_without_delay_is_one(start: Started, clients: list[Client]) -> None:
    sim = await start()
    c = await bound(sim, clients)
    await asyncio.gather(*(c.submit_nowait() for _ in range(20)))
    assert sim.max_in_flight == 1


async def test_receipt_goes_to_the_receiver_of_a_transmitter(start: Started,
                                                              clients: list[Client]) -> None:
    sim = await start()
    tx = await bound(sim, clients, P.BIND_TRANSMITTER)
    rx = await bound(sim, clients, P.BIND_RECEIVER)
    _, message_id = await tx.submit()
    receipt = await rx.delivery()
    assert receipt.tlvs[P.TAG_RECEIPTED_MESSAGE_ID] == str(int(message_id, 16)).encode() + b"\0"
    assert tx.deliveries.empty()


async def test_receipts_wait_for_a_receiver_and_unacked_ones_are_redelivered(
        start: Started, clients: list[Client]) -> None:
    sim = await start()
    tx = await bound(sim, clients, P.BIND_TRANSMITTER)
    _, message_id = await tx.submit()
    await sim.wait_until(lambda: sim.pending_deliveries == 1)
    silent_rx = await Client.connect(sim.port, auto_ack=False)
    clients.append(silent_rx)
    assert await silent_rx.bind(P.BIND_RECEIVER) == 0
    first = await silent_rx.delivery()
    assert sim.unacked_deliveries == 1
    await silent_rx.close()  # never acknowledged: the SMSC keeps it
    await sim.wait_until(lambda: sim.pending_deliveries == 1)
    rx = await bound(sim, clients, P.BIND_RECEIVER)
    again = await rx.delivery()
    assert again.short_message == first.short_message
    await sim.wait_until(lambda: sim.unacked_deliveries == 0 and sim.pending_deliveries == 0)


async def test_manual_receipt(start: Started, clients: list[Client]) -> None:
    sim = await start(receipts=False)
    c = await bound(sim, clients)
    _, message_id = await c.submit()
    await sim.send_receipt(message_id, "EXPIRED", err="005")
    receipt = await c.delivery()
    fields = receipt_fields(receipt.short_message)
    assert (fields["stat"], fields["err"], fields["dlvrd"]) == ("EXPIRED", "005", "000")
    assert receipt.tlvs[P.TAG_MESSAGE_STATE] == b"\x03"
    await sim.send_receipt("unknown-id", tlvs={})
    stray = await c.delivery()
    assert receipt_fields(stray.short_message)["id"] == "unknown-id" and stray.tlvs == {}


# ------------------------------------------------------------------ decoding what arrives

async def test_submit_decoding_udh_sar_payload_and_strictness(start: Started,
                                                              clients: list[Client]) -> None:
    sim = await start()
    c = await bound(sim, clients)
    await c.submit(esm_class=0x40, short_message=bytes.fromhex("06080412340202") + b"\x1b\x65",
                   destination_addr="1")
    await c.submit(data_coding=0x08, short_message="😀".encode("utf-16-be"),
                   tlvs={P.TAG_SAR_MSG_REF_NUM: b"\x00\x07", P.TAG_SAR_TOTAL_SEGMENTS: b"\x03",
                         P.TAG_SAR_SEGMENT_SEQNUM: b"\x01"}, destination_addr="2")
    await c.submit(short_message=b"", tlvs={P.TAG_MESSAGE_PAYLOAD: b"x" * 400},
                   destination_addr="3")
    udh16, sar, payload = sim.submits
    assert udh16.concat == ConcatInfo(0x1234, 2, 2, 16)
    assert udh16.udh == bytes.fromhex("06080412340202") and udh16.user_data == b"\x1b\x65"
    assert udh16.text == "€"
    assert sar.concat == ConcatInfo(7, 3, 1, "sar") and sar.text == "😀"
    assert payload.text == "x" * 400 and payload.short_message == b""
    # what a strict SMSC refuses
    assert (await c.submit(source_addr="ACME", source_addr_ton=1))[0] == P.ESME_RINVSRCADR
    assert (await c.submit(source_addr="TWELVECHARSX"))[0] == P.ESME_RINVSRCADR
    assert (await c.submit(destination_addr=""))[0] == P.ESME_RINVDSTADR
    assert (await c.submit(esm_class=0x40, short_message=b"\x09\x00"))[0] == \
        P.ESME_RINVESMCLASS
    assert (await c.submit(tlvs={P.TAG_MESSAGE_PAYLOAD: b"x"}))[0] == P.ESME_ROPTPARNOTALLWD
    assert (await c.submit(tlvs={P.TAG_SAR_MSG_REF_NUM: b"\x01"}))[0] == 0xC3
    assert len(sim.submits) == 3 and len(sim.rejected) == 6


async def test_texts_to_reassembles(start: Started, clients: list[Client]) -> None:
    sim = await start()
    c = await bound(sim, clients)
    to = "447400999999"

    def udh8(ref: int, total: int, seq: int, text: str) -> dict[str, Any]:
        return dict(esm_class=0x40, destination_addr=to,
                    short_message=bytes((5, 0, 3, ref, total, seq)) + text.encode())

    def sar(ref: int, total: int, seq: int, text: str) -> dict[str, Any]:
        return dict(destination_addr=to, short_message=text.encode(),
                    tlvs={P.TAG_SAR_MSG_REF_NUM: ref.to_bytes(2, "big"),
                          P.TAG_SAR_TOTAL_SEGMENTS: bytes((total,)),
                          P.TAG_SAR_SEGMENT_SEQNUM: bytes((seq,))})

    for fields in (
        udh8(1, 2, 1, "Hello "),
        sar(1, 2, 2, "world"),              # same ref number, other kind: not mixed up
        dict(destination_addr=to, short_message=b"single"),
        udh8(1, 2, 2, "there"),
        sar(1, 2, 1, "SAR "),
        udh8(1, 2, 2, "there"),             # a re-sent part is ignored
        dict(destination_addr="447400000000", short_message=b"elsewhere"),
        dict(destination_addr=to, short_message=b"", tlvs={P.TAG_MESSAGE_PAYLOAD: b"p" * 300}),
        udh8(1, 2, 1, "Reused "),           # ref 1 again once the first message is complete
        udh8(1, 2, 2, "ref"),
        udh8(9, 3, 1, "incomplete"),
    ):
        assert (await c.submit(**fields))[0] == 0
    assert sim.texts_to(to) == ["Hello there", "SAR world", "single", "p" * 300, "Reused ref"]
    assert sim.texts_to("447400000000") == ["elsewhere"]


# ------------------------------------------------------------------ MO

async def test_mo_single_gsm(start: Started, clients: list[Client]) -> None:
    sim = await start()
    c = await bound(sim, clients)
    await sim.send_mo("+447400123456", "ACME", "Hi €5 {ok}")
    mo = await c.delivery()
    assert (mo.source_addr, mo.source_addr_ton, mo.source_addr_npi) == ("447400123456", 1, 1)
    assert (mo.destination_addr, mo.dest_addr_ton) == ("ACME", 5)
    assert mo.esm_class == 0 and mo.data_coding == 0
    assert mo.short_message == b"Hi \x1b\x655 \x1b\x28ok\x1b\x29"  # hand-written septets
    assert decode_gsm7(mo.short_message) == "Hi €5 {ok}"
    await sim.wait_until(lambda: sim.unacked_deliveries == 0)


async def test_mo_concatenated_udh8(start: Started, clients: list[Client]) -> None:
    sim = await start()
    c = await bound(sim, clients)
    text = "a" * 152 + "€" + "b" * 10  # the escape pair must not be split
    await sim.send_mo("447400123456", "447400000001", text)
    first, second = await c.delivery(), await c.delivery()
    assert first.esm_class & 0x40 and second.esm_class & 0x40
    ref = first.short_message[3]
    assert first.short_message[:6] == bytes((0x05, 0x00, 0x03, ref, 0x02, 0x01))
    assert second.short_message[:6] == bytes((0x05, 0x00, 0x03, ref, 0x02, 0x02))
    udh1, data1 = parse_udh(first.short_message)
    udh2, data2 = parse_udh(second.short_message)
    assert udh1.concat is not None and udh2.concat is not None
    assert udh1.concat.ref == udh2.concat.ref
    assert (udh1.concat.total, udh1.concat.seq, udh2.concat.seq) == (2, 1, 2)
    assert udh1.raw[:3] == b"\x05\x00\x03"
    assert (len(data1), data2[:2]) == (152, b"\x1b\x65")
    assert decode_gsm7(data1) + decode_gsm7(data2) == text
    assert first.dest_addr_ton == 1


async def test_mo_sar_and_ucs2(start: Started, clients: list[Client]) -> None:
    sim = await start()
    c = await bound(sim, clients)
    text = "😀" + "é" * 80  # UCS2: 2 parts of at most 67 UTF-16 units
    await sim.send_mo("447400123456", "ACME", text, encoding="ucs2", concat="sar")
    parts = [await c.delivery(), await c.delivery()]
    assert [p.data_coding for p in parts] == [8, 8]
    assert [p.esm_class for p in parts] == [0, 0]
    assert parts[0].short_message[:4] == bytes.fromhex("d83dde00")
    assert [p.tlvs[P.TAG_SAR_SEGMENT_SEQNUM] for p in parts] == [b"\x01", b"\x02"]
    assert {p.tlvs[P.TAG_SAR_TOTAL_SEGMENTS] for p in parts} == {b"\x02"}
    assert len({p.tlvs[P.TAG_SAR_MSG_REF_NUM] for p in parts}) == 1
    assert all(len(p.short_message) <= 134 for p in parts)
    assert "".join(decode_ucs2(p.short_message) for p in parts) == text


async def test_mo_explicit_parts_latin1_payload_and_every_receiver(
        start: Started, clients: list[Client]) -> None:
    sim = await start()
    trx = await bound(sim, clients)
    rx = await bound(sim, clients, P.BIND_RECEIVER)
    tx = await bound(sim, clients, P.BIND_TRANSMITTER)
    await sim.send_mo("447400123456", "ACME", "", encoding="latin1", concat="udh16",
                      parts_text=["caf", "é"])
    for client in (trx, rx):
        one, two = await client.delivery(), await client.delivery()
        assert one.data_coding == 3
        ref = one.short_message[3:5]
        assert one.short_message == bytes.fromhex("060804") + ref + b"\x02\x01caf"
        assert two.short_message == bytes.fromhex("060804") + ref + b"\x02\x02\xe9"
    assert tx.deliveries.empty()
    await sim.send_mo("447400123456", "ACME", "z" * 300, concat="none")
    whole = await trx.delivery()
    assert whole.short_message == b"" and whole.tlvs[P.TAG_MESSAGE_PAYLOAD] == b"z" * 300


async def test_every_nth_message_is_answered_by_its_handset(start: Started,
                                                           clients: list[Client]) -> None:
    sim = await start(reply_every=2)
    c = await bound(sim, clients)
    numbers = ["447400123451", "447400123452", "447400123453"]
    for number in numbers:
        await c.submit(destination_addr=number)
    # A two-part message counts once, at its last part: the fourth message, answered.
    for seq in (1, 2):
        await c.submit(destination_addr="447400123454", esm_class=0x40,
                       short_message=bytes((5, 0, 3, 9, 2, seq)) + b"part")
    got = [await c.delivery() for _ in range(2 + 5)]  # two replies, five receipts
    replies = [d for d in got if d.esm_class == 0]
    assert len(got) - len(replies) == 5 and sim.mo_sent == 2
    assert [(r.source_addr, r.source_addr_ton, r.source_addr_npi) for r in replies] == [
        ("447400123452", 1, 1), ("447400123454", 1, 1)]
    assert {(r.destination_addr, r.dest_addr_ton) for r in replies} == {("ACME", 5)}
    assert {decode_gsm7(r.short_message) for r in replies} == {"Thanks, got it."}
    with pytest.raises(TimeoutError):
        await c.delivery(timeout=0.1)


async def test_a_reply_text_beyond_gsm_goes_as_ucs2_even_without_receipts(
        start: Started, clients: list[Client]) -> None:
    sim = await start(reply_every=1, reply_text="Danke ✓", receipts=False)
    tx = await bound(sim, clients, P.BIND_TRANSMITTER)
    rx = await bound(sim, clients, P.BIND_RECEIVER)
    await tx.submit()
    reply = await rx.delivery()
    assert (reply.data_coding, decode_ucs2(reply.short_message)) == (8, "Danke ✓")
    assert tx.deliveries.empty() and rx.deliveries.empty()


@pytest.mark.parametrize(("argv", "problem"), [
    (["--reply-every", "-1"], "--reply-every: must be 0.."),
    (["--reply-text", ""], "--reply-text: must be 1..1000 characters"),
    (["--throttle-every", "-3"], "--throttle-every: must be 0.."),
    (["--id-format", "hex", "--receipt-delay", "-1"], "--receipt-delay: must be 0.."),
])
def test_the_command_line_is_checked_as_the_simulator_table_is(
        argv: list[str], problem: str, capsys: pytest.CaptureFixture[str]) -> None:
    """The options go through the [simulator] table's checks: each refusal names the flag, and
    nothing starts."""
    from bridge.cli import main

    assert main(["simulator", *argv]) == 1
    assert f"config error: {problem}" in capsys.readouterr().err


# ------------------------------------------------------------------ link management, malformed

async def test_enquire_link_unbind_and_idle_enquire_link(start: Started,
                                                         clients: list[Client]) -> None:
    sim = await start(SmscSimulator(config(), enquire_link_interval=0.05))
    c = await bound(sim, clients)
    header, _ = await c.call(P.enquire_link(c.next_seq()))
    assert (header.command_id, header.status) == (P.ENQUIRE_LINK_RESP, 0)
    await sim.wait_until(lambda: sim.enquire_link_resps_received >= 1)
    assert any(h.command_id == P.ENQUIRE_LINK for h in c.received)
    header, _ = await c.call(P.unbind(c.next_seq()))
    assert header.command_id == P.UNBIND_RESP
    await asyncio.wait_for(c.closed.wait(), TIMEOUT)
    assert sim.unbinds_received == 1 and sim.enquire_links_received == 1


@pytest.mark.parametrize("length", [8, 64 * 1024 + 1])
async def test_bad_command_length_is_nacked_then_closed(start: Started, clients: list[Client],
                                                        length: int) -> None:
    sim = await start()
    c = await Client.connect(sim.port)
    clients.append(c)
    nack = c.request(HEADER.pack(length, P.SUBMIT_SM, 0, 77))
    header, _ = await asyncio.wait_for(nack, TIMEOUT)
    assert (header.command_id, header.status, header.sequence) == \
        (P.GENERIC_NACK, P.ESME_RINVCMDLEN, 77)
    await asyncio.wait_for(c.closed.wait(), TIMEOUT)
    assert sim.malformed == 1


async def test_unknown_command_and_truncated_body(start: Started, clients: list[Client]) -> None:
    sim = await start()
    c = await bound(sim, clients)
    header, _ = await c.call(HEADER.pack(20, 0x00000099, 0, c.next_seq()) + b"abcd")
    assert (header.command_id, header.status) == (P.GENERIC_NACK, P.ESME_RINVCMDID)
    truncated = P.encode_submit_sm(0, make_sm())[16:30]
    header, _ = await c.call(HEADER.pack(16 + len(truncated), P.SUBMIT_SM, 0, c.next_seq())
                             + truncated)
    assert (header.command_id, header.status) == (P.SUBMIT_SM_RESP, P.ESME_RINVCMDLEN)
    assert (await c.submit())[0] == 0  # the session goes on


async def test_garbage_does_not_hurt_the_server(start: Started, clients: list[Client]) -> None:
    sim = await start()
    for junk in (b"\x00" * 3, b"\xff" * 40, HEADER.pack(40, P.SUBMIT_SM, 0, 1) + b"\x01" * 10):
        c = await Client.connect(sim.port)
        clients.append(c)
        c.send_raw(junk)
        c.writer.write_eof()
        await asyncio.wait_for(c.closed.wait(), TIMEOUT)
    last = await bound(sim, clients)
    assert (await last.submit())[0] == 0


async def test_history_is_bounded(start: Started, clients: list[Client]) -> None:
    sim = await start(SmscSimulator(config(), history=4))
    c = await bound(sim, clients)
    ids = [(await c.submit(short_message=f"m{i}".encode()))[1] for i in range(8)]
    await sim.wait_for_submits(8, timeout=1)
    assert sim.accepted == 8 and len(sim.submits) < 8
    assert [s.message_id for s in sim.submits] == ids[-len(sim.submits):]
    assert sim.submit(ids[0]) is None and sim.submit(ids[-1]) is sim.submits[-1]


async def test_wait_for_submits_times_out(start: Started) -> None:
    sim = await start()
    with pytest.raises(TimeoutError):
        await sim.wait_for_submits(1, timeout=0.05)


async def test_stop_closes_sessions(clients: list[Client]) -> None:
    sim = SmscSimulator(config())
    await sim.start()
    c = await bound(sim, clients)
    await sim.stop()
    await asyncio.wait_for(c.closed.wait(), TIMEOUT)
    assert sim.sessions == 0


async def test_restart_on_the_same_port(clients: list[Client]) -> None:
    sim = SmscSimulator(config())
    port = await sim.start()
    try:
        c = await bound(sim, clients)
        await sim.stop()
        await asyncio.wait_for(c.closed.wait(), TIMEOUT)
        assert await sim.start(port=port) == port
        again = await bound(sim, clients)
        assert (await again.submit())[0] == 0 and sim.binds == 2
    finally:
        await sim.stop()


async def test_run_simulator_logs_binds(caplog: pytest.LogCaptureFixture,
                                        unused_tcp_port: int) -> None:
    caplog.set_level(logging.INFO, logger="bridge.simulator")
    task = asyncio.ensure_future(run_simulator(replace(config(), port=unused_tcp_port)))
    c: Client | None = None
    for _ in range(200):  # bounded: until the listener is up
        try:
            c = await Client.connect(unused_tcp_port)
            break
        except OSError:
            await asyncio.sleep(0.01)
    assert c is not None
    assert await c.bind() == 0
    await c.call(P.unbind(c.next_seq()))
    await c.close()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    messages = [r.getMessage() for r in caplog.records]
    assert any(m.startswith("bind mode=transceiver system_id=bridge") for m in messages)
    assert any(m.startswith("unbind mode=transceiver") for m in messages)


async def test_tls_listener(start: Started, clients: list[Client]) -> None:
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_ctx)
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)
    sim = await start(SmscSimulator(config(), ssl_context=server_ctx))
    c = await bound(sim, clients, ssl_context=client_ctx)
    status, message_id = await c.submit()
    assert status == 0
    receipt = await c.delivery()
    assert receipt_fields(receipt.short_message)["id"] == str(int(message_id, 16))
    with pytest.raises((ssl.SSLError, ConnectionError)):  # plain TCP is not accepted
        plain = await Client.connect(sim.port)
        clients.append(plain)
        await plain.bind()


# ------------------------------------------------------------------ misbehaving family

async def test_silent_submit(start: Started, clients: list[Client]) -> None:
    sim = await start(SilentSubmitSimulator())
    c = await bound(sim, clients)
    pending = [c.submit_nowait() for _ in range(3)]
    done, _ = await asyncio.wait(pending, timeout=0.2)
    assert not done and sim.silenced == 3 and sim.max_in_flight == 3
    header, _ = await c.call(P.enquire_link(c.next_seq()))
    assert header.command_id == P.ENQUIRE_LINK_RESP


async def test_bind_refusing(start: Started, clients: list[Client]) -> None:
    sim = await start(BindRefusingSimulator(0x0D))
    c = await Client.connect(sim.port)
    clients.append(c)
    assert await c.bind() == 0x0D
    assert await c.bind(P.BIND_RECEIVER) == 0x0D
    assert sim.binds == 0


async def test_generic_nack_every_second(start: Started, clients: list[Client]) -> None:
    sim = await start(GenericNackSimulator(every=2))
    c = await bound(sim, clients)
    answers = [await asyncio.wait_for(c.submit_nowait(), TIMEOUT) for _ in range(4)]
    assert [(h.command_id, h.status) for h, _ in answers] == [
        (P.SUBMIT_SM_RESP, 0), (P.GENERIC_NACK, P.ESME_RSYSERR),
        (P.SUBMIT_SM_RESP, 0), (P.GENERIC_NACK, P.ESME_RSYSERR)]
    assert [h.sequence for h, _ in answers] == [2, 3, 4, 5]


async def test_unbinding(start: Started, clients: list[Client]) -> None:
    sim = await start(UnbindingSimulator(after=2))
    c = await bound(sim, clients)
    assert (await c.submit())[0] == 0
    assert (await c.submit())[0] == 0
    await asyncio.wait_for(c.closed.wait(), TIMEOUT)  # unbind, our unbind_resp, close
    assert [h.command_id for h in c.received][-1] == P.UNBIND
    assert sim.unbinds_sent == 1 and sim.unbind_resps_received == 1


async def test_receipt_before_response(start: Started, clients: list[Client]) -> None:
    sim = await start(ReceiptBeforeResponseSimulator())
    c = await bound(sim, clients)
    status, message_id = await c.submit()
    assert status == 0
    kinds = [h.command_id for h in c.received[1:]]
    assert kinds == [P.DELIVER_SM, P.SUBMIT_SM_RESP]
    receipt = await c.delivery()
    assert receipt_fields(receipt.short_message)["id"] == str(int(message_id, 16))


async def test_dead_peer(start: Started, clients: list[Client]) -> None:
    sim = await start(DeadPeerSimulator(after=2))
    c = await bound(sim, clients)  # PDU 1
    await c.call(P.enquire_link(c.next_seq()))  # PDU 2: still answered
    unanswered = c.request(P.enquire_link(c.next_seq()))
    done, _ = await asyncio.wait([unanswered], timeout=0.2)
    assert not done and not c.closed.is_set()  # no answer, socket still open
    unanswered.cancel()


async def test_dropping_every_session(start: Started, clients: list[Client]) -> None:
    sim = await start(DroppingSimulator(after=2))
    for _ in range(2):
        c = await bound(sim, clients)
        assert (await c.submit())[0] == 0
        second = c.submit_nowait()
        await asyncio.wait_for(c.closed.wait(), TIMEOUT)
        with pytest.raises(ConnectionError):
            await second
    assert sim.drops == 2 and len(sim.submits) == 2


async def test_throttling(start: Started, clients: list[Client]) -> None:
    sim = await start(ThrottlingSimulator(every=2))
    c = await bound(sim, clients)
    assert [(await c.submit())[0] for _ in range(4)] == [0, 0x58, 0, 0x58]


@pytest.mark.parametrize("style", ["capital_text", "seconds", "missing_fields", "tlv_only",
                                   "hex_in_receipt_dec_in_resp", "padded"])
async def test_receipt_formats(start: Started, clients: list[Client], style: Any) -> None:
    sim = await start(ReceiptFormatSimulator(style))
    c = await bound(sim, clients)
    status, message_id = await c.submit()
    receipt = await c.delivery()
    text = receipt.short_message.decode()
    rid = receipt.tlvs[P.TAG_RECEIPTED_MESSAGE_ID][:-1].decode()
    if style == "capital_text":
        assert " Text:Hello world" in text and " text:" not in text
    elif style == "seconds":
        assert re.search(r"submit date:\d{12} done date:\d{12} ", text)
    elif style == "missing_fields":
        assert text == f"id:{rid} stat:DELIVRD"
    elif style == "tlv_only":
        assert text == "" and receipt.tlvs[P.TAG_MESSAGE_STATE] == b"\x02"
    elif style == "hex_in_receipt_dec_in_resp":
        assert message_id.isdigit() and rid == format(int(message_id), "x")
        assert receipt_fields(receipt.short_message)["id"] == rid
    elif style == "padded":
        assert rid == f"{int(message_id, 16):020d}"
        assert receipt_fields(receipt.short_message)["id"] == rid
    if style not in ("hex_in_receipt_dec_in_resp", "padded"):
        assert rid == str(int(message_id, 16))


async def test_pdus_split_and_coalesced_across_reads(start: Started,
                                                     clients: list[Client]) -> None:
    """Framing does not depend on TCP segments: three submit_sm in one write, then one sent
    an octet at a time, are each answered once, in order."""
    sim = await start()
    c = await bound(sim, clients)
    seqs = [c.next_seq() for _ in range(4)]
    raws = [P.encode_submit_sm(seq, make_sm()) for seq in seqs]
    loop = asyncio.get_running_loop()
    futures: list[asyncio.Future[tuple[P.Header, bytes]]] = []
    for seq in seqs:
        fut: asyncio.Future[tuple[P.Header, bytes]] = loop.create_future()
        c.pending[seq] = fut
        futures.append(fut)
    c.send_raw(b"".join(raws[:3]))
    for octet in raws[3]:
        c.send_raw(bytes((octet,)))
        await c.writer.drain()
        await asyncio.sleep(0)
    answers = await asyncio.wait_for(asyncio.gather(*futures), TIMEOUT)
    assert [(h.command_id, h.status, h.sequence) for h, _ in answers] == \
        [(P.SUBMIT_SM_RESP, 0, seq) for seq in seqs]
    assert sim.accepted == 4
