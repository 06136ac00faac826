"""Report events beyond the final states (SQLite schema migration 10): a message's report_mask asks
for "submitted" (every part accepted by the SMSC) and "buffered" (an interim receipt) as well,
queued in the transaction that records them, by every path that does; what a report needs of
the message comes with it; inbound SMS to an account's number are queued for its mo_url."""

from __future__ import annotations

import asyncio
import dataclasses
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from bridge.core.reports import ALL_EVENTS, EVENT_OF, FINAL_EVENTS, ReportEvent
from bridge.core.states import MessageState, PartState
from bridge.runtime import StoreProcess
from bridge.store import InboundMessage, NewMessage, SqliteStore
from bridge.store.schema import migrate
from bridge.store.base import Store
from bridge.store.schema import LATEST_VERSION
from tests.store.test_contract import T0, msg, receipt, submit

M = MessageState
P = PartState
URL = "http://127.0.0.1:9/dlr?type=%d"
E = ReportEvent


def reported(mid: str, mask: int | None, **kw: Any) -> NewMessage:
    return dataclasses.replace(msg(mid, **kw), callback_url=URL, report_mask=mask)


async def events(store: Store) -> list[tuple[str, str, str | None]]:
    return [(d.message_id, d.state, d.event_detail)
            for d in await store.callbacks_due(now=T0 + 1000, limit=100)]


async def test_a_full_mask_hears_of_submit_buffer_and_delivery(store: Store) -> None:
    await store.accept([reported("k1", int(ALL_EVENTS))], now=T0)
    await submit(store, "k1", 1, "1F")
    assert await events(store) == [("k1", "submitted", None)]
    await receipt(store, "31", None, stat="ENROUTE", at=T0 + 2)
    await receipt(store, "31", None, stat="ENROUTE", at=T0 + 3)  # the same again: nothing new
    await receipt(store, "31", P.DELIVERED, at=T0 + 4)
    assert await events(store) == [("k1", "submitted", None), ("k1", "buffered", "ENROUTE"),
                                   ("k1", "delivered", None)]
    [_, buffered, _] = await store.callbacks_due(now=T0 + 1000, limit=10)
    assert buffered.at == T0 + 2


@pytest.mark.parametrize(("mask", "expected"), [
    (E.SUBMITTED, ["submitted"]),
    (E.DELIVERED, []),  # the receipt failed it: not asked for
    (E.UNDELIVERED | E.BUFFERED, ["buffered", "undeliverable"]),
    (None, ["undeliverable"]),  # no mask: the final states, as SOAP callbacks
    (0, []),
])
async def test_only_the_events_in_the_mask_are_queued(store: Store, mask: int | None,
                                                      expected: list[str]) -> None:
    await store.accept([reported("m1", mask)], now=T0)
    await submit(store, "m1", 1, "1F")
    await receipt(store, "31", None, stat="ACCEPTD", at=T0 + 2)
    await receipt(store, "31", P.UNDELIVERABLE, stat="UNDELIV", at=T0 + 3)
    assert [state for _, state, _ in await events(store)] == expected


async def test_a_refused_submit_is_the_failed_event(store: Store) -> None:
    await store.accept([reported("r1", int(E.FAILED | E.SUBMITTED))], now=T0)
    await store.record_state("r1", M.FAILED, at=T0 + 1, error="INVALID_SOURCE",
                             detail="part 1/1: submit_sm_resp 0x0000000A after 1 attempt(s)")
    [due] = await store.callbacks_due(now=T0 + 1, limit=10)
    assert (due.state, due.error, due.smsc_id) == ("failed", "INVALID_SOURCE", None)
    assert due.error_detail is not None and "0x0000000A" in due.error_detail


async def test_a_multipart_message_is_submitted_once_every_part_is(store: Store) -> None:
    await store.accept([reported("mp", int(E.SUBMITTED | E.BUFFERED), parts=2)], now=T0)
    await submit(store, "mp", 1, "A1")
    assert await events(store) == []
    await submit(store, "mp", 2, "A2", at=T0 + 2)
    await receipt(store, str(0xA2), None, stat="ACCEPTD", at=T0 + 3)
    assert await events(store) == [("mp", "submitted", None), ("mp", "buffered", "ACCEPTD")]
    [_, due] = await store.callbacks_due(now=T0 + 1000, limit=10)
    assert (due.smsc, due.smsc_id, due.submitted_at) == ("smsc1", "A1", T0 + 1)
    assert (due.receipt_stat, due.receipt_err) == ("ACCEPTD", "000")


async def test_batched_submits_and_interim_receipts_queue_one_each(store: Store) -> None:
    """The run forms of `submitted` and `receipt` (a draining batch) queue what one by one
    would."""
    ids = [f"b{i}" for i in range(4)]
    await store.accept([reported(i, int(ALL_EVENTS), recipient=f"+4477009000{n:02d}")
                        for n, i in enumerate(ids)], now=T0)
    await asyncio.gather(*(submit(store, mid, 1, f"{0x100 + n:X}")
                           for n, mid in enumerate(ids)))
    await asyncio.gather(*(receipt(store, str(0x100 + n), None, stat="ENROUTE", at=T0 + 2)
                           for n in range(4)))
    found = await events(store)
    assert sorted(found) == sorted([(i, "submitted", None) for i in ids]
                                   + [(i, "buffered", "ENROUTE") for i in ids])


async def test_what_a_report_needs_comes_with_it(store: Store) -> None:
    await store.accept([reported("w1", None)], now=T0)
    await submit(store, "w1", 1, "2A", at=T0 + 1)
    await receipt(store, str(0x2A), P.DELIVERED, at=T0 + 5)
    [due] = await store.callbacks_due(now=T0 + 5, limit=10)
    assert (due.raw_recipient, due.source_addr, due.text, due.created_at) == (
        "07700900001", "ACME", "hello w1", T0)
    assert (due.report_mask, due.smsc, due.smsc_id, due.submitted_at) == (None, "smsc1", "2A",
                                                                          T0 + 1)
    assert (due.receipt_stat, due.receipt_err, due.event_detail) == ("DELIVRD", "000", None)


async def test_a_late_interim_receipt_after_a_final_one_is_not_buffered(
        store: Store) -> None:
    await store.accept([reported("l1", int(E.BUFFERED))], now=T0)
    await submit(store, "l1", 1, "1F")
    await receipt(store, "31", P.DELIVERED, at=T0 + 2)
    await receipt(store, "31", None, stat="ACCEPTD", at=T0 + 3)
    assert await events(store) == []


def test_the_trigger_and_the_core_agree_on_every_state(tmp_path: Path) -> None:
    """For each state, the trigger queues a report exactly when the core says the mask wants
    it (bridge.core.reports.EVENT_OF)."""
    conn = sqlite3.connect(tmp_path / "t.db", isolation_level=None)
    migrate(conn)
    for n, (state, event) in enumerate(s for s in EVENT_OF.items() if s[0] != "buffered"):
        for mask in (None, 0, int(event), int(ALL_EVENTS & ~event)):
            mid = f"{n}-{mask}"
            conn.execute(
                "INSERT INTO messages (id, account, ingress, recipient, raw_recipient, "
                "source_ton, source_npi, dest_ton, dest_npi, text, encoding, data_coding, "
                "esm_class, registered_delivery, state, parts, created_at, updated_at, "
                "expires_at, callback_url, report_mask) VALUES (?, 'a', 'http', '+1', '1', 0, "
                "0, 1, 1, 't', 'gsm7', 0, 0, 1, 'queued', 1, 1.0, 1.0, 99.0, 'http://x/', ?)",
                (mid, mask))
            conn.execute("UPDATE messages SET state = ? WHERE id = ?", (state, mid))
            queued = conn.execute("SELECT count(*) FROM callbacks WHERE message_id = ?",
                                  (mid,)).fetchone()[0]
            wanted = (FINAL_EVENTS if mask is None else mask) & event
            assert queued == (1 if wanted else 0), (state, mask)
    conn.close()


@pytest.mark.parametrize("state", [s for s in EVENT_OF if s != "buffered"])
async def test_each_store_queues_a_state_exactly_when_the_core_says(store: Store,
                                                                   state: str) -> None:
    """The same rule as the SQLite trigger's test above, through the contract, so the
    PostgreSQL store's trigger is held to it too."""
    event = EVENT_OF[state]
    masks = (None, 0, int(event), int(ALL_EVENTS & ~event))
    await store.accept([reported(f"t{n}", mask, recipient=f"+4477009002{n:02d}")
                        for n, mask in enumerate(masks)], now=T0)
    for n in range(len(masks)):
        if state == MessageState.CANCELLED.value:  # only an operator cancels
            [done] = await store.cancel([f"t{n}"], at=T0 + 1, actor="test")
            assert done.done
        else:
            await store.record_state(f"t{n}", MessageState(state), at=T0 + 1, detail="test")
    queued = {d.message_id for d in await store.callbacks_due(now=T0 + 10, limit=50)}
    for n, mask in enumerate(masks):
        wanted = (FINAL_EVENTS if mask is None else mask) & event
        assert (f"t{n}" in queued) == bool(wanted), (state, mask)


def test_migration_from_version_6_keeps_final_callbacks_for_older_messages(
        tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "old.db", isolation_level=None)
    migrate(conn, 6)
    conn.execute(
        "INSERT INTO messages (id, account, ingress, recipient, raw_recipient, source_ton, "
        "source_npi, dest_ton, dest_npi, text, encoding, data_coding, esm_class, "
        "registered_delivery, state, parts, created_at, updated_at, expires_at, callback_url) "
        "VALUES ('old', 'acme', 'soap', '+447700900001', '07700900001', 0, 0, 1, 1, 'hi', "
        "'gsm7', 0, 0, 1, 'queued', 1, 1.0, 1.0, 99.0, 'http://127.0.0.1:9/x')")
    assert migrate(conn) == (6, LATEST_VERSION)
    conn.execute("UPDATE messages SET state = 'submitted', updated_at = 4.0 WHERE id = 'old'")
    conn.execute("UPDATE messages SET state = 'delivered', updated_at = 5.0 WHERE id = 'old'")
    assert conn.execute("SELECT message_id, state, at FROM callbacks").fetchall() == [
        ("old", "delivered", 5.0)]
    conn.close()


# ------------------------------------------------------------------ inbound SMS to mo_url

def inbound(iid: str, *, push: bool, at: float = T0) -> InboundMessage:
    return InboundMessage(id=iid, smsc="smsc1", source="+447700900001",
                          destination="+447400000001", text=f"reply {iid}", received_at=at,
                          reply_to_message_id=None, account="acme" if push else None,
                          push_url="http://127.0.0.1:9/mo" if push else None)


async def test_an_inbound_sms_for_an_account_is_queued_for_its_mo_url(
        store: Store) -> None:
    await store.record_inbound(inbound("i1", push=True))
    await store.record_inbound(inbound("i2", push=False))
    [due] = await store.pushes_due(now=T0, limit=10)
    assert (due.inbound_id, due.account, due.url, due.attempts) == (
        "i1", "acme", "http://127.0.0.1:9/mo", 0)
    assert (due.source, due.destination, due.text, due.smsc, due.received_at) == (
        "+447700900001", "+447400000001", "reply i1", "smsc1", T0)
    await store.record_push(due.id, outcome="retry", attempts=1, next_at=T0 + 60,
                            detail="HTTP 500")
    assert await store.pushes_due(now=T0 + 59, limit=10) == []
    [again] = await store.pushes_due(now=T0 + 60, limit=10)
    assert again.attempts == 1
    with pytest.raises(Exception, match="unknown attempt outcome"):
        await store.record_push(due.id, outcome="maybe", attempts=2, next_at=T0, detail="")
    await store.record_push(due.id, outcome="delivered", attempts=2, next_at=T0, detail="")
    assert await store.pushes_due(now=T0 + 1e6, limit=10) == []


async def test_pushes_cross_the_pipe_and_go_with_old_replies(tmp_path: Path) -> None:
    s = StoreProcess(tmp_path / "bridge.db")
    await s.open()
    try:
        await s.record_inbound(inbound("p1", push=True))
        [due] = await s.pushes_due(now=T0, limit=10)
        assert due.inbound_id == "p1"
        await s.accept([msg("old")], now=T0)
        await s.record_state("old", M.FAILED, at=T0 + 1, error="INTERNAL_ERROR")
        assert await s.purge(before=T0 + 10, limit=10) == 1
        assert await s.pushes_due(now=T0 + 1e6, limit=10) == []
    finally:
        await s.close()
