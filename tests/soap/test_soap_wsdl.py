"""The checked-in WSDL files are what the service renders and serves; the contract's shape."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest
from lxml import etree

from bridge.ingress.soap.faults import SoapVersion
from bridge.ingress.soap.wsdl import FILES, PLACEHOLDER_URL, check_wsdl, render_wsdl, write_wsdl
from tests.conftest import make_config, running_bridge

WSDL_DIR = Path(__file__).resolve().parents[2] / "wsdl"
XS = "http://www.w3.org/2001/XMLSchema"
WSDL = "http://schemas.xmlsoap.org/wsdl/"
TNS = "urn:sms-bridge:v1"


def test_checked_in_wsdl_is_in_sync() -> None:
    """Fails when the service definition changed without `sms-bridge wsdl --write`."""
    assert check_wsdl(WSDL_DIR) == []


def test_check_and_write(tmp_path: Path) -> None:
    assert len(check_wsdl(tmp_path)) == 2  # missing
    written = write_wsdl(tmp_path)
    assert sorted(p.name for p in written) == sorted(FILES.values())
    assert check_wsdl(tmp_path) == []
    (tmp_path / FILES[SoapVersion.V12]).write_bytes(b"<changed/>")
    problems = check_wsdl(tmp_path)
    assert len(problems) == 1 and "differs" in problems[0]


@pytest.mark.parametrize("version", list(SoapVersion))
def test_render_is_deterministic_and_well_formed(version: SoapVersion) -> None:
    first = render_wsdl(version)
    assert first == render_wsdl(version)
    doc = etree.fromstring(first)
    assert doc.get("targetNamespace") == TNS
    binding_ns = ("http://schemas.xmlsoap.org/wsdl/soap/" if version is SoapVersion.V11
                  else "http://schemas.xmlsoap.org/wsdl/soap12/")
    assert doc.find(f"{{{WSDL}}}binding/{{{binding_ns}}}binding") is not None
    address = doc.find(f"{{{WSDL}}}service/{{{WSDL}}}port/{{{binding_ns}}}address")
    assert address is not None
    assert address.get("location") == PLACEHOLDER_URL + ("12" if version is SoapVersion.V12
                                                         else "")
    operations = {op.get("name"): op for op in doc.iterfind(f"{{{WSDL}}}portType/{{{WSDL}}}operation")}
    assert set(operations) == {"SendSms", "GetStatus", "ListMessages", "GetAccount"}
    for op in operations.values():  # docstrings become documentation
        assert (op.findtext(f"{{{WSDL}}}documentation") or "").strip()
    assert "Ping" not in first.decode()  # the bench-only operation is not in the product


def test_repeated_fields_are_plain_repeated_elements() -> None:
    doc = etree.fromstring(render_wsdl(SoapVersion.V11))
    schema = doc.find(f"{{{WSDL}}}types/{{{XS}}}schema")
    assert schema is not None
    names = [t.get("name") or "" for t in schema.iterfind(f"{{{XS}}}complexType")]
    assert not [n for n in names if n.startswith("ArrayOf") or n.endswith("Array")]

    def element(type_name: str, name: str) -> etree._Element:
        found = schema.find(f"{{{XS}}}complexType[@name='{type_name}']/{{{XS}}}sequence/"
                            f"{{{XS}}}element[@name='{name}']")
        assert found is not None, (type_name, name)
        return found

    for type_name, name in (("SendSms", "recipients"), ("GetStatus", "message_ids"),
                            ("SendSmsResponse", "submissions"), ("GetStatusResponse", "messages"),
                            ("ListMessagesResponse", "messages"), ("MessageStatus", "smsc_ids")):
        assert element(type_name, name).get("maxOccurs") == "unbounded", (type_name, name)
    assert element("SendSms", "recipients").get("type") == "xs:string"
    assert element("SendSms", "send_at").get("type") == "xs:dateTime"
    assert element("SendSms", "text").get("minOccurs") is None  # required


async def test_served_wsdl_matches_checked_in(tmp_path: Path) -> None:
    async with running_bridge(make_config(tmp_path)) as bridge:
        base = f"http://127.0.0.1:{bridge.soap_port}/soap"
        async with aiohttp.ClientSession() as http:
            for version, suffix in ((SoapVersion.V11, ""), (SoapVersion.V12, "12")):
                for query in ("?wsdl", "?WSDL"):
                    async with http.get(base + suffix + query) as response:
                        assert response.status == 200
                        served = await response.read()
                    checked_in = (WSDL_DIR / FILES[version]).read_bytes()
                    assert served == checked_in.replace(PLACEHOLDER_URL.encode(), base.encode())
