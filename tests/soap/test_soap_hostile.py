"""Hostile and broken requests against the real server: each gets a clean SOAP fault or a 4xx,
quickly, and nothing is accepted. Also /healthz, /metrics and GET without ?wsdl."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path
from typing import AsyncIterator

import aiohttp
import pytest
from lxml import etree

from bridge.ingress.soap.security import XmlRejected, make_parser, parse_xml
from tests.conftest import make_config, running_bridge
from tests.soap import ENV11, NUMBER, TNS, VERSIONS, basic, content_type, envelope

LIMIT = 64 * 1024

XXE = (f'<?xml version="1.0"?><!DOCTYPE e [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
       f'<e:Envelope xmlns:e="{{env}}" xmlns:t="{TNS}"><e:Body><t:SendSms>'
       f"<t:recipients>{NUMBER}</t:recipients><t:text>&xxe;</t:text></t:SendSms></e:Body>"
       f"</e:Envelope>")

LAUGHS = ('<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
          + "".join(f'<!ENTITY lol{i} "{("&lol%s;" % (i - 1 if i > 1 else "")) * 10}">'
                    for i in range(1, 10))
          + f']><e:Envelope xmlns:e="{{env}}" xmlns:t="{TNS}"><e:Body><t:SendSms>'
          f"<t:recipients>{NUMBER}</t:recipients><t:text>&lol9;</t:text></t:SendSms></e:Body>"
          f"</e:Envelope>")


@pytest.fixture
async def bridge(tmp_path: Path) -> AsyncIterator[object]:
    async with running_bridge(make_config(tmp_path, soap={"max_request_bytes": LIMIT})) as b:
        yield b


async def _post(port: int, body: bytes, version: str = "1.1", *, path: str = "/soap",
                headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    hdrs = {"Content-Type": content_type(version), "Authorization": basic()}
    hdrs.update(headers or {})
    async with aiohttp.ClientSession() as http:
        async with http.post(f"http://127.0.0.1:{port}{path}", data=body,
                             headers=hdrs) as response:
            return response.status, dict(response.headers), await response.read()


def _fault_name(body: bytes) -> str:
    doc = etree.fromstring(body)
    return doc.findtext(f".//{{{TNS}}}name") or ""


async def _nothing_accepted(bridge: object) -> None:
    total, _ = await bridge.store.list_messages("demo", offset=0, limit=1)  # type: ignore[attr-defined]
    assert total == 0
    assert bridge.simulator.accepted == 0  # type: ignore[attr-defined]


@pytest.mark.parametrize("version", VERSIONS)
async def test_xxe_and_billion_laughs_refused_without_expansion(bridge: object,
                                                                version: str) -> None:
    env = ENV11 if version == "1.1" else "http://www.w3.org/2003/05/soap-envelope"
    port = bridge.soap_port  # type: ignore[attr-defined]
    for payload in (XXE, LAUGHS):
        started = time.perf_counter()
        status, headers, body = await _post(port, payload.format(env=env).encode(), version)
        assert time.perf_counter() - started < 2.0
        assert status == (500 if version == "1.1" else 400)
        assert headers["Content-Type"].startswith(content_type(version).split(";")[0])
        assert _fault_name(body) == "INVALID_PARAMETER"
        assert b"root:" not in body and b"lollol" not in body
        assert b"document type declarations are not allowed" in body
    # the same refusal when the DOCTYPE is not visible as ASCII bytes (UTF-16 body)
    utf16 = XXE.format(env=env).replace('<?xml version="1.0"?>',
                                        '<?xml version="1.0" encoding="UTF-16"?>')
    status, _, body = await _post(port, utf16.encode("utf-16"), version)
    assert _fault_name(body) == "INVALID_PARAMETER"
    assert b"root:" not in body
    await _nothing_accepted(bridge)


def test_parser_never_expands_or_fetches() -> None:
    parser = make_parser()
    for payload in (XXE, LAUGHS):
        with pytest.raises(XmlRejected):
            parse_xml(payload.format(env=ENV11).encode(), parser)
        # even without the byte pre-check, the parser itself neither fetches nor expands:
        # it leaves the reference alone or (libxml2's amplification guard) refuses
        try:
            doc = etree.fromstring(payload.format(env=ENV11).encode(), parser)
        except etree.XMLSyntaxError as exc:
            assert "amplification" in str(exc)
        else:
            text = doc.findtext(f".//{{{TNS}}}text") or ""
            assert "root:" not in text and len(text) < 100
    deep = b"<a>" * 5000 + b"</a>" * 5000
    with pytest.raises(XmlRejected):
        parse_xml(deep, parser)


async def test_size_limit_413(bridge: object) -> None:
    port = bridge.soap_port  # type: ignore[attr-defined]
    filler = "".join(f"<t:recipients>{NUMBER}</t:recipients>" for _ in range(LIMIT // 40))
    big = envelope(f"<t:SendSms>{filler}<t:text>x</t:text></t:SendSms>")
    assert len(big) > LIMIT
    status, _, body = await _post(port, big)
    assert status == 413
    assert _fault_name(body) == "INVALID_PARAMETER"

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: chunked upload
        for i in range(0, len(big), 8192):
            yield big[i:i + 8192]

    async with aiohttp.ClientSession() as http:
        async with http.post(f"http://127.0.0.1:{port}/soap", data=chunks(), headers={
                "Content-Type": content_type("1.1"), "Authorization": basic()}) as response:
            assert response.status == 413
    await _nothing_accepted(bridge)


@pytest.mark.parametrize("version", VERSIONS)
async def test_broken_requests_get_client_faults(bridge: object, version: str) -> None:
    port = bridge.soap_port  # type: ignore[attr-defined]
    send = f"<t:SendSms><t:recipients>{NUMBER}</t:recipients><t:text>hi</t:text></t:SendSms>"
    other_env = ENV11 if version == "1.2" else "http://www.w3.org/2003/05/soap-envelope"
    cases = {
        "malformed": envelope(send, version)[:-20],
        "empty": b"",
        "not soap": b"<hello/>",
        "wrong envelope namespace": envelope(send, version).replace(
            (ENV11 if version == "1.1" else "http://www.w3.org/2003/05/soap-envelope").encode(),
            other_env.encode()),
        "wrong operation namespace": envelope(send.replace("t:", "x:").replace(
            "<x:SendSms>", '<x:SendSms xmlns:x="urn:evil">'), version),
        "unknown operation": envelope("<t:SendMoney/>", version),
        "schema violation": envelope(send.replace("<t:text>hi</t:text>",
                                                  "<t:text>hi</t:text><t:type>abc</t:type>"),
                                     version),
        "unknown element": envelope(send.replace("</t:SendSms>", "<t:evil>1</t:evil></t:SendSms>"),
                                    version),
        "empty body": envelope("", version),
        "fault as request": envelope("<e:Fault/>", version).replace(
            b"<e:Fault/>", f'<e:Fault xmlns:e="{ENV11}"/>'.encode()),
    }
    for name, body in cases.items():
        status, headers, reply = await _post(port, body, version)
        assert status == (500 if version == "1.1" else 400), name
        assert headers["Content-Type"].startswith(content_type(version).split(";")[0]), name
        doc = etree.fromstring(reply)  # always a well-formed SOAP envelope of the right version
        env = ENV11 if version == "1.1" else "http://www.w3.org/2003/05/soap-envelope"
        assert doc.tag == f"{{{env}}}Envelope", name
        assert _fault_name(reply) == "INVALID_PARAMETER", name
        assert b"Traceback" not in reply and b'File "' not in reply, name
    await _nothing_accepted(bridge)


async def test_get_endpoints(bridge: object) -> None:
    port = bridge.soap_port  # type: ignore[attr-defined]
    async with aiohttp.ClientSession() as http:
        async with http.get(f"http://127.0.0.1:{port}/soap") as response:
            assert response.status == 405
        async with http.get(f"http://127.0.0.1:{port}/healthz") as response:
            assert response.status == 200
            data = await response.json()
            assert data["status"] == "ok"
        status, _, _ = await _post(port, envelope(
            f"<t:SendSms><t:recipients>{NUMBER}</t:recipients><t:text>m</t:text></t:SendSms>"))
        assert status == 200
        async with http.get(f"http://127.0.0.1:{port}/metrics") as response:
            assert response.status == 200
            assert response.headers["Content-Type"].startswith("text/plain")
            text = await response.text()
            assert 'sms_bridge_accepted_total{ingress="soap"} 1.0' in text
            # The store process's outbound metrics follow, each family once.
            assert 'sms_bridge_binds_up{smsc="simulator"} 1.0' in text
            assert "sms_bridge_queue_depth " in text
            # The accept above was committed: the store's commits are counted and timed.
            values = {line.split(" ")[0]: float(line.split(" ")[1])
                      for line in text.splitlines() if line.startswith("sms_bridge_store_")}
            assert values["sms_bridge_store_commit_seconds_count"] >= 1
            assert values["sms_bridge_store_writes_total"] >= \
                values["sms_bridge_store_commit_seconds_count"]
            assert 0 < values["sms_bridge_store_commit_seconds_sum"] < 60
            types = [line for line in text.splitlines() if line.startswith("# TYPE")]
            assert len(types) == len(set(types)) and len(types) >= 7, types


async def test_healthz_degraded_is_503() -> None:
    from aiohttp import web

    from bridge.ingress.ops import add_ops_routes
    from bridge.metrics import Metrics

    async def degraded() -> dict[str, str]:
        return {"status": "degraded"}

    async def broken() -> dict[str, str]:
        raise ZeroDivisionError

    for health, code in ((degraded, 503), (broken, 503)):
        app = web.Application()
        add_ops_routes(app, Metrics(), health)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        try:
            async with aiohttp.ClientSession() as http:
                async with http.get(f"http://127.0.0.1:{port}/healthz") as response:
                    assert response.status == code
        finally:
            await runner.cleanup()


async def test_a_dead_store_process_shows_in_healthz_and_refuses_cleanly(tmp_path: Path) -> None:
    """If the store process dies, nothing is acknowledged: SendSms gets STORE_UNAVAILABLE and
    /healthz says 503 with the store marked unavailable."""
    async with running_bridge(make_config(tmp_path)) as b:
        assert b.store.pid is not None
        os.kill(b.store.pid, signal.SIGKILL)
        for _ in range(100):  # bounded: until the bridge has noticed the closed pipe
            if not b.store.healthy():
                break
            await asyncio.sleep(0.01)
        status, _, body = await _post(b.soap_port, envelope(
            f"<t:SendSms><t:recipients>{NUMBER}</t:recipients><t:text>m</t:text></t:SendSms>"))
        assert status == 500 and _fault_name(body) == "STORE_UNAVAILABLE"
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{b.soap_port}/healthz") as response:
                assert response.status == 503
                assert (await response.json())["store"] == "unavailable"
