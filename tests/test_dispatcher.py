"""Service → store → dispatcher → SMPP client → simulator over real TCP on 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass
from pathlib import Path
from collections import Counter
from collections.abc import Awaitable, Sequence
from typing import Any, AsyncIterator, Callable

import pytest

from bridge.config import Config, SimulatorConfig
from bridge.core.model import Ingress
from bridge.core.states import MessageState
from bridge.outbound.dispatcher import Dispatcher, relative_validity
from bridge.metrics import OutboundMetrics
from bridge.intake.service import Recipient, Service, SubmitRequest
from bridge.simulator import (
    GenericNackSimulator,
    ReceiptBeforeResponseSimulator,
    SmscSimulator,
    ThrottlingSimulator,
)
from bridge.runtime.outbound import accepted_messages
from bridge.outbound.smpp.pool import SmscPool
from bridge.runtime import open_store
from bridge.store.base import AcceptOutcome, NewMessage, Store
from bridge.store.rows import accept_rows
from tests.conftest import make_config


@dataclass
class Pipeline:
    sim: SmscSimulator
    store: Store
    service: Service
    dispatcher: Dispatcher
    config: Config
    #: Every simulator by the name of its [[smsc]] ("sim" is the first).
    sims: dict[str, SmscSimulator]

    async def send(self, *numbers: str, text: str = "hello", **kw: Any) -> list[str]:
        results = await self.service.submit(SubmitRequest(
            account="demo", recipients=tuple(Recipient(n) for n in numbers), text=text,
            ingress=Ingress.SOAP, **kw))
        assert all(r.status == "accepted" for r in results), results
        return [r.message_id for r in results if r.message_id]

    async def wait_state(self, message_id: str, *states: MessageState, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            views = await self.store.get_messages([message_id])
            if views and views[0].state in states:
                return
            await asyncio.sleep(0.02)
        views = await self.store.get_messages([message_id])
        raise AssertionError(f"{message_id} is {views[0].state if views else None}, not {states}")


@contextlib.asynccontextmanager
async def pipeline(tmp_path: Path, sim: SmscSimulator | None = None, *,
                   clock: Callable[[], float] = time.time,
                   dispatcher_clock: Callable[[], float] | None = None, smsc: dict[str, Any] | None = None,
                   more: Sequence[tuple[SmscSimulator, dict[str, Any]]] = (),
                   **sections: Any) -> AsyncIterator[Pipeline]:
    """One simulator as [[smsc]] "sim" (its table overridden by `smsc`), and each of `more`
    as another [[smsc]] after it (its table: at least a name)."""
    sim = sim or SmscSimulator(SimulatorConfig(enabled=True, port=0, receipt_delay_s=0.01))
    tables: list[dict[str, Any]] = []
    sims: dict[str, SmscSimulator] = {}
    for each, overrides in ((sim, {"name": "sim", **(smsc or {})}), *more):
        port = await each.start()
        tables.append({"port": port, "system_id": "bridge", "password": "secret",
                       "window": 10, "reconnect_min_s": 0.05, "reconnect_max_s": 0.2,
                       "response_timeout_s": 1.0, **overrides})
        sims[overrides["name"]] = each
    sections.setdefault("policy", {})
    sections["policy"] = {"retry_base_s": 0.01, "retry_max_s": 0.05, **sections["policy"]}
    config = make_config(tmp_path, simulator={"enabled": False}, smsc=tables, **sections)
    store = open_store(config.store, tmp_path)
    await store.open()
    dispatcher = Dispatcher(config, store, metrics=OutboundMetrics(), clock=dispatcher_clock or clock)
    pool = SmscPool(config.smsc, on_receipt=dispatcher.on_receipt, on_mo=dispatcher.on_mo,
                    accounts=config.accounts)
    dispatcher.attach(pool)
    real_accept = store.accept

    def accept(messages: Sequence[NewMessage], *, now: float, owner: str | None = None,
               able: Sequence[str] | None = None) -> Awaitable[list[AcceptOutcome]]:
        """As the store process does (bridge.runtime.child): committed messages the
        dispatcher holds go to it, here the test's own, whose clock the test controls."""
        rows = accept_rows(messages)
        committed = asyncio.ensure_future(real_accept(messages, now=now,
                                                      owner=dispatcher.owner(),
                                                      able=dispatcher.able()))

        def hand_over(done: asyncio.Future[list[AcceptOutcome]]) -> None:
            if not done.cancelled() and done.exception() is None:
                dispatcher.enqueue(accepted_messages(rows, done.result()))
        committed.add_done_callback(hand_over)
        return committed

    store.accept = accept  # type: ignore[method-assign]
    service = Service(config, store, routes=pool.routes, clock=clock)
    await pool.start()
    await pool.wait_bound(5)
    await dispatcher.start()
    try:
        yield Pipeline(sim, store, service, dispatcher, config, sims)
    finally:
        await dispatcher.stop()
        await pool.stop()
        await store.close()
        for each in sims.values():
            await each.stop()


async def test_message_is_submitted_and_delivered_with_a_timeline(tmp_path: Path) -> None:
    async with pipeline(tmp_path) as p:
        [mid] = await p.send("+447400123456", text="hello world")
        await p.wait_state(mid, MessageState.DELIVERED)
        [submit] = p.sim.submits
        assert submit.destination == "447400123456" and (submit.dest_ton, submit.dest_npi) == (1, 1)
        assert submit.source == "ACME" and (submit.source_ton, submit.source_npi) == (5, 0)
        assert submit.text == "hello world" and submit.registered_delivery & 1
        names = [e.state for e in await p.store.timeline(mid)]
        assert names[0] == "queued" and "part_submitted" in names and names[-1] == "delivered"
        [view] = await p.store.get_messages([mid])
        assert view.smsc_ids == (submit.message_id,) and view.parts_delivered == 1


async def test_multipart_goes_back_to_back_and_needs_every_receipt(tmp_path: Path) -> None:
    text = "".join(f"{i:03d}-" for i in range(100))  # 400 GSM chars → 3 parts
    async with pipeline(tmp_path) as p:
        [mid] = await p.send("+447400123457", text=text)
        await p.wait_state(mid, MessageState.DELIVERED)
        assert p.sim.texts_to("447400123457") == [text]
        assert [s.concat.seq for s in p.sim.submits if s.concat] == [1, 2, 3]
        [view] = await p.store.get_messages([mid])
        assert view.parts == 3 and view.parts_delivered == 3


async def test_throttled_submits_are_retried_and_order_per_destination_kept(tmp_path: Path) -> None:
    sim = ThrottlingSimulator(every=2, config=SimulatorConfig(enabled=True, port=0,
                                                              receipt_delay_s=0.01))
    async with pipeline(tmp_path, sim) as p:
        ids = []
        for i in range(6):  # same destination: must arrive in order despite throttling
            ids += await p.send("+447400123458", text=f"message {i}")
        for mid in ids:
            await p.wait_state(mid, MessageState.DELIVERED)
        assert p.sim.texts_to("447400123458") == [f"message {i}" for i in range(6)]
        assert p.sim.throttled >= 3
        events = [e.state for e in await p.store.timeline(ids[0])]
        assert "delivered" in events


async def test_permanent_error_fails_with_the_mapped_error(tmp_path: Path) -> None:
    sim = GenericNackSimulator(every=1, status=0x0B)  # ESME_RINVDSTADR
    async with pipeline(tmp_path, sim) as p:
        [mid] = await p.send("+447400123459")
        await p.wait_state(mid, MessageState.FAILED)
        [view] = await p.store.get_messages([mid])
        assert view.error == "INVALID_DESTINATION"


async def test_retries_exhausted_fail_the_message(tmp_path: Path) -> None:
    sim = ThrottlingSimulator(every=1, config=SimulatorConfig(enabled=True, port=0))
    async with pipeline(tmp_path, sim, policy={"retry_max": 2}) as p:
        [mid] = await p.send("+447400123460")
        await p.wait_state(mid, MessageState.FAILED)
        assert p.sim.throttled == 3  # first try + 2 retries
        assert not p.sim.submits


async def test_receipt_before_submit_resp_is_matched(tmp_path: Path) -> None:
    sim = ReceiptBeforeResponseSimulator(SimulatorConfig(enabled=True, port=0))
    async with pipeline(tmp_path, sim) as p:
        ids = await p.send(*[f"+4474001234{n:02d}" for n in range(10)])
        for mid in ids:
            await p.wait_state(mid, MessageState.DELIVERED)


@pytest.mark.parametrize(("id_format", "receipt_id_format"),
                         [("hex", "dec"), ("hex", "padded"), ("dec", "padded"), ("hex", "hex")])
async def test_receipt_id_forms_match(tmp_path: Path, id_format: str,
                                      receipt_id_format: str) -> None:
    sim = SmscSimulator(SimulatorConfig(enabled=True, port=0, receipt_delay_s=0.01,
                                        id_format=id_format,
                                        receipt_id_format=receipt_id_format))
    async with pipeline(tmp_path, sim) as p:
        ids = await p.send(*[f"+4474001235{n:02d}" for n in range(20)])
        for mid in ids:
            await p.wait_state(mid, MessageState.DELIVERED)


async def test_undeliverable_receipt(tmp_path: Path) -> None:
    sim = SmscSimulator(SimulatorConfig(enabled=True, port=0, receipt_delay_s=0.01,
                                        fail_receipt_every=1))
    async with pipeline(tmp_path, sim) as p:
        [mid] = await p.send("+447400123461")
        await p.wait_state(mid, MessageState.UNDELIVERABLE)


async def test_expired_before_submission(tmp_path: Path) -> None:
    # The dispatcher's clock runs two minutes ahead: a 1-minute validity has ended by then.
    async with pipeline(tmp_path, dispatcher_clock=lambda: time.time() + 120) as p:
        [mid] = await p.send("+447400123462", validity_minutes=1)
        await p.wait_state(mid, MessageState.EXPIRED)
        assert not p.sim.submits


async def test_scheduled_message_waits_for_send_at(tmp_path: Path) -> None:
    async with pipeline(tmp_path) as p:
        send_at = time.time() + 1.5
        [mid] = await p.send("+447400123463", send_at=send_at)
        [view] = await p.store.get_messages([mid])
        assert view.state is MessageState.SCHEDULED
        await asyncio.sleep(0.3)
        assert not p.sim.submits
        await p.wait_state(mid, MessageState.DELIVERED)
        assert p.sim.submits[0].received_at >= send_at - 0.05


async def test_connection_drop_loses_nothing(tmp_path: Path) -> None:
    sim = SmscSimulator(SimulatorConfig(enabled=True, port=0, receipt_delay_s=0.01,
                                        drop_after=15))
    async with pipeline(tmp_path, sim) as p:
        numbers = [f"+4474001236{n:02d}" for n in range(40)]
        ids = await p.send(*numbers)
        for mid in ids:
            await p.wait_state(mid, MessageState.DELIVERED)
        got = {s.destination for s in p.sim.submits}
        assert got == {n.lstrip("+") for n in numbers}


async def test_restart_resubmits_unacknowledged(tmp_path: Path) -> None:
    sim = SmscSimulator(SimulatorConfig(enabled=True, port=0, receipt_delay_s=0.01))
    async with pipeline(tmp_path, sim) as p:
        await p.dispatcher.stop()
        ids = await p.send("+447400123470", "+447400123471")
    async with pipeline(tmp_path) as p2:  # same database file, fresh process state
        assert p2.dispatcher.resubmitted_on_start == 2
        for mid in ids:
            await p2.wait_state(mid, MessageState.DELIVERED)


def test_relative_validity() -> None:
    assert relative_validity(90) == "000000000130000R"
    assert relative_validity(5) == "000000000100000R"
    assert relative_validity(2 * 86400 + 3661) == "000002010101000R"


async def test_a_slow_smsc_gets_each_message_once(tmp_path: Path) -> None:
    """An SMSC that answers every submit after the response timeout (12 s against 10, scaled
    down): each late answer is the answer, so each message goes once and is delivered, with
    no retry in its timeline."""
    sim = SmscSimulator(SimulatorConfig(enabled=True, port=0, receipt_delay_s=0.01,
                                        response_delay_s=0.4))
    async with pipeline(tmp_path, sim, smsc={"response_timeout_s": 0.3, "wait_ack_s": 5}) as p:
        ids = await p.send(*(f"+4474001235{i:02d}" for i in range(12)), text="slow smsc")
        for mid in ids:
            await p.wait_state(mid, MessageState.DELIVERED)
        assert len(p.sim.submits) == 12
        [bind] = p.dispatcher.pool.binds.values() if p.dispatcher.pool else []
        assert bind.late_answers == 12 and bind.timeouts == 0
        events = [e.state for mid in ids for e in await p.store.timeline(mid)]
        assert "retry" not in events


async def test_a_submit_never_answered_goes_again_once_wait_ack_ends(tmp_path: Path) -> None:
    """Every 2nd submit is never answered: after wait_ack_s its message is sent again (the
    outcome was unknown) and delivered; the others went once."""
    sim = SmscSimulator(SimulatorConfig(enabled=True, port=0, receipt_delay_s=0.01,
                                        silent_every=2))
    async with pipeline(tmp_path, sim, smsc={"response_timeout_s": 0.1, "wait_ack_s": 0.3},
                        policy={"retry_base_s": 0.01}) as p:
        ids = await p.send(*(f"+4474001236{i:02d}" for i in range(4)), text="silent")
        for mid in ids:
            await p.wait_state(mid, MessageState.DELIVERED)
        per_number = Counter(s.destination for s in p.sim.submits)
        assert sorted(per_number.values()) == [1, 1, 1, 1]  # accepted submits: once each
        retried = [mid for mid in ids if "retry" in
                   [e.state for e in await p.store.timeline(mid)]]
        assert len(retried) == 2


# ------------------------------------------------------------------ an operator's cancel

async def test_a_cancelled_message_in_the_dispatcher_s_hands_is_never_sent(
        tmp_path: Path) -> None:
    """Cancelled while the dispatcher holds it (scheduled, due in a moment): when it comes
    due the worker's fence is refused and nothing goes to the SMSC."""
    async with pipeline(tmp_path) as p:
        [mid] = await p.send("+447400123470", send_at=time.time() + 0.8)
        [done] = await p.store.cancel([mid], at=time.time(), actor="test")
        assert done.done and done.state is MessageState.CANCELLED
        await asyncio.sleep(1.5)
        assert not p.sim.submits
        [view] = await p.store.get_messages([mid])
        assert view.state is MessageState.CANCELLED


async def test_cancel_between_throttled_attempts_stops_the_next(tmp_path: Path) -> None:
    """Throttled, the SMSC did not take it: the fence is let go, cancel wins, and the next
    attempt sends nothing."""
    sim = SmscSimulator(SimulatorConfig(enabled=True, port=0, throttle_every=1))
    async with pipeline(tmp_path, sim, policy={"retry_base_s": 0.4, "retry_max_s": 0.4,
                                               "retry_max": 50}) as p:
        [mid] = await p.send("+447400123471")
        deadline = time.monotonic() + 5
        outcome = None
        while time.monotonic() < deadline:
            if sim.throttled:
                [outcome] = await p.store.cancel([mid], at=time.time(), actor="test")
                if outcome.done:
                    break
            await asyncio.sleep(0.02)
        assert outcome is not None and outcome.done, outcome
        attempts = sim.throttled
        await asyncio.sleep(1.0)
        assert sim.throttled == attempts and not sim.submits
        names = [e.state for e in await p.store.timeline(mid)]
        assert names[-1] == "cancelled" and "part_submitted" not in names


async def test_a_message_whose_submit_is_in_flight_cannot_be_cancelled(tmp_path: Path) -> None:
    sim = SmscSimulator(SimulatorConfig(enabled=True, port=0, receipt_delay_s=0.01,
                                        response_delay_s=0.5))
    async with pipeline(tmp_path, sim, smsc={"response_timeout_s": 5.0}) as p:
        [mid] = await p.send("+447400123472")
        await sim.wait_for_submits(1)
        [refused] = await p.store.cancel([mid], at=time.time(), actor="test")
        assert not refused.done and "too late" in refused.detail
        await p.wait_state(mid, MessageState.DELIVERED)


async def test_cancelled_messages_leave_what_the_dispatcher_holds(tmp_path: Path) -> None:
    async with pipeline(tmp_path) as p:
        [later_one, other] = await p.send("+447400123473", "+447400123474",
                                          send_at=time.time() + 60)
        assert p.dispatcher.queue_depth == 2
        assert p.dispatcher.forget([later_one, "unknown"]) == 1
        assert p.dispatcher.queue_depth == 1 and p.dispatcher.forget([later_one]) == 0


async def test_stop_right_after_a_scheduled_message_came_does_not_hang(tmp_path: Path) -> None:
    """The scheduler is woken and cancelled in one loop iteration: Python 3.11's wait_for
    then returns the wake-up and drops the cancel, so the scheduler must see the stop."""
    async def run() -> None:
        async with pipeline(tmp_path) as p:
            await p.send("+447400123475", send_at=time.time() + 60)
    await asyncio.wait_for(run(), 15)
