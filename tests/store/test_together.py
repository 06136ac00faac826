"""Runs of submits and receipts written together (`_Writer._apply`) leave exactly what the same
operations leave one by one: the same rows, events, outcomes and failures, for any mix of
single- and multi-part messages, reused and unknown SMSC ids, repeats, orphans and batches."""

from __future__ import annotations

import sqlite3
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from bridge.core.receipts import smsc_id_keys
from bridge.core.states import RECEIPT_STAT
from bridge.store import sqlite as S
from bridge.store.common import receipts_after_submits
from bridge.store.rows import accept_rows
from bridge.store.schema import migrate

from .test_contract import T0, msg

_MESSAGES = 8
# hex/decimal twins (1A = 26), padding, case, and plain distinct ids
_IDS = ["1A", "1a", "26", "0001A", "FF", "99", "B1", "B2", "B3", "B4", "B5", "B6"]
_STATS = ["DELIVRD", "UNDELIV", "ENROUTE", "EXPIRED", "DELIVRD"]

# seq 2 of a single-part message: no such part, the batch fails and goes one by one
_SUBMIT = st.tuples(st.just("submit"), st.integers(0, _MESSAGES - 1),
                    st.sampled_from([1, 1, 1, 2]), st.sampled_from(["a", "a", "b"]),
                    st.sampled_from(_IDS), st.sampled_from(["auto", "hex", "dec"]))
_RECEIPT = st.tuples(st.just("receipt"), st.sampled_from(["a", "a", "b"]),
                     st.sampled_from(_IDS + ["77"]), st.sampled_from(["auto", "hex", "dec"]),
                     st.sampled_from(_STATS), st.sampled_from(["000", "001"]))


@st.composite
def _draining(draw: st.DrawFn) -> list[tuple[Any, ...]]:
    """What a draining batch looks like: submits of different messages, then a receipt for
    each id (acked in hex, reported in hex or decimal; an SMSC may reuse an id, and then the
    most recent submit is the match), some messages being multi-part."""
    order = draw(st.permutations(range(_MESSAGES)))
    sent = order[:draw(st.integers(0, _MESSAGES))]
    ids = {m: 0xB0 + draw(st.integers(0, min(m, 3))) for m in sent}  # some share an id
    fmt = draw(st.sampled_from(["auto", "auto", "hex"]))
    decimal = draw(st.booleans())
    ops: list[tuple[Any, ...]] = [("submit", m, 1, "a", f"{ids[m]:X}", fmt) for m in sent]
    for n in draw(st.permutations(sorted(set(ids.values())))):
        stats = ["ENROUTE"] if draw(st.integers(0, 3)) == 0 else []  # an intermediate one
        for stat in stats + [draw(st.sampled_from(_STATS))]:
            ops.append(("receipt", "a", str(n) if decimal else f"{n:x}",
                        "dec" if decimal and fmt == "hex" else fmt, stat, "000"))
    return ops


# A draining batch, then anything: runs that are written together and the odd ones both occur.
_OPS = st.builds(lambda a, b: a + b, _draining(), st.lists(st.one_of(_SUBMIT, _RECEIPT),
                                                           max_size=24))
_CASES = st.tuples(
    st.lists(st.sampled_from([1, 1, 1, 2]), min_size=_MESSAGES, max_size=_MESSAGES),
    _OPS, st.lists(st.integers(1, 12), min_size=1, max_size=40),
)


def _op(i: int, spec: tuple[Any, ...]) -> S.Op:
    at = T0 + 1 + i
    if spec[0] == "submit":
        _, m, seq, smsc, smsc_id, fmt = spec
        return S.Op(S._Writer.submitted,
                     (f"m{m}", seq, smsc, smsc_id, smsc_id_keys(smsc_id, fmt), at), i)
    _, smsc, smsc_id, fmt, stat, err = spec
    return S.Op(S._Writer.receipt, (smsc, smsc_id_keys(smsc_id, fmt), RECEIPT_STAT[stat], stat,
                                     err, at), i)


def _play(parts: list[int], batches: list[list[S.Op]]) -> tuple[list[Any], dict[str, Any]]:
    conn = sqlite3.connect(":memory:", isolation_level=None)
    conn.execute("PRAGMA foreign_keys = ON")
    migrate(conn)
    writer = S._Writer(conn, max_batch=1000, orphan_ttl_s=3600)
    rows = accept_rows([msg(f"m{m}", parts=n, digest=None) for m, n in enumerate(parts)])
    writer.run([S.Op(S._Writer.accept, (rows, T0), "accept")])
    results: list[Any] = []
    for batch in batches:
        for token, value, error in writer.run(batch):
            results.append((token, value, None if error is None else str(error)))
    tables = {
        "messages": "SELECT id, state, updated_at, error, error_detail FROM messages ORDER BY id",
        "parts": "SELECT * FROM parts ORDER BY message_id, seq",
        "smsc_keys": "SELECT * FROM smsc_keys ORDER BY id",
        "events": "SELECT * FROM events ORDER BY id",
        "orphans": "SELECT receipt, smsc, key, part_state, stat, err, at FROM orphan_receipts "
                   "ORDER BY id",
    }
    dump = {name: conn.execute(sql).fetchall() for name, sql in tables.items()}
    # An orphan receipt's id is random: compared by the order in which each first appears.
    first: dict[str, int] = {}
    dump["orphans"] = [(first.setdefault(r[0], len(first)), *r[1:]) for r in dump["orphans"]]
    conn.close()
    return results, dump


def _one_batch(*ops: tuple[Any, ...]) -> tuple[Any, ...]:
    return ([1] * _MESSAGES, list(ops), [len(ops)])


_SUBMITS = [("submit", 0, 1, "a", "B0", "auto"), ("submit", 1, 1, "a", "B0", "auto"),
            ("submit", 2, 1, "a", "B2", "auto")]  # m0 and m1 acked with the same id


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
# A reused id's receipt belongs to the most recent submit (m1), by the strongest key...
@example(_one_batch(*_SUBMITS, ("receipt", "a", "b0", "auto", "DELIVRD", "000"),
                    ("receipt", "a", "b2", "auto", "UNDELIV", "000")))
# ... and by a weaker key only (a decimal receipt id)
@example(_one_batch(*_SUBMITS, ("receipt", "a", "176", "auto", "DELIVRD", "000"),
                    ("receipt", "a", "178", "auto", "UNDELIV", "000")))
# The same ids on two SMSCs, receipts from both in one run
@example(_one_batch(("submit", 0, 1, "a", "B0", "hex"), ("submit", 1, 1, "b", "B0", "hex"),
                    ("submit", 2, 1, "a", "B2", "hex"), ("submit", 3, 1, "b", "B2", "hex"),
                    ("receipt", "b", "b0", "hex", "DELIVRD", "000"),
                    ("receipt", "a", "b2", "hex", "UNDELIV", "000")))
# A receipt sent twice (its deliver_sm_resp was lost), in one run
@example(_one_batch(*_SUBMITS[1:], ("receipt", "a", "b0", "auto", "DELIVRD", "000"),
                    ("receipt", "a", "b0", "auto", "DELIVRD", "000"),
                    ("receipt", "a", "b2", "auto", "DELIVRD", "000")))
# One message submitted twice in one run (a resubmit)
@example(_one_batch(("submit", 0, 1, "a", "B0", "auto"), ("submit", 0, 1, "a", "B1", "auto"),
                    ("submit", 1, 1, "a", "B2", "auto"),
                    ("receipt", "a", "b0", "auto", "DELIVRD", "000")))
@given(_CASES)
def test_runs_written_together_equal_one_by_one(case: Any) -> None:
    parts, specs, sizes = case
    if not specs:
        return
    ops = [_op(i, spec) for i, spec in enumerate(specs)]
    batches: list[list[S.Op]] = []
    start = 0
    for size in sizes * len(ops):
        if start >= len(ops):
            break
        batches.append(ops[start:start + size])
        start += size
    # One by one: a no-op between every two operations leaves no run to write together (the
    # batch taken in the order the writer applies it: receipts after the submits beside them).
    apart = [[x for op in receipts_after_submits(batch, S._Writer.submitted, S._Writer.receipt)
              for x in (op, S.Op(S._Writer.noop, (), "noop"))] for batch in batches]
    together_results, together_dump = _play(parts, batches)
    apart_results, apart_dump = _play(parts, apart)
    assert together_results == [r for r in apart_results if r[0] != "noop"]
    assert together_dump == apart_dump


def test_a_draining_batch_is_written_together() -> None:
    """The shape the property test must not miss: runs that do take the fast path."""
    calls: list[str] = []
    submitted, receipts = S._TOGETHER[S._Writer.submitted], S._TOGETHER[S._Writer.receipt]

    def spy_submitted(writer: S._Writer, tx: S._Tx, run: list[Any]) -> Any:
        done = submitted(writer, tx, run)
        calls.append(f"submitted {len(run)} {'together' if done is not None else 'apart'}")
        return done

    def spy_receipts(writer: S._Writer, tx: S._Tx, run: list[Any]) -> Any:
        done = receipts(writer, tx, run)
        calls.append(f"receipt {len(run)} {'together' if done is not None else 'apart'}")
        return done

    S._TOGETHER[S._Writer.submitted] = spy_submitted
    S._TOGETHER[S._Writer.receipt] = spy_receipts
    try:
        specs = [("submit", m, 1, "a", f"{0xA0 + m:X}", "auto") for m in range(_MESSAGES)]
        specs += [("receipt", "a", str(0xA0 + m), "auto", "DELIVRD", "000")  # decimal: weaker key
                  for m in range(_MESSAGES)]
        ops = [_op(i, spec) for i, spec in enumerate(specs)]
        results, dump = _play([1] * _MESSAGES, [ops])
    finally:
        S._TOGETHER[S._Writer.submitted] = submitted
        S._TOGETHER[S._Writer.receipt] = receipts
    assert calls == [f"submitted {_MESSAGES} together", f"receipt {_MESSAGES} together"]
    assert [state for _, state, *_ in dump["messages"]] == ["delivered"] * _MESSAGES
    assert [e[3] for e in dump["events"] if e[1] == "m0"] == [
        "queued", "part_submitted", "submitted", "receipt", "delivered"]
    assert all(error is None for _, _, error in results)


_KINDS = st.lists(st.tuples(st.sampled_from(["submit", "receipt", "other"]),
                            st.floats(0, 10, allow_nan=False)), max_size=30)


@given(_KINDS)
def test_receipts_go_after_the_submits_beside_them(kinds: list[tuple[str, float]]) -> None:
    """The writer's order: every op once; submits and the other writes in their queue order;
    in each stretch without another write, receipts after submits, in their own order, timed
    no earlier than the submits they were moved behind."""
    fns = {"submit": S._Writer.submitted, "receipt": S._Writer.receipt, "other": S._Writer.noop}
    batch = [S.Op(fns[kind], (kind, at), i) for i, (kind, at) in enumerate(kinds)]
    out = receipts_after_submits(batch, S._Writer.submitted, S._Writer.receipt)
    assert sorted(op.token for op in out) == list(range(len(batch)))
    assert [op.token for op in out if op.fn is not S._Writer.receipt] == \
        [op.token for op in batch if op.fn is not S._Writer.receipt]
    stretch: list[S.Op] = []
    for op in out + [S.Op(S._Writer.noop, ("other", 0.0), -1)]:
        if op.fn is S._Writer.noop:
            kinds_in = [o.fn is S._Writer.receipt for o in stretch]
            assert kinds_in == sorted(kinds_in)  # all submits, then all receipts
            tokens = [o.token for o in stretch if o.fn is S._Writer.receipt]
            assert tokens == sorted(tokens)
            for o in stretch:
                if o.fn is S._Writer.receipt:
                    jumped = [b.args[-1] for b in batch[o.token:] if b.token in
                              {s.token for s in stretch if s.fn is S._Writer.submitted}]
                    assert o.args[-1] == max([batch[o.token].args[-1], *jumped])
            stretch = []
        else:
            stretch.append(op)
