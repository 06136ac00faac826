"""`sms-bridge store copy`: a site filled through the Store API is copied between real stores
(a SQLite file, a database of the session's PostgreSQL server) and read back through the
Store API of the other kind; the target then goes on working (receipts for copied submits,
idempotency keys, new rows after the copied ids). Refusals leave the target as it was."""

from __future__ import annotations

import asyncio
import dataclasses
import io
import re
import sqlite3
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from bridge import cli
from bridge.core.states import MessageState, PartState
from bridge.store import InboundMessage, NewMessage, PostgresStore, SqliteStore
from bridge.store import copy as store_copy
from bridge.store.base import Store
from bridge.store.copy import CopyError, CopyReport, copy_store
from bridge.store.postgres import safe_url
from bridge.store.pg_schema import LATEST_VERSION as PG_LATEST
from bridge.store.schema import LATEST_VERSION
from tests.store.conftest import query, parts_used
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
    assert await store.add_credit("acme", 40, quota=100, at=T0 + 55, actor="cli:ops") == (40, None)


async def snapshot(store: Store) -> dict[str, Any]:
    """What the Store API reads of the site: equal on both sides of a good copy."""
    return {
        "views": await store.get_messages(IDS),
        "timelines": {mid: await store.timeline(mid) for mid in IDS},
        "pending": await store.load_pending(),
        "callbacks": await store.callbacks_due(now=LATER, limit=100),
        "mailbacks": sorted(await store.mailbacks_due(now=LATER, limit=100), key=lambda m: m.id),
        "pushes": await store.pushes_due(now=LATER, limit=100),
        "usage": await store.usage(["acme", "other"]),
        "credit_changes": await store.credit_changes("acme", limit=10),
        "counts": await store.counts_by_state(),
        "instances": await store.instances(),
        "listed": await store.list_messages("acme", offset=0, limit=100),
        "last_to": await store.last_message_to("+447700900001", since=T0),
    }


async def max_ids(store: Store) -> dict[str, int]:
    tables = ("events", "smsc_keys", "callbacks", "mailbacks", "pushes", "orphan_receipts",
              "credits")
    return {t: (await query(store, f"SELECT max(id) FROM {t}"))[0][0] for t in tables}


async def goes_on(store: Store, copied_ids: dict[str, int]) -> None:
    """The copied site works: receipts for copied submits and orphans still match, keys still
    answer, and every new row gets an id past the copied ones."""
    used = await parts_used(store, "acme")
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
    assert (await store.add_credit("acme", 5, quota=100, at=T0 + 69, actor="api:ops"))[1] is None
    now_ids = await max_ids(store)
    assert all(now_ids[t] > copied_ids[t] for t in copied_ids), (copied_ids, now_ids)
    assert await parts_used(store, "acme") == used + 1


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
                           "instances", "mo_parts", "credits"}
    assert counts["messages"] == (7, 7) and counts["parts"] == (10, 10)
    assert counts["orphan_receipts"] == (1, 1) and counts["pushes"] == (1, 1)
    assert all(source_rows > 0 for table, (source_rows, _) in counts.items()
               if table != "mo_parts"), counts
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


# ------------------------------------------------------------------ a target that holds rows

async def add_extra(store: Store) -> None:
    await store.accept([msg("extra", at=T0 + 500)], now=T0 + 500)


async def ids_of(store: Store) -> list[str]:
    return [r[0] for r in await query(store, "SELECT id FROM messages ORDER BY id")]


async def test_a_target_that_holds_rows_is_refused_and_force_replaces_them(
        sqlite_place: Place, pg_place: Place) -> None:
    await using(sqlite_place, fill)
    assert (await copy_store(sqlite_place.url, pg_place.url, out=io.StringIO())).ok
    await using(pg_place, add_extra)
    held = await using(pg_place, ids_of)

    with pytest.raises(CopyError, match=r"is not empty \(.*messages 8.*\): nothing was "
                                        r"copied; --force replaces what it holds"):
        await copy_store(sqlite_place.url, pg_place.url, out=io.StringIO())
    assert await using(pg_place, ids_of) == held

    out = io.StringIO()
    report = await copy_store(sqlite_place.url, pg_place.url, force=True, out=out)
    assert report.ok and report.removed > 8
    assert "--force: deleting what the target held (" in out.getvalue()
    assert await using(pg_place, ids_of) == sorted(IDS)
    assert await using(pg_place, snapshot) == await using(sqlite_place, snapshot)


async def test_a_copy_that_fails_half_way_leaves_the_target_as_it_was(
        sqlite_place: Place, pg_place: Place, tmp_path: Path) -> None:
    await using(sqlite_place, fill)
    assert (await copy_store(sqlite_place.url, pg_place.url, out=io.StringIO())).ok
    await using(pg_place, add_extra)
    held = await using(pg_place, snapshot)
    # SQLite keeps what a column's type cannot: a value PostgreSQL's integer column refuses.
    with sqlite3.connect(tmp_path / "site.db") as conn:
        conn.execute("UPDATE parts SET attempts = 'lots' WHERE message_id = 'sent' AND seq = 2")

    with pytest.raises(CopyError, match=r"copying parts failed: parts\.attempts: not an "
                                        r"integer: 'lots'; nothing was committed"):
        await copy_store(sqlite_place.url, pg_place.url, force=True, out=io.StringIO())
    assert await using(pg_place, snapshot) == held
    assert "extra" in await using(pg_place, ids_of)


async def test_counts_that_differ_commit_nothing(sqlite_place: Place, tmp_path: Path) -> None:
    await using(sqlite_place, fill)
    target = tmp_path / "target.db"
    await using(Place("", lambda: SqliteStore(target)), lambda store: store.flush())
    with sqlite3.connect(target) as conn:  # the target adds a row of its own per instance
        conn.execute("CREATE TRIGGER twin AFTER INSERT ON instances WHEN NEW.id NOT LIKE '%-twin' "
                     "BEGIN INSERT INTO instances (id, heartbeat_at) "
                     "VALUES (NEW.id || '-twin', 0); END")
    out = io.StringIO()
    report = await copy_store(sqlite_place.url, f"sqlite:///{target}", out=out)
    assert not report.ok and counts_of(report)["instances"] == (1, 2)
    assert "instances" in out.getvalue() and "MISMATCH" in out.getvalue()
    assert out.getvalue().rstrip().endswith(
        "counts differ: nothing was committed, the target is as it was")
    with sqlite3.connect(target) as conn:
        assert conn.execute("SELECT count(*) FROM messages").fetchone() == (0,)
        assert conn.execute("SELECT count(*) FROM instances").fetchone() == (0,)


# ------------------------------------------------------------------ refusals

async def test_a_source_that_does_not_exist_or_holds_no_store_is_refused(
        tmp_path: Path, pg_url: str) -> None:
    missing = tmp_path / "nowhere" / "bridge.db"
    with pytest.raises(CopyError, match=f"the source {missing} does not exist"):
        await copy_store(f"sqlite:///{missing}", pg_url, out=io.StringIO())
    assert not missing.parent.exists()
    blank = tmp_path / "blank.db"
    sqlite3.connect(blank).close()
    with pytest.raises(CopyError, match="holds no bridge store"):
        await copy_store(f"sqlite:///{blank}", pg_url, out=io.StringIO())
    with pytest.raises(CopyError, match="holds no bridge store"):  # an empty database
        await copy_store(pg_url, f"sqlite:///{tmp_path / 'x.db'}", out=io.StringIO())
    assert not (tmp_path / "x.db").exists()
    assert (await query(PostgresStore(pg_url),
                        "SELECT count(*) FROM information_schema.tables "
                        "WHERE table_schema = 'public'")) == [(0,)]
    with pytest.raises(CopyError, match='unsupported store url "mysql://x"'):
        await copy_store("mysql://x", pg_url, out=io.StringIO())


async def test_a_store_of_a_newer_bridge_is_refused_and_left_alone(
        sqlite_place: Place, tmp_path: Path) -> None:
    await using(sqlite_place, fill)
    newer = tmp_path / "newer.db"
    await using(Place("", lambda: SqliteStore(newer)), lambda store: store.flush())
    with sqlite3.connect(newer) as conn:
        conn.execute("UPDATE schema_version SET version = ?", (LATEST_VERSION + 1,))
    dump = dump_of(newer)
    pattern = (f"the {{}} {newer} has schema version {LATEST_VERSION + 1}, newer than this "
               f"bridge's \\({LATEST_VERSION}\\)")
    with pytest.raises(CopyError, match=pattern.format("source")):
        await copy_store(f"sqlite:///{newer}", f"sqlite:///{tmp_path / 'x.db'}",
                         out=io.StringIO())
    with pytest.raises(CopyError, match=pattern.format("target")):
        await copy_store(sqlite_place.url, f"sqlite:///{newer}", out=io.StringIO())
    assert dump_of(newer) == dump


async def test_a_postgresql_store_of_a_newer_bridge_is_refused(pg_url: str,
                                                              tmp_path: Path) -> None:
    conn = await asyncpg.connect(pg_url)
    try:
        await conn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
        await conn.execute("INSERT INTO schema_version VALUES ($1)", PG_LATEST + 1)
    finally:
        await conn.close()
    with pytest.raises(CopyError, match=f"the source {re.escape(safe_url(pg_url))} has schema "
                                        f"version {PG_LATEST + 1}, newer than this bridge's"):
        await copy_store(pg_url, f"sqlite:///{tmp_path / 'x.db'}", out=io.StringIO())
    assert not (tmp_path / "x.db").exists()


async def test_a_source_column_the_target_lacks_stops_the_copy(
        sqlite_place: Place, pg_place: Place, tmp_path: Path) -> None:
    await using(sqlite_place, fill)
    with sqlite3.connect(tmp_path / "site.db") as conn:
        conn.execute("ALTER TABLE messages ADD COLUMN colour TEXT")
        conn.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY)")
    with pytest.raises(CopyError, match=r"has no column messages\.colour, table notes: .*"
                                        r"Nothing was copied"):
        await copy_store(sqlite_place.url, pg_place.url, out=io.StringIO())


async def test_a_copy_onto_itself_is_refused(sqlite_place: Place, pg_url: str,
                                             tmp_path: Path) -> None:
    await using(sqlite_place, fill)
    (tmp_path / "link.db").symlink_to(tmp_path / "site.db")
    with pytest.raises(CopyError, match="the source and the target are the same store"):
        await copy_store(sqlite_place.url, f"sqlite:///{tmp_path / 'link.db'}", force=True,
                         out=io.StringIO())
    assert await using(sqlite_place, ids_of) == sorted(IDS)
    await using(Place(pg_url, lambda: PostgresStore(pg_url)), fill)
    with pytest.raises(CopyError, match="the source and the target are the same store"):
        await copy_store(pg_url, pg_url.replace("127.0.0.1", "localhost"), force=True,
                         out=io.StringIO())
    assert len(await query(PostgresStore(pg_url), "SELECT id FROM messages")) == len(IDS)


# ------------------------------------------------------------------ the command

def with_password(url: str, ours: bool) -> tuple[str, str | None]:
    """The URL with a password that must never be printed: the session's own server trusts
    local connections and ignores it; an external server's URL keeps its own."""
    parts = urlsplit(url)
    if parts.password or not ours:
        return url, parts.password
    secret = "not-to-be-shown"
    netloc = f"{parts.username}:{secret}@{parts.hostname}:{parts.port}"
    return urlunsplit(parts._replace(netloc=netloc)), secret


def test_the_command_end_to_end(tmp_path: Path, pg_url: str, pg_server: Any,
                                monkeypatch: pytest.MonkeyPatch,
                                capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    asyncio.run(using(Place("", lambda: SqliteStore(tmp_path / "var" / "bridge.db")), fill))
    target, secret = with_password(pg_url, pg_server.can_stop)
    command = ["store", "copy", "--from", "sqlite:///var/bridge.db", "--to", target]

    assert cli.main(command) == 0
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert lines[0].startswith(f"copying {tmp_path / 'var' / 'bridge.db'} to postgresql://")
    assert any(re.fullmatch(r"messages: 7 rows in \d+\.\d s", line) for line in lines)
    assert any(re.fullmatch(r"events\s+\d+\s+\d+", line) for line in lines)
    assert re.fullmatch(r"copied \d+ rows in 13 tables in \d+\.\d s; every count matches",
                        lines[-1])

    assert cli.main(command) == 1
    out, err = capsys.readouterr()
    assert err.startswith("sms-bridge store copy: the target postgresql://") and (
        "is not empty (" in err and "--force replaces what it holds" in err)
    assert cli.main([*command, "--force"]) == 0
    out2, err2 = capsys.readouterr()
    assert "--force: deleting what the target held" in out2 and err2 == ""
    assert cli.main(["store", "copy", "--from", "sqlite:///nowhere.db", "--to", target]) == 1
    out3, err3 = capsys.readouterr()
    assert err3 == (f"sms-bridge store copy: the source {tmp_path / 'nowhere.db'} does not "
                    f"exist\n")
    if secret:
        assert secret not in out + err + out2 + err2 + out3 + err3

    with pytest.raises(SystemExit) as usage:
        cli.main(["store", "copy", "--from", "sqlite:///var/bridge.db"])
    assert usage.value.code == 2
    with pytest.raises(SystemExit):
        cli.main(["store", "copy", "--help"])
    help_text = capsys.readouterr().out
    assert "--from URL" in help_text and "--force" in help_text and "PGPASSWORD" in help_text


async def test_progress_is_shown_as_a_large_table_copies(
        sqlite_place: Place, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    await using(sqlite_place, fill)
    monkeypatch.setattr(store_copy, "PROGRESS_EVERY", 4)
    out = io.StringIO()
    assert (await copy_store(sqlite_place.url, f"sqlite:///{tmp_path / 'copy.db'}", out=out,
                             batch=2)).ok
    assert re.search(r"^  events: 4 rows, \d+\.\d s$", out.getvalue(), re.M)
    assert re.search(r"^  events: 8 rows, \d+\.\d s$", out.getvalue(), re.M)


@pytest.mark.parametrize(("url", "shown"), [
    ("postgresql://bridge:pw@db:5432/site", "postgresql://bridge@db:5432/site"),
    ("postgresql://bridge@db/site?password=pw", "postgresql://bridge@db/site"),
    ("postgresql://bridge@db/site?sslmode=require&PASSWORD=pw&x=1",
     "postgresql://bridge@db/site?sslmode=require&x=1"),
    ("postgresql://bridge@db/site?sslmode=require&password=pw",
     "postgresql://bridge@db/site?sslmode=require"),
    ("postgresql://db/site", "postgresql://db/site"),
])
def test_urls_are_shown_without_their_password(url: str, shown: str) -> None:
    assert safe_url(url) == shown
