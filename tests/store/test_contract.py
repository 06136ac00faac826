"""The Store contract, run against SQLite and PostgreSQL alike (the `store` fixture of
tests/store/conftest.py): durability, the accept decisions under concurrency, batches, receipts
in every order, the timeline, queries, closing."""

from __future__ import annotations

import asyncio
import dataclasses
import tempfile
from pathlib import Path
from typing import Any, AsyncIterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bridge.core.model import Ingress
from bridge.core.receipts import smsc_id_keys
from bridge.core.states import MessageState, PartState, aggregate, can_move
from bridge.store import (
    InboundMessage,
    NewMessage,
    NewPart,
    ReceiptOutcome,
    SqliteStore,
    StoreUnavailable,
)
from bridge.store.base import MoPart, Store
from tests.store.conftest import another, hold_writer, lanes, parts_used, query

M = MessageState
P = PartState
T0 = 1_700_000_000.0


def msg(mid: str, *, account: str = "acme", parts: int = 1, key: str | None = None,
        digest: str | None = None, window: float = 60.0, quota: int = 0, at: float = T0,
        state: MessageState = M.QUEUED, recipient: str = "+447700900001",
        send_at: float | None = None, routes: tuple[str, ...] = ()) -> NewMessage:
    return NewMessage(
        id=mid, account=account, ingress=Ingress.SOAP, recipient=recipient, raw_recipient="07700900001",
        source_addr="ACME", source_ton=5, source_npi=0, dest_ton=1, dest_npi=1,
        text=f"hello {mid}", encoding="gsm7", data_coding=0, esm_class=0x40 if parts > 1 else 0,
        registered_delivery=1,
        parts=tuple(NewPart(i, parts, f"{mid}/{i}".encode() + b"\x00\xff",
                            '[["sar_msg_ref_num", 7]]') for i in range(1, parts + 1)),
        state=state, created_at=at, send_at=send_at, expires_at=at + 86400,
        idempotency_key=key, dup_digest=digest, dup_window_s=window, quota=quota,
        callback_url=None, meta_json='{"k": "v"}', routes=routes)


async def submit(store: Store, mid: str, seq: int, smsc_id: str, *, smsc: str = "smsc1",
                 fmt: str = "hex", at: float = T0 + 1) -> ReceiptOutcome | None:
    return await store.record_submitted(mid, seq, smsc=smsc, smsc_id=smsc_id,
                                        id_keys=smsc_id_keys(smsc_id, fmt), at=at)


async def receipt(store: Store, receipt_id: str, state: PartState | None, *,
                  stat: str = "DELIVRD", err: str = "000", smsc: str = "smsc1", fmt: str = "dec",
                  at: float = T0 + 2) -> ReceiptOutcome:
    return await store.record_receipt(smsc=smsc, id_keys=smsc_id_keys(receipt_id, fmt),
                                      part_state=state, stat=stat, err=err, at=at)


# ------------------------------------------------------------------ durability

async def test_accept_survives_close_and_reopen(store: Store) -> None:
    first = store
    outcomes = await first.accept([msg("m1"), msg("m2", parts=2, at=T0 + 1),
                                   msg("m3", state=M.SCHEDULED, send_at=T0 + 3600, at=T0 + 2)],
                                  now=T0 + 5)
    assert [(o.message_id, o.status) for o in outcomes] == [
        ("m1", "accepted"), ("m2", "accepted"), ("m3", "accepted")]
    await first.close()

    second = another(store)
    await second.open()
    try:
        views = await second.get_messages(["m3", "nope", "m2", "m1"])
        assert [v.id for v in views] == ["m3", "m2", "m1"]
        m2 = views[1]
        assert (m2.account, m2.ingress, m2.recipient, m2.source_addr, m2.state, m2.encoding,
                m2.parts, m2.parts_delivered, m2.smsc_ids, m2.created_at, m2.updated_at,
                m2.error, m2.meta_json) == ("acme", "soap", "+447700900001", "ACME", M.QUEUED,
                                            "gsm7", 2, 0, (), T0 + 1, T0 + 5, None, '{"k": "v"}')
        assert views[0].state is M.SCHEDULED
        pending = await second.load_pending()
        assert [m.id for m in pending] == ["m1", "m2", "m3"]
        p2 = pending[1]
        assert p2.esm_class == 0x40 and p2.expires_at == T0 + 1 + 86400 and p2.send_at is None
        assert [(p.seq, p.total, p.short_message, p.tlvs_json, p.state, p.smsc_id)
                for p in p2.parts] == [
            (1, 2, b"m2/1\x00\xff", '[["sar_msg_ref_num", 7]]', P.QUEUED, None),
            (2, 2, b"m2/2\x00\xff", '[["sar_msg_ref_num", 7]]', P.QUEUED, None)]
        assert pending[2].send_at == T0 + 3600
        assert await parts_used(second, "acme") == 4
        assert await parts_used(second, "other") == 0
        counts = await second.counts_by_state()
        assert counts["queued"] == 2 and counts["scheduled"] == 1 and counts["delivered"] == 0
        events = await second.timeline("m2")
        assert [(e.state, e.detail) for e in events] == [
            ("queued", "accepted via soap, 2 parts, gsm7")]
    finally:
        await second.close()


async def test_awaited_write_is_visible_to_reads(store: Store) -> None:
    for i in range(20):
        await store.accept([msg(f"v{i}")], now=T0)
        assert [v.id for v in await store.get_messages([f"v{i}"])] == [f"v{i}"]
        store.record_event(f"v{i}", "note", at=T0, detail="dropped future")
        await store.flush()
        assert len(await store.timeline(f"v{i}")) == 2


# ------------------------------------------------------------------ accept checks

async def test_idempotency_key_returns_the_first_id(store: Store) -> None:
    [first] = await store.accept([msg("a1", key="K", quota=100)], now=T0)
    assert first.status == "accepted"
    [again] = await store.accept([msg("a2", key="K", quota=100)], now=T0 + 1000)
    assert (again.message_id, again.status) == ("a1", "idempotent")
    # inside one call, and another account's identical key is its own
    out = await store.accept([msg("b1", key="L"), msg("b2", key="L"),
                              msg("c1", key="K", account="other")], now=T0)
    assert [(o.message_id, o.status) for o in out] == [
        ("b1", "accepted"), ("b1", "idempotent"), ("c1", "accepted")]
    assert await store.get_messages(["a2", "b2"]) == []
    assert await parts_used(store, "acme") == 2  # repeats consume nothing


async def test_duplicate_digest_inside_and_outside_the_window(store: Store) -> None:
    out = await store.accept([msg("d1", digest="D")], now=T0)
    assert out[0].status == "accepted"
    [dup] = await store.accept([msg("d2", digest="D")], now=T0 + 59)
    assert (dup.message_id, dup.status) == ("d1", "duplicate")
    [other] = await store.accept([msg("d3", digest="D", account="other")], now=T0 + 59)
    assert other.status == "accepted"
    [later] = await store.accept([msg("d4", digest="D")], now=T0 + 61)
    assert (later.message_id, later.status) == ("d4", "accepted")
    [dup2] = await store.accept([msg("d5", digest="D")], now=T0 + 70)
    assert (dup2.message_id, dup2.status) == ("d4", "duplicate")
    # window 0 disables the check; same batch sees earlier messages
    out = await store.accept([msg("d6", digest="D", window=0), msg("e1", digest="E"),
                              msg("e2", digest="E")], now=T0 + 70)
    assert [(o.message_id, o.status) for o in out] == [
        ("d6", "accepted"), ("e1", "accepted"), ("e1", "duplicate")]


async def test_old_digests_are_pruned_not_the_messages(store: Store) -> None:
    await store.accept([msg(f"p{i}", digest=f"P{i}") for i in range(50)], now=T0)
    await store.accept([msg("q1", digest="Q")], now=T0 + 3600)
    live = await query(store, "SELECT id FROM messages WHERE dup_digest IS NOT NULL")
    total = (await query(store, "SELECT count(*) FROM messages"))[0][0]
    assert live == [("q1",)] and total == 51
    [again] = await store.accept([msg("p0b", digest="P0")], now=T0 + 3601)
    assert again.status == "accepted"


async def test_quota_is_atomic_under_concurrent_accepts(store: Store) -> None:
    # 40 concurrent calls of 1-part and 2-part messages against a quota of 25 parts
    calls = [store.accept([msg(f"q{i}", parts=1 + i % 2, quota=25)], now=T0) for i in range(40)]
    results = await asyncio.gather(*calls)
    accepted = [r[0] for r in results if r[0].status == "accepted"]
    refused = [r[0] for r in results if r[0].status == "over_quota"]
    used = sum(1 + int(o.message_id[1:]) % 2 for o in accepted)
    assert len(accepted) + len(refused) == 40
    assert used <= 25 and used >= 24  # a 2-part message may not fit in the last part
    assert await parts_used(store, "acme") == used
    assert len(await store.get_messages([o.message_id for o in refused])) == 0
    # one call: outcomes in input order; a later smaller message may still fit
    out = await store.accept([msg("a", account="q2", parts=2, quota=3),
                              msg("b", account="q2", parts=2, quota=3),
                              msg("c", account="q2", parts=1, quota=3)], now=T0)
    assert [(o.message_id, o.status) for o in out] == [
        ("a", "accepted"), ("b", "over_quota"), ("c", "accepted")]
    assert await parts_used(store, "q2") == 3


async def test_two_instances_never_both_accept_a_key(store: Store) -> None:
    """Two stores on one database (two processes on one SQLite file, two instances on one
    PostgreSQL): a key and a quota hold across them."""
    a, b = store, another(store)
    await b.open()
    try:
        results = await asyncio.gather(*[
            (a if i % 2 else b).accept([msg(f"x{i}", key=f"K{i // 2}", quota=15)], now=T0)
            for i in range(40)])
        statuses = [r[0].status for r in results]
        assert statuses.count("accepted") == 15
        assert statuses.count("idempotent") + statuses.count("over_quota") == 25
        assert await parts_used(a, "acme") == 15 == await parts_used(b, "acme")
    finally:
        await b.close()


async def test_batched_writes_keep_their_order(store: Store) -> None:
    await store.accept([msg("o1")], now=T0)
    gate = hold_writer(store)
    done: list[int] = []
    futures = []
    for i in range(30):
        future = asyncio.ensure_future(
            store.record_event("o1", f"e{i}", at=T0 + 1, detail=str(i)))  # same timestamp
        future.add_done_callback(lambda _f, i=i: done.append(i))
        futures.append(future)
    out = store.accept([msg(f"o{i}") for i in range(2, 12)], now=T0)
    gate.set()
    await asyncio.gather(*futures)
    assert [o.message_id for o in await out] == [f"o{i}" for i in range(2, 12)]
    assert done == list(range(30))
    events = await store.timeline("o1")
    assert [e.state for e in events] == ["queued"] + [f"e{i}" for i in range(30)]
    assert store.stats()["largest_batch"] >= 31


async def test_a_failing_operation_fails_only_itself(store: Store) -> None:
    await store.accept([msg("f1")], now=T0)
    gate = hold_writer(store)
    good1 = store.accept([msg("f2")], now=T0)
    bad_fk = store.record_event("no-such-message", "note", at=T0)
    bad_pk = store.accept([msg("f3"), msg("f1")], now=T0)  # f1 exists: the whole call fails
    good2 = store.record_state("f1", M.FAILED, at=T0 + 1, error="INVALID_DESTINATION",
                               detail="no route")
    bad_unknown = store.record_submitted("nope", 1, smsc="s", smsc_id="1", id_keys=["int:1"],
                                         at=T0)
    good3 = store.accept([msg("f4")], now=T0)
    gate.set()
    assert (await good1)[0].status == "accepted"
    assert await good2 is None
    assert (await good3)[0].status == "accepted"
    for bad in (bad_fk, bad_pk, bad_unknown):
        with pytest.raises(StoreUnavailable):
            await bad
    with pytest.raises(StoreUnavailable) as info:
        await bad_pk
    assert info.value.__cause__ is not None  # the database's own reason
    views = {v.id: v for v in await store.get_messages(["f1", "f2", "f3", "f4"])}
    assert sorted(views) == ["f1", "f2", "f4"]  # f3 went with its failed call
    assert views["f1"].state is M.FAILED and views["f1"].error == "INVALID_DESTINATION"
    assert store.stats()["failed_ops"] == 3
    assert await parts_used(store, "acme") == 3





async def test_commits_are_observed_and_a_failing_observer_changes_nothing(
        store: Store) -> None:
    seen: list[tuple[int, float]] = []
    store.observe_commits(lambda writes, seconds: seen.append((writes, seconds)))
    gate = hold_writer(store)
    writes = [store.accept([msg(f"o{i}")], now=T0) for i in range(3)]
    gate.set()
    for write in writes:
        assert (await write)[0].status == "accepted"
    # The holding operation and the three: one commit (PostgreSQL's other writer lanes, parked
    # too, commit their holding operations alone).
    assert [w for w, _ in seen if w > 1] == [4] and len(seen) == lanes(store)
    assert all(0 <= s < 60 for _, s in seen)

    def broken(writes: int, seconds: float) -> None:
        raise RuntimeError("observer bug")

    store.observe_commits(broken)
    assert (await store.accept([msg("o9")], now=T0))[0].status == "accepted"
    views = await store.get_messages(["o0", "o1", "o2", "o9"])
    assert [v.id for v in views] == ["o0", "o1", "o2", "o9"]
    assert store.stats()["failed_batches"] == 0  # committed once, not retried


async def test_concurrent_accepts_share_commits(store: Store) -> None:
    """The writer never waits for companions: they gather while the previous commit syncs."""
    before = store.stats()["commits"]
    await asyncio.gather(*[store.accept([msg(f"g{i}")], now=T0) for i in range(100)])
    assert store.stats()["commits"] - before < 100


# ------------------------------------------------------------------ submits and receipts

async def test_submit_then_receipt_with_hex_and_decimal_ids(store: Store) -> None:
    await store.accept([msg("r1")], now=T0)
    assert await submit(store, "r1", 1, "1A2B", fmt="hex") is None
    [view] = await store.get_messages(["r1"])
    assert view.state is M.SUBMITTED and view.smsc_ids == ("1A2B",)
    # the same key on another SMSC is not this part
    other = await receipt(store, "6699", P.DELIVERED, smsc="smsc2")
    assert other == ReceiptOutcome(False, None, None)
    out = await receipt(store, "6699", P.DELIVERED, fmt="dec")  # 0x1A2B == 6699
    assert out == ReceiptOutcome(True, "r1", M.DELIVERED, T0 + 1, "1A2B")  # its part's
    [view] = await store.get_messages(["r1"])
    assert (view.state, view.parts_delivered, view.updated_at) == (M.DELIVERED, 1, T0 + 2)
    events = [(e.state, e.detail) for e in await store.timeline("r1")]
    assert events[1:] == [
        ("part_submitted", "part 1/1 smsc=smsc1 id=1A2B"),
        ("submitted", "all 1 part submitted"),
        ("receipt", "part 1/1 stat=DELIVRD err=000"),
        ("delivered", "part 1/1 stat=DELIVRD err=000"),
    ]


async def test_a_receipt_in_the_same_batch_as_its_submit_matches(store: Store) -> None:
    """SMSC keys are inserted once per transaction, but a receipt in that transaction sees them."""
    await store.accept([msg("sb1"), msg("sb2")], now=T0)
    gate = hold_writer(store)
    first = store.record_submitted("sb1", 1, smsc="smsc1", smsc_id="1F",
                                   id_keys=smsc_id_keys("1F", "hex"), at=T0 + 1)
    delivered = store.record_receipt(smsc="smsc1", id_keys=smsc_id_keys("31", "dec"),
                                     part_state=P.DELIVERED, stat="DELIVRD", err="000",
                                     at=T0 + 2)
    second = store.record_submitted("sb2", 1, smsc="smsc1", smsc_id="20",
                                    id_keys=smsc_id_keys("20", "hex"), at=T0 + 1)
    gate.set()
    assert await first is None and await second is None
    assert await delivered == ReceiptOutcome(True, "sb1", M.DELIVERED, T0 + 1, "1F")
    assert await receipt(store, "32", P.DELIVERED) == ReceiptOutcome(True, "sb2", M.DELIVERED,
                                                                      T0 + 1, "20")
    assert store.stats()["largest_batch"] >= 3


async def test_a_receipt_queued_before_its_submit_in_one_batch_matches(store: Store) -> None:
    """The SMSC sends the receipt right behind the submit_sm_resp, and it may reach the store
    before the record of the submit: in one batch it is applied after the submits beside it
    (no orphan to store, look up and delete), its outcome names the message, and the
    timeline keeps submit before receipt. Another write between them keeps its place."""
    await store.accept([msg("rb1"), msg("rb2"), msg("rb3")], now=T0)
    gate = hold_writer(store)
    early = store.record_receipt(smsc="smsc1", id_keys=smsc_id_keys("2A", "hex"),
                                 part_state=P.DELIVERED, stat="DELIVRD", err="000", at=T0 + 1)
    submitted = store.record_submitted("rb1", 1, smsc="smsc1", smsc_id="2A",
                                       id_keys=smsc_id_keys("2A", "hex"), at=T0 + 1.1)
    orphan = store.record_receipt(smsc="smsc1", id_keys=smsc_id_keys("2B", "hex"),
                                  part_state=P.DELIVERED, stat="DELIVRD", err="000", at=T0 + 1.2)
    state = store.record_state("rb3", M.FAILED, at=T0 + 1.3, error="REJECTED", detail="test")
    later = store.record_submitted("rb2", 1, smsc="smsc1", smsc_id="2B",
                                   id_keys=smsc_id_keys("2B", "hex"), at=T0 + 1.4)
    gate.set()
    assert await early == ReceiptOutcome(True, "rb1", M.DELIVERED, T0 + 1.1, "2A")
    assert await submitted is None and await state is None
    assert await orphan == ReceiptOutcome(False, None, None)  # its submit came after a state
    assert await later == ReceiptOutcome(True, "rb2", M.DELIVERED, T0 + 1.4, "2B")  # found it waiting
    events = [(e.state, e.detail) for e in await store.timeline("rb1")]
    assert [name for name, _ in events][-4:] == [
        "part_submitted", "submitted", "receipt", "delivered"], events
    assert not any("arrived before" in detail for _, detail in events)
    assert any("arrived before" in e.detail for e in await store.timeline("rb2"))
    assert await query(store, "SELECT count(*) FROM orphan_receipts") == [(0,)]


async def test_auto_keys_prefer_the_strongest_key(store: Store) -> None:
    # "22" read as hex is 34; "16" read as hex is 22: a decimal receipt "22" shares a key
    # with both; the raw key of "22" ranks first.
    await store.accept([msg("k1"), msg("k2")], now=T0)
    await submit(store, "k1", 1, "22", fmt="auto")
    await submit(store, "k2", 1, "16", fmt="auto")
    out = await receipt(store, "22", P.DELIVERED, fmt="auto")
    assert out.message_id == "k1"


async def test_a_reused_smsc_id_goes_to_the_most_recent_submit(store: Store) -> None:
    await store.accept([msg("u1"), msg("u2")], now=T0)
    await submit(store, "u1", 1, "77", fmt="auto")
    await submit(store, "u2", 1, "77", fmt="auto")  # the SMSC's ids wrapped around
    out = await receipt(store, "77", P.DELIVERED, fmt="auto")
    assert out == ReceiptOutcome(True, "u2", M.DELIVERED, T0 + 1, "77")


async def test_weaker_keys_rank_before_recency(store: Store) -> None:
    # Receipt "22" carries raw:22, int:22, int:34 (its hex reading). No submit has raw:22; "16"
    # read as hex is int:22 (rank 2), "34" read as decimal is int:34 (rank 3).
    await store.accept([msg("w1"), msg("w2")], now=T0)
    await submit(store, "w1", 1, "16", fmt="auto")
    await submit(store, "w2", 1, "34", fmt="auto")  # more recent, weaker key
    out = await receipt(store, "22", P.DELIVERED, fmt="auto")
    assert out == ReceiptOutcome(True, "w1", M.DELIVERED, T0 + 1, "16")


async def test_receipt_before_submit_is_kept_and_applied(store: Store) -> None:
    await store.accept([msg("or1", parts=2)], now=T0)
    await submit(store, "or1", 1, "ff01")
    early = await receipt(store, str(0xFF02), P.DELIVERED, at=T0 + 1.5)
    assert early == ReceiptOutcome(False, None, None)
    [view] = await store.get_messages(["or1"])
    assert view.state is M.QUEUED and view.parts_delivered == 0
    applied = await submit(store, "or1", 2, "FF02", at=T0 + 1.6)
    assert applied == ReceiptOutcome(True, "or1", M.SUBMITTED, T0 + 1.6, "FF02")  # part 1 still waits
    [view] = await store.get_messages(["or1"])
    assert (view.state, view.parts_delivered) == (M.SUBMITTED, 1)
    assert [(e.at, e.state, e.detail) for e in await store.timeline("or1")][-3:] == [
        (T0 + 1.6, "part_submitted", "part 2/2 smsc=smsc1 id=FF02"),
        (T0 + 1.6, "submitted", "all 2 parts submitted"),
        (T0 + 1.6, "receipt", "part 2/2 stat=DELIVRD err=000 (arrived before submit_sm_resp)")]
    assert await query(store, "SELECT count(*) FROM orphan_receipts") == [(0,)]
    # the same receipt again, now matched: harmless
    again = await receipt(store, str(0xFF02), P.DELIVERED, at=T0 + 3)
    assert again == ReceiptOutcome(True, "or1", M.SUBMITTED, T0 + 1.6, "FF02")
    done = await receipt(store, str(0xFF01), P.DELIVERED, at=T0 + 4)
    assert done == ReceiptOutcome(True, "or1", M.DELIVERED, T0 + 1, "ff01")


async def test_duplicate_receipt_is_harmless(store: Store) -> None:
    await store.accept([msg("dr")], now=T0)
    await submit(store, "dr", 1, "0A")
    first = await receipt(store, "10", P.DELIVERED, at=T0 + 2)
    events_before = await store.timeline("dr")
    second = await receipt(store, "10", P.DELIVERED, at=T0 + 9)
    assert first == second == ReceiptOutcome(True, "dr", M.DELIVERED, T0 + 1, "0A")
    assert await store.timeline("dr") == events_before
    [view] = await store.get_messages(["dr"])
    assert (view.updated_at, view.parts_delivered) == (T0 + 2, 1)


async def test_two_parts_delivered_only_when_both_are(store: Store) -> None:
    await store.accept([msg("two", parts=2)], now=T0)
    await submit(store, "two", 1, "100")
    assert (await store.get_messages(["two"]))[0].state is M.QUEUED
    await submit(store, "two", 2, "101")
    assert (await store.get_messages(["two"]))[0].state is M.SUBMITTED
    interim = await receipt(store, str(0x100), None, stat="ENROUTE")
    assert interim == ReceiptOutcome(True, "two", M.SUBMITTED, T0 + 1, "100")
    one = await receipt(store, str(0x100), P.DELIVERED)
    assert one == ReceiptOutcome(True, "two", M.SUBMITTED, T0 + 1, "100")
    [view] = await store.get_messages(["two"])
    assert (view.parts_delivered, view.smsc_ids) == (1, ("100", "101"))
    both = await receipt(store, str(0x101), P.DELIVERED)
    assert both == ReceiptOutcome(True, "two", M.DELIVERED, T0 + 1, "101")
    assert (await store.get_messages(["two"]))[0].parts_delivered == 2


async def test_undeliverable_then_refined(store: Store) -> None:
    await store.accept([msg("u1")], now=T0)
    await submit(store, "u1", 1, "7")
    out = await receipt(store, "7", P.UNDELIVERABLE, stat="UNDELIV", err="012")
    assert out == ReceiptOutcome(True, "u1", M.UNDELIVERABLE, T0 + 1, "7")
    [view] = await store.get_messages(["u1"])
    assert view.error_detail == "part 1/1 stat=UNDELIV err=012"
    # an SMSC that retried and then delivered: the more precise verdict wins
    assert (await receipt(store, "7", P.DELIVERED, at=T0 + 5)).message_state is M.DELIVERED
    # nothing leaves DELIVERED
    assert (await receipt(store, "7", P.EXPIRED, stat="EXPIRED", at=T0 + 6)).message_state \
        is M.DELIVERED
    [view] = await store.get_messages(["u1"])
    assert (view.state, view.error_detail, view.parts_delivered) == (M.DELIVERED, None, 1)


async def test_a_refined_part_never_drags_the_message_backwards(store: Store) -> None:
    await store.accept([msg("rf", parts=2)], now=T0)
    await submit(store, "rf", 1, "A1")
    await submit(store, "rf", 2, "A2")
    assert (await receipt(store, str(0xA1), P.UNDELIVERABLE, stat="UNDELIV")).message_state \
        is M.UNDELIVERABLE
    # part 1 is delivered after all; part 2 still waits: the aggregate says "submitted", but
    # undeliverable → submitted is not a transition, so the message keeps its verdict
    assert (await receipt(store, str(0xA1), P.DELIVERED)).message_state is M.UNDELIVERABLE
    assert (await store.get_messages(["rf"]))[0].parts_delivered == 1
    assert (await receipt(store, str(0xA2), P.DELIVERED)).message_state is M.DELIVERED


async def test_record_state_moves_parts_and_ignores_illegal_moves(store: Store) -> None:
    await store.accept([msg("s1", parts=3)], now=T0)
    await submit(store, "s1", 1, "51")
    await store.record_state("s1", M.FAILED, at=T0 + 3, error="INVALID_SOURCE",
                             detail="part 2/3: submit_sm_resp 0x0000000A")
    [view] = await store.get_messages(["s1"])
    assert (view.state, view.error, view.error_detail) == (
        M.FAILED, "INVALID_SOURCE", "part 2/3: submit_sm_resp 0x0000000A")
    assert await store.load_pending() == []  # failed: nothing to resubmit
    await store.record_state("s1", M.QUEUED, at=T0 + 4, detail="resubmit")
    assert (await store.get_messages(["s1"]))[0].state is M.FAILED
    # a late receipt does not resurrect it
    assert (await receipt(store, str(0x51), P.DELIVERED)).message_state is M.FAILED
    events = [(e.state, e.detail) for e in await store.timeline("s1")]
    assert ("failed", "INVALID_SOURCE: part 2/3: submit_sm_resp 0x0000000A") in events
    assert ("state_ignored", "queued ignored: message is failed (resubmit)") in events
    # scheduled → queued → expired
    await store.accept([msg("s2", state=M.SCHEDULED, send_at=T0 + 60)], now=T0)
    await store.record_state("s2", M.QUEUED, at=T0 + 60, detail="send_at reached")
    await store.record_state("s2", M.EXPIRED, at=T0 + 90, detail="validity ended")
    [view] = await store.get_messages(["s2"])
    assert (view.state, view.error, view.error_detail) == (M.EXPIRED, None, "validity ended")
    with pytest.raises(StoreUnavailable):
        await store.record_state("missing", M.FAILED, at=T0)


async def test_load_pending_after_a_crash(store: Store) -> None:
    before = store
    await before.accept([msg("c3", at=T0 + 3), msg("c1", at=T0 + 1), msg("c2", parts=2, at=T0 + 2),
                         msg("c4", at=T0 + 4, state=M.SCHEDULED, send_at=T0 + 999),
                         msg("c5", at=T0 + 5)], now=T0 + 10)
    await submit(before, "c1", 1, "1")  # fully acknowledged
    await submit(before, "c2", 1, "2")  # one of two
    await before.record_state("c5", M.FAILED, at=T0 + 11, error="INTERNAL_ERROR")
    # "crash": the first store is never closed; a new process opens the same database
    after = another(store)
    await after.open()
    try:
        pending = await after.load_pending()
        assert [m.id for m in pending] == ["c2", "c3", "c4"]
        c2 = pending[0]
        assert c2.state is M.QUEUED
        assert [(p.seq, p.state, p.smsc, p.smsc_id) for p in c2.parts] == [
            (1, P.SUBMITTED, "smsc1", "2"), (2, P.QUEUED, None, None)]
        assert [m.id for m in await after.load_pending(limit=1)] == ["c2"]
    finally:
        await after.close()


# ------------------------------------------------------------------ a message sent again whole

async def test_restart_replaces_the_parts_and_forgets_the_abandoned_keys(store: Store) -> None:
    """Part 1 of 2 went to smsc1, then the message is sent again whole (here planned again
    into three parts): it is queued with the new parts, none submitted; a receipt for the
    abandoned part matches nothing of the new attempt (an orphan), so it can never mark the
    new attempt delivered; the new attempt's own receipts do."""
    await store.accept([msg("r1", parts=2)], now=T0)
    await submit(store, "r1", 1, "A1", at=T0 + 1)
    [pending] = await store.load_pending()
    assert pending.parts[0].submitted_at == T0 + 1 and pending.parts[1].submitted_at is None
    new = tuple(NewPart(i, 3, f"new/{i}".encode(), "[]") for i in (1, 2, 3))
    assert await store.restart_message("r1", new, data_coding=8, esm_class=0x40,
                                       encoding="ucs2", at=T0 + 2,
                                       detail="part 2/2 not sent within 60 s")
    [again] = await store.load_pending()
    assert [(p.seq, p.total, p.short_message, p.state, p.smsc_id, p.submitted_at)
            for p in again.parts] == [(i, 3, f"new/{i}".encode(), P.QUEUED, None, None)
                                      for i in (1, 2, 3)]
    assert (again.data_coding, again.esm_class, again.state) == (8, 0x40, M.QUEUED)
    [view] = await store.get_messages(["r1"])
    assert (view.parts, view.encoding, view.smsc_ids) == (3, "ucs2", ())
    events = [(e.state, e.detail) for e in await store.timeline("r1")]
    assert ("restarted", "part 2/2 not sent within 60 s") in events
    late = await receipt(store, str(0xA1), P.DELIVERED, at=T0 + 3)  # the abandoned part's
    assert late == ReceiptOutcome(False, None, None)
    for seq, smsc_id in ((1, "B1"), (2, "B2"), (3, "B3")):
        await submit(store, "r1", seq, smsc_id, at=T0 + 4)
    assert (await store.get_messages(["r1"]))[0].state is M.SUBMITTED
    for smsc_id in ("B1", "B2", "B3"):
        await receipt(store, str(int(smsc_id, 16)), P.DELIVERED, at=T0 + 5)
    assert (await store.get_messages(["r1"]))[0].state is M.DELIVERED


async def test_restart_of_a_final_message_changes_nothing(store: Store) -> None:
    await store.accept([msg("r2", parts=2)], now=T0)
    await submit(store, "r2", 1, "C1")
    await receipt(store, str(0xC1), P.UNDELIVERABLE, stat="UNDELIV")
    assert (await store.get_messages(["r2"]))[0].state is M.UNDELIVERABLE
    new = tuple(NewPart(i, 2, b"x", "[]") for i in (1, 2))
    assert not await store.restart_message("r2", new, data_coding=0, esm_class=0x40,
                                           encoding="gsm7", at=T0 + 5, detail="again")
    [view] = await store.get_messages(["r2"])
    assert (view.state, view.smsc_ids) == (M.UNDELIVERABLE, ("C1",))
    assert not await store.restart_message("nope", new, data_coding=0, esm_class=0x40,
                                           encoding="gsm7", at=T0 + 5, detail="again")


async def test_message_text_is_read_only_when_asked(store: Store) -> None:
    await store.accept([msg("t1")], now=T0)
    assert await store.message_text("t1") == "hello t1"
    assert await store.message_text("nope") is None


async def test_timeline_in_time_order(store: Store) -> None:
    await store.accept([msg("t1")], now=T0)
    store.record_event("t1", "retry", at=T0 + 5, detail="b")
    store.record_event("t1", "throttled", at=T0 + 2, detail="a")  # issued later, happened earlier
    store.record_event("t1", "retry", at=T0 + 5, detail="c")
    await store.flush()
    assert [(e.at, e.detail) for e in await store.timeline("t1")] == [
        (T0, "accepted via soap, 1 part, gsm7"), (T0 + 2, "a"), (T0 + 5, "b"), (T0 + 5, "c")]
    assert await store.timeline("unknown") == []


async def test_list_messages_pages_newest_first(store: Store) -> None:
    await store.accept([msg(f"l{i:02d}", at=T0 + i) for i in range(60)], now=T0 + 100)
    await store.accept([msg(f"x{i}", account="other", at=T0 + i) for i in range(5)], now=T0)
    await store.accept([msg("tie-a", at=T0 + 59), msg("tie-b", at=T0 + 59)], now=T0 + 100)
    for i in range(0, 60, 3):
        store.record_state(f"l{i:02d}", M.FAILED, at=T0 + 200, error="INTERNAL_ERROR")
    await store.flush()
    total, page1 = await store.list_messages("acme", offset=0, limit=25)
    assert total == 62
    assert [v.id for v in page1[:4]] == ["tie-b", "tie-a", "l59", "l58"]
    assert len(page1) == 25
    _, page3 = await store.list_messages("acme", offset=50, limit=25)
    assert [v.id for v in page3] == [f"l{i:02d}" for i in range(11, -1, -1)]
    _, beyond = await store.list_messages("acme", offset=75, limit=25)
    assert beyond == []
    seen: list[str] = []
    for page in range(3):
        seen += [v.id for v in (await store.list_messages("acme", offset=25 * page, limit=25))[1]]
    assert len(seen) == len(set(seen)) == 62
    total, failed = await store.list_messages("acme", offset=0, limit=25, state=M.FAILED)
    assert total == 20 and all(v.state is M.FAILED for v in failed) and failed[0].id == "l57"
    total, recent = await store.list_messages("acme", offset=0, limit=25, since=T0 + 50)
    assert total == 12 and recent[-1].id == "l50"
    total, both = await store.list_messages("acme", offset=0, limit=25, state=M.QUEUED,
                                            since=T0 + 50)
    assert total == 9
    assert [v.id for v in both] == ["tie-b", "tie-a", "l59", "l58", "l56", "l55", "l53", "l52",
                                    "l50"]
    total, _ = await store.list_messages("nobody", offset=0, limit=25)
    assert total == 0


async def test_inbound_and_reply_routing(store: Store) -> None:
    await store.accept([msg("to1", recipient="+447700900123", at=T0),
                        msg("to2", recipient="+447700900123", at=T0 + 10),
                        msg("to3", recipient="+447700900999", at=T0 + 20)], now=T0 + 20)
    last = await store.last_message_to("+447700900123", since=T0 - 100)
    assert last is not None and last.id == "to2"
    assert await store.last_message_to("+447700900123", since=T0 + 11) is None
    await store.record_inbound(InboundMessage("mo1", "smsc1", "+447700900123", "+447400000001",
                                              "yes please", T0 + 30, "to2"))
    assert await query(store, "SELECT reply_to_message_id, text FROM inbound") == [
        ("to2", "yes please")]


# ------------------------------------------------------------------ schema, factory, lifecycle










async def test_closed_store_refuses_and_close_finishes_writes(store: Store) -> None:
    await store.close()
    store = another(store)
    with pytest.raises(StoreUnavailable):
        await store.accept([msg("z0")], now=T0)
    await store.open()
    futures = [store.accept([msg(f"z{i}")], now=T0) for i in range(1, 50)]
    await store.close()  # finishes every issued write
    assert all(f.done() and f.result()[0].status == "accepted" for f in futures)
    await store.close()
    with pytest.raises(StoreUnavailable):
        await store.accept([msg("z99")], now=T0)
    with pytest.raises(StoreUnavailable):
        await store.get_messages(["z1"])
    reopened = another(store)
    await reopened.open()
    try:
        assert len(await reopened.get_messages([f"z{i}" for i in range(1, 50)])) == 49
        assert await reopened.accept([], now=T0) == []
    finally:
        await reopened.close()


# ------------------------------------------------------------------ property: any interleaving

_OPS = st.integers(min_value=1, max_value=3).flatmap(lambda n: st.tuples(
    st.just(n),
    st.lists(st.tuples(st.integers(1, n), st.sampled_from(
        [None, P.DELIVERED, P.UNDELIVERABLE, P.EXPIRED])), max_size=6),
    st.sets(st.integers(1, n)),  # the parts that get their submit_sm_resp
    st.randoms(use_true_random=False),
))


class _Model:
    """The pure core's prediction: part states follow the transition table, the message is the
    aggregate of its parts whenever the table allows the move."""

    def __init__(self, n: int) -> None:
        self.parts = {seq: P.QUEUED for seq in range(1, n + 1)}
        self.message = M.QUEUED
        self.orphans: dict[int, list[PartState | None]] = {}

    def _reaggregate(self) -> None:
        target = aggregate(self.parts[s] for s in sorted(self.parts))
        if can_move(self.message, target):
            self.message = target

    def _apply(self, seq: int, state: PartState | None) -> None:
        current = self.parts[seq]
        if state is not None and can_move(M(current.value), M(state.value)):
            self.parts[seq] = state
        self._reaggregate()

    def submit(self, seq: int) -> bool:
        if self.parts[seq] is P.QUEUED:
            self.parts[seq] = P.SUBMITTED
        self._reaggregate()
        orphans = self.orphans.pop(seq, [])
        for state in orphans:
            self._apply(seq, state)
        return bool(orphans)

    def receipt(self, seq: int, state: PartState | None, submitted: set[int]) -> bool:
        if seq not in submitted:
            self.orphans.setdefault(seq, []).append(state)
            return False
        self._apply(seq, state)
        return True


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_OPS)
def test_any_interleaving_ends_in_the_predicted_aggregate(case: Any) -> None:
    n, receipts, to_submit, rnd = case
    ops: list[tuple[Any, ...]] = [("submit", seq) for seq in sorted(to_submit)]
    ops += [("receipt", seq, state) for seq, state in receipts]
    rnd.shuffle(ops)

    async def scenario(path: Path) -> None:
        store = SqliteStore(path)
        await store.open()
        try:
            await store.accept([msg("h", parts=n)], now=T0)
            model = _Model(n)
            submitted: set[int] = set()
            for i, op in enumerate(ops):
                smsc_id = f"{0xABC000 + op[1]:X}"
                if op[0] == "submit":
                    submitted.add(op[1])
                    applied = model.submit(op[1])
                    out = await submit(store, "h", op[1], smsc_id, at=T0 + i)
                    assert out == (ReceiptOutcome(True, "h", model.message, T0 + i, smsc_id) if applied
                                   else None)
                else:
                    stat = "DELIVRD" if op[2] is P.DELIVERED else (op[2] or "ENROUTE")
                    matched = model.receipt(op[1], op[2], submitted)
                    out = await receipt(store, str(int(smsc_id, 16)), op[2], stat=str(stat),
                                        err=str(i), at=T0 + i)
                    assert (out.matched, out.message_id, out.message_state) == (
                        (True, "h", model.message) if matched else (False, None, None))
            [view] = await store.get_messages(["h"])
            assert view.state is model.message
            assert view.parts_delivered == sum(1 for s in model.parts.values() if s is P.DELIVERED)
            if all(s is P.DELIVERED for s in model.parts.values()):
                assert view.state is M.DELIVERED
        finally:
            await store.close()

    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(scenario(Path(tmp) / "h.db"))



async def test_two_instances_never_both_accept_a_duplicate(store: Store) -> None:
    """The same request sent to two instances at once is accepted once: the other gets the
    first id as a duplicate."""
    a, b = store, another(store)
    await b.open()
    try:
        results = await asyncio.gather(*[
            (a if i % 2 else b).accept([msg(f"y{i}", digest=f"D{i // 4}")], now=T0)
            for i in range(40)])
        by_digest: dict[str, list[tuple[str, str]]] = {}
        for i, [outcome] in enumerate(results):
            by_digest.setdefault(f"D{i // 4}", []).append((outcome.status, outcome.message_id))
        for outcomes in by_digest.values():
            accepted = [mid for status, mid in outcomes if status == "accepted"]
            assert len(accepted) == 1, outcomes
            assert all(mid == accepted[0] for _, mid in outcomes)
    finally:
        await b.close()



# ------------------------------------------------------------------ instances and claims

LEASE = 30.0


async def claim(store: Store, owner: str, *, now: float = T0 + 10, smscs: tuple[str, ...] = ("s1",),
                live_after: float | None = None, limit: int = 100) -> list[str]:
    got = await store.claim(owner, now=now, live_after=now - LEASE if live_after is None
                            else live_after, smscs=smscs, due_before=now + 60, limit=limit)
    return [m.id for m in got]


async def test_an_owner_holds_what_it_accepts_unless_order_forbids(store: Store) -> None:
    await store.heartbeat("A", at=T0)
    await store.heartbeat("B", at=T0)
    out = await store.accept([msg("a1", recipient="+447400000001"),
                              msg("a2", recipient="+447400000002")], now=T0, owner="A")
    assert [(o.message_id, o.held) for o in out] == [("a1", True), ("a2", True)]
    # B may not hold a new message to a number A still has a message pending for
    out = await store.accept([msg("b1", recipient="+447400000001", at=T0 + 1),
                              msg("b2", recipient="+447400000003", at=T0 + 1),
                              msg("b3", recipient="+447400000001", at=T0 + 2)],
                             now=T0 + 2, owner="B")
    assert [(o.message_id, o.held) for o in out] == [("b1", False), ("b2", True), ("b3", False)]
    # nor may B claim them while A lives: A's a1 comes first
    assert await claim(store, "B", now=T0 + 3) == []
    # without an owner nothing is held
    [plain] = await store.accept([msg("c1", recipient="+447400000009")], now=T0 + 3)
    assert plain.held is False


async def test_claims_take_what_a_dead_instance_held_in_order(store: Store) -> None:
    await store.heartbeat("A", at=T0)
    await store.accept([msg("a1", recipient="+447400000001", at=T0),
                        msg("a2", recipient="+447400000002", at=T0 + 1)], now=T0, owner="A")
    await store.accept([msg("b1", recipient="+447400000001", at=T0 + 2)], now=T0 + 2, owner="B")
    await store.heartbeat("B", at=T0 + 40)
    # A's last heartbeat is older than the lease: B takes all, oldest first
    assert await claim(store, "B", now=T0 + 40) == ["a1", "a2", "b1"]
    assert await claim(store, "B", now=T0 + 41) == []  # B holds them now: not twice
    await store.heartbeat("A", at=T0 + 42)  # A comes back: it may not take them again
    assert await claim(store, "A", now=T0 + 42) == []


async def test_claims_take_due_routable_unacknowledged_messages_only(store: Store) -> None:
    await store.accept([
        msg("r1", routes=("s1", "s2"), recipient="+447400000011"),
        msg("r2", routes=("s2",), recipient="+447400000012"),
        msg("r3", recipient="+447400000013"),  # no routes kept (older rows): any
        msg("r4", state=M.SCHEDULED, send_at=T0 + 3600, recipient="+447400000014"),
        msg("r5", recipient="+447400000015"),
        msg("r6", parts=2, recipient="+447400000016"),
    ], now=T0)
    await submit(store, "r5", 1, "A5")  # nothing left to send
    await submit(store, "r6", 1, "A6")  # part 2 is left
    await store.record_state("r3", M.FAILED, at=T0 + 1, error="INVALID_DESTINATION")
    for name in ("X", "Y"):  # both alive: what X holds is not Y's to take
        await store.heartbeat(name, at=T0 + 9)
    got = await store.claim("X", now=T0 + 10, live_after=T0 - 20, smscs=("s1",),
                            due_before=T0 + 70, limit=10)
    assert [m.id for m in got] == ["r1", "r6"]
    assert got[0].routes == ("s1", "s2") and got[1].routes == ()
    assert [(p.seq, p.smsc_id) for p in got[1].parts] == [(1, "A6"), (2, None)]
    assert await claim(store, "Y", smscs=("s2",)) == ["r2"]
    for name in ("X", "Y"):
        await store.heartbeat(name, at=T0 + 3589)
    later = await store.claim("Y", now=T0 + 3590, live_after=T0 + 3560, smscs=("s9",),
                              due_before=T0 + 3650, limit=10)
    assert [m.id for m in later] == ["r4"]  # due within the horizon; no routes asked


async def test_two_instances_never_claim_one_message(store: Store) -> None:
    await store.accept([msg(f"c{i}", recipient=f"+4474000001{i:02d}", at=T0 + i)
                        for i in range(60)], now=T0)
    other = another(store)
    await other.open()
    await store.heartbeat("A", at=T0 + 99)
    await store.heartbeat("B", at=T0 + 99)
    try:
        first, second = await asyncio.gather(*[
            s.claim(name, now=T0 + 100, live_after=T0 + 70, smscs=("s1",), due_before=T0 + 160,
                    limit=40) for s, name in ((store, "A"), (other, "B"))])
        a, b = {m.id for m in first}, {m.id for m in second}
        assert not a & b and len(a | b) == 60
    finally:
        await other.close()


async def test_release_and_heartbeats(store: Store) -> None:
    assert await store.heartbeat("A", at=T0, info_json='{"name": "a"}') is None
    assert await store.heartbeat("A", at=T0 + 5, info_json='{"name": "a"}') == T0
    await store.heartbeat("B", at=T0 + 6)
    await store.accept([msg("h1", recipient="+447400000031"),
                        msg("h2", recipient="+447400000032")], now=T0, owner="A")
    await submit(store, "h2", 1, "B2")
    await store.record_state("h1", M.QUEUED, at=T0 + 1)  # still pending
    assert await store.release("A", at=T0 + 7) == 2
    # let go: B takes what is left to send at once, though A's heartbeat was fresh
    assert await claim(store, "B", now=T0 + 8) == ["h1"]
    rows = {r.id: r for r in await store.instances()}
    assert rows["A"].heartbeat_at < T0 and rows["A"].info_json == '{"name": "a"}'
    assert rows["B"].heartbeat_at == T0 + 6
    await store.retire(["B"])
    assert {r.id: r.heartbeat_at < T0 for r in await store.instances()} == {"A": True, "B": True}


# ------------------------------------------------------------------ flood and rate limits

def limited(mid: str, *, flood_max: int = 0, rate: float = 0.0, **kw: Any) -> NewMessage:
    return dataclasses.replace(msg(mid, **kw), flood_max=flood_max, flood_gap_s=30.0,
                               rate_per_s=rate)


async def test_the_store_holds_the_subscriber_flood_limit(store: Store) -> None:
    out = await store.accept([limited(f"f{i}", flood_max=2) for i in range(3)], now=T0)
    assert [o.status for o in out] == ["accepted", "accepted", "flood"]
    assert await store.limits_peek("acme", ["+447700900001", "+447700900002"], now=T0 + 1,
                                   flood_max=2, flood_gap_s=30.0, rate_per_s=0) == ["flood", None]
    [later] = await store.accept([limited("f9", flood_max=2, at=T0 + 31)], now=T0 + 31)
    assert later.status == "accepted"  # a gap of flood_gap_s ends the run
    # a refused message left nothing behind, and peeking consumed nothing
    assert [v.id for v in await store.get_messages(["f2", "f9"])] == ["f9"]


async def test_the_store_holds_the_account_rate(store: Store) -> None:
    out = await store.accept([limited(f"r{i}", rate=2, recipient=f"+4477009001{i:02d}")
                              for i in range(3)], now=T0)
    assert [o.status for o in out] == ["accepted", "accepted", "over_limit"]
    assert await store.limits_peek("acme", ["+447700900999"], now=T0, flood_max=0,
                                   flood_gap_s=0, rate_per_s=2) == ["over_limit"]
    [refilled] = await store.accept([limited("r9", rate=2, recipient="+447700900199")],
                                    now=T0 + 0.5)
    assert refilled.status == "accepted"  # half a second at 2/s: one token back
    # a repeat is answered before the limits (it consumes nothing)
    [again] = await store.accept([dataclasses.replace(limited("r10", rate=2), idempotency_key="K")],
                                 now=T0 + 10)
    [repeat] = await store.accept([dataclasses.replace(limited("r11", rate=2), idempotency_key="K")],
                                  now=T0 + 10)
    assert (again.status, repeat.status) == ("accepted", "idempotent")


async def test_limits_consumed_by_a_failed_write_are_not_kept(store: Store) -> None:
    """A batch that cannot commit consumed no allowance: the client retries in full."""
    await store.accept([limited("ok1", flood_max=1)], now=T0)
    # a message whose id exists fails the whole call (as a write that cannot commit would)
    with pytest.raises(StoreUnavailable):
        await store.accept([limited("x1", flood_max=1, recipient="+447700900555"),
                            limited("ok1", flood_max=1, recipient="+447700900556")], now=T0)
    out = await store.accept([limited("x2", flood_max=1, recipient="+447700900555")], now=T0)
    assert out[0].status == "accepted"


# ------------------------------------------------------------------ concatenated inbound SMS

def mo_part(seq: int, text: str, *, total: int = 3, ref: int = 7, at: float = T0,
            source: str = "+447700900001") -> MoPart:
    return MoPart(smsc="smsc1", source=source, destination="+447400000001", ref=ref,
                  total=total, seq=seq, text=text, received_at=at)


def mo_inbound(iid: str, *, source: str = "+447700900001", at: float = T0) -> InboundMessage:
    return InboundMessage(iid, "smsc1", source, "+447400000001", "", at, None)


async def test_parts_of_an_inbound_sms_come_together_in_any_order(store: Store) -> None:
    assert await store.record_mo_part(mo_part(3, "C"), mo_inbound("i3")) is False
    assert await store.record_mo_part(mo_part(1, "A"), mo_inbound("i1")) is False
    assert await store.record_mo_part(mo_part(1, "A"), mo_inbound("i1b")) is False  # again
    # another sender using the same reference is another set
    assert await store.record_mo_part(mo_part(1, "x", source="+447700900002"),
                                      mo_inbound("j1", source="+447700900002")) is False
    assert await store.record_mo_part(mo_part(2, "B"), mo_inbound("i2")) is True
    assert await query(store, "SELECT id, text FROM inbound") == [("i2", "ABC")]
    stale = await store.stale_mo_sets(before=T0 + 1, limit=10)
    assert [(s.source, s.texts) for s in stale] == [("+447700900002", ((1, "x"),))]


async def test_a_set_that_never_completes_is_stored_with_its_gaps(store: Store) -> None:
    await store.record_mo_part(mo_part(1, "A", at=T0), mo_inbound("p1"))
    await store.record_mo_part(mo_part(3, "C", at=T0 + 5), mo_inbound("p3"))
    assert await store.stale_mo_sets(before=T0, limit=10) == []  # not old enough yet
    [stale] = await store.stale_mo_sets(before=T0 + 600, limit=10)
    assert (stale.ref, stale.total, stale.first_at, stale.texts) == (
        7, 3, T0, ((1, "A"), (3, "C")))
    assert await store.record_mo_partial(stale, mo_inbound("partial")) is True
    assert await store.record_mo_partial(stale, mo_inbound("again")) is False  # gone
    assert await query(store, "SELECT id, text FROM inbound") == [("partial", "A […] C")]
    assert await store.stale_mo_sets(before=T0 + 1e6, limit=10) == []


async def test_parts_taken_by_two_instances_at_once_complete_once(store: Store) -> None:
    """The last two parts of many sets arriving on two instances at the same moment: every
    set is stored once, whole."""
    other = another(store)
    await other.open()
    try:
        for ref in range(20):
            await store.record_mo_part(mo_part(1, f"{ref}a", total=3, ref=ref),
                                       mo_inbound(f"x{ref}"))
        done = await asyncio.gather(*[
            s.record_mo_part(mo_part(seq, f"{ref}{'abc'[seq - 1]}", total=3, ref=ref),
                             mo_inbound(f"{name}{ref}"))
            for ref in range(20) for seq, s, name in ((2, store, "s"), (3, other, "o"))])
        assert sum(done) == 20
        rows = await query(store, "SELECT text FROM inbound ORDER BY text")
        assert sorted(r[0] for r in rows) == sorted(f"{ref}a{ref}b{ref}c" for ref in range(20))
    finally:
        await other.close()
