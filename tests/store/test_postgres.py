"""What only the PostgreSQL store has: statistics for the planner on a new database, its
schema's migrations from older versions, statements joined into one, and the receipts' writer
lane."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import asyncpg

from bridge.core.states import MessageState
from bridge.store.pg_schema import LATEST_VERSION, migrate
from bridge.store.common import Op, receipts_after_submits
from bridge.store.postgres import (
    PostgresStore,
    _Lane,
    _behind_submits,
    _joined_sql,
    _receipt,
    _state,
    _submitted,
)

from .test_contract import T0, msg


async def test_the_first_thousand_accepted_are_analyzed_once_committed(pg_url: str) -> None:
    """The store ANALYZEs its tables at 1,000 accepted messages. Started inside the accepting
    transaction, ANALYZE saw the table empty; plans made from "no rows" read every message of
    the account for each duplicate digest (seconds per accept run) until the next ANALYZE."""
    store = PostgresStore(pg_url)
    await store.open()
    try:
        outcomes = await store.accept([msg(f"m{i}", digest=f"d{i}", recipient=f"+4477009{i:05d}")
                                       for i in range(1200)], now=T0)
        assert {o.status for o in outcomes} == {"accepted"}
        assert store._analyze_at == 10_000  # started at 1,000; the next at 10,000
        for _ in range(200):  # it runs in the background
            if store._analyzer is None:
                break
            await asyncio.sleep(0.05)
        assert store._analyzer is None
    finally:
        await store.close()
    conn = await asyncpg.connect(pg_url)
    try:
        assert await conn.fetchval(
            "SELECT reltuples FROM pg_class WHERE relname = 'messages'") >= 1200
    finally:
        await conn.close()


async def test_a_version_1_database_migrates_and_still_reports_only_what_was_asked(
        pg_url: str) -> None:
    """Version 2 puts the message-final trigger behind a WHEN test (messages nobody asked a
    report of no longer run its function) and leaves room on the messages' pages. A database
    written at version 1 migrates, and its messages report as before."""
    conn = await asyncpg.connect(pg_url)
    try:
        assert await migrate(conn, target=1) == (0, 1)
    finally:
        await conn.close()
    store = PostgresStore(pg_url)
    await store.open()
    try:
        assert store.schema == (1, LATEST_VERSION)
        asked = dataclasses.replace(msg("cb1"), callback_url="http://127.0.0.1:9/cb")
        await store.accept([asked, msg("quiet", recipient="+447700900002")], now=T0)
        for mid in ("cb1", "quiet"):
            await store.record_state(mid, MessageState.FAILED, at=T0 + 1,
                                     error="INTERNAL_ERROR", detail="test")
        [callback] = await store.callbacks_due(now=T0 + 10, limit=10)
        assert (callback.message_id, callback.state) == ("cb1", "failed")
    finally:
        await store.close()
    conn = await asyncpg.connect(pg_url)
    try:
        for table in ("messages", "parts"):  # parts since version 4
            options = await conn.fetchval("SELECT reloptions FROM pg_class WHERE relname = $1",
                                          table)
            assert "fillfactor=80" in options
        when = await conn.fetchval("SELECT pg_get_triggerdef(oid) FROM pg_trigger "
                                   "WHERE tgname = 'messages_final'")
        assert "WHEN" in when and "callback_url IS NOT NULL" in when
    finally:
        await conn.close()


def test_joined_statements_number_their_parameters_after_the_previous_ones() -> None:
    """`_write_together` sends a run's writes as one statement: each keeps its parameters,
    renumbered after those of the statements before it (a $1 used twice stays one)."""
    joined = _joined_sql(("UPDATE a SET x = $1 WHERE id = $2 AND y = $1",
                          "INSERT INTO b SELECT * FROM unnest($1::text[], $2::int[])",
                          "DELETE FROM c WHERE id = $1"))
    assert joined == ("WITH w0 AS (UPDATE a SET x = $1 WHERE id = $2 AND y = $1), "
                      "w1 AS (INSERT INTO b SELECT * FROM unnest($3::text[], $4::int[])), "
                      "w2 AS (DELETE FROM c WHERE id = $5) SELECT 1")


async def test_joined_statements_run_as_one_on_the_server(pg_url: str) -> None:
    conn = await asyncpg.connect(pg_url)
    try:
        await conn.execute("CREATE TABLE j (id int PRIMARY KEY, v text)")
        await conn.execute("INSERT INTO j VALUES (1, 'a')")
        await conn.execute(_joined_sql(("UPDATE j SET v = $1 WHERE id = $2",
                                        "INSERT INTO j SELECT * FROM unnest($1::int[], "
                                        "$2::text[])")), "b", 1, [2, 3], ["c", "d"])
        assert [tuple(r) for r in await conn.fetch("SELECT id, v FROM j ORDER BY id")] == \
            [(1, "b"), (2, "c"), (3, "d")]
    finally:
        await conn.close()


def _op(fn: Any, order: int, *args: Any) -> Op:
    return Op(fn, args, None, 1, order)


def _records(running: list[Op], queued: list[Op]) -> _Lane:
    lane = _Lane()
    lane.running = running
    lane.queue.extend(queued)
    return lane


def _shape(ops: Any) -> list[tuple[str, int, float]]:
    """(what, when queued, at) of each write: a receipt moved is a new Op, timed anew."""
    return [(op.fn.__name__, op.order, op.args[-1]) for op in ops]


def test_a_receipt_waits_for_its_uncommitted_submit_where_one_lane_would_apply_it() -> None:
    """Receipts have a lane of their own; one whose submit record the records lane has not
    committed joins that lane in its own place (by the order writes were queued in), timed
    no earlier than its submit, and the records lane applies it behind the submit, as one
    lane holding both would: it matches at once instead of being stored as an orphan (the
    contract's one-batch test shows the outcome; this shows each placement)."""
    def submit(order: int, mid: str, key: str, at: float) -> Op:
        return _op(_submitted, order, mid, 1, "s", key, (key,), at)

    def receipt(order: int, key: str, at: float) -> Op:
        return _op(_receipt, order, "s", (key,), None, "DELIVRD", "000", at)

    def state(order: int) -> Op:
        return _op(_state, order, "x", MessageState.FAILED, 1.0, None, 2.5)

    def applied(lane: _Lane) -> list[tuple[str, int, float]]:
        return _shape(receipts_after_submits(list(lane.queue), _submitted, _receipt))

    # Its submit runs now (queued after it): next in the queue, timed no earlier than it.
    lane = _records([submit(6, "a", "k1", 3.0)], [state(9)])
    assert _behind_submits([receipt(5, "k1", 2.0)], lane) == []
    assert _shape(lane.queue) == [("_receipt", 5, 3.0), ("_state", 9, 2.5)]
    # Its submit was queued before it: in its own place among the queued writes.
    lane = _records([], [submit(2, "a", "k1", 1.0), state(7)])
    assert _behind_submits([receipt(5, "k1", 2.0)], lane) == []
    assert applied(lane) == [("_submitted", 2, 1.0), ("_receipt", 5, 2.0), ("_state", 7, 2.5)]
    # Queued after it, only submits between: applied right behind them, timed no earlier.
    lane = _records([], [submit(6, "b", "k9", 3.0), submit(7, "a", "k1", 4.0), state(8)])
    assert _behind_submits([receipt(5, "k1", 2.0)], lane) == []
    assert applied(lane) == [("_submitted", 6, 3.0), ("_submitted", 7, 4.0),
                             ("_receipt", 5, 4.0), ("_state", 8, 2.5)]
    # Another write between them, or no submit of its key: it runs now, nothing moves.
    for queued in ([state(6), submit(7, "a", "k1", 4.0)], [submit(7, "a", "k2", 4.0)]):
        lane = _records([], list(queued))
        r = receipt(5, "k1", 2.0)
        assert _behind_submits([r], lane) == [r] and list(lane.queue) == queued
