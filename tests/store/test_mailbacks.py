"""Mail back in the SQLite store: DSNs queued by the transaction that makes a message final when
its dsn_notify asks for that outcome, SMS replies queued with the MO, each attempt recorded."""

from __future__ import annotations

import dataclasses
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from bridge.core.states import MessageState, PartState
from bridge.store import InboundMessage, NewMessage, SqliteStore
from bridge.runtime import StoreProcess
from bridge.store.schema import migrate
from bridge.store.sqlite import DELAY_DUE
from tests.store.test_sqlite import T0, msg, receipt, store, submit  # noqa: F401 - fixture

M = MessageState
P = PartState
NUMBER = "+447400123456"
META = '{"mail_from": "alice@example.com", "subject": "Hi"}'


def with_dsn(mid: str, notify: str | None = "SUCCESS,FAILURE", **kw: Any) -> NewMessage:
    kw.setdefault("recipient", NUMBER)
    return dataclasses.replace(msg(mid, **kw), dsn_notify=notify, meta_json=META)


def mo(mid: str, reply_to: str | None, *, mail_reply: bool = True,
       text: str = "yes please", at: float = T0 + 30) -> InboundMessage:
    return InboundMessage(mid, "smsc1", NUMBER, "+447400000001", text, at, reply_to,
                          mail_reply=mail_reply)


def mailback_rows(store: SqliteStore) -> list[tuple[Any, ...]]:
    with sqlite3.connect(store.path) as conn:
        return conn.execute("SELECT kind, message_id, inbound_id, state, at, attempts, next_at, "
                            "last_error FROM mailbacks ORDER BY id").fetchall()


FINAL = [(M.DELIVERED, None), (M.UNDELIVERABLE, None), (M.EXPIRED, None),
         (M.FAILED, "INVALID_DESTINATION")]
WANTS = {"SUCCESS": {M.DELIVERED},
         "FAILURE": {M.UNDELIVERABLE, M.EXPIRED, M.FAILED},
         "SUCCESS,FAILURE": {M.DELIVERED, M.UNDELIVERABLE, M.EXPIRED, M.FAILED}}


@pytest.mark.parametrize("notify", sorted(WANTS))
@pytest.mark.parametrize(("state", "error"), FINAL)
async def test_a_final_state_queues_a_dsn_only_when_asked_for(
        store: SqliteStore, notify: str, state: MessageState, error: str | None) -> None:
    await store.accept([with_dsn("d1", notify)], now=T0)
    await store.record_state("d1", state, at=T0 + 5, error=error, detail="why")
    expected = [("dsn", "d1", None, state.value, T0 + 5, 0, T0 + 5, None)]
    assert mailback_rows(store) == (expected if state in WANTS[notify] else [])


@pytest.mark.parametrize(("state", "error"), FINAL)
async def test_no_dsn_without_dsn_notify(store: SqliteStore, state: MessageState,
                                         error: str | None) -> None:
    await store.accept([with_dsn("n1", None)], now=T0)
    await store.record_state("n1", state, at=T0 + 5, error=error)
    assert mailback_rows(store) == []


async def test_no_dsn_when_the_state_does_not_change(store: SqliteStore) -> None:
    await store.accept([with_dsn("s1"), with_dsn("s2", recipient="+447400123457")], now=T0)
    await submit(store, "s1", 1, "1F")  # queued -> submitted: not final
    assert mailback_rows(store) == []
    await receipt(store, "31", P.DELIVERED, at=T0 + 2)
    await receipt(store, "31", P.DELIVERED, at=T0 + 3)  # the same receipt again
    await store.record_state("s2", M.FAILED, at=T0 + 4, error="INTERNAL_ERROR")
    await store.record_state("s2", M.FAILED, at=T0 + 6, error="INTERNAL_ERROR")
    with sqlite3.connect(store.path) as conn:  # an update that keeps the state
        conn.execute("UPDATE messages SET state = state, updated_at = ? WHERE id = 's1'",
                     (T0 + 9,))
    assert [(r[1], r[3], r[4]) for r in mailback_rows(store)] == [
        ("s1", "delivered", T0 + 2), ("s2", "failed", T0 + 4)]


async def test_a_refined_verdict_queues_a_second_dsn(store: SqliteStore) -> None:
    await store.accept([with_dsn("r1"), with_dsn("r2", "FAILURE", recipient="+447400123457")],
                       now=T0)
    for mid in ("r1", "r2"):
        await store.record_state(mid, M.UNDELIVERABLE, at=T0 + 2)
        await store.record_state(mid, M.DELIVERED, at=T0 + 3)
    assert [(r[1], r[3], r[4]) for r in mailback_rows(store)] == [
        ("r1", "undeliverable", T0 + 2), ("r1", "delivered", T0 + 3),
        ("r2", "undeliverable", T0 + 2)]


async def test_mailbacks_due_joins_the_message(store: SqliteStore) -> None:
    await store.accept([with_dsn("j1", parts=2, at=T0 - 7)], now=T0)
    await submit(store, "j1", 1, "A1")
    await submit(store, "j1", 2, "A2")
    await receipt(store, str(0xA1), P.DELIVERED, at=T0 + 2)
    await store.record_state("j1", M.FAILED, at=T0 + 4, error="INVALID_DESTINATION",
                             detail="barred")
    assert await store.mailbacks_due(now=T0 + 3, limit=10) == []  # not before it happened
    [due] = await store.mailbacks_due(now=T0 + 4, limit=10)
    assert (due.kind, due.message_id, due.state, due.at, due.attempts) == (
        "dsn", "j1", "failed", T0 + 4, 0)
    assert (due.recipient, due.meta_json, due.created_at, due.parts, due.parts_delivered) == (
        NUMBER, META, T0 - 7, 2, 1)
    assert (due.error, due.error_detail) == ("INVALID_DESTINATION", "barred")
    assert (due.inbound_id, due.inbound_source, due.inbound_text) == (None, None, None)


async def test_mailbacks_due_respects_next_at_and_limit(store: SqliteStore) -> None:
    ids = [f"l{i}" for i in range(4)]
    await store.accept([with_dsn(mid, recipient=f"+44740012345{i}")
                        for i, mid in enumerate(ids)], now=T0)
    for i, mid in enumerate(ids):
        await store.record_state(mid, M.EXPIRED, at=T0 + 10 - i)  # l3 first, l0 last
    assert [d.message_id for d in await store.mailbacks_due(now=T0 + 8, limit=10)] == [
        "l3", "l2"]
    assert [d.message_id for d in await store.mailbacks_due(now=T0 + 10, limit=3)] == [
        "l3", "l2", "l1"]
    assert await store.mailbacks_due(now=T0 + 10, limit=0) == []


async def test_attempts_are_recorded_and_end_the_mail(store: SqliteStore) -> None:
    await store.accept([with_dsn("a1"), with_dsn("a2", recipient="+447400123457")], now=T0)
    for mid in ("a1", "a2"):
        await store.record_state(mid, M.FAILED, at=T0 + 1, error="INTERNAL_ERROR")
    first, second = await store.mailbacks_due(now=T0 + 1, limit=10)
    await store.record_mailback(first.id, "a1", kind="dsn", outcome="retry", attempts=1,
                                next_at=T0 + 60, at=T0 + 2, detail="451 4.3.0 try later")
    assert mailback_rows(store)[0] == (
        "dsn", "a1", None, "failed", T0 + 1, 1, T0 + 60, "451 4.3.0 try later")
    assert [d.message_id for d in await store.mailbacks_due(now=T0 + 59, limit=10)] == ["a2"]
    later = await store.mailbacks_due(now=T0 + 60, limit=10)
    assert [(d.message_id, d.attempts) for d in later] == [("a2", 0), ("a1", 1)]
    await store.record_mailback(first.id, "a1", kind="dsn", outcome="delivered", attempts=2,
                                next_at=T0 + 61, at=T0 + 61, detail="250 ok")
    assert [r[1] for r in mailback_rows(store)] == ["a2"]
    await store.record_mailback(second.id, "a2", kind="dsn", outcome="gave_up", attempts=1,
                                next_at=T0 + 61, at=T0 + 62, detail="550 5.1.1 no such user")
    assert mailback_rows(store) == []
    events = [(e.state, e.at, e.detail) for e in await store.timeline("a1")]
    assert events[-2:] == [("dsn_retry", T0 + 2, "451 4.3.0 try later"),
                           ("dsn", T0 + 61, "250 ok")]
    assert [(e.state, e.detail) for e in await store.timeline("a2")][-1] == (
        "dsn_failed", "550 5.1.1 no such user")


@pytest.mark.parametrize(("outcome", "event", "left"), [
    ("retry", "reply_retry", 1), ("delivered", "reply_mailed", 0), ("gave_up", "reply_failed", 0)])
async def test_a_reply_is_queued_with_the_mo_and_recorded(
        store: SqliteStore, outcome: str, event: str, left: int) -> None:
    await store.accept([with_dsn("o1", None)], now=T0)
    await store.record_inbound(mo("mo1", "o1", text="see you at 5"))
    [due] = await store.mailbacks_due(now=T0 + 30, limit=10)
    assert (due.kind, due.message_id, due.state, due.at, due.attempts, due.recipient) == (
        "reply", "o1", None, T0 + 30, 0, NUMBER)
    assert (due.inbound_id, due.inbound_source, due.inbound_text) == (
        "mo1", NUMBER, "see you at 5")
    assert await store.mailbacks_due(now=T0 + 29, limit=10) == []
    await store.record_mailback(due.id, "o1", kind="reply", outcome=outcome, attempts=1,
                                next_at=T0 + 90, at=T0 + 31, detail="smarthost said so")
    assert len(mailback_rows(store)) == left
    assert (await store.timeline("o1"))[-1].state == event


@pytest.mark.parametrize(("mail_reply", "reply_to"), [(False, "o1"), (True, None)])
async def test_no_reply_mail_unless_asked_and_routed(
        store: SqliteStore, mail_reply: bool, reply_to: str | None) -> None:
    await store.accept([with_dsn("o1")], now=T0)
    await store.record_inbound(mo("mo1", reply_to, mail_reply=mail_reply))
    assert mailback_rows(store) == []
    with sqlite3.connect(store.path) as conn:
        assert conn.execute("SELECT id, reply_to_message_id FROM inbound").fetchall() == [
            ("mo1", reply_to)]


@pytest.mark.parametrize(("kind", "outcome", "match"), [
    ("callback", "delivered", "unknown mail kind"),
    ("bounce", "retry", "unknown mail kind"),
    ("dsn", "maybe", "unknown attempt outcome"), ("reply", "dsn", "unknown attempt outcome")])
async def test_an_unknown_kind_or_outcome_is_refused_and_changes_nothing(
        store: SqliteStore, kind: str, outcome: str, match: str) -> None:
    await store.accept([with_dsn("u1")], now=T0)
    await store.record_state("u1", M.FAILED, at=T0 + 1, error="INTERNAL_ERROR")
    before_rows, before_events = mailback_rows(store), await store.timeline("u1")
    [due] = await store.mailbacks_due(now=T0 + 1, limit=10)
    with pytest.raises(Exception, match=match):
        await store.record_mailback(due.id, "u1", kind=kind, outcome=outcome, attempts=1,
                                    next_at=T0 + 9, at=T0 + 2, detail="x")
    assert mailback_rows(store) == before_rows
    assert await store.timeline("u1") == before_events


async def test_mailbacks_cross_the_pipe_to_the_store_process(tmp_path: Path) -> None:
    s = StoreProcess(tmp_path / "bridge.db")
    await s.open()
    try:
        await s.accept([with_dsn("p1")], now=T0)
        await s.record_state("p1", M.EXPIRED, at=T0 + 1)
        await s.record_inbound(mo("mo1", "p1", at=T0 + 2))
        due = await s.mailbacks_due(now=T0 + 2, limit=10)
        assert [(d.kind, d.state, d.inbound_text) for d in due] == [
            ("dsn", "expired", None), ("reply", None, "yes please")]
        for d in due:
            await s.record_mailback(d.id, "p1", kind=d.kind, outcome="delivered", attempts=1,
                                    next_at=T0 + 3, at=T0 + 3, detail="250 ok")
        assert await s.mailbacks_due(now=T0 + 10, limit=10) == []
        assert [e.state for e in await s.timeline("p1")][-2:] == ["dsn", "reply_mailed"]
        await s.accept([with_dsn("p2", "DELAY", recipient="+447400123457")], now=T0)
        assert await s.queue_delay_dsns(accepted_before=T0 + 1, now=T0 + 20, limit=5) == (1, 1)
        [late] = await s.mailbacks_due(now=T0 + 20, limit=10)
        assert (late.message_id, late.state, late.message_state) == ("p2", "delayed", "queued")
    finally:
        await s.close()


def test_migration_from_version_3_keeps_messages_and_adds_the_trigger(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "old.db", isolation_level=None)
    assert migrate(conn, 3) == (0, 3)
    conn.execute(
        "INSERT INTO messages (id, account, ingress, recipient, raw_recipient, source_ton, "
        "source_npi, dest_ton, dest_npi, text, encoding, data_coding, esm_class, "
        "registered_delivery, state, parts, created_at, updated_at, expires_at) "
        "VALUES ('old', 'acme', 'smtp', '+447400123456', '07400123456', 0, 0, 1, 1, 'hi', "
        "'gsm7', 0, 0, 1, 'submitted', 1, 1.0, 1.0, 99.0)")
    assert migrate(conn, 4) == (3, 4)
    assert conn.execute("SELECT id, state, text, dsn_notify FROM messages").fetchall() == [
        ("old", "submitted", "hi", None)]
    conn.execute("UPDATE messages SET state = 'queued', updated_at = 2.0 WHERE id = 'old'")
    conn.execute("UPDATE messages SET dsn_notify = 'FAILURE' WHERE id = 'old'")
    conn.execute("UPDATE messages SET state = 'delivered', updated_at = 4.0 WHERE id = 'old'")
    assert conn.execute("SELECT count(*) FROM mailbacks").fetchone() == (0,)  # not asked for
    conn.execute("UPDATE messages SET state = 'expired', updated_at = 5.0 WHERE id = 'old'")
    assert conn.execute("SELECT kind, message_id, state, at, next_at, attempts FROM mailbacks"
                        ).fetchall() == [("dsn", "old", "expired", 5.0, 5.0, 0)]
    conn.close()


# ------------------------------------------------------------------ delay notices

async def test_a_delay_notice_is_queued_once_for_messages_still_on_their_way(
        store: SqliteStore) -> None:
    await store.accept([
        with_dsn("q1", "FAILURE,DELAY"),  # stays queued
        with_dsn("s1", "DELAY", recipient="+447400123457"),  # submitted, no receipt yet
        with_dsn("f1", "SUCCESS,DELAY", recipient="+447400123458"),  # final before its time
        with_dsn("n1", "SUCCESS,FAILURE", recipient="+447400123459"),  # never asked
        dataclasses.replace(with_dsn("w1", "DELAY", recipient="+447400123460"),
                            state=M.SCHEDULED, send_at=T0 + 7200),  # waits by design
        with_dsn("late", "DELAY", recipient="+447400123461", at=T0 + 100),  # not due yet
    ], now=T0)
    await submit(store, "s1", 1, "5A")
    await store.record_state("f1", M.DELIVERED, at=T0 + 5)
    before = mailback_rows(store)
    assert [(r[1], r[3]) for r in before] == [("f1", "delivered")]

    assert await store.queue_delay_dsns(accepted_before=T0 - 1, now=T0 + 60, limit=10) == (0, 0)
    # q1 and s1 are late; f1 is final, w1 scheduled: looked at, nothing to tell
    assert await store.queue_delay_dsns(accepted_before=T0 + 50, now=T0 + 60, limit=10) == (
        4, 2)
    assert [(r[1], r[3], r[4], r[6]) for r in mailback_rows(store)[1:]] == [
        ("q1", "delayed", T0 + 60, T0 + 60), ("s1", "delayed", T0 + 60, T0 + 60)]
    # Each message is looked at once: nothing again, and the later one in its own time.
    assert await store.queue_delay_dsns(accepted_before=T0 + 50, now=T0 + 70, limit=10) == (0, 0)
    assert await store.queue_delay_dsns(accepted_before=T0 + 200, now=T0 + 210, limit=10) == (
        1, 1)
    due = await store.mailbacks_due(now=T0 + 300, limit=10)
    assert [(d.message_id, d.state, d.message_state) for d in due] == [
        ("f1", "delivered", "delivered"), ("q1", "delayed", "queued"),
        ("s1", "delayed", "submitted"), ("late", "delayed", "queued")]
    # A delay notice does not stand in for the final report the recipient also asked for.
    await store.record_state("q1", M.FAILED, at=T0 + 400, error="INVALID_DESTINATION")
    assert [(r[1], r[3]) for r in mailback_rows(store)][-1] == ("q1", "failed")


async def test_delay_scans_take_the_oldest_first_up_to_the_limit(store: SqliteStore) -> None:
    await store.accept([with_dsn(f"m{i}", "DELAY", recipient=f"+4474001234{i:02d}",
                                 at=T0 + i) for i in range(5)], now=T0)
    assert await store.queue_delay_dsns(accepted_before=T0 + 10, now=T0 + 20, limit=3) == (3, 3)
    assert await store.queue_delay_dsns(accepted_before=T0 + 10, now=T0 + 20, limit=3) == (2, 2)
    assert [r[1] for r in mailback_rows(store)] == [f"m{i}" for i in range(5)]


def test_migration_from_version_5_owes_no_delay_notice_for_older_messages(
        tmp_path: Path) -> None:
    """Before version 6 DELAY was never kept, so nothing accepted then owes a notice; the
    look for due notices reads only the partial index."""
    conn = sqlite3.connect(tmp_path / "old.db", isolation_level=None)
    migrate(conn, 5)
    conn.execute(
        "INSERT INTO messages (id, account, ingress, recipient, raw_recipient, source_ton, "
        "source_npi, dest_ton, dest_npi, text, encoding, data_coding, esm_class, "
        "registered_delivery, state, parts, created_at, updated_at, expires_at, dsn_notify) "
        "VALUES ('old', 'acme', 'smtp', '+447400123456', '07400123456', 0, 0, 1, 1, 'hi', "
        "'gsm7', 0, 0, 1, 'submitted', 1, 1.0, 1.0, 99.0, 'SUCCESS,FAILURE')")
    assert migrate(conn, 6) == (5, 6)
    assert conn.execute("SELECT dsn_delay_owed FROM messages").fetchall() == [(None,)]
    plan = " ".join(str(row) for row in conn.execute(f"EXPLAIN QUERY PLAN {DELAY_DUE}",
                                                      (10.0, 5)))
    assert "messages_dsn_delay" in plan
    conn.close()
