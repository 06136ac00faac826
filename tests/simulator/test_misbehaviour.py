"""The simulator's configurable misbehaviours, seen on the wire by a real SMPP client on
127.0.0.1 (the client and fixtures of test_server), and the same keys as command-line options."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from bridge.config import SimulatorConfig
from bridge.simulator import pdu as P
from tests.simulator.test_server import (  # noqa: F401  (start, clients: fixtures)
    TIMEOUT,
    Client,
    Started,
    bound,
    clients,
    make_sm,
    start,
)


TO = "447400123456"


async def statuses(c: Client, n: int, **fields: Any) -> list[int]:
    """Status of each of n submits sent one after another."""
    return [(await c.submit(**fields))[0] for _ in range(n)]


def udh8(ref: int, total: int, seq: int, text: bytes = b"part", **fields: Any) -> dict[str, Any]:
    """submit_sm fields of one part, 8-bit reference in the UDH."""
    return {"esm_class": 0x40, "short_message": bytes((5, 0, 3, ref, total, seq)) + text,
            "destination_addr": TO, **fields}


def udh16(ref: int, total: int, seq: int, text: bytes = b"part",
          **fields: Any) -> dict[str, Any]:
    header = bytes((6, 8, 4, ref >> 8, ref & 0xFF, total, seq))
    return {"esm_class": 0x40, "short_message": header + text, "destination_addr": TO,
            **fields}


def sar(ref: int, total: int, seq: int, text: bytes = b"part", **fields: Any) -> dict[str, Any]:
    return {"short_message": text, "destination_addr": TO, **fields,
            "tlvs": {P.TAG_SAR_MSG_REF_NUM: ref.to_bytes(2, "big"),
                     P.TAG_SAR_TOTAL_SEGMENTS: bytes((total,)),
                     P.TAG_SAR_SEGMENT_SEQNUM: bytes((seq,))}}


# ------------------------------------------------------------------ error_every


async def test_error_every_answers_with_the_status_and_no_id(start: Started,
                                                             clients: list[Client]) -> None:
    sim = await start(error_every=3, error_status=0x45)
    c = await bound(sim, clients)
    answers = [await c.call(P.encode_submit_sm(c.next_seq(), make_sm())) for _ in range(6)]
    assert [h.status for h, _ in answers] == [0, 0, 0x45, 0, 0, 0x45]
    assert [(h.length, body) for h, body in answers if h.status] == [(16, b""), (16, b"")]
    assert sim.errored == 2 and len(sim.submits) == 4


async def test_error_every_one_fails_every_submit_with_rsyserr(start: Started,
                                                               clients: list[Client]) -> None:
    sim = await start(error_every=1)
    c = await bound(sim, clients)
    assert await statuses(c, 3) == [P.ESME_RSYSERR] * 3
    assert sim.accepted == 0


async def test_throttle_every_wins_over_error_every_on_the_same_submit(
        start: Started, clients: list[Client]) -> None:
    sim = await start(throttle_every=2, error_every=3)
    c = await bound(sim, clients)
    assert await statuses(c, 6) == [0, 0x58, 0x08, 0x58, 0, 0x58]


# ------------------------------------------------------------------ silent_every


async def answered_before_an_enquire_link(c: Client, n: int) -> list[bool]:
    """Send n submits then an enquire_link; once its resp is in, every submit the simulator
    meant to answer has been answered (it answers in order), so the rest never will be."""
    pending = [c.submit_nowait() for _ in range(n)]
    header, _ = await c.call(P.enquire_link(c.next_seq()))
    assert header.command_id == P.ENQUIRE_LINK_RESP
    return [p.done() for p in pending]


async def test_silent_every_leaves_every_nth_submit_unanswered(start: Started,
                                                               clients: list[Client]) -> None:
    sim = await start(silent_every=2)
    c = await bound(sim, clients)
    assert await answered_before_an_enquire_link(c, 5) == [True, False, True, False, True]
    assert sim.silenced == 2 and sim.accepted == 3 and not c.closed.is_set()


async def test_silent_every_one_answers_no_submit_but_enquire_link(
        start: Started, clients: list[Client]) -> None:
    sim = await start(silent_every=1, error_every=3)
    c = await bound(sim, clients)
    # error_every comes first on the third submit: it is answered, the others are not
    assert await answered_before_an_enquire_link(c, 4) == [False, False, True, False]
    assert sim.silenced == 3 and sim.errored == 1 and sim.accepted == 0


# ------------------------------------------------------------------ delay_every


async def test_delay_every_delays_only_every_nth_response(start: Started,
                                                          clients: list[Client]) -> None:
    sim = await start(response_delay_s=0.2, delay_every=2)
    c = await bound(sim, clients)
    loop = asyncio.get_running_loop()
    sent = loop.time()
    pending = [c.submit_nowait() for _ in range(4)]
    first, third = await asyncio.wait_for(asyncio.gather(pending[0], pending[2]), TIMEOUT)
    quick = loop.time() - sent
    assert not pending[1].done() and not pending[3].done()
    answers = await asyncio.wait_for(asyncio.gather(*pending), TIMEOUT)
    late = loop.time() - sent
    assert [h.status for h, _ in answers] == [0] * 4
    assert quick < 0.2 <= late
    seqs = [h.sequence for h, _ in answers]
    responses = [h.sequence for h in c.received if h.command_id == P.SUBMIT_SM_RESP]
    assert responses == [seqs[0], seqs[2], seqs[1], seqs[3]]  # the late ones overtaken
    assert sim.max_in_flight == 2


# ------------------------------------------------------------------ throttle_part


async def test_throttle_part_throttles_only_part_k_and_only_t_times_per_message(
        start: Started, clients: list[Client]) -> None:
    sim = await start(throttle_part=2, throttle_part_times=2)
    c = await bound(sim, clients)
    assert (await c.submit(**udh8(7, 3, 1)))[0] == 0
    assert await statuses(c, 4, **udh8(7, 3, 2)) == [0x58, 0x58, 0, 0]
    assert (await c.submit(**udh8(7, 3, 3)))[0] == 0
    # Another message each: the same reference number of another kind, to another number,
    # from another sender.
    for other in (udh16(7, 3, 2), sar(7, 3, 2), udh8(7, 3, 2, destination_addr="447400123457"),
                  udh8(7, 3, 2, source_addr="OTHER")):
        assert await statuses(c, 3, **other) == [0x58, 0x58, 0]
    assert (await c.submit())[0] == 0  # a single-part message
    assert (await c.submit(**udh8(8, 2, 1)))[0] == 0
    assert sim.throttled == 10
    assert [s.concat.seq if s.concat else 0 for s in sim.submits[:4]] == [1, 2, 2, 3]


async def test_throttle_part_without_times_throttles_that_part_always(
        start: Started, clients: list[Client]) -> None:
    sim = await start(throttle_part=3)
    c = await bound(sim, clients)
    for seq in (1, 2):
        assert (await c.submit(**sar(300, 3, seq)))[0] == 0
    assert await statuses(c, 5, **sar(300, 3, 3)) == [0x58] * 5
    assert (await c.submit(**udh16(300, 2, 2)))[0] == 0  # a two-part message has no part 3
    assert sim.throttled == 5 and sim.accepted == 3


async def test_a_part_throttled_by_throttle_every_does_not_count_against_its_times(
        start: Started, clients: list[Client]) -> None:
    sim = await start(throttle_every=2, throttle_part=1, throttle_part_times=1)
    c = await bound(sim, clients)
    # submits 2 and 4 are throttle_every's; the first of 1 and 3 is throttle_part's
    assert await statuses(c, 4, **udh8(1, 2, 1)) == [0x58, 0x58, 0, 0x58]
    assert sim.throttled == 3 and sim.accepted == 1


async def test_throttle_part_forgets_the_oldest_message_beyond_its_bound(
        start: Started, clients: list[Client], monkeypatch: pytest.MonkeyPatch) -> None:
    """A long run with throttle_part_times keeps a bounded memory: the oldest message's
    count goes first, and its part is then throttled as if it were new."""
    import bridge.simulator.server

    monkeypatch.setattr(bridge.simulator.server, "_MAX_PART_THROTTLES", 2)
    sim = await start(throttle_part=1, throttle_part_times=1)
    c = await bound(sim, clients)
    assert await statuses(c, 2, **udh8(1, 2, 1)) == [0x58, 0]
    assert await statuses(c, 2, **udh8(2, 2, 1)) == [0x58, 0]
    assert await statuses(c, 2, **udh8(1, 2, 1)) == [0, 0]  # still remembered
    assert await statuses(c, 2, **udh8(3, 2, 1)) == [0x58, 0]
    assert await statuses(c, 2, **udh8(1, 2, 1)) == [0x58, 0]  # forgotten, throttled again


# ------------------------------------------------------------------ drop_between_parts


async def test_drop_between_parts_closes_after_part_one_of_the_nth_message_once(
        start: Started, clients: list[Client]) -> None:
    sim = await start(drop_between_parts=2)
    c = await bound(sim, clients)
    assert (await c.submit())[0] == 0  # single-part messages are not counted
    assert [(await c.submit(**udh8(1, 2, seq)))[0] for seq in (1, 2)] == [0, 0]
    assert (await c.submit())[0] == 0
    first, second = c.submit_nowait(**udh8(2, 2, 1)), c.submit_nowait(**udh8(2, 2, 2))
    header, _ = await asyncio.wait_for(first, TIMEOUT)
    assert header.status == 0
    await asyncio.wait_for(c.closed.wait(), TIMEOUT)
    with pytest.raises(ConnectionError):
        await second  # it reached the simulator with part 1, but was never taken
    assert c.received[-1] == header  # part 1's OK was the last PDU on the connection
    assert sim.drops == 1 and sim.unbinds_sent == 0
    assert [s.concat.seq if s.concat else 0 for s in sim.submits] == [0, 1, 2, 0, 1]
    again = await bound(sim, clients)
    for ref in (2, 3):  # the message sent again, and the next one: once only
        assert [(await again.submit(**udh8(ref, 2, seq)))[0] for seq in (1, 2)] == [0, 0]
    assert not again.closed.is_set() and sim.drops == 1


# ------------------------------------------------------------------ messages()


async def test_messages_group_accepted_parts_and_count_their_arrivals(
        start: Started, clients: list[Client]) -> None:
    sim = await start(throttle_part=3, throttle_part_times=1)
    c = await bound(sim, clients)
    sent: list[tuple[int, dict[str, Any]]] = [
        (0, {"short_message": b"single", "destination_addr": TO}),
        (0, udh8(1, 3, 1, b"a")),
        (0, udh8(1, 3, 2, b"b")),
        (0, sar(1, 2, 2, b"lonely")),                       # its part 1 never comes
        (0, udh8(1, 3, 2, b"b")),                           # a resend
        (0x58, udh8(1, 3, 3, b"c")),                        # throttled: not an arrival
        (0, udh16(1, 2, 1, b"x", destination_addr="447400123457")),
        (0, udh8(1, 3, 1, b"other", source_addr="OTHER")),  # another sender's message
        (0, {"short_message": b"single", "destination_addr": TO}),
    ]
    for status, fields in sent:
        assert (await c.submit(**fields))[0] == status
    await asyncio.sleep(0.05)  # so that the last part's arrival is measurably later
    assert (await c.submit(**udh8(1, 3, 3, b"c")))[0] == 0
    single, concat, lonely, other, again = sim.messages(TO)
    assert (single.ref_kind, single.ref, single.total, single.text) == (None, None, 1, "single")
    assert single.complete and single.arrivals == {1: 1} and single.spread_s == 0
    assert again.parts != single.parts and again.text == "single"
    assert (concat.source, concat.ref_kind, concat.ref, concat.total) == ("ACME", 8, 1, 3)
    assert concat.complete and concat.arrivals == {1: 1, 2: 2, 3: 1}
    assert [p.text for p in concat.parts] == ["a", "b", "b", "c"] and concat.text == "abc"
    assert concat.spread_s == concat.parts[-1].received_at - concat.parts[0].received_at
    assert concat.spread_s >= 0.05
    assert (lonely.ref_kind, lonely.complete, lonely.arrivals) == ("sar", False, {2: 1})
    assert (other.source, other.complete, other.text) == ("OTHER", False, "other")
    [elsewhere] = sim.messages("447400123457")
    assert (elsewhere.ref_kind, elsewhere.total, elsewhere.complete) == (16, 2, False)
    assert len(sim.messages()) == 6


# ------------------------------------------------------------------ the command line


def run_cli(monkeypatch: pytest.MonkeyPatch, *argv: str) -> SimulatorConfig:
    """`sms-bridge simulator ARGV` up to the point where it would serve: the config it built."""
    import bridge.cli

    seen: list[SimulatorConfig] = []

    async def serve(config: SimulatorConfig) -> int:
        seen.append(config)
        return 0

    monkeypatch.setattr(bridge.cli, "_simulator", serve)
    assert bridge.cli.main(["simulator", *argv]) == 0
    return seen[0]


def test_misbehaviour_options_reach_the_config(monkeypatch: pytest.MonkeyPatch) -> None:
    config = run_cli(monkeypatch, "--error-every", "4", "--error-status", "0x45")
    assert (config.error_every, config.error_status) == (4, 0x45)
    assert run_cli(monkeypatch, "--error-status", "20").error_status == 0x14
    assert run_cli(monkeypatch, "--silent-every", "1").silent_every == 1
    config = run_cli(monkeypatch, "--response-delay", "3600", "--delay-every", "3")
    assert (config.response_delay_s, config.delay_every) == (3600, 3)
    config = run_cli(monkeypatch, "--throttle-part", "2", "--throttle-part-times", "5")
    assert (config.throttle_part, config.throttle_part_times) == (2, 5)
    assert run_cli(monkeypatch, "--drop-between-parts", "3").drop_between_parts == 3
    assert run_cli(monkeypatch).error_status == P.ESME_RSYSERR


@pytest.mark.parametrize(("argv", "problem"), [
    (["--error-every", "-1"], "--error-every: must be 0.."),
    (["--error-status", "0"], "--error-status: must be 0x1..0xFFFFFFFF"),
    (["--error-status", "0x100000000"], "--error-status: must be 0x1..0xFFFFFFFF"),
    (["--error-status", "0xZZ"], "--error-status: must be an integer, got str"),
    (["--silent-every", "-2"], "--silent-every: must be 0.."),
    (["--response-delay", "3601"], "--response-delay: must be 0..3600"),
    (["--delay-every", "-1"], "--delay-every: must be 0.."),
    (["--throttle-part", "256"], "--throttle-part: must be 0..255"),
    (["--throttle-part-times", "-1"], "--throttle-part-times: must be 0.."),
    (["--drop-between-parts", "-1"], "--drop-between-parts: must be 0.."),
])
def test_bad_misbehaviour_options_are_refused_by_flag(
        argv: list[str], problem: str, capsys: pytest.CaptureFixture[str]) -> None:
    from bridge.cli import main

    assert main(["simulator", *argv]) == 1
    assert f"config error: {problem}" in capsys.readouterr().err
