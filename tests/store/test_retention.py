"""Retention: the store deletes final messages unchanged since a moment, with everything that
refers to them, oldest first and a bounded number per call; nothing unfinished or recent goes.
Then the sweep that calls it, and a whole bridge that sweeps on start."""

from __future__ import annotations

import asyncio
import dataclasses
import sqlite3
from pathlib import Path

from bridge.core.states import MessageState, PartState
from bridge.outbound.retention import Retention
from bridge.store import InboundMessage, SqliteStore
from bridge.store.schema import migrate
from tests.conftest import make_config, running_bridge, timeline_until
from tests.smtp.test_server import RCPT, in_thread, mail, message_id_of, send
from bridge.store.base import Store
from tests.store.conftest import query
from tests.store.test_contract import T0, msg, receipt, submit

M = MessageState
TABLES = ("messages", "parts", "events", "smsc_keys", "callbacks", "mailbacks", "inbound")


async def counts(store: Store) -> dict[str, int]:
    return {t: (await query(store, f"SELECT count(*) FROM {t}"))[0][0] for t in TABLES}


async def ids(store: Store) -> list[str]:
    """The ids still kept, sorted."""
    return [r[0] for r in await query(store, "SELECT id FROM messages ORDER BY id")]


async def delivered(store: Store, mid: str, smsc_id: str, *, at: float = T0) -> None:
    """A message accepted at `at`, submitted and delivered a second later, with a callback
    and a DSN queued by the final state."""
    await store.accept([dataclasses.replace(msg(mid, at=at), callback_url="http://127.0.0.1:9/",
                                            dsn_notify="SUCCESS")], now=at)
    await submit(store, mid, 1, smsc_id, at=at + 1)
    outcome = await receipt(store, str(int(smsc_id, 16)), PartState.DELIVERED, at=at + 1)
    assert outcome.message_state is M.DELIVERED


async def test_old_final_messages_go_with_all_that_refers_to_them(store: Store) -> None:
    await delivered(store, "old", "a1")
    await store.accept([msg("stuck", at=T0)], now=T0)  # queued for ever: never deleted
    await store.accept([msg("late", at=T0)], now=T0)  # old, but changed recently
    await store.record_state("late", M.EXPIRED, at=T0 + 1)
    await store.record_state("late", M.DELIVERED, at=T0 + 500)
    await delivered(store, "new", "a3", at=T0 + 1000)
    before = (await counts(store))
    assert await store.purge(before=T0 + 100, limit=10) == 1
    assert (await ids(store)) == ["late", "new", "stuck"]
    after = (await counts(store))
    assert {t: before[t] - after[t] for t in TABLES} == {
        "messages": 1, "parts": 1, "events": 5,
        "smsc_keys": 1, "callbacks": 1, "mailbacks": 1, "inbound": 0}
    assert await store.timeline("old") == []
    assert [v.id for v in await store.get_messages(["old", "late", "new"])] == ["late", "new"]


async def test_oldest_first_and_limit_per_call(store: Store) -> None:
    for i in range(5):
        await store.accept([msg(f"m{i}", at=T0 + i)], now=T0 + i)
        await store.record_state(f"m{i}", M.FAILED, at=T0 + 10 + i, error="INTERNAL_ERROR")
    assert [await store.purge(before=T0 + 100, limit=2) for _ in range(4)] == [2, 2, 1, 0]
    await store.accept([msg("x", at=T0 + 200)], now=T0 + 200)
    assert (await ids(store)) == ["x"]


async def test_a_sweep_reaches_old_finished_messages_behind_many_unfinished(
        store: Store) -> None:
    await store.accept([msg(f"q{i}", at=T0) for i in range(1200)], now=T0)
    await store.accept([msg(f"f{i}", at=T0 + 1) for i in range(3)], now=T0 + 1)
    for i in range(3):
        await store.record_state(f"f{i}", M.EXPIRED, at=T0 + 2)
    assert await store.purge(before=T0 + 100, limit=10) == 3
    assert len((await ids(store))) == 1200


async def test_replies_older_than_the_moment_go_newer_ones_lose_their_link(
        store: Store) -> None:
    await delivered(store, "asked", "b1")
    old_reply = InboundMessage("mo-old", "smsc1", "+447700900001", "+447400000001", "ok",
                               T0 + 50, "asked", mail_reply=True)
    new_reply = dataclasses.replace(old_reply, id="mo-new", received_at=T0 + 500)
    await store.record_inbound(old_reply)
    await store.record_inbound(new_reply)
    assert await store.purge(before=T0 + 100, limit=10) == 1
    assert await query(store, "SELECT id, reply_to_message_id FROM inbound") == [
        ("mo-new", None)]
    assert await query(store, "SELECT kind, inbound_id FROM mailbacks") == []


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


async def test_a_sweep_deletes_batch_after_batch(store: Store) -> None:
    for i in range(7):
        await store.accept([msg(f"m{i}", at=T0)], now=T0)
        await store.record_state(f"m{i}", M.FAILED, at=T0 + 1, error="INTERNAL_ERROR")
    sweep = Retention(store, 3600, clock=Clock(T0 + 3600), batch=3)
    assert await sweep.sweep() == 0  # unchanged for less than an hour
    sweep.clock = Clock(T0 + 3602)
    assert await sweep.sweep() == 7
    assert (await ids(store)) == []


def test_migration_from_version_4_keeps_the_keys_and_indexes_them(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "old.db", isolation_level=None)
    migrate(conn, 4)
    conn.execute("INSERT INTO smsc_keys (smsc, key, message_id, seq) VALUES ('s', 'k', 'm', 1)")
    assert migrate(conn, 5) == (4, 5)
    assert conn.execute("SELECT count(*) FROM smsc_keys INDEXED BY smsc_keys_message "
                        "WHERE message_id = 'm'").fetchone() == (1,)
    conn.close()


async def test_a_bridge_with_retention_sweeps_when_it_starts(tmp_path: Path) -> None:
    config = make_config(tmp_path, store={"url": f"sqlite:///{tmp_path / 'bridge.db'}",
                                          "retention_days": 0.5 / 86400})
    async with running_bridge(config) as bridge:
        code, reply = await in_thread(send, bridge.smtp_port, mail("keep a while"), [RCPT])
        assert code == 250
        message_id = message_id_of(reply)
        await timeline_until(bridge, message_id, "delivered")
        assert len(await bridge.store.get_messages([message_id])) == 1
    await asyncio.sleep(0.6)  # unchanged for longer than the retention now
    async with running_bridge(config) as bridge:
        for _ in range(100):
            if not await bridge.store.get_messages([message_id]):
                break
            await asyncio.sleep(0.05)
        assert await bridge.store.get_messages([message_id]) == []
