"""Every §5 error the SOAP interface can produce, through zeep against the real server: as
a fault (request-level refusals) or as a per-recipient status, for SOAP 1.1 and 1.2."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import zeep
from lxml import etree

from bridge.core.errors import ERROR_TABLE, ErrorName
from bridge.ingress.soap.faults import SOAP_FAULTS, SoapVersion, render_fault
from tests.conftest import make_config, running_bridge
from tests.soap import NUMBER, VERSIONS, call, client, fault_code, fault_info, number

ACCOUNT = {"name": "demo", "password": "demo-password", "senders": ["ACME", "+447400000001"],
           "default_sender": "ACME", "rate_per_s": 10_000}


async def _fault(c: Any, operation: str, **kw: Any) -> zeep.exceptions.Fault:
    with pytest.raises(zeep.exceptions.Fault) as info:
        await call(c, operation, **kw)
    return info.value


@pytest.mark.parametrize("version", VERSIONS)
async def test_request_level_faults(tmp_path: Path, version: str) -> None:
    async with running_bridge(make_config(tmp_path, soap={"max_recipients": 5})) as bridge:
        c = await client(bridge.soap_port, version)
        side = "Client" if version == "1.1" else "Sender"
        cases: list[tuple[dict[str, Any], str, int]] = [
            ({"sender": "NOT-ALLOWED"}, "INVALID_SOURCE", 1707),
            ({"sender": "Far too long a sender"}, "INVALID_SOURCE", 1707),
            ({"type": 4}, "INVALID_PARAMETER", 1702),  # WAP Push without its url
            ({"type": 9}, "INVALID_TYPE", 1704),
            ({"text": ""}, "INVALID_MESSAGE", 1705),
            ({"text": "x" * (153 * 10 + 1)}, "INVALID_MESSAGE", 1705),  # 11 parts > max_parts
            ({"recipients": [number(i) for i in range(6)]}, "TOO_MANY_RECIPIENTS", 1714),
            ({"validity_minutes": 0}, "INVALID_PARAMETER", 1702),
            ({"callback_url": "ftp://example.com/dlr"}, "INVALID_DLR", 1708),
        ]
        for override, name, code in cases:
            args: dict[str, Any] = {"recipients": [NUMBER], "text": "hello", **override}
            exc = await _fault(c, "SendSms", **args)
            assert fault_info(exc) == (name, code), override
            assert fault_code(exc, version) == f"{side}.{name}"
            assert "Traceback" not in (exc.message or "")
        # schema-invalid arguments are INVALID_PARAMETER too
        exc = await _fault(c, "ListMessages", page=0)
        assert fault_info(exc) == ("INVALID_PARAMETER", 1702)
        # Found by fuzzing: a page past SQLite's integers was STORE_UNAVAILABLE ("retry").
        for page in (1_000_000_001, 10**20):
            exc = await _fault(c, "ListMessages", page=page)
            assert fault_info(exc) == ("INVALID_PARAMETER", 1702), page
        assert (await call(c, "ListMessages", page=1_000_000_000)).page.total == 0
        assert bridge.simulator.accepted == 0
        assert (await bridge.store.list_messages("demo", offset=0, limit=10))[0] == 0


@pytest.mark.parametrize("version", VERSIONS)
async def test_auth_failed_fault(tmp_path: Path, version: str) -> None:
    async with running_bridge(make_config(tmp_path)) as bridge:
        for auth in (("demo", "wrong"), ("nobody", "demo-password"), None):
            c = await client(bridge.soap_port, version, auth=auth)
            exc = await _fault(c, "GetAccount")
            assert fault_info(exc) == ("AUTH_FAILED", 1703)
            side = "Client" if version == "1.1" else "Sender"
            assert fault_code(exc, version) == f"{side}.AUTH_FAILED"


@pytest.mark.parametrize("version", VERSIONS)
async def test_per_recipient_quota_rate_and_flood(tmp_path: Path, version: str) -> None:
    config = make_config(tmp_path, policy={"flood_max": 2}, account=[
        {**ACCOUNT, "name": "quota", "password": "q", "quota": 2},
        {**ACCOUNT, "name": "slow", "password": "s", "rate_per_s": 1},
        ACCOUNT])
    async with running_bridge(config) as bridge:
        quota = await client(bridge.soap_port, version, auth=("quota", "q"))
        res = await call(quota, "SendSms", recipients=[number(1), number(2), number(3)],
                         text="credit")
        assert [r.status for r in res] == ["accepted", "accepted", "INSUFFICIENT_CREDIT"]
        assert (res[2].code, res[2].message_id) == (1025, None)

        slow = await client(bridge.soap_port, version, auth=("slow", "s"))
        res = await call(slow, "SendSms", recipients=[number(4), number(5), number(6)],
                         text="rate")
        assert [r.status for r in res] == ["accepted", "OVER_LIMIT", "OVER_LIMIT"]
        assert res[1].code == 1711

        demo = await client(bridge.soap_port, version)
        statuses = [(await call(demo, "SendSms", recipients=[number(7)], text=f"flood {i}"))[0]
                    for i in range(3)]
        assert [s.status for s in statuses] == ["accepted", "accepted", "FLOOD"]
        assert statuses[2].code == 1713


@pytest.mark.parametrize("version", VERSIONS)
async def test_server_side_failures_are_clean(tmp_path: Path, version: str,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """Fault injection into the real store and service: STORE_UNAVAILABLE and an unexpected
    exception both become Server/Receiver faults without internal details."""
    async with running_bridge(make_config(tmp_path)) as bridge:
        c = await client(bridge.soap_port, version)

        def broken_accept(*args: Any, **kw: Any) -> Any:
            raise OSError("disk on fire at /secret/path")

        monkeypatch.setattr(bridge.store, "accept", broken_accept)
        exc = await _fault(c, "SendSms", recipients=[NUMBER], text="hello")
        side = "Server" if version == "1.1" else "Receiver"
        assert fault_info(exc) == ("STORE_UNAVAILABLE", 1715)
        assert fault_code(exc, version) == f"{side}.STORE_UNAVAILABLE"
        assert "/secret/path" not in exc.message

        async def exploding(*args: Any, **kw: Any) -> Any:
            raise RuntimeError("internal detail that must not leak")

        monkeypatch.setattr(bridge.service, "account_info", exploding)
        exc = await _fault(c, "GetAccount")
        assert fault_info(exc) == ("INTERNAL_ERROR", 1710)
        assert "must not leak" not in exc.message and "Traceback" not in exc.message
        detail = etree.tostring(exc.detail).decode()
        assert "must not leak" not in detail
        assert "<tns:retry>true</tns:retry>" in detail


def test_fault_table_covers_every_error() -> None:
    assert set(SOAP_FAULTS) == set(ErrorName) - {ErrorName.SUCCESS}
    for name, fault in SOAP_FAULTS.items():
        spec = ERROR_TABLE[name]
        assert (fault.code, fault.side, fault.retry) == (spec.code, spec.soap_fault, spec.retry)
        assert fault.faultcode11 == f"soap:{spec.soap_fault}.{name.value}"


@pytest.mark.parametrize("version", list(SoapVersion))
def test_rendered_faults_are_valid_and_bounded(version: SoapVersion) -> None:
    nasty = "line1\nTraceback (most recent call last):\n  <&>\x00\x1b" + "x" * 1000
    for name in SOAP_FAULTS:
        doc = etree.fromstring(render_fault(version, name, nasty))
        assert doc.tag == f"{{{version.envelope_ns}}}Envelope"
        text = etree.tostring(doc).decode()
        assert "\n" not in text.split("Traceback")[0][-5:]  # one line
        reason = doc.findtext(".//faultstring") if version is SoapVersion.V11 else doc.findtext(
            f".//{{{version.envelope_ns}}}Text")
        assert reason is not None and len(reason) <= 300 and "\n" not in reason
    assert SOAP_FAULTS[ErrorName.AUTH_FAILED].http_status(version) == 401
    client_status = 500 if version is SoapVersion.V11 else 400
    assert SOAP_FAULTS[ErrorName.INVALID_SOURCE].http_status(version) == client_status
    assert SOAP_FAULTS[ErrorName.STORE_UNAVAILABLE].http_status(version) == 500
