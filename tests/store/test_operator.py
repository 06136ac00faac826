"""The operator's moves through the Store contract, against SQLite and PostgreSQL alike (the
`store` fixture): cancel and its fence against the dispatcher's submit, retry, credit topped
up beside the quota and decided in the accept transaction, every account's messages."""

from __future__ import annotations

import asyncio
import dataclasses

from bridge.core.states import MessageState
from bridge.store.base import Store
from tests.store.conftest import another, hold_writer, parts_used, query
from tests.store.test_contract import T0, M, P, msg, receipt, submit

OWNER = "inst-a/1/aa"


async def state_of(store: Store, mid: str) -> MessageState:
    [view] = await store.get_messages([mid])
    return view.state


async def test_cancel_queued_and_scheduled_ends_them_with_their_reports(store: Store) -> None:
    reported = dataclasses.replace(msg("c1"), callback_url="http://127.0.0.1:9/cb",
                                   dsn_notify="FAILURE")
    await store.accept([reported, msg("c2", state=M.SCHEDULED, send_at=T0 + 3600,
                                      recipient="+447700900002")], now=T0, owner=OWNER)
    out = await store.cancel(["c1", "c2"], at=T0 + 5, actor="cli:ops")
    assert [(o.message_id, o.done, o.state, o.detail) for o in out] == [
        ("c1", True, M.CANCELLED, "cancelled by cli:ops"),
        ("c2", True, M.CANCELLED, "cancelled by cli:ops")]
    [view] = await store.get_messages(["c1"])
    assert (view.state, view.updated_at, view.error_detail) == (
        M.CANCELLED, T0 + 5, "cancelled by cli:ops")
    assert [(e.state, e.detail) for e in await store.timeline("c1")][-1] == (
        "cancelled", "cancelled by cli:ops")
    assert await query(store, "SELECT DISTINCT state FROM parts WHERE message_id = 'c1'") == [
        ("cancelled",)]
    assert await store.load_pending() == []
    assert await store.claim("inst-b/2/bb", now=T0 + 6, live_after=T0, smscs=["smsc1"],
                             due_before=T0 + 9999, limit=10) == []
    [callback] = await store.callbacks_due(now=T0 + 10, limit=10)
    assert (callback.message_id, callback.state) == ("c1", "cancelled")
    [dsn] = await store.mailbacks_due(now=T0 + 10, limit=10)
    assert (dsn.message_id, dsn.kind, dsn.state) == ("c1", "dsn", "cancelled")
    counts = await store.counts_by_state()
    assert counts["cancelled"] == 2 and counts["queued"] == 0


async def test_cancel_refuses_what_it_may_not_touch_and_changes_nothing(store: Store) -> None:
    await store.accept([msg("d1"), msg("s1", recipient="+447700900002")], now=T0)
    await submit(store, "d1", 1, "0A")
    await receipt(store, "10", P.DELIVERED)
    await submit(store, "s1", 1, "0B")
    out = await store.cancel(["d1", "s1", "nope", "d1"], at=T0 + 5, actor="api:root")
    assert [(o.message_id, o.done, o.state) for o in out] == [
        ("d1", False, M.DELIVERED), ("s1", False, M.SUBMITTED), ("nope", False, None),
        ("d1", False, M.DELIVERED)]
    assert out[0].detail == ("it is delivered: only queued or scheduled messages can be "
                             "cancelled")
    assert out[2].detail == "no such message"
    assert await state_of(store, "d1") is M.DELIVERED
    assert "cancelled" not in [e.state for e in await store.timeline("s1")]


async def test_a_begun_submit_fences_cancel_until_it_ends(store: Store) -> None:
    await store.accept([msg("f1")], now=T0, owner=OWNER)
    assert await store.begin_submit("f1", OWNER) is True
    [refused] = await store.cancel(["f1"], at=T0 + 1, actor="cli:ops")
    assert (refused.done, refused.state) == (False, M.QUEUED)
    assert "too late to cancel" in refused.detail
    await store.end_submit("f1", OWNER)  # the SMSC did not take it (throttled)
    [done] = await store.cancel(["f1"], at=T0 + 2, actor="cli:ops")
    assert done.done
    assert await store.begin_submit("f1", OWNER) is False  # the dispatcher sends nothing


async def test_an_acknowledged_part_keeps_the_fence(store: Store) -> None:
    """A two-part message whose first part the SMSC took is still `queued`; ending the submit
    of its second part does not make it cancellable, nor does a claim by another instance."""
    await store.accept([msg("two", parts=2)], now=T0, owner=OWNER)
    assert await store.begin_submit("two", OWNER)
    await submit(store, "two", 1, "0C")
    assert await state_of(store, "two") is M.QUEUED
    await store.end_submit("two", OWNER)
    [refused] = await store.cancel(["two"], at=T0 + 3, actor="cli:ops")
    assert not refused.done and await state_of(store, "two") is M.QUEUED


async def test_cancel_and_submit_racing_from_two_instances_never_both_win(store: Store) -> None:
    """Instance A's dispatcher begins submits while an operator cancels through instance B:
    for every message exactly one of them wins."""
    ids = [f"r{i}" for i in range(30)]
    await store.accept([msg(mid, recipient=f"+4477009{i:05d}") for i, mid in enumerate(ids)],
                       now=T0, owner=OWNER)
    other = another(store)
    await other.open()
    try:
        begins = [store.begin_submit(mid, OWNER) for mid in ids]
        cancels = [other.cancel([mid], at=T0 + 1, actor="api:ops") for mid in reversed(ids)]
        results = await asyncio.gather(*begins, *cancels)
    finally:
        await other.close()
    began = dict(zip(ids, results[:len(ids)]))
    cancelled = {outcomes[0].message_id: outcomes[0].done for outcomes in results[len(ids):]}
    assert all(began[mid] != cancelled[mid] for mid in ids), (began, cancelled)
    for mid in ids:
        assert (await state_of(store, mid) is M.CANCELLED) == cancelled[mid]


async def test_retry_queues_a_failed_message_whole_with_a_new_validity(store: Store) -> None:
    await store.accept([msg("x1", parts=2), msg("x2", recipient="+447700900002")], now=T0)
    await submit(store, "x1", 1, "1D")
    await store.record_state("x1", M.FAILED, at=T0 + 10, error="INVALID_DESTINATION",
                             detail="0x0B")
    await store.record_state("x2", M.EXPIRED, at=T0 + 86400, detail="validity ended")
    later = T0 + 100_000
    out = await store.retry(["x1", "x2"], at=later, actor="cli:ops")
    assert [(o.message_id, o.done, o.state) for o in out] == [
        ("x1", True, M.QUEUED), ("x2", True, M.QUEUED)]
    assert out[0].detail.startswith("retried by cli:ops, valid until ")
    [view] = await store.get_messages(["x1"])
    assert (view.state, view.error, view.error_detail, view.smsc_ids, view.updated_at) == (
        M.QUEUED, None, None, (), later)
    pending = {m.id: m for m in await store.load_pending()}
    assert pending["x1"].expires_at == later + 86400  # as long as it had at first
    assert [(p.state, p.smsc_id) for p in pending["x1"].parts] == [(P.QUEUED, None)] * 2
    claimed = await store.claim("inst-b/2/bb", now=later, live_after=later - 30,
                                smscs=["smsc1"], due_before=later + 1, limit=10)
    assert sorted(m.id for m in claimed) == ["x1", "x2"]
    # the old SMSC id is forgotten: its late receipt no longer finds the message
    assert not (await receipt(store, str(0x1D), P.DELIVERED, at=later + 1)).matched


async def test_retry_refuses_what_is_not_failed_or_expired(store: Store) -> None:
    await store.accept([msg("q1")], now=T0)
    out = await store.retry(["q1", "zz"], at=T0 + 1, actor="cli:ops")
    assert [(o.done, o.state) for o in out] == [(False, M.QUEUED), (False, None)]
    assert out[0].detail == ("it is queued: only expired or failed messages can be retried")


async def test_credit_tops_up_the_quota_in_the_accept_transaction(store: Store) -> None:
    out = await store.accept([msg(f"p{i}", quota=3, recipient=f"+4477009000{i:02d}")
                              for i in range(4)], now=T0)
    assert [o.status for o in out] == ["accepted"] * 3 + ["over_quota"]
    assert await store.add_credit("acme", 2, quota=3, at=T0 + 1, actor="cli:ops") == (2, None)
    out = await store.accept([msg(f"t{i}", quota=3, recipient=f"+4477009100{i:02d}")
                              for i in range(3)], now=T0 + 2)
    assert [o.status for o in out] == ["accepted", "accepted", "over_quota"]
    [usage] = await store.usage(["acme"])
    assert (usage.used, usage.credit) == (5, 2)
    credit, refusal = await store.add_credit("acme", -6, quota=3, at=T0 + 3, actor="cli:ops")
    assert credit == 2 and refusal is not None and "at most -5" in refusal
    assert await store.add_credit("acme", -1, quota=3, at=T0 + 4, actor="api:root") == (1, None)
    history = await store.credit_changes("acme", limit=10)
    assert [(c.change, c.credit, c.at, c.actor) for c in history] == [
        (-1, 1, T0 + 4, "api:root"), (2, 2, T0 + 1, "cli:ops")]
    assert await store.usage(["nobody", "acme"]) == [
        type(usage)("nobody", 0, 0), type(usage)("acme", 5, 1)]


async def test_an_unlimited_account_has_no_credit_to_top_up(store: Store) -> None:
    credit, refusal = await store.add_credit("acme", 10, quota=0, at=T0, actor="cli:ops")
    assert credit == 0 and refusal is not None and "unlimited" in refusal
    assert await store.credit_changes("acme", limit=10) == []


async def test_a_top_up_and_accepts_on_two_instances_hold_the_limit(store: Store) -> None:
    """Whichever instance's accepts come before or after the top-up, the account gets its
    quota and its credit, no part more."""
    other = another(store)
    await other.open()
    try:
        top_up = other.add_credit("acme", 5, quota=10, at=T0, actor="cli:ops")
        calls = [(store if i % 2 else other).accept(
            [msg(f"z{i}", quota=10, recipient=f"+4477009200{i:02d}")], now=T0)
            for i in range(30)]
        results = await asyncio.gather(*calls)
        assert await top_up == (5, None)
    finally:
        await other.close()
    statuses = [r[0].status for r in results]
    assert statuses.count("accepted") == 15 and statuses.count("over_quota") == 15
    assert await parts_used(store, "acme") == 15


async def test_every_account_s_messages_newest_first(store: Store) -> None:
    await store.accept([msg("a1", at=T0), msg("b1", account="other", at=T0 + 1),
                        msg("a2", at=T0 + 2, state=M.SCHEDULED, send_at=T0 + 99)], now=T0 + 3)
    total, page = await store.list_messages(None, offset=0, limit=2)
    assert total == 3 and [v.id for v in page] == ["a2", "b1"]
    total, page = await store.list_messages(None, offset=0, limit=10, state=M.QUEUED,
                                            since=T0 + 1)
    assert total == 1 and [v.id for v in page] == ["b1"]


async def test_submits_begun_together_answer_each_message(store: Store) -> None:
    """Workers taking their next messages in one loop turn: one transaction, each answered."""
    await store.accept([msg(f"g{i}", recipient=f"+4477009300{i:02d}") for i in range(3)],
                       now=T0, owner=OWNER)
    await store.cancel(["g1"], at=T0 + 1, actor="cli:ops")
    gate = hold_writer(store)
    begun = [store.begin_submit(f"g{i}", OWNER) for i in range(3)]
    gate.set()
    assert [await b for b in begun] == [True, False, True]
    assert [o.done for o in await store.cancel(["g0", "g2"], at=T0 + 2, actor="x")] == [
        False, False]
