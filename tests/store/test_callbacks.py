"""Delivery callbacks in the store (both): queued by the transaction that makes a message final,
by every path that does, and only then; each attempt recorded in the timeline."""

from __future__ import annotations

import asyncio
import dataclasses
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from bridge.core.states import MessageState, PartState
from bridge.store import NewMessage, SqliteStore
from bridge.runtime import StoreProcess
from bridge.store.schema import migrate
from bridge.store.base import Store
from tests.store.conftest import another, query
from tests.store.test_contract import T0, msg, receipt, submit

M = MessageState
P = PartState
URL = "http://127.0.0.1:9/dlr?token=t"


def with_callback(mid: str, **kw: Any) -> NewMessage:
    return dataclasses.replace(msg(mid, **kw), callback_url=URL, meta_json='{"reference": "r-1"}')


async def test_delivered_message_queues_one_callback(store: Store) -> None:
    await store.accept([with_callback("c1")], now=T0)
    assert await store.callbacks_due(now=T0 + 100, limit=10) == []  # queued: nothing yet
    await submit(store, "c1", 1, "1F")
    assert await store.callbacks_due(now=T0 + 100, limit=10) == []  # submitted: not final
    await receipt(store, "31", P.DELIVERED, at=T0 + 2)
    [due] = await store.callbacks_due(now=T0 + 100, limit=10)
    assert (due.message_id, due.url, due.state, due.at, due.attempts) == (
        "c1", URL, "delivered", T0 + 2, 0)
    assert (due.recipient, due.parts, due.parts_delivered, due.error) == (
        "+447700900001", 1, 1, None)
    assert due.meta_json == '{"reference": "r-1"}'
    assert await store.callbacks_due(now=T0 + 1, limit=10) == []  # not before it happened


async def test_no_callback_without_a_url(store: Store) -> None:
    await store.accept([msg("n1")], now=T0)
    await submit(store, "n1", 1, "1F")
    await receipt(store, "31", P.DELIVERED)
    await store.record_state("n1", M.FAILED, at=T0 + 3, error="INTERNAL_ERROR")
    assert await store.callbacks_due(now=T0 + 100, limit=10) == []


@pytest.mark.parametrize(("state", "error"), [(M.FAILED, "INVALID_DESTINATION"),
                                              (M.EXPIRED, None), (M.UNDELIVERABLE, None)])
async def test_every_final_state_set_by_the_dispatcher_queues_one(
        store: Store, state: MessageState, error: str | None) -> None:
    await store.accept([with_callback("f1")], now=T0)
    await store.record_state("f1", state, at=T0 + 5, error=error, detail="why")
    [due] = await store.callbacks_due(now=T0 + 5, limit=10)
    assert (due.state, due.error, due.parts_delivered) == (state.value, error, 0)


async def test_a_refined_verdict_queues_a_second_callback(store: Store) -> None:
    await store.accept([with_callback("r1")], now=T0)
    await submit(store, "r1", 1, "1F")
    await receipt(store, "31", P.UNDELIVERABLE, stat="UNDELIV", at=T0 + 2)
    await receipt(store, "31", P.DELIVERED, at=T0 + 3)
    due = await store.callbacks_due(now=T0 + 100, limit=10)
    assert [d.state for d in due] == ["undeliverable", "delivered"]
    # The same receipt again changes no state and queues nothing.
    await receipt(store, "31", P.DELIVERED, at=T0 + 4)
    assert len(await store.callbacks_due(now=T0 + 100, limit=10)) == 2


async def test_multipart_message_calls_back_once_all_parts_are_delivered(
        store: Store) -> None:
    await store.accept([with_callback("mp", parts=2)], now=T0)
    await submit(store, "mp", 1, "A1")
    await submit(store, "mp", 2, "A2")
    await receipt(store, str(0xA1), P.DELIVERED)
    assert await store.callbacks_due(now=T0 + 100, limit=10) == []
    await receipt(store, str(0xA2), P.DELIVERED, at=T0 + 3)
    [due] = await store.callbacks_due(now=T0 + 100, limit=10)
    assert (due.state, due.parts, due.parts_delivered) == ("delivered", 2, 2)


async def test_batched_receipts_queue_one_callback_each(store: Store) -> None:
    ids = [f"b{i}" for i in range(5)]
    await store.accept([with_callback(i, recipient=f"+4477009000{n:02d}")
                        for n, i in enumerate(ids)], now=T0)
    for n, mid in enumerate(ids):
        await submit(store, mid, 1, f"{0x100 + n:X}")
    await asyncio.gather(*(
        receipt(store, str(0x100 + n), P.DELIVERED, at=T0 + 2) for n in range(5)))
    due = await store.callbacks_due(now=T0 + 100, limit=3)
    assert len(due) == 3  # the limit holds
    assert sorted(d.message_id for d in await store.callbacks_due(now=T0 + 100, limit=10)) == ids


async def test_attempts_are_recorded_and_end_the_callback(store: Store) -> None:
    await store.accept([with_callback("a1"), with_callback("a2", recipient="+447700900002")],
                       now=T0)
    for mid in ("a1", "a2"):
        await store.record_state(mid, M.FAILED, at=T0 + 1, error="INTERNAL_ERROR")
    first, second = await store.callbacks_due(now=T0 + 1, limit=10)
    await store.record_callback(first.id, "a1", outcome="retry", attempts=1, next_at=T0 + 60,
                                at=T0 + 2, detail="POST http://127.0.0.1:9/dlr: HTTP 500")
    [still] = await store.callbacks_due(now=T0 + 59, limit=10)
    assert still.message_id == "a2"
    later = await store.callbacks_due(now=T0 + 60, limit=10)
    assert [(d.message_id, d.attempts) for d in later] == [("a2", 0), ("a1", 1)]
    await store.record_callback(first.id, "a1", outcome="delivered", attempts=2,
                                next_at=T0 + 61, at=T0 + 61, detail="HTTP 200")
    await store.record_callback(second.id, "a2", outcome="gave_up", attempts=1,
                                next_at=T0 + 61, at=T0 + 61, detail="cannot connect")
    assert await store.callbacks_due(now=T0 + 10_000, limit=10) == []
    events = [(e.state, e.detail) for e in await store.timeline("a1")]
    assert events[-2:] == [("callback_retry", "POST http://127.0.0.1:9/dlr: HTTP 500"),
                           ("callback", "HTTP 200")]
    assert (await store.timeline("a2"))[-1].state == "callback_failed"


async def test_an_unknown_outcome_is_refused_and_changes_nothing(store: Store) -> None:
    await store.accept([with_callback("u1")], now=T0)
    await store.record_state("u1", M.FAILED, at=T0 + 1, error="INTERNAL_ERROR")
    [due] = await store.callbacks_due(now=T0 + 1, limit=10)
    with pytest.raises(Exception, match="unknown attempt outcome"):
        await store.record_callback(due.id, "u1", outcome="maybe", attempts=1, next_at=T0,
                                    at=T0, detail="")
    assert [d.id for d in await store.callbacks_due(now=T0 + 1, limit=10)] == [due.id]


async def test_callbacks_cross_the_pipe_to_the_store_process(tmp_path: Path) -> None:
    s = StoreProcess(tmp_path / "bridge.db")
    await s.open()
    try:
        await s.accept([with_callback("p1")], now=T0)
        await s.record_state("p1", M.EXPIRED, at=T0 + 1)
        [due] = await s.callbacks_due(now=T0 + 1, limit=10)
        assert (due.message_id, due.state) == ("p1", "expired")
        await s.record_callback(due.id, "p1", outcome="delivered", attempts=1, next_at=T0 + 2,
                                at=T0 + 2, detail="HTTP 204")
        assert await s.callbacks_due(now=T0 + 10, limit=10) == []
    finally:
        await s.close()


def test_migration_from_version_2_keeps_messages_and_adds_the_trigger(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "old.db", isolation_level=None)
    assert migrate(conn, 2) == (0, 2)
    conn.execute(
        "INSERT INTO messages (id, account, ingress, recipient, raw_recipient, source_ton, "
        "source_npi, dest_ton, dest_npi, text, encoding, data_coding, esm_class, "
        "registered_delivery, state, parts, created_at, updated_at, expires_at, callback_url) "
        "VALUES ('old', 'acme', 'soap', '+447700900001', '07700900001', 0, 0, 1, 1, 'hi', "
        "'gsm7', 0, 0, 1, 'submitted', 1, 1.0, 1.0, 99.0, 'http://127.0.0.1:9/x')")
    assert migrate(conn, 3) == (2, 3)
    conn.execute("UPDATE messages SET state = 'delivered', updated_at = 5.0 WHERE id = 'old'")
    assert conn.execute("SELECT message_id, state, at, next_at FROM callbacks").fetchall() == [
        ("old", "delivered", 5.0, 5.0)]
    conn.close()


async def test_a_due_callback_is_taken_by_one_instance_at_a_time(store: Store) -> None:
    """Two instances looking at once take disjoint callbacks; a taken one is nobody else's
    until its hold ends (its taker died) or its attempt is recorded."""
    await store.accept([with_callback(f"k{i}", recipient=f"+4477009001{i:02d}")
                        for i in range(20)], now=T0)
    for i in range(20):
        await store.record_state(f"k{i}", M.FAILED, at=T0 + 1, error="INVALID_DESTINATION")
    other = another(store)
    await other.open()
    try:
        a, b = await asyncio.gather(*[
            s.claim_callbacks(owner, now=T0 + 10, hold_until=T0 + 70, limit=15)
            for s, owner in ((store, "A"), (other, "B"))])
        taken_a, taken_b = {c.id for c in a}, {c.id for c in b}
        assert not taken_a & taken_b and len(taken_a | taken_b) == 20
        assert await store.callbacks_due(now=T0 + 60, limit=50) == []  # all held
        first = a[0]
        await store.record_callback(first.id, first.message_id, outcome="retry", attempts=1,
                                    next_at=T0 + 20, at=T0 + 11, detail="HTTP 503")
        # a retry is due again at its time, for anyone; the others once their hold ends
        assert [c.id for c in await store.callbacks_due(now=T0 + 30, limit=50)] == [first.id]
        assert len(await store.claim_callbacks("C", now=T0 + 71, hold_until=T0 + 200,
                                               limit=50)) == 20
    finally:
        await other.close()
