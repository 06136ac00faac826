"""The contract suite's store: every test that takes `store` runs against SQLite and against
PostgreSQL (a fresh database of the session's throwaway server, tests/postgres.py), so no
behaviour of the Store contract exists in one implementation only."""

from __future__ import annotations

import asyncio
import re
import sqlite3
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Protocol

import asyncpg
import pytest

from bridge.store.base import Store
from bridge.store.common import Op
from bridge.store.postgres import PostgresStore
from bridge.store.sqlite import SqliteStore


@pytest.fixture(params=["sqlite", "postgres"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    s: Store
    if request.param == "sqlite":
        s = SqliteStore(tmp_path / "bridge.db")
    else:
        s = PostgresStore(request.getfixturevalue("pg_url"))
    await s.open()
    try:
        yield s
    finally:
        await s.close()


async def query(store: Store, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    """Rows of `sql` (written with SQLite's `?` placeholders) read straight from the store's
    database, for tests that look at what the contract leaves no method to read."""
    if isinstance(store, SqliteStore):
        with sqlite3.connect(store.path) as conn:
            return [tuple(r) for r in conn.execute(sql, args).fetchall()]
    assert isinstance(store, PostgresStore)
    numbered = iter(range(1, 1000))
    conn = await asyncpg.connect(store.url)
    try:
        return [tuple(r) for r in await conn.fetch(
            re.sub(r"\?", lambda _: f"${next(numbered)}", sql), *args)]
    finally:
        await conn.close()


def another(store: Store) -> Store:
    """A second store on the same database, not opened: another process, another instance."""
    if isinstance(store, SqliteStore):
        return SqliteStore(store.path)
    assert isinstance(store, PostgresStore)
    return PostgresStore(store.url)


class Gate(Protocol):
    def set(self) -> None: ...


def lanes(store: Store) -> int:
    """The store's writers that commit on their own (PostgreSQL: accepts and the rest)."""
    return len(store._lanes) if isinstance(store, PostgresStore) else 1


def hold_writer(store: Store) -> Gate:
    """Park the store's writer inside an operation, so that what is issued next forms one
    batch (one transaction) once the gate is set."""
    if isinstance(store, SqliteStore):
        thread_gate = threading.Event()

        def block(writer: Any, tx: Any) -> None:
            thread_gate.wait(10)

        store._submit(block, ())
        return thread_gate
    assert isinstance(store, PostgresStore)
    loop_gate = asyncio.Event()

    async def wait(store: Any, tx: Any) -> None:
        await asyncio.wait_for(loop_gate.wait(), 10)

    for lane in store._lanes:  # every writer lane parks: accepts and the outbound records
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        lane.queue.append(Op(wait, (), future))
        lane.wake.set()
    return loop_gate


async def parts_used(store: Store, account: str) -> int:
    """Parts the account has had accepted so far (Store.usage)."""
    [usage] = await store.usage([account])
    return usage.used
