"""The store in its own process (bridge.runtime.process): the same answers as SqliteStore across
the pipe, errors that keep their meaning, and no lost write when either side ends."""

from __future__ import annotations

import asyncio
import pickle
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bridge.core.receipts import smsc_id_keys
from bridge.store import SqliteStore, StoreSpec, StoreUnavailable
from bridge.runtime import StoreProcess
from tests.store.conftest import parts_used
from tests.store.test_contract import T0, M, P, msg


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[StoreProcess]:
    s = StoreProcess(tmp_path / "bridge.db")
    await s.open()
    try:
        yield s
    finally:
        await s.close()


async def test_a_message_goes_through_its_life_across_the_pipe(store: StoreProcess) -> None:
    outcomes = await store.accept([msg("m1"), msg("m2", key="k")], now=T0)
    assert [(o.message_id, o.status) for o in outcomes] == [("m1", "accepted"), ("m2", "accepted")]
    again = await store.accept([msg("m3", key="k")], now=T0)
    assert [(o.message_id, o.status) for o in again] == [("m2", "idempotent")]
    assert {m.id for m in await store.load_pending()} == {"m1", "m2"}

    keys = smsc_id_keys("1a", "auto")
    assert await store.record_submitted("m1", 1, smsc="s", smsc_id="1a", id_keys=keys,
                                        at=T0 + 1) is None
    receipt = await store.record_receipt(smsc="s", id_keys=keys, part_state=P.DELIVERED,
                                         stat="DELIVRD", err="000", at=T0 + 2)
    assert (receipt.matched, receipt.message_id, receipt.message_state) == \
        (True, "m1", M.DELIVERED)
    await store.record_event("m2", "throttled", at=T0 + 3, detail="0x58")
    await store.record_state("m2", M.FAILED, at=T0 + 4, error="INTERNAL_ERROR", detail="gave up")

    views = {v.id: v for v in await store.get_messages(["m1", "m2", "nope"])}
    assert (views["m1"].state, views["m1"].parts_delivered) == (M.DELIVERED, 1)
    assert (views["m2"].state, views["m2"].error) == (M.FAILED, "INTERNAL_ERROR")
    events = [e.state for e in await store.timeline("m1")]
    assert events[0] == "queued" and events[-1] == "delivered"
    assert [e.state for e in await store.timeline("m2")][-2:] == ["throttled", "failed"]
    total, page = await store.list_messages("acme", offset=0, limit=1)
    assert total == 2 and len(page) == 1
    counts = await store.counts_by_state()
    assert (counts["delivered"], counts["failed"]) == (1, 1)
    assert await store.load_pending() == []


async def test_a_failed_write_fails_alone_and_the_pipe_goes_on(store: StoreProcess) -> None:
    with pytest.raises(StoreUnavailable, match="has no part"):
        await store.record_submitted("missing", 1, smsc="s", smsc_id="1", id_keys=("int:1",),
                                     at=T0)
    assert [o.status for o in await store.accept([msg("m1")], now=T0)] == ["accepted"]


async def test_when_the_store_process_dies_every_call_fails_clearly(
        store: StoreProcess) -> None:
    await store.accept([msg("m1")], now=T0)
    assert store._transport is not None and store._answers is not None
    store._transport.kill()
    await store._answers.exited
    await asyncio.sleep(0.05)  # the answer reader sees the end of the pipe
    with pytest.raises(StoreUnavailable, match="exited"):
        await store.accept([msg("m2")], now=T0)
    with pytest.raises(StoreUnavailable):
        await store.get_messages(["m1"])


async def test_when_the_bridge_goes_away_the_store_finishes_what_it_received(
        tmp_path: Path) -> None:
    store = StoreProcess(tmp_path / "gone.db")
    await store.open()
    assert store._transport is not None and store._answers is not None and store._outbox
    for i in range(50):  # issued, never awaited: the bridge dies right after sending them
        store.accept([msg(f"m{i}")], now=T0)
    store._outbox.flush()
    store._transport.get_pipe_transport(0).close()  # what the child sees when the bridge dies
    await asyncio.wait_for(store._answers.exited, 30)
    assert store._transport.get_returncode() == 0
    check = SqliteStore(tmp_path / "gone.db")
    await check.open()
    try:
        assert len(await check.get_messages([f"m{i}" for i in range(50)])) == 50
    finally:
        await check.close()


async def test_a_store_that_cannot_open_says_why(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a directory")
    store = StoreProcess(tmp_path / "file" / "bridge.db")
    with pytest.raises(StoreUnavailable):
        await store.open()
    with pytest.raises(StoreUnavailable, match="not open"):
        await store.accept([msg("m1")], now=T0)


async def test_a_call_that_cannot_be_pickled_fails_alone(store: StoreProcess) -> None:
    """The bad call gets StoreUnavailable; calls sent in the same frame still arrive."""
    bad = store.accept([msg("bad")], now=lambda: 0)  # type: ignore[arg-type]
    good = store.accept([msg("good")], now=T0)
    with pytest.raises(StoreUnavailable, match="cannot be sent"):
        await bad
    assert [o.status for o in await good] == ["accepted"]
    assert [v.id for v in await store.get_messages(["bad", "good"])] == ["good"]


def test_an_answer_that_cannot_be_pickled_becomes_an_error_answer() -> None:
    from bridge.runtime.child import _unsendable_answer
    from bridge.runtime.process import Outbox

    sent: list[bytes] = []
    outbox = Outbox(sent.append, _unsendable_answer)
    loop = asyncio.new_event_loop()
    try:
        loop.call_soon(outbox.put, (1, True, lambda: 0))
        loop.call_soon(outbox.put, (2, True, "fine"))
        loop.call_soon(loop.stop)
        loop.run_forever()
        outbox.flush()
    finally:
        loop.close()
    (answers,) = [pickle.loads(data[4:]) for data in sent]
    assert answers[1] == (2, True, "fine")
    assert answers[0][0] == 1 and answers[0][1] is False
    assert isinstance(answers[0][2], StoreUnavailable)


# ------------------------------------------------------------------ the child's own writer

async def test_writes_in_one_frame_keep_their_order_and_fail_alone(store: StoreProcess) -> None:
    """The child's main thread is the writer: calls of one frame are one transaction, applied
    in the order they were made; a call that fails is retried alone and fails alone."""
    await store.accept([msg("o1")], now=T0)
    events = [store.record_event("o1", f"e{i}", at=T0 + 1, detail=str(i)) for i in range(30)]
    bad_fk = store.record_event("no-such-message", "note", at=T0)
    bad_pk = store.accept([msg("o2"), msg("o1")], now=T0)  # o1 exists: the whole call fails
    good = store.accept([msg("o3")], now=T0)
    bad_unknown = store.record_submitted("nope", 1, smsc="s", smsc_id="1", id_keys=["int:1"],
                                         at=T0)
    state = store.record_state("o1", M.FAILED, at=T0 + 2, error="INVALID_DESTINATION",
                               detail="no route")
    await asyncio.gather(*events)
    assert (await good)[0].status == "accepted"
    assert await state is None
    for bad in (bad_fk, bad_pk, bad_unknown):
        with pytest.raises(StoreUnavailable):
            await bad
    timeline = [e.state for e in await store.timeline("o1")]
    assert timeline == ["queued"] + [f"e{i}" for i in range(30)] + ["failed"]
    assert sorted(v.id for v in await store.get_messages(["o1", "o2", "o3"])) == ["o1", "o3"]
    assert await parts_used(store, "acme") == 2


async def test_a_batch_larger_than_the_bound_commits_in_order(tmp_path: Path) -> None:
    store = StoreProcess(tmp_path / "small.db", commit_max_batch=3)
    await store.open()
    try:
        await store.accept([msg("b0")], now=T0)
        writes = [store.accept([msg(f"b{i}")], now=T0) for i in range(1, 11)]
        writes += [store.record_event("b0", f"e{i}", at=T0 + 1) for i in range(10)]
        await asyncio.gather(*writes)
        assert len(await store.get_messages([f"b{i}" for i in range(11)])) == 11
        assert [e.state for e in await store.timeline("b0")][1:] == [f"e{i}" for i in range(10)]
    finally:
        await store.close()


async def test_close_finishes_the_calls_sent_before_it(tmp_path: Path) -> None:
    store = StoreProcess(tmp_path / "close.db")
    await store.open()
    writes = [store.accept([msg(f"c{i}")], now=T0) for i in range(20)]
    await store.close()  # the close travels in the same frame as the writes
    assert all(w.done() and w.result()[0].status == "accepted"  # type: ignore[attr-defined]
               for w in writes)
    with pytest.raises(StoreUnavailable):
        await store.accept([msg("late")], now=T0)


def test_the_child_serves_a_pipe_and_finishes_at_end_of_file(tmp_path: Path) -> None:
    """serve() on plain pipes: frames split across reads, a read among writes, an unknown
    call, and end of file in the middle of a frame (that call was never sent whole)."""
    import os
    import threading

    from bridge.runtime.child import serve
    from bridge.runtime.process import FrameBuffer, frame
    from bridge.store.rows import accept_rows

    to_child_r, to_child_w = os.pipe()
    from_child_r, from_child_w = os.pipe()
    done: list[int] = []
    server = threading.Thread(target=lambda: done.append(serve(
        fd_in=to_child_r, fd_out=from_child_w)))
    server.start()
    data = frame([(StoreSpec.of(tmp_path / "pipe.db"), None)])  # no outbound side
    data += frame([(1, "accept", (accept_rows([msg("p1")]), T0)), (2, "record_event", ("p1", "x", T0, ""))])
    data += frame([(3, "get_messages", (("p1",),)), (4, "no_such_call", ())])
    data += frame([(5, "record_event", ("p1", "y", T0 + 1, ""))])
    cut = frame([(6, "record_event", ("p1", "never", T0 + 2, ""))])
    for piece in (data[:7], data[7:60], data[60:], cut[:-3]):
        os.write(to_child_w, piece)
    os.close(to_child_w)
    server.join(30)
    os.close(from_child_w)
    raw = b""
    while chunk := os.read(from_child_r, 1 << 16):
        raw += chunk
    os.close(from_child_r)
    os.close(to_child_r)
    answers = {request_id: (ok, value) for request_id, ok, value in FrameBuffer().feed(raw)}
    assert done == [0]
    assert answers[0] == (True, "ready")
    assert answers[1][0] and answers[2] == (True, None) and answers[5] == (True, None)
    assert answers[4][0] is False and isinstance(answers[4][1], StoreUnavailable)
    assert answers[3][0] is True
    assert 6 not in answers
    check = SqliteStore(tmp_path / "pipe.db")

    async def timeline() -> list[str]:
        await check.open()
        try:
            return [e.state for e in await check.timeline("p1")]
        finally:
            await check.close()
    assert asyncio.run(timeline()) == ["queued", "x", "y"]


def test_a_frame_that_does_not_decode_raises_and_leaves_the_buffer() -> None:
    from bridge.runtime.process import LENGTH, FrameBuffer, frame

    bad = LENGTH.pack(3) + b"not"
    frames = FrameBuffer()
    with pytest.raises(Exception):
        frames.feed(frame([1]) + bad + frame([2]))
    assert frames.feed(frame([3])) == [2, 3]  # the frames after the bad one still arrive


async def test_a_failed_hand_over_to_the_dispatcher_loses_no_answer(tmp_path: Path) -> None:
    """The messages are committed either way; the bridge must still hear so."""
    from bridge.runtime.child import _Server
    from bridge.runtime.process import FrameBuffer, Outbox
    from bridge.store.base import AcceptOutcome

    class Broken:
        def accepted(self, rows: object, outcomes: object) -> None:
            raise RuntimeError("dispatcher is gone")

    sent: list[bytes] = []
    outbox = Outbox(sent.append, lambda item, exc: None)
    server = _Server(0, outbox)
    server.outbound = Broken()  # type: ignore[assignment]
    server.accepts[7] = ((),)
    server.answer([(7, [AcceptOutcome("m1", "accepted")], None),
                   (8, None, ValueError("odd"))])
    outbox.flush()
    answers = FrameBuffer().feed(b"".join(sent))
    assert answers[0] == (7, True, [AcceptOutcome("m1", "accepted")])
    assert answers[1][:2] == (8, False) and isinstance(answers[1][2], StoreUnavailable)
    assert "ValueError: odd" in str(answers[1][2])  # our type: it always unpickles


async def test_a_store_process_that_exits_before_it_is_ready_says_so(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setattr(sys, "executable", "/bin/false")
    store = StoreProcess(tmp_path / "bridge.db")
    with pytest.raises(StoreUnavailable, match="exited before it was ready"):
        await store.open()


async def test_one_store_process_at_a_time_runs_the_outbound_side(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A restarted bridge's store process waits for the one still draining, then takes over."""
    import fcntl

    from bridge.runtime import child

    monkeypatch.setattr(child, "LOCK_WAIT_S", 0.3)
    path = str(tmp_path / "bridge.db")
    with open(f"{path}.outbound.lock", "ab") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)
        with pytest.raises(StoreUnavailable, match="another store process"):
            await child._outbound_lock(path)
    (await child._outbound_lock(path)).close()  # released: taken at once


async def test_the_store_process_serves_postgresql(pg_url: str) -> None:
    """The same pipe and child, with PostgreSQL behind them: writes in order, reads, and a
    password that travels in the first frame, never on the command line."""
    store = StoreProcess(StoreSpec(postgres_url=pg_url, password="not-needed-here"))
    await store.open()
    try:
        assert store.path is None and "not-needed-here" not in store.label
        outcomes = await store.accept([msg("pg1"), msg("pg2", parts=2)], now=T0)
        assert [o.status for o in outcomes] == ["accepted", "accepted"]
        store.record_event("pg1", "note", at=T0 + 1, detail="in order")
        [view] = await store.get_messages(["pg1"])
        assert view.state is M.QUEUED
        assert [e.state for e in await store.timeline("pg1")] == ["queued", "note"]
        assert await parts_used(store, "acme") == 3
    finally:
        await store.close()
