"""The whole bridge on PostgreSQL: one instance end to end, then several instances on one
database (issue 17: fail-over and scale-out)."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import signal
import smtplib
import sys
import urllib.request
from collections import Counter
from pathlib import Path

import asyncpg
import pytest

from bridge.config import SimulatorConfig
from bridge.core.errors import BridgeError, ErrorName
from bridge.core.model import Ingress
from bridge.core.states import MessageState
from bridge.intake.service import Recipient, SubmitRequest
from bridge.outbound.dispatcher import worker_count
from bridge.simulator import SmscSimulator
from tests.conftest import (ROOT, child_pids, make_config, running_bridge, serve_command,
                            wait_gone, write_serve_config)
from tests.postgres import PgServer


async def test_one_instance_on_postgresql_end_to_end(tmp_path: Path, pg_url: str) -> None:
    config = make_config(tmp_path, store={"url": pg_url})
    async with running_bridge(config) as bridge:
        assert bridge.service is not None
        results = await bridge.service.submit(SubmitRequest(
            "demo", (Recipient("+447400123456"), Recipient("+447400123457")), "hello pg",
            Ingress.SOAP))
        ids = [r.message_id for r in results if r.message_id]
        assert len(ids) == 2
        for _ in range(200):
            views = await bridge.store.get_messages(ids)
            if all(v.state is MessageState.DELIVERED for v in views):
                break
            await asyncio.sleep(0.05)
        assert [v.state for v in views] == [MessageState.DELIVERED] * 2
        events = [e.state for e in await bridge.store.timeline(ids[0])]
        assert events[:2] == ["queued", "part_submitted"] and events[-1] == "delivered"
        health = await bridge.health()
        assert health["store"] == "ok" and health["status"] == "ok"


# ------------------------------------------------------------------ two instances, one dies

LEASE_S = 3.0
WINDOW = 10
NUMBERS = 30  # destinations; each gets messages through both instances, in a known order
ROUNDS = 12  # messages per destination


def cluster_config(tmp_path: Path, name: str, pg_url: str, smsc_port: int,
                   smsc_extra: str = "") -> Path:
    """One instance's config: its own ports, the shared database and SMSC."""
    return write_serve_config(tmp_path, "", f"""
[[smsc]]
name = "sim"
port = {smsc_port}
system_id = "bridge"
password = "secret"
window = {WINDOW}
reconnect_min_s = 0.05
reconnect_max_s = 0.5
{smsc_extra}
[policy]
duplicate_window_s = 0
flood_max = 0
[[account]]
name = "demo"
password = "demo-password"
senders = ["ACME"]
default_sender = "ACME"
rate_per_s = 0
relay_networks = ["127.0.0.1/32"]
""", store_url=pg_url, store_extra=f'instance = "{name}"\nlease_s = {LEASE_S}',
                              path=tmp_path / f"{name}.toml")


async def stop_all(procs: dict[str, tuple[asyncio.subprocess.Process, int, int]]) -> None:
    """SIGTERM each instance and wait for it and its store process to be gone."""
    for proc, _, _ in procs.values():
        stores = child_pids(proc.pid)
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), 30)
        await wait_gone(stores)


def soap_send(port: int, numbers: list[str], text: str) -> list[str]:
    """One SendSms over real HTTP; the accepted messages' ids, in order."""
    recipients = "".join(f"<t:recipients>{n}</t:recipients>" for n in numbers)
    envelope = (
        '<e:Envelope xmlns:e="http://schemas.xmlsoap.org/soap/envelope/" '
        'xmlns:t="urn:sms-bridge:v1"><e:Body><t:SendSms>'
        f"{recipients}<t:text>{text}</t:text>"
        "</t:SendSms></e:Body></e:Envelope>").encode()
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/soap", data=envelope, method="POST",
        headers={"Content-Type": "text/xml; charset=utf-8", "Authorization": "Basic "
                 + base64.b64encode(b"demo:demo-password").decode()})
    with urllib.request.urlopen(request, timeout=10) as answer:
        body = answer.read().decode()
    found = re.findall(r"<(?:\w+:)?message_id>([^<]+)<", body)
    assert len(found) == len(numbers) and body.count(">accepted<") == len(numbers), body
    return found


def smtp_send(port: int, numbers: list[str], text: str) -> list[str]:
    """A mail per number over one session; the id each 250 reply names."""
    ids = []
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        client.ehlo("test")
        for number in numbers:
            client.mail("ops@example.org")
            client.rcpt(f"{number.lstrip('+')}@sms.localhost")
            code, reply = client.data(f"Subject:\r\n\r\n{text}".encode())
            assert code == 250, reply
            ids.append(reply.decode().split()[-1])
    return ids


@pytest.mark.slow
async def test_two_instances_one_killed_mid_load_lose_nothing(tmp_path: Path,
                                                             pg_url: str) -> None:
    """Two instances (separate processes and ports) on one database and one SMSC; load through
    both over SOAP and SMTP, each number's messages alternating between them; SIGKILL one (and
    its store process) mid-load. Every accepted message reaches the SMSC, at most the dead
    one's in-flight window twice, in order per number, its receipts matched by the survivor,
    all within the lease plus 10 s."""
    # Answers slow enough for a backlog: the dying instance holds messages it has not sent.
    sim = SmscSimulator(SimulatorConfig(enabled=True, port=0, receipt_delay_s=0.05,
                                        response_delay_s=0.1))
    smsc_port = await sim.start()
    procs = {}
    try:
        for name in ("a", "b"):
            procs[name] = await serve_command(cluster_config(tmp_path, name, pg_url, smsc_port))
        loop = asyncio.get_running_loop()
        accepted: dict[str, list[str]] = {}  # number → texts in the order they were accepted
        ids: dict[str, str] = {}  # text → message id
        killed_at = 0.0
        for round_ in range(ROUNDS):
            if round_ == ROUNDS // 2:  # mid-load: a dies with its store process
                victim = procs.pop("a")[0]
                for pid in child_pids(victim.pid) + [victim.pid]:
                    os.kill(pid, signal.SIGKILL)
                await victim.wait()
                killed_at = loop.time()
                submitted_at_kill = len(sim.submits)
            # Each round goes to one instance (a, b, a, … while a lives): every number's
            # messages alternate between the two, in the order they are accepted.
            name = "a" if round_ % 2 == 0 and "a" in procs else "b"
            _, smtp_port, soap_port = procs[name]
            numbers = [f"+4474009{n:05d}" for n in range(NUMBERS)]
            by_mail, by_soap = numbers[:NUMBERS // 3], numbers[NUMBERS // 3:]
            text = f"round {round_}"
            got = await loop.run_in_executor(None, smtp_send, smtp_port, by_mail, text)
            got += await loop.run_in_executor(None, soap_send, soap_port, by_soap, text)
            for number, message_id in zip(by_mail + by_soap, got):
                ids[f"{number} {text}"] = message_id
                accepted.setdefault(number, []).append(text)
        total = sum(len(texts) for texts in accepted.values())
        deadline = killed_at + LEASE_S + 10
        while loop.time() < deadline:
            if {f"+{s.destination} {s.text}" for s in sim.submits} >= set(ids):
                break
            await asyncio.sleep(0.1)
        done_after = loop.time() - killed_at
        survivor = procs["b"]
        await asyncio.sleep(LEASE_S / 3 + 0.5)  # one more heartbeat reads the picture
        with urllib.request.urlopen(f"http://127.0.0.1:{survivor[2]}/healthz", timeout=10) as r:
            health = json.loads(r.read())
        with urllib.request.urlopen(f"http://127.0.0.1:{survivor[2]}/metrics", timeout=10) as r:
            metrics = r.read().decode()
        status = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bridge", "status", "-c", str(tmp_path / "b.toml"),
            stdout=asyncio.subprocess.PIPE, cwd=str(ROOT), env={**os.environ, "PYTHONPATH": str(ROOT)})
        status_out = (await status.communicate())[0].decode()
        delivered = await _delivered(pg_url, list(ids.values()), deadline=deadline + 10)
        states = await _states(pg_url, list(ids.values()))
    finally:
        await stop_all(procs)
        await sim.stop()
    per_message = Counter(f"+{s.destination} {s.text}" for s in sim.submits)
    missing = set(ids) - set(per_message)
    duplicates = sum(n - 1 for n in per_message.values())
    out_of_order = [number for number, texts in accepted.items()
                    if list(dict.fromkeys(s.text for s in sim.submits
                                          if "+" + s.destination == number)) != texts]
    print(f"\nfail-over: accepted={total} submitted_before_kill={submitted_at_kill} "
          f"total_submits={len(sim.submits)} missing={len(missing)} duplicates={duplicates} "
          f"bound={worker_count([WINDOW])} out_of_order={len(out_of_order)} "
          f"delivered={delivered}/{total} done {done_after:.1f} s after the kill "
          f"(lease {LEASE_S:g} s)")
    assert not missing, sorted(missing)[:10]
    assert duplicates <= worker_count([WINDOW])
    assert not out_of_order, out_of_order[:5]
    assert done_after <= LEASE_S + 10
    assert delivered == total, states  # the dead one's receipts matched by the survivor
    # /healthz, /metrics and `sms-bridge status` show who is alive, its binds, what it holds
    alive = {i["name"]: i["alive"] for i in health["instances"]}
    assert alive == {"a": False, "b": True}, health["instances"]
    assert health["instance"].startswith("b/")
    assert [i["binds"] for i in health["instances"] if i["name"] == "b"] == [["sim"]]
    assert f'sms_bridge_instance_up{{instance="{health["instance"]}"}} 1.0' in metrics
    assert "alive  b/" in status_out and "dead   a/" in status_out, status_out
    assert "binds sim" in status_out and "messages: delivered 360" in status_out


async def _delivered(pg_url: str, ids: list[str], deadline: float) -> int:
    """Messages delivered in the database, waiting (bounded) until all are."""
    loop = asyncio.get_running_loop()
    conn = await asyncpg.connect(pg_url)
    try:
        while True:
            n = await conn.fetchval("SELECT count(*) FROM messages WHERE id = ANY($1::text[]) "
                                    "AND state = 'delivered'", ids)
            if n == len(ids) or loop.time() > deadline:
                return int(n)
            await asyncio.sleep(0.2)
    finally:
        await conn.close()


async def _states(pg_url: str, ids: list[str]) -> dict[str, object]:
    """What became of the messages not delivered (for a failing assertion's message)."""
    conn = await asyncpg.connect(pg_url)
    try:
        rows = await conn.fetch(
            "SELECT m.id, m.state, m.lease_owner, array_agg(p.smsc_id), "
            "(SELECT array_agg(state || ':' || detail ORDER BY at, id) FROM events e "
            " WHERE e.message_id = m.id) FROM messages m JOIN parts p ON p.message_id = m.id "
            "WHERE m.id = ANY($1::text[]) AND m.state <> 'delivered' GROUP BY m.id", ids)
        orphans = await conn.fetchval("SELECT count(*) FROM orphan_receipts")
        return {"orphans": orphans, "undelivered": [tuple(r) for r in rows[:5]]}
    finally:
        await conn.close()


# ------------------------------------------------------------------ losing PostgreSQL

@pytest.mark.slow
async def test_postgresql_stopped_under_load_and_started_again(
        tmp_path: Path, pg_url: str, pg_server: PgServer) -> None:
    """While PostgreSQL is down, clients are told to retry (STORE_UNAVAILABLE), nothing is
    acknowledged and /healthz says so; once it is back the bridge resumes by itself, and
    every message that was acknowledged is delivered."""
    if not pg_server.can_stop:
        pytest.skip("an external PostgreSQL (SMS_BRIDGE_TEST_PG) cannot be stopped here")
    config = make_config(tmp_path, store={"url": pg_url, "lease_s": 3},
                         policy={"duplicate_window_s": 0, "flood_max": 0})
    acknowledged: list[str] = []
    refused = 0
    async with running_bridge(config) as bridge:
        assert bridge.service is not None
        loop = asyncio.get_running_loop()

        async def send(i: int) -> None:
            nonlocal refused
            assert bridge.service is not None
            try:
                results = await bridge.service.submit(SubmitRequest(
                    "demo", (Recipient(f"+44740012{i % 1000:04d}"),), f"outage {i}",
                    Ingress.SOAP))
            except BridgeError as exc:
                assert exc.name is ErrorName.STORE_UNAVAILABLE, exc
                refused += 1
                return
            acknowledged.extend(r.message_id for r in results if r.message_id)

        for i in range(100):  # before
            await send(i)
        await loop.run_in_executor(None, pg_server.stop, "fast")
        unhealthy = False
        for i in range(100, 160):  # while it is down
            await send(i)
            unhealthy = unhealthy or (await bridge.health())["status"] != "ok"
            await asyncio.sleep(0.02)
        down_acks = len(acknowledged) - 100
        await loop.run_in_executor(None, pg_server.start)
        for i in range(160, 400):  # it comes back: accepted again, by itself
            await send(i)
            if i > 200 and len(acknowledged) > 150:
                break
            await asyncio.sleep(0.02)
        delivered = await _delivered(pg_url, acknowledged, deadline=loop.time() + 30)
        health = await bridge.health()
    print(f"\noutage: acknowledged={len(acknowledged)} (while down {down_acks}) refused={refused} "
          f"delivered={delivered} health during the outage degraded={unhealthy}")
    assert refused > 0 and down_acks == 0 and unhealthy
    assert len(acknowledged) > 150
    assert delivered == len(acknowledged)
    assert health["store"] == "ok"


async def test_two_instances_share_the_flood_and_rate_limits(pg_url: str) -> None:
    """Limits are the cluster's, not each instance's: what one instance accepted counts
    against the other's next message to the number, and against the account's rate."""
    from bridge.store import PostgresStore
    from tests.store.test_contract import T0, limited

    a, b = PostgresStore(pg_url), PostgresStore(pg_url)
    await a.open()
    await b.open()
    try:
        assert [o.status for o in await a.accept([limited("a1", flood_max=2)], now=T0)] == \
            ["accepted"]
        assert [o.status for o in await b.accept([limited("b1", flood_max=2),
                                                  limited("b2", flood_max=2)], now=T0)] == \
            ["accepted", "flood"]
        outcomes = await asyncio.gather(*[
            store.accept([limited(f"r{i}", rate=3, recipient=f"+4477009002{i:02d}")], now=T0)
            for i, store in enumerate([a, b] * 4)])
        assert sorted(o.status for [o] in outcomes) == ["accepted"] * 3 + ["over_limit"] * 5
    finally:
        await a.close()
        await b.close()


def test_max_tps_is_shared_by_the_live_instances_bound_to_the_smsc() -> None:
    """Each instance paces its bind at max_tps over the live instances bound to that SMSC
    (as every instance reads them from the heartbeats); a dead one's share comes back."""
    from bridge.config import SmscConfig
    from bridge.outbound.membership import holders, views
    from bridge.outbound.smpp.client import SmppBind
    from bridge.store.base import InstanceRow

    def row(name: str, at: float, binds: list[str]) -> InstanceRow:
        return InstanceRow(f"{name}/1/x", at, json.dumps({"name": name, "binds": binds}))

    peers = views([row("a", 100.0, ["sim", "other"]), row("b", 99.0, ["sim"]),
                   row("c", 50.0, ["sim"])], now=101.0, lease_s=30.0)
    assert holders(peers) == {"sim": 2, "other": 1}  # c is dead

    async def noop(*args: object) -> None:
        return None

    bind = SmppBind(SmscConfig(name="sim", max_tps=100.0), on_receipt=noop, on_mo=noop)
    bind.share_tps(2)
    assert bind._interval == pytest.approx(0.02)  # 50 a second each: 100 together
    bind.share_tps(1)
    assert bind._interval == pytest.approx(0.01)


async def test_parts_of_an_inbound_sms_through_two_instances_come_together(
        tmp_path: Path, pg_url: str) -> None:
    """An SMSC hands the parts of one concatenated reply to two binds (two instances): the
    store puts it together once, whichever instance took which part."""
    sim = SmscSimulator(SimulatorConfig(enabled=True, port=0, receipt_delay_s=0.01))
    port = await sim.start()
    smsc = [{"name": "sim", "port": port, "system_id": "bridge", "password": "secret",
             "reconnect_min_s": 0.05, "reconnect_max_s": 0.2}]
    configs = [make_config(tmp_path / name, store={"url": pg_url, "instance": name},
                           simulator={"enabled": False}, smsc=smsc) for name in ("a", "b")]
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
    try:
        async with running_bridge(configs[0]) as first, running_bridge(configs[1]):
            await sim.wait_for_binds(2)
            sessions = [s for s in sim._sessions if s.can_receive]
            assert len(sessions) == 2
            bodies = sim.mo_bodies("+447400123456", "+447400000001", "",
                                   parts_text=["one ", "two ", "three"])
            for body, session in zip(bodies, (sessions[0], sessions[1], sessions[0])):
                session.deliver(body)
                session.flush()
            conn = await asyncpg.connect(pg_url)
            try:
                for _ in range(100):
                    rows = await conn.fetch("SELECT text FROM inbound")
                    if rows:
                        break
                    await asyncio.sleep(0.05)
                await asyncio.sleep(0.2)  # nothing more comes
                assert [r[0] for r in await conn.fetch("SELECT text FROM inbound")] == \
                    ["one two three"]
                assert await conn.fetchval("SELECT count(*) FROM mo_parts") == 0
            finally:
                await conn.close()
            assert first.store is not None
    finally:
        await sim.stop()


# ------------------------------------------------------------------ an SMSC allowing one bind

def _health(port: int) -> dict[str, object]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10) as answer:
        return json.loads(answer.read())  # type: ignore[no-any-return]


async def _binds_seen(sim: SmscSimulator, seconds: float) -> set[int]:
    """How many binds the SMSC has, sampled every 20 ms for `seconds`."""
    seen = set()
    for _ in range(int(seconds / 0.02)):
        seen.add(len(sim.bound_sessions))
        await asyncio.sleep(0.02)
    return seen


@pytest.mark.slow
async def test_an_smsc_allowing_one_bind_is_held_by_one_instance_and_moves_when_it_dies(
        tmp_path: Path, pg_url: str) -> None:
    """`cluster_binds = 1`: of two instances only one binds; what the other accepts is sent
    through the holder's bind; when the holder is killed the other binds within the lease
    and sends what the dead one held and what comes next."""
    sim = SmscSimulator(SimulatorConfig(enabled=True, port=0, receipt_delay_s=0.01))
    smsc_port = await sim.start()
    procs = {}
    loop = asyncio.get_running_loop()
    try:
        for name in ("a", "b"):
            procs[name] = await serve_command(cluster_config(
                tmp_path, name, pg_url, smsc_port, smsc_extra="cluster_binds = 1"))
        await sim.wait_for_binds(1)
        settled = await _binds_seen(sim, LEASE_S)  # a heartbeat or two: one holder stays
        assert await _binds_seen(sim, 1.0) == {1}, settled
        holding = {name: _health(port)["instances"] for name, (_, _, port) in procs.items()}
        [holder] = [i["name"] for i in holding["a"] if i["holding"] == ["sim"]]  # type: ignore
        other = "b" if holder == "a" else "a"
        assert _health(procs[other][2])["status"] == "ok"  # it sends through the holder
        numbers = [f"+4474008{n:05d}" for n in range(10)]
        ids = []
        for name in (other, holder):
            ids += await loop.run_in_executor(None, soap_send, procs[name][2], numbers, name)
        assert await _delivered(pg_url, ids, deadline=loop.time() + 15) == len(ids)
        victim = procs.pop(holder)[0]
        for pid in child_pids(victim.pid) + [victim.pid]:
            os.kill(pid, signal.SIGKILL)
        await victim.wait()
        killed_at = loop.time()
        later = await loop.run_in_executor(None, soap_send, procs[other][2], numbers, "later")
        await sim.wait_for_binds(1, timeout=LEASE_S + 10)
        moved_after = loop.time() - killed_at
        assert await _delivered(pg_url, later, deadline=loop.time() + 15) == len(later)
        assert await _binds_seen(sim, 0.5) == {1}
    finally:
        await stop_all(procs)
        await sim.stop()
    print(f"\ncluster_binds=1: bind moved {moved_after:.1f} s after the holder was killed "
          f"(lease {LEASE_S:g} s); binds seen while settling {sorted(settled)}")
    assert moved_after <= LEASE_S + 5
    assert {f"+{s.destination} {s.text}" for s in sim.submits} >= \
        {f"{n} {t}" for n in numbers for t in ("a", "b", "later")}
