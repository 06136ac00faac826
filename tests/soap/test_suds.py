"""A second real SOAP toolkit against the served WSDL: suds (suds-community), the client SPEC §6
names beside zeep. Repeated elements are plain Python lists both ways, §5 faults come back as
suds WebFaults with their detail, wrong credentials as HTTP 401. suds is synchronous: calls
run in a thread while the bridge serves on the loop."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from suds import WebFault  # type: ignore[import-untyped]
from suds.client import Client  # type: ignore[import-untyped]
from suds.transport.http import HttpAuthenticated  # type: ignore[import-untyped]

from tests.conftest import DEMO_PASSWORD, make_config, running_bridge
from tests.soap import NUMBER, number


def suds_client(port: int, password: str = DEMO_PASSWORD, version: str = "") -> Any:
    transport = HttpAuthenticated(username="demo", password=password, proxy={}, timeout=10)
    return Client(f"http://127.0.0.1:{port}/soap{version}?wsdl", transport=transport,
                  cache=None)


async def test_send_status_list_and_account_with_suds(tmp_path: Path) -> None:
    async with running_bridge(make_config(tmp_path)) as bridge:
        c = await asyncio.to_thread(suds_client, bridge.soap_port)
        result = await asyncio.to_thread(
            c.service.SendSms, recipients=[NUMBER, number(7), "12"], text="hello from suds")
        assert [(s.recipient, s.status) for s in result] == [
            (NUMBER, "accepted"), (number(7), "accepted"), ("12", "INVALID_DESTINATION")]
        assert (result[2].code, result[2].parts) == (1706, 0)
        ids = [s.message_id for s in result[:2]]
        assert bridge.simulator is not None
        await bridge.simulator.wait_for_submits(2)
        for _ in range(100):
            statuses = await asyncio.to_thread(c.service.GetStatus, message_ids=ids)
            if all(s.state == "delivered" for s in statuses):
                break
            await asyncio.sleep(0.05)
        assert [(s.id, s.state, s.parts_delivered) for s in statuses] == [
            (ids[0], "delivered", 1), (ids[1], "delivered", 1)]
        assert len(statuses[0].smsc_ids) == 1
        listed = await asyncio.to_thread(c.service.ListMessages, page=1)
        assert (listed.page.number, listed.page.count, listed.page.total) == (1, 1, 2)
        assert {m.id for m in listed.messages} == set(ids)
        account = await asyncio.to_thread(c.service.GetAccount)
        assert (account.name, account.quota) == ("demo", 0)


@pytest.mark.parametrize("version", ["", "12"], ids=["SOAP 1.1", "SOAP 1.2"])
async def test_faults_reach_suds_with_their_detail(tmp_path: Path, version: str) -> None:
    async with running_bridge(make_config(tmp_path)) as bridge:
        c = await asyncio.to_thread(suds_client, bridge.soap_port, DEMO_PASSWORD, version)
        with pytest.raises(WebFault) as info:
            await asyncio.to_thread(c.service.SendSms, recipients=[NUMBER], text="x",
                                    sender="WAYTOOLONGSENDER")
        error = info.value.fault.detail.error
        assert (error.name, int(error.code), error.retry) == ("INVALID_SOURCE", 1707, "false")
        refused = await asyncio.to_thread(suds_client, bridge.soap_port, "wrong", version)
        with pytest.raises(Exception) as denied:
            await asyncio.to_thread(refused.service.GetAccount)
        assert "401" in str(denied.value)
