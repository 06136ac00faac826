"""`sms-bridge store copy`: a site filled through the Store API is copied between real stores
(a SQLite file, a database of the session's PostgreSQL server) and read back through the
Store API of the other kind; the target then goes on working (receipts for copied submits,
idempotency keys, new rows after the copied ids). Refusals leave the target as it was."""

from __future__ import annotations

import dataclasses
import io
import sqlite3
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from bridge import cli
from bridge.core.states import MessageState, PartState
from bridge.store import InboundMessage, NewMessage, PostgresStore, SqliteStore
from bridge.store import copy as store_copy
from bridge.store.base import Store
from bridge.store.copy import CopyError, CopyReport, copy_store
from bridge.store.schema import LATEST_VERSION
from tests.store.conftest import query
from tests.store.test_contract import T0, msg, receipt, submit

M = MessageState
P = PartState
LATER = T0 + 10**6  # every queued callback, mail and push is due by then
CALLBACK = "http://127.0.0.1:9/report"
IDS = ["multi", "failed", "sent", "sched", "keyed", "held", "quiet"]

# SMSC ids as the SMSC answers the submit (hex) and as its receipts quote them (decimal).
MULTI_IDS = ["0A01", "0A02", "0A03"]
SENT_ID = "0B01"
ORPHAN_ID = "0C01"


def reported(mid: str, **kw: Any) -> NewMessage:
    """A message that reports to a callback and mails its email sender a DSN either way."""
    return dataclasses.replace(msg(mid, **kw), callback_url=CALLBACK,
                               dsn_notify="SUCCESS,FAILURE",
                               meta_json='{"mail_from": "alice@example.com"}')


def dec(hex_id: str) -> str:
    return str(int(hex_id, 16))


async def fill(store: Store) -> None:
    """A site in the middle of its day: every table holds something."""
    await store.accept([reported("multi", parts=3, quota=100),
                        reported("failed", at=T0 + 1, quota=100),
                        msg("sent", parts=2, at=T0 + 2, routes=("smsc1", "smsc2")),
                        msg("sched", state=M.SCHEDULED, send_at=T0 + 7200, at=T0 + 3),
                        msg("keyed", key="K1", digest="D1", at=T0 + 4, account="other")],
                       now=T0 + 5)
    [held] = await store.accept([msg("held", at=T0 + 6, recipient="+447700900002",
                                     routes=("smsc2",))], now=T0 + 6, owner="inst-a")
    assert held.held
    await store.accept([msg("quiet", at=T0 + 7)], now=T0 + 7)
    for seq, smsc_id in enumerate(MULTI_IDS, 1):
        await submit(store, "multi", seq, smsc_id, at=T0 + 10 + seq)
    for smsc_id in MULTI_IDS:
        assert (await receipt(store, dec(smsc_id), P.DELIVERED, at=T0 + 20)).matched
    await submit(store, "sent", 1, SENT_ID, at=T0 + 21)  # part 2 not yet submitted
    assert not (await receipt(store, dec(ORPHAN_ID), P.DELIVERED, at=T0 + 22)).matched
    await store.record_state("failed", M.FAILED, at=T0 + 23, error="INVALID_DESTINATION",
                             detail="rejected by the SMSC")
    await store.record_event("quiet", "throttled", at=T0 + 24, detail="0x58, again in 1 s")
    await store.record_inbound(InboundMessage(
        "mo1", "smsc1", "+447700900001", "+447400000001", "yes please", T0 + 30, "multi",
        mail_reply=True, account="acme", push_url="http://127.0.0.1:9/mo"))
    [callback, *_] = await store.claim_callbacks("inst-a", now=T0 + 40, hold_until=T0 + 70,
                                                 limit=1)
    await store.record_callback(callback.id, callback.message_id, outcome="retry", attempts=1,
                                next_at=T0 + 100, at=T0 + 40, detail="HTTP 500")
    await store.heartbeat("inst-a", at=T0 + 50, info_json='{"host": "old"}')


async def snapshot(store: Store) -> dict[str, Any]:
    """What the Store API reads of the site: equal on both sides of a good copy."""
    return {
        "views": await store.get_messages(IDS),
        "timelines": {mid: await store.timeline(mid) for mid in IDS},
        "pending": await store.load_pending(),
        "callbacks": await store.callbacks_due(now=LATER, limit=100),
        "mailbacks": sorted(await store.mailbacks_due(now=LATER, limit=100), key=lambda m: m.id),
        "pushes": await store.pushes_due(now=LATER, limit=100),
        "quota": {a: await store.quota_used(a) for a in ("acme", "other")},
        "counts": await store.counts_by_state(),
        "instances": await store.instances(),
        "listed": await store.list_messages("acme", offset=0, limit=100),
        "last_to": await store.last_message_to("+447700900001", since=T0),
    }


async def max_ids(store: Store) -> dict[str, int]:
    tables = ("events", "smsc_keys", "callbacks", "mailbacks", "pushes", "orphan_receipts")
    return {t: (await query(store, f"SELECT max(id) FROM {t}"))[0][0] for t in tables}


async def goes_on(store: Store, copied_ids: dict[str, int]) -> None:
    """The copied site works: receipts for copied submits and orphans still match, keys still
    answer, and every new row gets an id past the copied ones."""
    used = await store.quota_used("acme")
    [dup] = await store.accept([msg("dup", digest="D1", account="other")], now=T0 + 30)
    assert (dup.message_id, dup.status) == ("keyed", "duplicate")
    outcome = await receipt(store, dec(SENT_ID), P.DELIVERED, at=T0 + 60)
    assert (outcome.matched, outcome.message_id) == (True, "sent")
    # a new orphan first: SQLite gives an empty table's next row id 1 again
    assert not (await receipt(store, "999999", P.DELIVERED, at=T0 + 60)).matched
    late = await store.record_submitted("quiet", 1, smsc="smsc1", smsc_id=ORPHAN_ID,
                                        id_keys=submit_keys(ORPHAN_ID), at=T0 + 61)
    assert late is not None and late.matched and late.message_state is M.DELIVERED
    [again] = await store.accept([msg("keyed2", key="K1", account="other")], now=T0 + 62)
    assert (again.message_id, again.status) == ("keyed", "idempotent")
    [new] = await store.accept([reported("new", quota=100)], now=T0 + 64)
    assert new.status == "accepted"
    await submit(store, "new", 1, "0D01", at=T0 + 65)
    await store.record_state("new", M.FAILED, at=T0 + 66, error="INVALID_DESTINATION")
    await store.record_inbound(InboundMessage(
        "mo2", "smsc1", "+447700900001", "+447400000001", "again", T0 + 68, None,
        account="acme", push_url="http://127.0.0.1:9/mo"))
    now_ids = await max_ids(store)
    assert all(now_ids[t] > copied_ids[t] for t in copied_ids), (copied_ids, now_ids)
    assert await store.quota_used("acme") == used + 1


def submit_keys(smsc_id: str) -> tuple[str, ...]:
    from bridge.core.receipts import smsc_id_keys

    return tuple(smsc_id_keys(smsc_id, "hex"))


# ------------------------------------------------------------------ stores and URLs

@dataclasses.dataclass
class Place:
    url: str
    make: Callable[[], Store]


@pytest.fixture
def sqlite_place(tmp_path: Path) -> Place:
    path = tmp_path / "site.db"
    return Place(f"sqlite:///{path}", lambda: SqliteStore(path))


@pytest.fixture
def pg_place(pg_url: str) -> Place:
    return Place(pg_url, lambda: PostgresStore(pg_url))


async def using(place: Place, work: Callable[[Store], Awaitable[Any]]) -> Any:
    store = place.make()
    await store.open()
    try:
        return await work(store)
    finally:
        await store.close()


def counts_of(report: CopyReport) -> dict[str, tuple[int, int]]:
    return {t.name: (t.source_rows, t.target_rows) for t in report.tables}


# ------------------------------------------------------------------ the copy, both ways

@pytest.mark.parametrize("direction", ["sqlite-to-postgres", "postgres-to-sqlite"])
async def test_a_site_reads_the_same_after_the_copy_and_goes_on(
        direction: str, sqlite_place: Place, pg_place: Place) -> None:
    source, target = ((sqlite_place, pg_place) if direction == "sqlite-to-postgres"
                      else (pg_place, sqlite_place))
    await using(source, fill)
    before = await using(source, snapshot)
    copied_ids = await using(source, max_ids)
    out = io.StringIO()

    report = await copy_store(source.url, target.url, out=out, batch=2)

    assert report.ok and report.removed == 0
    counts = counts_of(report)
    assert set(counts) == {"messages", "parts", "smsc_keys", "events", "account_usage",
                           "orphan_receipts", "inbound", "callbacks", "mailbacks", "pushes",
                           "instances"}
    assert counts["messages"] == (7, 7) and counts["parts"] == (10, 10)
    assert counts["orphan_receipts"] == (1, 1) and counts["pushes"] == (1, 1)
    assert all(source_rows > 0 for source_rows, _ in counts.values()), counts
    assert await using(target, snapshot) == before
    assert await using(target, max_ids) == copied_ids
    text = out.getvalue()
    assert "messages: 7 rows in" in text and "every count matches" in text
    await using(target, lambda store: goes_on(store, copied_ids))
    assert await using(source, snapshot) == before  # the source is only read


async def test_sqlite_to_sqlite_and_the_source_file_is_not_written(
        sqlite_place: Place, tmp_path: Path) -> None:
    await using(sqlite_place, fill)
    source_path = tmp_path / "site.db"
    dump = dump_of(source_path)
    report = await copy_store(sqlite_place.url, f"sqlite:///{tmp_path / 'copy.db'}",
                              out=io.StringIO())
    assert report.ok and counts_of(report)["events"][1] > 0
    assert dump_of(source_path) == dump
    target = Place("", lambda: SqliteStore(tmp_path / "copy.db"))
    assert await using(target, snapshot) == await using(sqlite_place, snapshot)


def dump_of(path: Path) -> list[str]:
    with sqlite3.connect(path) as conn:
        return list(conn.iterdump())
