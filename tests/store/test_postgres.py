"""What only the PostgreSQL store has: statistics for the planner on a new database, and its
schema's migrations from older versions."""

from __future__ import annotations

import asyncio

import dataclasses

import asyncpg

from bridge.core.states import MessageState
from bridge.store.pg_schema import LATEST_VERSION, migrate
from bridge.store.postgres import PostgresStore

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
        options = await conn.fetchval("SELECT reloptions FROM pg_class WHERE relname = 'messages'")
        assert "fillfactor=80" in options
        when = await conn.fetchval("SELECT pg_get_triggerdef(oid) FROM pg_trigger "
                                   "WHERE tgname = 'messages_final'")
        assert "WHEN" in when and "callback_url IS NOT NULL" in when
    finally:
        await conn.close()
