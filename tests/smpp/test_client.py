"""SmppBind over real TCP against the SMSC simulator on 127.0.0.1 (port 0).

No assertion depends on timing: waits are bounded polls on observable state, with generous
limits that only matter when something is broken.
"""

from __future__ import annotations

import asyncio
import ssl
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, AsyncIterator, Awaitable, Callable

import pytest
import trustme

from bridge.config import SimulatorConfig, SmscConfig
from bridge.core.model import Address
from bridge.core.receipts import Receipt, smsc_id_keys
from bridge.simulator.misbehaving import (
    BindRefusingSimulator, DeadPeerSimulator, DroppingSimulator, GenericNackSimulator,
    ReceiptBeforeResponseSimulator, ReceiptFormatSimulator, ReceiptStyle, SilentSubmitSimulator,
    ThrottlingSimulator, UnbindingSimulator,
)
from bridge.simulator.server import SmscSimulator
from bridge.outbound.smpp import codec
from bridge.outbound.smpp.client import (
    MoMessage, NotBound, SmppBind, SubmitOutcomeUnknown, SubmitResult, SubmitSm, TryLater,
)

PASSWORD = "secret"
SENDER = Address("ACME", 5, 0)
HANDSET = Address("447400123456", 1, 1)


def sm(text: bytes = b"hello", **kw: Any) -> SubmitSm:
    return SubmitSm(source=SENDER, destination=HANDSET, short_message=text, data_coding=0,
                    esm_class=0, **kw)


def smsc_config(port: int, **kw: Any) -> SmscConfig:
    base: dict[str, Any] = dict(
        name="test", host="127.0.0.1", port=port, system_id="bridge", password=PASSWORD,
        window=10, response_timeout_s=5.0, enquire_link_s=30.0, reconnect_min_s=0.02,
        reconnect_max_s=0.1)
    base.update(kw)
    return SmscConfig(**base)


def sim_config(**kw: Any) -> SimulatorConfig:
    base: dict[str, Any] = dict(enabled=True, host="127.0.0.1", port=0, system_id="bridge",
                                password=PASSWORD, receipts=True, receipt_delay_s=0.005,
                                redeliver_s=0.0)
    base.update(kw)
    return SimulatorConfig(**base)


async def until(predicate: Callable[[], bool], what: str, limit: float = 20.0) -> None:
    """Bounded poll; the limit only matters when the code under test is broken."""
    for _ in range(int(limit / 0.01)):
        if predicate():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"never happened: {what}")


@dataclass
class Recorder:
    receipts: list[tuple[str, Receipt]] = field(default_factory=list)
    mos: list[MoMessage] = field(default_factory=list)
    fail_receipts: int = 0
    fail_mos: int = 0

    async def on_receipt(self, smsc: str, receipt: Receipt) -> None:
        if self.fail_receipts:
            self.fail_receipts -= 1
            raise RuntimeError("store down")
        self.receipts.append((smsc, receipt))

    async def on_mo(self, mo: MoMessage) -> None:
        if self.fail_mos:
            self.fail_mos -= 1
            raise RuntimeError("store down")
        self.mos.append(mo)


Harness = Callable[..., Awaitable[tuple[SmscSimulator, SmppBind, Recorder]]]


@pytest.fixture
async def harness() -> AsyncIterator[Harness]:
    started: list[tuple[SmscSimulator, SmppBind]] = []

    async def make(sim: SmscSimulator | None = None, *, bound: bool = True,
                   ssl_context: ssl.SSLContext | None = None,
                   **smsc: Any) -> tuple[SmscSimulator, SmppBind, Recorder]:
        sim = sim or SmscSimulator(sim_config())
        port = await sim.start()
        recorder = Recorder()
        bind = SmppBind(smsc_config(port, **smsc), on_receipt=recorder.on_receipt,
                        on_mo=recorder.on_mo, ssl_context=ssl_context)
        started.append((sim, bind))
        await bind.start()
        if bound:
            assert await bind.wait_bound(20.0), bind.last_bind_error
        return sim, bind, recorder

    yield make
    for sim, bind in started:
        await bind.stop(drain_timeout=2.0)
        await sim.stop()


# ------------------------------------------------------------------ binds


async def test_transceiver_submit_and_receipt(harness: Harness) -> None:
    sim, bind, rec = await harness()
    assert sim.bound_sessions == [("transceiver", "bridge")]
    result = await bind.submit(sm())
    assert result.command_status == 0 and result.message_id == sim.submits[0].message_id
    assert sim.submits[0].destination == "447400123456" and sim.submits[0].text == "hello"
    await until(lambda: len(rec.receipts) == 1, "receipt")
    smsc, receipt = rec.receipts[0]
    assert smsc == "test" and receipt.stat == "DELIVRD"
    assert set(smsc_id_keys(receipt.message_id, "auto")) & \
        set(smsc_id_keys(result.message_id or "", "auto"))
    await until(lambda: sim.unacked_deliveries == 0, "deliver_sm_resp")
    assert sim.deliver_sm_errors == []


async def test_transmitter_plus_receiver(harness: Harness) -> None:
    sim, bind, rec = await harness(bind="transmitter+receiver")
    assert sorted(mode for mode, _ in sim.bound_sessions) == ["receiver", "transmitter"]
    assert bind.bound and bind.fully_bound
    result = await bind.submit(sm())
    assert result.command_status == 0
    await until(lambda: len(rec.receipts) == 1, "receipt over the receiver leg")
    await sim.send_mo("+447400123456", "ACME", "reply")
    await until(lambda: len(rec.mos) == 1, "MO over the receiver leg")
    assert rec.mos[0].text == "reply"


async def test_bind_refused_is_reported_with_status_name(harness: Harness) -> None:
    sim, bind, _ = await harness(password="wrong", bound=False)
    await until(lambda: bind.last_bind_error is not None, "bind attempt")
    assert bind.last_bind_error == "bind_transceiver refused: 0x0000000E ESME_RINVPASWD"
    assert not bind.bound and sim.bind_failures >= 1
    with pytest.raises(NotBound):
        await bind.submit(sm())


async def test_logs_name_events_and_never_the_password(harness: Harness,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("DEBUG", logger="bridge.smpp")
    _, bind, _ = await harness(password="Pw0rd-XY", bound=False)
    await until(lambda: bind.last_bind_error is not None, "refused bind")
    await bind.stop()
    _, bind2, rec2 = await harness(SmscSimulator(sim_config(password="Pw0rd-XY")),
                                      password="Pw0rd-XY")
    await bind2.submit(sm())
    await until(lambda: len(rec2.receipts) == 1, "receipt")
    await bind2.stop()
    text = caplog.text
    assert "Pw0rd-XY" not in text
    assert "refused: 0x0000000E ESME_RINVPASWD" in text and "bound (bind_transceiver)" in text
    assert all(r.name == "bridge.smpp" for r in caplog.records if r.name.startswith("bridge.smpp"))


async def test_bind_refusing_simulator(harness: Harness) -> None:
    sim, bind, _ = await harness(BindRefusingSimulator(0x0D, sim_config()), bound=False)
    await until(lambda: sim.bind_failures >= 2, "retried binds (with backoff)")
    assert bind.last_bind_error is not None
    assert "refused: 0x0000000D ESME_RBINDFAIL" in bind.last_bind_error


async def test_nothing_listening_is_a_bind_error(harness: Harness) -> None:
    probe = SmscSimulator(sim_config())
    port = await probe.start()
    await probe.stop()  # a port that was just free
    bind = SmppBind(smsc_config(port), on_receipt=Recorder().on_receipt,
                    on_mo=Recorder().on_mo)
    await bind.start()
    try:
        await until(lambda: bind.last_bind_error is not None, "connect attempt")
        assert "failed" in (bind.last_bind_error or "")
    finally:
        await bind.stop()


# ------------------------------------------------------------------ window, throttling


async def test_window_is_never_exceeded(harness: Harness) -> None:
    sim, bind, _ = await harness(SmscSimulator(sim_config(response_delay_s=0.02, receipts=False)),
                                 window=4)
    results = await asyncio.gather(*(bind.submit(sm()) for _ in range(40)))
    assert all(r.command_status == 0 for r in results)
    assert len({r.message_id for r in results}) == 40
    assert sim.max_in_flight == 4  # the window filled, and never more
    assert bind.in_flight == 0


async def test_max_tps_paces_without_losing_submits(harness: Harness) -> None:
    sim, bind, _ = await harness(SmscSimulator(sim_config(receipts=False)), max_tps=500.0)
    results = await asyncio.gather(*(bind.submit(sm()) for _ in range(20)))
    assert [r.command_status for r in results] == [0] * 20 and len(sim.submits) == 20


async def test_throttled_submit_surfaces_0x58(harness: Harness) -> None:
    sim, bind, _ = await harness(ThrottlingSimulator(2, sim_config(receipts=False)))
    results = [await bind.submit(sm()) for _ in range(4)]
    assert [r.command_status for r in results] == [0, 0x58, 0, 0x58]
    assert results[1].message_id is None and sim.throttled == 2
    assert codec.command_status_name(0x58) == "ESME_RTHROTTLED"


async def test_generic_nack_for_submit_is_a_result(harness: Harness) -> None:
    _, bind, _ = await harness(GenericNackSimulator(1, sim_config(receipts=False)))
    result = await bind.submit(sm())
    assert result.command_status != 0 and result.message_id is None
    assert bind.bound  # a nack is an answer, the session stays


# ------------------------------------------------------------------ failures


async def test_connection_drop_fails_in_flight_and_reconnects(harness: Harness) -> None:
    sim, bind, _ = await harness(
        DroppingSimulator(5, sim_config(receipts=False)), window=8)

    async def attempt() -> SubmitResult | Exception:
        try:
            return await bind.submit(sm())
        except (SubmitOutcomeUnknown, NotBound) as exc:
            return exc

    outcomes = await asyncio.gather(*(attempt() for _ in range(8)))
    unknown = [o for o in outcomes if isinstance(o, SubmitOutcomeUnknown)]
    ok = [o for o in outcomes if isinstance(o, SubmitResult) and o.command_status == 0]
    assert unknown, "the submits in flight at the drop must be reported as unknown"
    assert len(ok) + len(unknown) + sum(isinstance(o, NotBound) for o in outcomes) == 8
    # every success is one the SMSC accepted, none reported twice, none of the lost ones
    assert sorted(o.message_id or "" for o in ok) == sorted(s.message_id for s in sim.submits)
    assert bind.in_flight == 0
    await until(lambda: bind.bound, "reconnected")
    assert sim.binds >= 2
    assert (await bind.submit(sm())).command_status == 0


async def test_silent_smsc_times_out_as_unknown(harness: Harness) -> None:
    sim, bind, _ = await harness(SilentSubmitSimulator(sim_config()), response_timeout_s=0.2,
                                 wait_ack_s=0.6)
    started = asyncio.get_running_loop().time()
    with pytest.raises(SubmitOutcomeUnknown, match="no submit_sm_resp within 0.6s"):
        await bind.submit(sm())
    # unknown only after wait_ack_s, not after the timeout: an answer could still have come
    assert asyncio.get_running_loop().time() - started >= 0.55
    assert bind.in_flight == 0 and bind.overdue == 1 and bind.timeouts == 1
    # the timeout made the client probe the link; the SMSC answers enquire_link, so it stays
    assert sim.enquire_links_received >= 1
    assert bind.bound and sim.binds == 1


async def test_late_answer_after_the_timeout_is_the_answer(
        harness: Harness, caplog: pytest.LogCaptureFixture) -> None:
    """An SMSC answering after response_timeout_s (but within wait_ack_s): the answer is
    taken, the link is probed and stays, and the late answers are one log episode."""
    caplog.set_level("INFO", logger="bridge.smpp")
    sim, bind, _ = await harness(SmscSimulator(sim_config(response_delay_s=0.5)),
                                 response_timeout_s=0.15, wait_ack_s=5.0)
    results = await asyncio.gather(*(bind.submit(sm(b"late %d" % i)) for i in range(3)))
    assert [r.command_status for r in results] == [0, 0, 0]
    assert all(r.message_id for r in results)
    assert bind.overdue == 3 and bind.late_answers == 3 and bind.timeouts == 0
    assert sim.accepted == 3 and sim.enquire_links_received >= 1
    assert bind.bound and sim.binds == 1
    assert "late or unexpected response" not in caplog.text
    assert caplog.text.count("timely submit_sm_resp (late answers are taken) failing") == 1


async def test_late_answer_after_wait_ack_is_not_taken(
        harness: Harness, caplog: pytest.LogCaptureFixture) -> None:
    """Past wait_ack_s the submit is given up (the caller sends it again); an answer after
    that is ignored, never mistaken for another request's."""
    caplog.set_level("INFO", logger="bridge.smpp")
    sim, bind, _ = await harness(SmscSimulator(sim_config(response_delay_s=0.6)),
                                 response_timeout_s=0.1, wait_ack_s=0.3)
    with pytest.raises(SubmitOutcomeUnknown):
        await bind.submit(sm())
    await until(lambda: "late or unexpected response" in caplog.text, "the late answer")
    assert sim.accepted == 1
    assert bind.timeouts == 1 and bind.late_answers == 0 and bind.bound


async def test_dead_peer_is_detected_and_replaced(harness: Harness,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    sim, bind, _ = await harness(DeadPeerSimulator(2, sim_config()), enquire_link_s=0.05,
                                 response_timeout_s=0.2)
    first = sim.binds
    await until(lambda: sim.binds > first, "reconnect after the dead peer")
    await until(lambda: bind.bound, "bound again")
    assert "dead peer: no enquire_link_resp" in caplog.text


async def test_dead_peer_fails_in_flight_submits_as_unknown(harness: Harness) -> None:
    # the session dies after bind + 1 PDU: the second submit is never answered; the probe
    # after its timeout is not answered either, so the link is replaced
    sim, bind, _ = await harness(DeadPeerSimulator(2, sim_config(receipts=False)),
                                 response_timeout_s=0.2)
    assert (await bind.submit(sm())).command_status == 0
    with pytest.raises(SubmitOutcomeUnknown):
        # The probe's own deadline comes first, not the overdue submit's (wait_ack_s, 60 s).
        await asyncio.wait_for(bind.submit(sm()), 10)
    await until(lambda: sim.binds >= 2 and bind.bound, "replaced after the dead peer")


async def test_smsc_unbind_is_answered_and_reconnected(harness: Harness) -> None:
    sim, bind, _ = await harness(UnbindingSimulator(1, sim_config(receipts=False)))
    assert (await bind.submit(sm())).command_status == 0
    await until(lambda: sim.unbinds_sent >= 1 and sim.unbind_resps_received >= 1,
                "unbind answered")
    await until(lambda: sim.binds >= 2 and bind.bound, "reconnected")


async def test_stop_drains_in_flight_submits(harness: Harness) -> None:
    sim, bind, _ = await harness(SmscSimulator(sim_config(response_delay_s=0.1, receipts=False)))
    pending = [asyncio.ensure_future(bind.submit(sm())) for _ in range(3)]
    await until(lambda: bind.in_flight == 3, "submits in flight")
    await bind.stop(drain_timeout=10.0)
    results = await asyncio.gather(*pending)
    assert [r.command_status for r in results] == [0, 0, 0]
    assert sim.unbinds_received == 1
    with pytest.raises(NotBound):
        await bind.submit(sm())


# ------------------------------------------------------------------ receipts


@pytest.mark.parametrize(("resp_format", "receipt_format"), [
    ("hex", "dec"), ("hex", "padded"), ("hex", "hex"), ("dec", "dec"), ("dec", "padded"),
])
async def test_receipt_id_forms_match_submit_keys(harness: Harness, resp_format: str,
                                                  receipt_format: str) -> None:
    sim, bind, rec = await harness(SmscSimulator(sim_config(
        id_format=resp_format, receipt_id_format=receipt_format)))
    results = [await bind.submit(sm(f"m{i}".encode())) for i in range(3)]
    await until(lambda: len(rec.receipts) == 3, "receipts")
    by_key: dict[str, set[str | None]] = {}
    for r in results:
        for key in smsc_id_keys(r.message_id or "", "auto"):
            by_key.setdefault(key, set()).add(r.message_id)
    for _, receipt in rec.receipts:
        matches: set[str | None] = set().union(*(by_key.get(k, set())
                                for k in smsc_id_keys(receipt.message_id, "auto")))
        assert len(matches) == 1, (receipt.message_id, matches)
    if receipt_format == "padded":
        assert rec.receipts[0][1].message_id.startswith("0")


@pytest.mark.parametrize("style", ["capital_text", "seconds", "missing_fields", "tlv_only",
                                   "hex_in_receipt_dec_in_resp", "padded"])
async def test_receipt_format_variants(harness: Harness, style: ReceiptStyle) -> None:
    sim, bind, rec = await harness(ReceiptFormatSimulator(style, sim_config()))
    result = await bind.submit(sm())
    await until(lambda: len(rec.receipts) == 1, "receipt")
    receipt = rec.receipts[0][1]
    assert receipt.stat == "DELIVRD" and receipt.message_state == 2
    assert set(smsc_id_keys(receipt.message_id, "auto")) & \
        set(smsc_id_keys(result.message_id or "", "auto"))
    if style == "seconds":
        assert receipt.done_date is not None and len(receipt.done_date) == 12
    if style == "capital_text":
        assert receipt.text == "hello"


async def test_receipt_before_response_reaches_the_handler(harness: Harness) -> None:
    sim, bind, rec = await harness(ReceiptBeforeResponseSimulator(sim_config()))
    result = await bind.submit(sm())
    assert result.command_status == 0
    await until(lambda: len(rec.receipts) == 1, "receipt")
    assert set(smsc_id_keys(rec.receipts[0][1].message_id, "auto")) & \
        set(smsc_id_keys(result.message_id or "", "auto"))


async def test_deliver_sm_resp_waits_for_the_handler(harness: Harness) -> None:
    sim, bind, rec = await harness()
    entered = asyncio.Event()
    release = asyncio.Event()

    async def slow_store(smsc: str, receipt: Receipt) -> None:
        entered.set()
        await release.wait()
        rec.receipts.append((smsc, receipt))

    bind._on_receipt = slow_store
    await bind.submit(sm())
    await asyncio.wait_for(entered.wait(), 20.0)
    assert sim.unacked_deliveries == 1  # not acknowledged while the store is busy
    release.set()
    await until(lambda: sim.unacked_deliveries == 0, "acknowledged after the store")
    assert len(rec.receipts) == 1 and sim.deliver_sm_errors == []


@pytest.mark.parametrize("outcome", ["ok", "fails", "raises"])
async def test_receipt_handler_returning_a_future(harness: Harness, outcome: str) -> None:
    """The dispatcher's form of handler (a plain function returning a future, no task): the
    answer waits for the future; a failed future, or a handler raising before it returns one,
    answers 0x64."""
    sim, bind, rec = await harness()
    pending: list[asyncio.Future[None]] = []

    def store(smsc: str, receipt: Receipt) -> asyncio.Future[None]:
        if outcome == "raises":
            raise RuntimeError("store refused")
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        pending.append(fut)
        rec.receipts.append((smsc, receipt))
        return fut

    bind._on_receipt = store
    await bind.submit(sm())
    if outcome == "raises":
        await until(lambda: sim.deliver_sm_errors == [codec.ESME_RX_T_APPN], "0x64 answered")
        return
    await until(lambda: bool(pending), "receipt handed over")
    await asyncio.sleep(0.05)
    assert sim.unacked_deliveries == 1  # not acknowledged while the future is pending
    if outcome == "ok":
        pending[0].set_result(None)
        await until(lambda: sim.unacked_deliveries == 0, "acknowledged")
        assert sim.deliver_sm_errors == []
    else:
        pending[0].set_exception(RuntimeError("disk full"))
        await until(lambda: sim.deliver_sm_errors == [codec.ESME_RX_T_APPN], "0x64 answered")


async def test_failing_receipt_handler_makes_the_smsc_redeliver(
        harness: Harness, caplog: pytest.LogCaptureFixture) -> None:
    """A handler that cannot store now (TryLater): 0x64, one log line for the episode and
    none with a traceback; the simulator delivers the receipt again, as an SMSC does."""
    sim, bind, rec = await harness(SmscSimulator(sim_config(redeliver_s=0.05)))
    failures = 3

    async def store(smsc: str, receipt: Receipt) -> None:
        nonlocal failures
        if failures:
            failures -= 1
            raise TryLater("store write record_receipt failed: database or disk is full")
        rec.receipts.append((smsc, receipt))

    bind._on_receipt = store
    await bind.submit(sm())
    await until(lambda: len(rec.receipts) == 1, "redelivered receipt stored")
    assert sim.deliver_sm_errors == [codec.ESME_RX_T_APPN] * 3
    assert "Traceback" not in caplog.text
    assert caplog.text.count("deliver_sm handling (answered 0x64, the SMSC delivers again) "
                             "failing") == 1
    assert bind._handler_failures.failures == 3  # ends once none failed for settle_s


# ------------------------------------------------------------------ MO


@pytest.mark.parametrize(("text", "encoding", "concat", "data_coding"), [
    ("Hello from the handset", "gsm7", "udh8", 0x00),
    ("Long GSM reply {with} escapes €. " * 12, "gsm7", "udh8", 0x00),
    ("SAR concatenated reply. " * 12, "gsm7", "sar", 0x00),
    ("Grüße aus München — ünïcödé 😀 " * 6, "ucs2", "udh8", 0x08),
    ("16-bit reference reply. " * 10, "gsm7", "udh16", 0x00),
    ("Latin-1 café. " * 15, "latin1", "udh8", 0x03),
])
async def test_mo_single_and_concatenated(harness: Harness, text: str, encoding: str,
                                          concat: str, data_coding: int) -> None:
    """Each deliver_sm is handed over as it came: a concatenated SMS part by part, with its
    reference, count and number (the store puts them together)."""
    sim, _, rec = await harness()
    await sim.send_mo("+447400123456", "ACME", text, encoding=encoding,  # type: ignore[arg-type]
                      concat=concat)  # type: ignore[arg-type]
    await until(lambda: bool(rec.mos) and (rec.mos[0].concat is None
                                           or len(rec.mos) == rec.mos[0].concat[1]), "MO")
    assert all(mo.data_coding == data_coding and mo.source == HANDSET
               and mo.destination == SENDER and mo.smsc == "test" for mo in rec.mos)
    if rec.mos[0].concat is None:
        assert [mo.text for mo in rec.mos] == [text]
        return
    refs = {mo.concat[0] for mo in rec.mos if mo.concat}
    assert len(refs) == 1 and sorted(mo.concat[2] for mo in rec.mos if mo.concat) == \
        list(range(1, len(rec.mos) + 1))
    parts = sorted(rec.mos, key=lambda mo: mo.concat[2] if mo.concat else 0)
    assert "".join(mo.text for mo in parts) == text


async def test_mo_part_refused_by_the_handler_comes_again(harness: Harness) -> None:
    """A part the handler cannot store is answered 0x64 and delivered again by the SMSC;
    the parts handed over before stay handed over."""
    sim, _, rec = await harness(SmscSimulator(sim_config(redeliver_s=0.05)))
    rec.fail_mos = 1
    await sim.send_mo("+447400123456", "ACME", "", parts_text=["first ", "second ", "third"])
    await until(lambda: codec.ESME_RX_T_APPN in sim.deliver_sm_errors, "0x64 for one part")
    await until(lambda: len(rec.mos) == 3, "every part, one of them redelivered")
    assert sorted((mo.concat or (0, 0, 0))[2] for mo in rec.mos) == [1, 2, 3]


async def test_impossible_part_numbers_are_a_message_by_themselves() -> None:
    udh = bytes([5, 0, 3, 0x33, 2, 5])  # part 5 of 2
    odd = codec.encode_deliver(50, source=HANDSET, destination=SENDER, esm_class=0x40,
                               data_coding=0, short_message=udh + b"stray part")
    raw = RawSmsc([odd])
    port = await raw.start()
    rec = Recorder()
    bind = SmppBind(smsc_config(port), on_receipt=rec.on_receipt, on_mo=rec.on_mo)
    await bind.start()
    try:
        await until(lambda: (codec.DELIVER_SM_RESP, 0, 50) in raw.received, "acked")
        assert [(mo.text, mo.concat) for mo in rec.mos] == [("stray part", None)]
    finally:
        await bind.stop(drain_timeout=1.0)
        await raw.stop()


async def test_malformed_deliver_sm_is_rejected_permanently() -> None:
    good = codec.encode_deliver(60, source=HANDSET, destination=SENDER, esm_class=0,
                                data_coding=0, short_message=b"x")
    bad_body = good[16:] + struct.pack(">HH", 0x0424, 10) + b"abc"   # truncated TLV
    bad = struct.pack(">LLLL", 16 + len(bad_body), codec.DELIVER_SM, 0, 61) + bad_body
    raw = RawSmsc([bad])
    port = await raw.start()
    rec = Recorder()
    bind = SmppBind(smsc_config(port), on_receipt=rec.on_receipt, on_mo=rec.on_mo)
    await bind.start()
    try:
        await until(lambda: (codec.DELIVER_SM_RESP, codec.ESME_RX_P_APPN, 61) in raw.received,
                    "deliver_sm_resp 0x65")
        assert rec.mos == [] and bind.bound
    finally:
        await bind.stop(drain_timeout=1.0)
        await raw.stop()


# ------------------------------------------------------------------ TLS


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def _server_context(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    return context


async def test_tls_bind_with_trusted_ca(harness: Harness, ca: trustme.CA,
                                        tmp_path: Path) -> None:
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    sim, bind, rec = await harness(SmscSimulator(sim_config(), ssl_context=_server_context(ca)),
                                   tls=True, tls_ca=str(ca_file))
    result = await bind.submit(sm())
    assert result.command_status == 0
    await until(lambda: len(rec.receipts) == 1, "receipt over TLS")


async def test_tls_bind_fails_with_untrusted_ca(harness: Harness, ca: trustme.CA,
                                                tmp_path: Path) -> None:
    other = trustme.CA()
    ca_file = tmp_path / "other-ca.pem"
    other.cert_pem.write_to_path(str(ca_file))
    sim, bind, _ = await harness(SmscSimulator(sim_config(), ssl_context=_server_context(ca)),
                                 tls=True, tls_ca=str(ca_file), bound=False)
    await until(lambda: bind.last_bind_error is not None, "TLS attempt")
    assert "CERTIFICATE_VERIFY_FAILED" in (bind.last_bind_error or "")
    assert not bind.bound and sim.binds == 0


# ------------------------------------------------------------------ internals


async def test_sequence_numbers_wrap_and_skip_pending() -> None:
    from bridge.outbound.smpp.client import _Link
    bind = SmppBind(smsc_config(1), on_receipt=Recorder().on_receipt, on_mo=Recorder().on_mo)
    link = _Link(bind, "transceiver")
    link.sequence = codec.MAX_SEQUENCE - 1
    assert link.next_seq() == codec.MAX_SEQUENCE
    link.pending[1] = asyncio.get_running_loop().create_future()
    assert link.next_seq() == 2  # wrapped past 0x7FFFFFFF, skipped the pending 1
    link.pending[1].cancel()


class _StubTransport:
    def __init__(self) -> None:
        self.written: list[bytes] = []

    def is_closing(self) -> bool:
        return False

    def write(self, data: bytes) -> None:
        self.written.append(data)


def _resp(seq: int) -> bytes:
    return struct.pack(">LLLL", 17, codec.SUBMIT_SM_RESP, 0, seq) + b"\x00"


async def test_response_deadlines_share_one_timer() -> None:
    """Answered requests never time out, in or out of order; unanswered ones (also when their
    waiter was cancelled) time out after their timeout. A shorter timeout queued after a
    longer one waits for the deadline before it (deadlines stay in order)."""
    from bridge.outbound.smpp.client import _Link, _ResponseTimeout
    bind = SmppBind(smsc_config(1), on_receipt=Recorder().on_receipt, on_mo=Recorder().on_mo)
    link = _Link(bind, "transceiver")
    link.transport = _StubTransport()  # type: ignore[assignment]
    futs = {seq: link.send_request(seq, b"", 0.3) for seq in range(1, 6)}
    short = link.send_request(6, b"", 0.1)
    assert len(link.deadlines) == 6
    cancelled = futs[4]
    cancelled.cancel()
    link._dispatch(_resp(3))  # out of order: the front stays
    link._dispatch(_resp(1))
    assert futs[1].done() and futs[3].done() and not futs[2].done()
    assert [entry[1] for entry in link.deadlines] == [2, 3, 4, 5, 6]
    await asyncio.sleep(0.15)
    assert not short.done() and not futs[2].done()
    link._dispatch(_resp(2))
    await asyncio.sleep(0.25)
    assert futs[1].result() == _resp(1) and futs[2].result() == _resp(2)
    assert isinstance(futs[5].exception(), _ResponseTimeout)
    assert isinstance(short.exception(), _ResponseTimeout)
    assert not link.pending and not link.deadlines and link.deadline_timer is None
    link.connection_lost(None)


async def test_answered_deadlines_do_not_pile_up_behind_an_unanswered_request() -> None:
    """One request the SMSC never answers must not keep every later answered entry queued
    until it times out (at thousands of submits/s that would be a long walk in one callback)."""
    from bridge.outbound.smpp.client import _Link
    bind = SmppBind(smsc_config(1), on_receipt=Recorder().on_receipt, on_mo=Recorder().on_mo)
    link = _Link(bind, "transceiver")
    link.transport = _StubTransport()  # type: ignore[assignment]
    stuck = link.send_request(1, b"", 30.0)
    for seq in range(2, 2002):
        link.send_request(seq, b"", 30.0)
        link._dispatch(_resp(seq))
    assert len(link.pending) == 1 and len(link.deadlines) < 200
    assert not stuck.done()
    link.connection_lost(None)


def test_backoff_doubles_from_min_to_max_with_jitter() -> None:
    bind = SmppBind(smsc_config(1, reconnect_min_s=0.5, reconnect_max_s=30.0),
                    on_receipt=Recorder().on_receipt, on_mo=Recorder().on_mo)
    assert bind._backoff(0) == 0.5
    for attempt in range(1, 12):
        cap = min(30.0, 0.5 * 2 ** attempt)
        delays = {bind._backoff(attempt) for _ in range(50)}
        assert all(0.5 <= d <= cap for d in delays) and len(delays) > 1
    assert max(bind._backoff(100) for _ in range(50)) <= 30.0


# ------------------------------------------------------------------ raw protocol edge cases


class RawSmsc:
    """A scripted peer for what no SMSC simulator should do: answers the bind, then sends
    the given frames and records what the client sends back."""

    def __init__(self, frames: list[bytes]) -> None:
        self.frames = frames
        self.received: list[tuple[int, int, int]] = []
        self.connections = 0
        self.server: asyncio.AbstractServer | None = None

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readexactly(16)
                length, command_id, status, seq = struct.unpack(">LLLL", head)
                await reader.readexactly(length - 16)
                self.received.append((command_id, status, seq))
                if command_id == codec.BIND_TRANSCEIVER:
                    writer.write(struct.pack(">LLLL", 17, codec.BIND_TRANSCEIVER_RESP, 0, seq)
                                 + b"\x00")
                    if self.connections == 1:
                        for frame in self.frames:
                            writer.write(frame)
                elif command_id in (codec.ENQUIRE_LINK, codec.UNBIND):
                    writer.write(codec.encode_header_only(command_id | 0x80000000, seq))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()


async def _raw_bind(frames: list[bytes]) -> tuple[RawSmsc, SmppBind]:
    raw = RawSmsc(frames)
    port = await raw.start()
    rec = Recorder()
    bind = SmppBind(smsc_config(port), on_receipt=rec.on_receipt, on_mo=rec.on_mo)
    await bind.start()
    return raw, bind


async def test_unknown_command_gets_generic_nack_and_enquire_link_is_answered() -> None:
    raw, bind = await _raw_bind([struct.pack(">LLLL", 16, 0x00000777, 0, 41),
                                 codec.encode_header_only(codec.ENQUIRE_LINK, 42)])
    try:
        await until(lambda: (codec.GENERIC_NACK, codec.ESME_RINVCMDID, 41) in raw.received,
                    "generic_nack")
        await until(lambda: (codec.ENQUIRE_LINK_RESP, 0, 42) in raw.received,
                    "enquire_link_resp")
        assert bind.bound and raw.connections == 1
    finally:
        await bind.stop(drain_timeout=1.0)
        await raw.stop()


async def test_malformed_frame_is_nacked_and_the_connection_replaced() -> None:
    raw, bind = await _raw_bind([struct.pack(">LLLL", 8, 0x00000004, 0, 7)])
    try:
        await until(lambda: (codec.GENERIC_NACK, codec.ESME_RINVCMDLEN, 7) in raw.received,
                    "generic_nack for the bad length")
        await until(lambda: raw.connections >= 2 and bind.bound, "reconnected")
    finally:
        await bind.stop(drain_timeout=1.0)
        await raw.stop()
