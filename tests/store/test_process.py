"""The store in its own process (bridge.store.process): the same answers as SqliteStore across
the pipe, errors that keep their meaning, and no lost write when either side ends."""

from __future__ import annotations

import asyncio
import pickle
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bridge.core.receipts import smsc_id_keys
from bridge.store import SqliteStore, StoreProcess, StoreUnavailable
from tests.store.test_sqlite import T0, M, P, msg


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[StoreProcess]:
    s = StoreProcess(tmp_path / "bridge.db")
    await s.open()
    try:
        yield s
    finally:
        await s.close()


async def test_a_message_goes_through_its_life_across_the_pipe(store: StoreProcess) -> None:
    outcomes = await store.accept([msg("m1"), msg("m2", key="k")], now=T0)
    assert [(o.message_id, o.status) for o in outcomes] == [("m1", "accepted"), ("m2", "accepted")]
    again = await store.accept([msg("m3", key="k")], now=T0)
    assert [(o.message_id, o.status) for o in again] == [("m2", "idempotent")]
    assert {m.id for m in await store.load_pending()} == {"m1", "m2"}

    keys = smsc_id_keys("1a", "auto")
    assert await store.record_submitted("m1", 1, smsc="s", smsc_id="1a", id_keys=keys,
                                        at=T0 + 1) is None
    receipt = await store.record_receipt(smsc="s", id_keys=keys, part_state=P.DELIVERED,
                                         stat="DELIVRD", err="000", at=T0 + 2)
    assert (receipt.matched, receipt.message_id, receipt.message_state) == \
        (True, "m1", M.DELIVERED)
    await store.record_event("m2", "throttled", at=T0 + 3, detail="0x58")
    await store.record_state("m2", M.FAILED, at=T0 + 4, error="INTERNAL_ERROR", detail="gave up")

    views = {v.id: v for v in await store.get_messages(["m1", "m2", "nope"])}
    assert (views["m1"].state, views["m1"].parts_delivered) == (M.DELIVERED, 1)
    assert (views["m2"].state, views["m2"].error) == (M.FAILED, "INTERNAL_ERROR")
    events = [e.state for e in await store.timeline("m1")]
    assert events[0] == "queued" and events[-1] == "delivered"
    assert [e.state for e in await store.timeline("m2")][-2:] == ["throttled", "failed"]
    total, page = await store.list_messages("acme", offset=0, limit=1)
    assert total == 2 and len(page) == 1
    counts = await store.counts_by_state()
    assert (counts["delivered"], counts["failed"]) == (1, 1)
    assert await store.load_pending() == []


async def test_a_failed_write_fails_alone_and_the_pipe_goes_on(store: StoreProcess) -> None:
    with pytest.raises(StoreUnavailable, match="has no part"):
        await store.record_submitted("missing", 1, smsc="s", smsc_id="1", id_keys=("int:1",),
                                     at=T0)
    assert [o.status for o in await store.accept([msg("m1")], now=T0)] == ["accepted"]


async def test_when_the_store_process_dies_every_call_fails_clearly(
        store: StoreProcess) -> None:
    await store.accept([msg("m1")], now=T0)
    assert store._proc is not None
    store._proc.kill()
    await store._proc.wait()
    await asyncio.sleep(0.05)  # the answer reader sees the end of the pipe
    with pytest.raises(StoreUnavailable, match="exited"):
        await store.accept([msg("m2")], now=T0)
    with pytest.raises(StoreUnavailable):
        await store.get_messages(["m1"])


async def test_when_the_bridge_goes_away_the_store_finishes_what_it_received(
        tmp_path: Path) -> None:
    store = StoreProcess(tmp_path / "gone.db")
    await store.open()
    assert store._proc is not None and store._proc.stdin is not None and store._outbox
    for i in range(50):  # issued, never awaited: the bridge dies right after sending them
        store.accept([msg(f"m{i}")], now=T0)
    store._outbox.flush()
    store._proc.stdin.close()  # what the child sees when the bridge is SIGKILLed
    assert await asyncio.wait_for(store._proc.wait(), 30) == 0
    check = SqliteStore(tmp_path / "gone.db")
    await check.open()
    try:
        assert len(await check.get_messages([f"m{i}" for i in range(50)])) == 50
    finally:
        await check.close()


async def test_a_store_that_cannot_open_says_why(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a directory")
    store = StoreProcess(tmp_path / "file" / "bridge.db")
    with pytest.raises(StoreUnavailable):
        await store.open()
    with pytest.raises(StoreUnavailable, match="not open"):
        await store.accept([msg("m1")], now=T0)


async def test_a_call_that_cannot_be_pickled_fails_alone(store: StoreProcess) -> None:
    """The bad call gets StoreUnavailable; calls sent in the same frame still arrive."""
    bad = store.accept([msg("bad")], now=lambda: 0)  # type: ignore[arg-type]
    good = store.accept([msg("good")], now=T0)
    with pytest.raises(StoreUnavailable, match="cannot be sent"):
        await bad
    assert [o.status for o in await good] == ["accepted"]
    assert [v.id for v in await store.get_messages(["bad", "good"])] == ["good"]


def test_an_answer_that_cannot_be_pickled_becomes_an_error_answer() -> None:
    from bridge.store.child import _unsendable_answer
    from bridge.store.process import Outbox

    sent: list[bytes] = []
    outbox = Outbox(sent.append, _unsendable_answer)
    loop = asyncio.new_event_loop()
    try:
        loop.call_soon(outbox.put, (1, True, lambda: 0))
        loop.call_soon(outbox.put, (2, True, "fine"))
        loop.call_soon(loop.stop)
        loop.run_forever()
        outbox.flush()
    finally:
        loop.close()
    (answers,) = [pickle.loads(data[4:]) for data in sent]
    assert answers[1] == (2, True, "fine")
    assert answers[0][0] == 1 and answers[0][1] is False
    assert isinstance(answers[0][2], StoreUnavailable)
