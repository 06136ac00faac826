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


async def statuses(c: Client, n: int, **fields: Any) -> list[int]:
    """Status of each of n submits sent one after another."""
    return [(await c.submit(**fields))[0] for _ in range(n)]


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
    assert run_cli(monkeypatch).error_status == P.ESME_RSYSERR


@pytest.mark.parametrize(("argv", "problem"), [
    (["--error-every", "-1"], "simulator.error_every: must be 0.."),
    (["--error-status", "0"], "simulator.error_status: must be 0x1..0xFFFFFFFF"),
    (["--error-status", "0x100000000"], "simulator.error_status: must be 0x1..0xFFFFFFFF"),
    (["--error-status", "0xZZ"], "simulator.error_status: must be an integer, got str"),
    (["--silent-every", "-2"], "simulator.silent_every: must be 0.."),
    (["--response-delay", "3601"], "simulator.response_delay_s: must be 0..3600"),
    (["--delay-every", "-1"], "simulator.delay_every: must be 0.."),
])
def test_bad_misbehaviour_options_are_refused_by_key(
        argv: list[str], problem: str, capsys: pytest.CaptureFixture[str]) -> None:
    from bridge.cli import main

    assert main(["simulator", *argv]) == 1
    assert f"config error: {problem}" in capsys.readouterr().err
