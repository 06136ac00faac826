"""What only the SQLite store has: its file (WAL, a lock another process holds), its schema's
migrations from older versions, its query plans, and the URL that picks it (the contract
itself is in test_contract.py, run against both stores)."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import pytest

from bridge.config import StoreConfig
from bridge.runtime import StoreProcess, open_store
from bridge.store import ReceiptOutcome, SqliteStore, StoreUnavailable
from bridge.store.schema import LATEST_VERSION, SchemaTooNew, migrate, schema_version
from tests.store.conftest import hold_writer
from tests.store.test_contract import T0, M, P, msg, receipt, submit


async def test_a_locked_database_fails_the_batch_then_recovers(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "locked.db", busy_timeout_s=0.2)
    await store.open()
    try:
        await store.accept([msg("lk0")], now=T0)
        other = sqlite3.connect(store.path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
        gate = hold_writer(store)
        writes = [store.accept([msg(f"lk{i}")], now=T0) for i in range(1, 4)]
        gate.set()
        for write in writes:
            with pytest.raises(StoreUnavailable) as info:
                await write
            assert isinstance(info.value.__cause__, sqlite3.OperationalError)
        other.execute("ROLLBACK")
        other.close()
        assert (await store.accept([msg("lk9")], now=T0))[0].status == "accepted"
        assert [v.id for v in await store.get_messages(["lk1", "lk9"])] == ["lk9"]
    finally:
        await store.close()


async def test_migrates_a_version_1_database(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path, isolation_level=None)
    assert migrate(conn, target=1) == (0, 1)
    conn.execute(
        "INSERT INTO messages (id, account, ingress, recipient, raw_recipient, source_addr, "
        "source_ton, source_npi, dest_ton, dest_npi, text, encoding, data_coding, esm_class, "
        "registered_delivery, state, parts, created_at, updated_at, send_at, expires_at, "
        "meta_json) VALUES ('old1', 'acme', 'smtp', '+447700900001', '07700900001', NULL, 0, 0, "
        "1, 1, 'hi', 'gsm7', 0, 0, 1, 'submitted', 1, ?, ?, NULL, ?, '{}')",
        (T0, T0, T0 + 86400))
    conn.execute("INSERT INTO parts (message_id, seq, total, short_message, tlvs_json, state, "
                 "smsc, smsc_id) VALUES ('old1', 1, 1, x'6869', '[]', 'submitted', 'smsc1', '2A')")
    conn.execute("INSERT INTO smsc_keys (smsc, key, message_id, seq) "
                 "VALUES ('smsc1', 'int:42', 'old1', 1)")
    assert schema_version(conn) == 1
    conn.close()

    store = SqliteStore(path)
    await store.open()
    try:
        with sqlite3.connect(path) as check:
            assert schema_version(check) == LATEST_VERSION
        assert (await store.get_messages(["old1"]))[0].smsc_ids == ("2A",)
        assert (await receipt(store, "42", P.DELIVERED)).message_state is M.DELIVERED
        assert (await receipt(store, "43", P.DELIVERED)).matched is False  # v2 orphan table
        last = await store.last_message_to("+447700900001", since=0)
        assert last is not None and last.id == "old1"
    finally:
        await store.close()
    # opening again is a no-op migration
    with sqlite3.connect(path, isolation_level=None) as again:
        assert migrate(again) == (LATEST_VERSION, LATEST_VERSION)


async def test_refuses_a_newer_schema(tmp_path: Path) -> None:
    path = tmp_path / "new.db"
    conn = sqlite3.connect(path, isolation_level=None)
    migrate(conn)
    conn.execute("UPDATE schema_version SET version = ?", (LATEST_VERSION + 1,))
    conn.close()
    with pytest.raises(SchemaTooNew):
        await SqliteStore(path).open()


async def test_open_store_by_url(tmp_path: Path) -> None:
    store = open_store(StoreConfig(url="sqlite:///var/bridge.db", commit_max_batch=7), tmp_path)
    assert isinstance(store, StoreProcess)  # SQLite in a process of its own
    assert store.path == tmp_path / "var" / "bridge.db"
    assert store.spec.commit_max_batch == 7
    await store.open()  # creates var/
    try:
        assert (tmp_path / "var" / "bridge.db").exists()
        with sqlite3.connect(store.path) as conn:
            assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        await store.close()
    absolute = open_store(StoreConfig(url=f"sqlite:///{tmp_path / 'abs.db'}"), Path("/elsewhere"))
    assert isinstance(absolute, StoreProcess) and absolute.path == tmp_path / "abs.db"
    remote = open_store(StoreConfig(url="postgresql://u@db:5433/bridge", password="pw"), tmp_path)
    assert remote.path is None and remote.spec.postgres_url == "postgresql://u@db:5433/bridge"
    assert remote.spec.password == "pw" and "pw" not in repr(remote.spec)
    with pytest.raises(ValueError):
        open_store(StoreConfig(url="sqlite:///:memory:"), tmp_path)
    with pytest.raises(ValueError):
        open_store(StoreConfig(url="mysql://x"), tmp_path)


#: A statement that finds its rows by one of these keys must not walk an index on `state`:
#: `state` has a handful of values, so SQLite (which keeps no statistics unless ANALYZE runs)
#: takes `state IN (…)` for selective, and a run of fences once walked every pending message.
_KEYED = re.compile(r"\b(?:id|recipient|lease_owner|message_id)\s*"
                    r"(?:=\s*[?']|IN\s*\((?!\s*SELECT))")


async def test_writes_by_key_never_walk_the_messages_in_a_state(tmp_path: Path) -> None:
    """Every statement the writer runs in a day's work (accept, a run of fences, submits,
    receipts, cancel, claims), planned on the store's own schema: none that finds rows by
    id, recipient or owner uses the index on state. Found by profiling `bench http`: a run
    of 16 fences cost 840 µs on 5,300 pending messages, one fence alone 16 µs."""
    store = SqliteStore(tmp_path / "plans.db")
    await store.open()
    statements: list[str] = []
    try:
        assert store._writer is not None
        store._writer.conn.set_trace_callback(statements.append)
        owner = "inst-a/1/aa"
        await store.accept([msg(f"k{i}", recipient=f"+4477009301{i:02d}") for i in range(24)],
                           now=T0, owner=owner)
        gate = hold_writer(store)
        begun = [store.begin_submit(f"k{i}", owner) for i in range(20)]
        gate.set()
        assert all([await b for b in begun])
        for i in range(4):
            await submit(store, f"k{i}", 1, f"{i + 10:X}")
        await receipt(store, "10", P.DELIVERED)
        store.end_submit("k5", owner)
        await store.record_state("k6", M.FAILED, at=T0 + 3, error="INTERNAL_ERROR",
                                 detail="x")
        await store.cancel([f"k{i}" for i in range(20, 24)], at=T0 + 4, actor="cli:ops")
        await store.claim("inst-b/2/bb", now=T0 + 5, live_after=T0, smscs=["smsc1"],
                          due_before=T0 + 9999, limit=10)
        await store.release("inst-b/2/bb", at=T0 + 6)
        await store.load_pending()
    finally:
        await store.close()
    planner = sqlite3.connect(tmp_path / "plans.db")
    keyed = [s for s in dict.fromkeys(statements)
             if _KEYED.search(s) and s.lstrip().upper().startswith(("SELECT", "UPDATE",
                                                                     "DELETE", "WITH"))]
    assert any("sending_by" in s and " IN (" in s for s in keyed)  # the run of fences is here
    walking = {s: [row[3] for row in planner.execute("EXPLAIN QUERY PLAN " + s)]
               for s in keyed}
    assert {" ".join(s.split())[:160]: [step for step in plan if "messages_state" in step]
            for s, plan in walking.items() if any("messages_state" in step for step in plan)} == {}
