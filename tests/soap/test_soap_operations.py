"""Every SOAP operation through the real HTTP server (running_bridge) with zeep clients built
from the served WSDL, for SOAP 1.1 and SOAP 1.2."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from tests.conftest import make_config, running_bridge
from tests.soap import NUMBER, VERSIONS, call, client, number

pytestmark = pytest.mark.parametrize("version", VERSIONS)


async def _wait_state(c: object, message_id: str, state: str, timeout: float = 5.0) -> object:
    deadline = time.monotonic() + timeout
    while True:
        status = (await call(c, "GetStatus", message_ids=[message_id]))[0]
        if status.state == state or time.monotonic() > deadline:
            return status
        await asyncio.sleep(0.02)


async def test_send_reaches_simulator_and_turns_delivered(tmp_path: Path, version: str) -> None:
    async with running_bridge(make_config(tmp_path)) as bridge:
        c = await client(bridge.soap_port, version)
        result = await call(c, "SendSms", recipients=[NUMBER], text=f"hello over SOAP {version}")
        assert len(result) == 1
        sub = result[0]
        assert (sub.recipient, sub.status, sub.parts, sub.encoding) == (NUMBER, "accepted", 1,
                                                                        "gsm7")
        assert sub.message_id and sub.error is None and sub.code is None
        await bridge.simulator.wait_for_submits(1, 5.0)
        got = bridge.simulator.submits[0]
        assert got.destination == NUMBER.lstrip("+")
        assert got.text == f"hello over SOAP {version}"
        assert got.source == "ACME"
        status = await _wait_state(c, sub.message_id, "delivered")
        assert status.state == "delivered"
        assert (status.id, status.recipient, status.parts, status.parts_delivered) == (
            sub.message_id, NUMBER, 1, 1)
        assert len(status.smsc_ids) == 1 and status.smsc_ids[0]
        assert status.created <= status.updated
        assert status.error is None


async def test_multi_recipient_bad_number_does_not_reject_others(tmp_path: Path,
                                                                 version: str) -> None:
    async with running_bridge(make_config(tmp_path)) as bridge:
        c = await client(bridge.soap_port, version)
        result = await call(c, "SendSms", recipients=[number(1), "not-a-number", number(2)],
                            text="batch", sender="+447400000001", type=2, flash=False,
                            dlr=True, validity_minutes=60, callback_url="http://127.0.0.1:9/x")
        assert [r.status for r in result] == ["accepted", "INVALID_DESTINATION", "accepted"]
        assert [r.recipient for r in result] == [number(1), "not-a-number", number(2)]
        bad = result[1]
        assert (bad.error, bad.code, bad.message_id, bad.parts) == ("INVALID_DESTINATION", 1706,
                                                                   None, 0)
        assert result[0].encoding == "ucs2"  # type 2 = Unicode
        await bridge.simulator.wait_for_submits(2, 5.0)
        assert sorted(s.destination for s in bridge.simulator.submits) == sorted(
            [number(1).lstrip("+"), number(2).lstrip("+")])
        assert {s.source for s in bridge.simulator.submits} == {"447400000001"}
        # all 100 recipients of a batch are plain repeated elements: zeep sends every one
        many = await call(c, "SendSms", recipients=[number(100 + i) for i in range(100)],
                          text="hundred")
        assert len(many) == 100 and all(r.status == "accepted" for r in many)
        assert len({r.message_id for r in many}) == 100


async def test_get_status_unknown_and_foreign_ids(tmp_path: Path, version: str) -> None:
    config = make_config(tmp_path, account=[
        {"name": "demo", "password": "demo-password", "senders": ["ACME"],
         "default_sender": "ACME", "rate_per_s": 1000},
        {"name": "other", "password": "other-password", "senders": ["OTHER"],
         "default_sender": "OTHER", "rate_per_s": 1000}])
    async with running_bridge(config) as bridge:
        demo = await client(bridge.soap_port, version)
        other = await client(bridge.soap_port, version, auth=("other", "other-password"))
        mine = (await call(demo, "SendSms", recipients=[NUMBER], text="mine"))[0].message_id
        statuses = await call(other, "GetStatus", message_ids=[mine, "no-such-id"])
        assert [(s.id, s.state, s.parts) for s in statuses] == [(mine, "unknown", 0),
                                                               ("no-such-id", "unknown", 0)]
        own = await call(demo, "GetStatus", message_ids=[mine])
        assert own[0].state in ("queued", "submitted", "delivered")


async def test_list_messages_pages_of_25(tmp_path: Path, version: str) -> None:
    async with running_bridge(make_config(tmp_path)) as bridge:
        c = await client(bridge.soap_port, version)
        sent = await call(c, "SendSms", recipients=[number(i) for i in range(30)], text="page me")
        assert all(r.status == "accepted" for r in sent)
        first = await call(c, "ListMessages", page=1)
        assert (first.page.count, first.page.number, first.page.total) == (2, 1, 30)
        assert len(first.messages) == 25
        second = await call(c, "ListMessages", page=2)
        assert (second.page.count, second.page.number) == (2, 2)
        assert len(second.messages) == 5
        ids = {m.id for m in first.messages} | {m.id for m in second.messages}
        assert ids == {r.message_id for r in sent}
        default = await call(c, "ListMessages")
        assert default.page.number == 1 and len(default.messages) == 25
        none = await call(c, "ListMessages", page=1, state="failed")
        assert none.page.total == 0 and none.messages == []
        later = datetime.now(timezone.utc) + timedelta(hours=1)
        assert (await call(c, "ListMessages", since=later)).page.total == 0
        earlier = datetime.now(timezone.utc) - timedelta(hours=1)
        assert (await call(c, "ListMessages", since=earlier)).page.total == 30


async def test_reference_is_idempotent(tmp_path: Path, version: str) -> None:
    async with running_bridge(make_config(tmp_path)) as bridge:
        c = await client(bridge.soap_port, version)
        first = await call(c, "SendSms", recipients=[NUMBER], text="once", reference="order-42")
        again = await call(c, "SendSms", recipients=[NUMBER], text="once", reference="order-42")
        assert first[0].status == again[0].status == "accepted"
        assert first[0].message_id == again[0].message_id
        await bridge.simulator.wait_for_submits(1, 5.0)
        await asyncio.sleep(0.3)  # room for a second submit, which must not come
        assert bridge.simulator.accepted == 1
        assert bridge.simulator.texts_to(NUMBER.lstrip("+")) == ["once"]
        listed = await call(c, "ListMessages")
        assert listed.page.total == 1


async def test_duplicate_inside_window_returns_first_id(tmp_path: Path, version: str) -> None:
    async with running_bridge(make_config(tmp_path)) as bridge:
        c = await client(bridge.soap_port, version)
        first = (await call(c, "SendSms", recipients=[NUMBER], text="twice?"))[0]
        dup = (await call(c, "SendSms", recipients=[NUMBER], text="twice?"))[0]
        assert first.status == "accepted"
        assert (dup.status, dup.error, dup.code) == ("DUPLICATE", "DUPLICATE", 1712)
        assert dup.message_id == first.message_id
        await bridge.simulator.wait_for_submits(1, 5.0)
        await asyncio.sleep(0.2)
        assert bridge.simulator.accepted == 1


async def test_send_at_schedules(tmp_path: Path, version: str) -> None:
    async with running_bridge(make_config(tmp_path)) as bridge:
        c = await client(bridge.soap_port, version)
        when = datetime.now(timezone.utc) + timedelta(hours=2)
        sub = (await call(c, "SendSms", recipients=[NUMBER], text="later", send_at=when))[0]
        assert sub.status == "accepted"
        status = (await call(c, "GetStatus", message_ids=[sub.message_id]))[0]
        assert status.state == "scheduled"
        await asyncio.sleep(0.2)
        assert bridge.simulator.accepted == 0


async def test_get_account_with_quota(tmp_path: Path, version: str) -> None:
    config = make_config(tmp_path, account=[
        {"name": "demo", "password": "demo-password", "senders": ["ACME"],
         "default_sender": "ACME", "rate_per_s": 25, "quota": 3}])
    async with running_bridge(config) as bridge:
        c = await client(bridge.soap_port, version)
        info = await call(c, "GetAccount")
        assert (info.name, info.quota, info.quota_left, info.rate_per_s) == ("demo", 3, 3, 25.0)
        await call(c, "SendSms", recipients=[NUMBER], text="one part")
        assert (await call(c, "GetAccount")).quota_left == 2
    async with running_bridge(make_config(tmp_path / "unlimited")) as bridge:
        c = await client(bridge.soap_port, version)
        info = await call(c, "GetAccount")
        assert info.quota == 0 and info.quota_left is None


async def test_metrics_count_soap_per_recipient(tmp_path: Path, version: str) -> None:
    async with running_bridge(make_config(tmp_path)) as bridge:
        c = await client(bridge.soap_port, version)
        await call(c, "SendSms", recipients=[number(1), "x", number(2), "y"], text="m")
        body, _ = bridge.metrics.render()
        text = body.decode()
        assert 'sms_bridge_accepted_total{ingress="soap"} 2.0' in text
        assert 'sms_bridge_rejected_total{error="INVALID_DESTINATION",ingress="soap"} 2.0' in text
