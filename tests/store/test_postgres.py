"""What only the PostgreSQL store has: statistics for the planner on a new database."""

from __future__ import annotations

import asyncio

import asyncpg

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
