"""Several SMSCs, one misbehaving, through the real dispatcher, store and SMPP client
(tests/test_dispatcher.py's pipeline with two or three simulators). Every outcome is checked
where it counts, at the simulators: each message complete on one SMSC, its parts within the
part deadline, none lost, duplicates within the bound, order per destination kept."""

from __future__ import annotations

import collections
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bridge.config import SimulatorConfig
from bridge.core.health import Circuit
from bridge.core.model import Ingress
from bridge.intake.service import Recipient, SubmitRequest
from bridge.core.states import MessageState
from bridge.outbound.dispatcher import worker_count
from bridge.simulator import SmscSimulator
from bridge.simulator.server import ReceivedMessage
from tests.conftest import DEMO_PASSWORD, make_config, running_bridge
from tests.test_dispatcher import Pipeline, pipeline

DEADLINE_S = 1.0
#: Quick to trip, for tests: three link faults in three outcomes. 16-bit references: the
#: simulator tells messages apart by reference, and 8-bit ones drawn at random for a dozen
#: messages to three numbers collide now and then.
BREAKER = {"breaker_min_submits": 3, "breaker_failure_rate": 0.5, "breaker_window_s": 10,
           "breaker_cooldown_s": 30, "concat": "udh16"}
POLICY = {"part_deadline_s": DEADLINE_S, "retry_base_s": 0.02, "retry_max_s": 0.1,
          "retry_max": 6}


def sim(**misbehaviour: Any) -> SmscSimulator:
    return SmscSimulator(SimulatorConfig(enabled=True, port=0, receipt_delay_s=0.01,
                                         **misbehaviour))


def long_text(i: int, parts: int = 2) -> str:
    """A GSM text of `parts` parts whose start names it."""
    head = f"message {i:03d} "
    return head + "x" * (153 * (parts - 1) + 40 - len(head))


@dataclass
class Sent:
    number: str
    text: str
    id: str


async def send_all(p: Pipeline, count: int, numbers: Sequence[str],
                   parts: int = 2) -> list[Sent]:
    """`count` messages spread over `numbers`, each with its own text, in order."""
    sent = []
    for i in range(count):
        number = numbers[i % len(numbers)]
        [mid] = await p.send(number, text=long_text(i, parts))
        sent.append(Sent(number, long_text(i, parts), mid))
    return sent


async def delivered(p: Pipeline, sent: list[Sent], timeout: float = 20) -> None:
    for s in sent:
        await p.wait_state(s.id, MessageState.DELIVERED, timeout=timeout)


def complete_copies(p: Pipeline) -> dict[str, list[tuple[str, ReceivedMessage]]]:
    """Text → every complete message with it, and the SMSC it is complete on."""
    out: dict[str, list[tuple[str, ReceivedMessage]]] = collections.defaultdict(list)
    for name, each in p.sims.items():
        for message in each.messages():
            if message.complete:
                out[message.text].append((name, message))
    return out


def check_at_the_simulators(p: Pipeline, sent: list[Sent]) -> dict[str, int]:
    """What the issue asks, checked at the SMSCs; the complete messages per SMSC."""
    copies = complete_copies(p)
    bound = worker_count(b.config.window for b in p.dispatcher.pool.binds.values()) \
        if p.dispatcher.pool else 0
    for s in sent:
        found = copies.get(s.text, [])
        assert found, f"{s.text[:12]} lost"  # complete on some SMSC: none lost
        for _, message in found:  # each complete copy is on one SMSC, parts in time
            assert message.spread_s <= DEADLINE_S + 0.05, (s.text[:12], message.spread_s)
            assert message.destination == s.number.lstrip("+")
    extra = sum(len(copies.get(s.text, [])) - 1 for s in sent)
    assert extra <= bound, extra
    for number in {s.number for s in sent}:  # order per destination
        first_seen = sorted((min(part.received_at for part in m.parts), text)
                            for text, found in copies.items() for _, m in found
                            if m.destination == number.lstrip("+"))
        order = list(dict.fromkeys(text for _, text in first_seen))
        assert order == [s.text for s in sent if s.number == number]
    return dict(collections.Counter(name for found in copies.values() for name, _ in found))


def health(p: Pipeline, name: str) -> Circuit:
    assert p.dispatcher.pool is not None
    return p.dispatcher.pool.binds[name].health.circuit


async def events(p: Pipeline, sent: list[Sent]) -> collections.Counter[str]:
    found: collections.Counter[str] = collections.Counter()
    for s in sent:
        found.update(e.state for e in await p.store.timeline(s.id))
    return found


NUMBERS = ("+447400100001", "+447400100002", "+447400100003")


@pytest.mark.parametrize("status", [0x08, 0x45])
async def test_an_smsc_failing_every_submit_is_taken_out_of_routing(tmp_path: Path,
                                                                    status: int) -> None:
    """The first route answers every submit with a system error (0x08) or submit failed
    (0x45): the link's fault, so its messages go to the second route, not to failure, and
    once the breaker trips it is not even tried."""
    async with pipeline(tmp_path, sim(error_every=1, error_status=status),
                        smsc={"name": "bad", **BREAKER},
                        more=[(sim(), {"name": "good", **BREAKER})], policy=POLICY) as p:
        sent = await send_all(p, 12, NUMBERS)
        await delivered(p, sent)
        assert check_at_the_simulators(p, sent) == {"good": 12}
        assert health(p, "bad") is Circuit.OPEN and health(p, "good") is Circuit.CLOSED
        assert p.sims["bad"].errored == BREAKER["breaker_min_submits"]


async def test_a_silent_smsc_times_out_and_its_traffic_moves(tmp_path: Path) -> None:
    """The first route never answers a submit (enquire_link still is): each timeout counts
    against it; its messages go again on the second route; then it is out of routing."""
    timing = {"response_timeout_s": 0.2, "wait_ack_s": 0.4}
    async with pipeline(tmp_path, sim(silent_every=1), smsc={"name": "mute", **BREAKER, **timing},
                        more=[(sim(), {"name": "good", **BREAKER, **timing})],
                        policy=POLICY) as p:
        sent = await send_all(p, 8, NUMBERS)
        await delivered(p, sent)
        assert check_at_the_simulators(p, sent) == {"good": 8}
        assert health(p, "mute") is Circuit.OPEN
        assert not p.sims["mute"].submits  # the silent ones were never accepted


async def test_an_smsc_answering_after_the_timeout_sends_nothing_twice(tmp_path: Path) -> None:
    """Every answer of the first route comes after response_timeout_s, before wait_ack_s:
    a late answer is the answer (item 2), not a fault of the link's, so the slow SMSC keeps
    its traffic, each message goes once, complete on it, its parts within the deadline."""
    timing = {"response_timeout_s": 0.15, "wait_ack_s": 2.0}
    async with pipeline(tmp_path, sim(response_delay_s=0.3),
                        smsc={"name": "slow", **BREAKER, **timing},
                        more=[(sim(), {"name": "good", **BREAKER, **timing})],
                        policy=POLICY) as p:
        sent = await send_all(p, 6, NUMBERS)
        await delivered(p, sent)
        assert check_at_the_simulators(p, sent) == {"slow": 6}
        assert all(set(m.arrivals.values()) == {1} for m in p.sims["slow"].messages())
        assert health(p, "slow") is Circuit.CLOSED
        assert p.dispatcher.pool is not None
        assert p.dispatcher.pool.binds["slow"].late_answers == 12
        assert (await events(p, sent))["retry"] == 0


async def test_a_second_part_throttled_past_the_deadline_goes_again_whole(tmp_path: Path) -> None:
    """The first route throttles every second part: after the backoffs that still fit the
    part deadline the message goes again whole, with a new reference, on the second route
    (throttling is no fault of the link's: it stays in routing). The abandoned first parts'
    receipts never count for the new attempt: delivered means every new part delivered."""
    async with pipeline(tmp_path, sim(throttle_part=2), smsc={"name": "choke", **BREAKER},
                        more=[(sim(), {"name": "good", **BREAKER})],
                        policy={**POLICY, "retry_base_s": 0.2, "retry_max_s": 0.4}) as p:
        sent = await send_all(p, 3, NUMBERS)
        await delivered(p, sent)
        assert check_at_the_simulators(p, sent) == {"good": 3}
        abandoned = [m for m in p.sims["choke"].messages() if not m.complete]
        assert len(abandoned) == 3 and health(p, "choke") is Circuit.CLOSED
        for again in p.sims["good"].messages():  # a new reference for each
            assert again.ref not in {m.ref for m in abandoned
                                     if m.destination == again.destination
                                     and m.text[:11] == again.text[:11]}
        assert (await events(p, sent))["restarted"] == 3
        details = [e.detail for s in sent for e in await p.store.timeline(s.id)
                   if e.state == "restarted"]
        assert all("part_deadline_s" in d and "on smsc=good with reference" in d
                   for d in details), details
        for s in sent:
            [view] = await p.store.get_messages([s.id])
            assert view.parts_delivered == 2 and len(view.smsc_ids) == 2


async def test_a_throttled_part_that_passes_in_time_stays_on_its_bind(tmp_path: Path) -> None:
    """Part 2 throttled twice only: the retries fit the deadline, the message completes on
    the one SMSC it started on, nothing goes again."""
    async with pipeline(tmp_path, sim(throttle_part=2, throttle_part_times=2), smsc=BREAKER,
                        policy=POLICY) as p:
        sent = await send_all(p, 3, NUMBERS[:1])
        await delivered(p, sent)
        assert check_at_the_simulators(p, sent) == {"sim": 3}
        assert (await events(p, sent))["restarted"] == 0


async def test_sent_again_whole_at_most_retry_max_times_then_failed(tmp_path: Path) -> None:
    """One SMSC that always throttles part 2: the message goes again whole retry_max times,
    then fails with INTERNAL_ERROR; nothing incomplete is ever complete at the SMSC."""
    async with pipeline(tmp_path, sim(throttle_part=2), smsc=BREAKER,
                        policy={**POLICY, "retry_max": 2, "retry_base_s": 0.05,
                                "retry_max_s": 0.1}) as p:
        [mid] = await p.send(NUMBERS[0], text=long_text(1))
        await p.wait_state(mid, MessageState.FAILED, timeout=10)
        [view] = await p.store.get_messages([mid])
        assert view.error == "INTERNAL_ERROR" and "given up" in (view.error_detail or "")
        assert [e.state for e in await p.store.timeline(mid)].count("restarted") == 2
        messages = p.sim.messages()
        assert len(messages) == 3 and not any(m.complete for m in messages)
        assert len({m.ref for m in messages}) == 3  # a new reference each time


async def test_a_bind_lost_between_parts_sends_the_message_again_whole(tmp_path: Path) -> None:
    """The first route drops its connection right after part 1 of a message: the message
    goes again whole (new reference) on the route that is up, none lost."""
    async with pipeline(tmp_path, sim(drop_between_parts=2), smsc={"name": "flaky", **BREAKER},
                        more=[(sim(), {"name": "good", **BREAKER})], policy=POLICY) as p:
        sent = await send_all(p, 6, NUMBERS)
        await delivered(p, sent)
        check_at_the_simulators(p, sent)
        assert p.sims["flaky"].drops == 1
        assert (await events(p, sent))["restarted"] >= 1


async def test_queue_full_0x14_on_the_wire_is_throttling(tmp_path: Path) -> None:
    """Every second submit answered 0x14 (message queue full) on the wire: backed off and
    retried like 0x58, never failed, and no fault of the link's."""
    async with pipeline(tmp_path, sim(error_every=2, error_status=0x14), smsc=BREAKER,
                        policy=POLICY) as p:
        sent = await send_all(p, 6, NUMBERS, parts=1)
        await delivered(p, sent)
        check_at_the_simulators(p, sent)
        assert p.sim.errored >= 3 and health(p, "sim") is Circuit.CLOSED
        assert (await events(p, sent))["throttled"] == p.sim.errored


async def test_a_reroute_to_an_smsc_of_another_form_plans_the_message_again(
        tmp_path: Path) -> None:
    """The first route (UDH, every encoding) fails every submit; the second takes SAR and
    no Latin-1: a Latin-1 text planned for the first at acceptance goes to the second as
    SAR parts in UCS2, complete and with the same text."""
    text = "Garçon, où est la gare? " * 8  # Latin-1 is its cheapest exact encoding
    async with pipeline(tmp_path, sim(error_every=1),
                        smsc={"name": "udh", **BREAKER, "concat": "udh8"},
                        more=[(sim(), {**BREAKER, "name": "sar", "concat": "sar",
                                       "encodings": ["gsm7", "ucs2"]})],
                        policy=POLICY) as p:
        [mid] = await p.send(NUMBERS[0], text=text)
        await p.wait_state(mid, MessageState.DELIVERED)
        [message] = p.sims["sar"].messages()
        assert message.complete and message.text == text and message.ref_kind == "sar"
        assert {part.data_coding for part in message.parts} == {0x08}
        [view] = await p.store.get_messages([mid])
        assert view.encoding == "ucs2" and view.parts == message.total
        assert "planned for smsc=sar" in " ".join(
            e.detail for e in await p.store.timeline(mid) if e.state == "restarted")


def account(**extra: Any) -> list[dict[str, Any]]:
    return [{"name": "demo", "password": DEMO_PASSWORD, "senders": ["ACME"],
             "default_sender": "ACME", "rate_per_s": 10_000, **extra}]


async def test_an_accounts_own_routes_and_its_form_at_acceptance(tmp_path: Path) -> None:
    """An account whose smscs list names only the second (SAR) SMSC: its messages go there
    though the first covers the number too, planned in SAR when accepted (not again)."""
    async with pipeline(tmp_path, smsc={"prefixes": ["+44"], "concat": "udh16"},
                        more=[(sim(), {"name": "own", "concat": "sar"})],
                        account=account(smscs=["own"]), policy=POLICY) as p:
        sent = await send_all(p, 3, NUMBERS)
        await delivered(p, sent)
        assert check_at_the_simulators(p, sent) == {"own": 3}
        assert {m.ref_kind for m in p.sims["own"].messages()} == {"sar"}
        assert (await events(p, sent))["restarted"] == 0


async def test_weights_spread_a_prefix_over_two_smscs(tmp_path: Path) -> None:
    async with pipeline(tmp_path, smsc={"weight": 1},
                        more=[(sim(), {"name": "other", "weight": 1}),
                              (sim(), {"name": "standby"})], policy=POLICY) as p:
        sent = await send_all(p, 40, [f"+4474002000{i:02d}" for i in range(40)], parts=1)
        await delivered(p, sent)
        per_smsc = check_at_the_simulators(p, sent)
        assert per_smsc.get("sim", 0) >= 5 and per_smsc.get("other", 0) >= 5
        assert "standby" not in per_smsc  # fail-over only


async def test_healthz_and_metrics_show_an_smsc_out_of_routing(tmp_path: Path) -> None:
    """A whole bridge (store process, outbound side) on two simulators, the first failing
    every submit: /healthz says which SMSC is out of routing and stays "ok" while the other
    takes the traffic; /metrics has the circuit of each."""
    bad, good = sim(error_every=1), sim()
    tables = [{"name": name, "port": await each.start(), "system_id": "bridge",
               "password": "secret", "reconnect_min_s": 0.05, **BREAKER}
              for name, each in (("bad", bad), ("good", good))]
    config = make_config(tmp_path, simulator={"enabled": False}, smsc=tables, policy=POLICY)
    try:
        async with running_bridge(config) as bridge:
            assert bridge.service is not None
            results = await bridge.service.submit(SubmitRequest(
                account="demo", recipients=tuple(Recipient(f"+4474003000{i:02d}")
                                                 for i in range(6)),
                text="hello", ingress=Ingress.SOAP))
            assert all(r.status == "accepted" for r in results), results
            await good.wait_for_submits(6)
            async with aiohttp.ClientSession() as http:
                base = f"http://127.0.0.1:{bridge.soap_port}"
                async with http.get(f"{base}/healthz") as response:
                    health_json = await response.json()
                    assert response.status == 200
                async with http.get(f"{base}/metrics") as response:
                    metrics = await response.text()
    finally:
        await bad.stop()
        await good.stop()
    assert health_json["smsc_health"] == {"bad": "open", "good": "closed"}
    assert health_json["binds"] == {"bad": True, "good": True}
    assert 'sms_bridge_smsc_health{smsc="bad",state="open"} 1.0' in metrics
    assert 'sms_bridge_smsc_health{smsc="good",state="closed"} 1.0' in metrics
    assert 'sms_bridge_smsc_out_of_routing{smsc="bad"} 1.0' in metrics


@pytest.mark.parametrize(("deadline_s", "sent_ago_s"), [(30.0, 0.0), (2.0, 120.0)])
async def test_a_message_resumed_half_sent(tmp_path: Path, deadline_s: float,
                                           sent_ago_s: float) -> None:
    """A previous run had part 1 acknowledged, then stopped. Resumed within the deadline,
    only part 2 goes, on the same SMSC; resumed after it, the message goes again whole
    with a new reference."""
    policy = {**POLICY, "part_deadline_s": deadline_s}
    async with pipeline(tmp_path, smsc=BREAKER, policy=policy) as p:
        await p.dispatcher.stop()
        [mid] = await p.send(NUMBERS[0], text=long_text(7))
        await p.store.record_submitted(mid, 1, smsc="sim", smsc_id="ab12", id_keys=["hex:ab12"],
                                       at=time.time() - sent_ago_s)
    async with pipeline(tmp_path, smsc=BREAKER, policy=policy) as p:
        await p.wait_state(mid, MessageState.SUBMITTED, MessageState.DELIVERED)
        restarted = [e for e in await p.store.timeline(mid) if e.state == "restarted"]
        if sent_ago_s < deadline_s:
            assert [s.concat.seq for s in p.sim.submits if s.concat] == [2] and not restarted
        else:
            [message] = p.sim.messages()
            assert message.complete and message.text == long_text(7)
            assert len(restarted) == 1 and "abandoned smsc ids ab12" in restarted[0].detail
