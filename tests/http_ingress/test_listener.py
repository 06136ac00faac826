"""Where the dialects are served: on the SOAP listener by default (one port answers both), on
a listener of their own with [http] listen (TLS from [http] like every listener), paths as
configured or turned off; inbound SMS to an account's number POSTed to its mo_url; SOAP's
type 4 is the same WAP Push as the bulk-SMS API's."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import ssl
from pathlib import Path

import aiohttp
import trustme

from bridge.core.wap import service_indication
from tests.conftest import closed_port, running_bridge
from tests.http_ingress import NUMBER, PASSWORD, get, http_config, receiver
from tests.soap import call, client

KANNEL = f"/cgi-bin/sendsms?username=acme&password={PASSWORD}&to=447400123456&text=hi"


async def test_by_default_the_soap_port_answers_both(tmp_path: Path) -> None:
    async with running_bridge(http_config(tmp_path)) as bridge:
        assert bridge.http_port == bridge.soap_port
        assert (await get(bridge.http_port, KANNEL))[:2] == (202, "0: Accepted for delivery")
        status, body, _ = await get(bridge.soap_port, "/soap?wsdl")
        assert status == 200 and "definitions" in body
        assert (await get(bridge.soap_port, "/healthz"))[0] == 200


async def test_a_listener_of_its_own_with_tls_and_paths_of_its_own(tmp_path: Path) -> None:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    cert.private_key_and_cert_chain_pem.write_to_path(str(tmp_path / "http.pem"))
    cert.private_key_pem.write_to_path(str(tmp_path / "http.key"))
    config = http_config(tmp_path, http={
        "listen": "127.0.0.1:0", "tls_cert": "http.pem", "tls_key": "http.key",
        "require_tls": True, "kannel_path": "/kannel/send", "jasmin_path": ""})
    async with running_bridge(config) as bridge:
        assert bridge.http_port != bridge.soap_port
        context = ssl.create_default_context(cafile=None)
        ca.configure_trust(context)
        async with aiohttp.ClientSession() as http:
            path = KANNEL.replace("/cgi-bin/sendsms", "/kannel/send")
            async with http.get(f"https://127.0.0.1:{bridge.http_port}{path}",
                                ssl=context) as response:
                assert (response.status, await response.text()) == (
                    202, "0: Accepted for delivery")
            for gone in (KANNEL, "/send?to=1"):
                async with http.get(f"https://127.0.0.1:{bridge.http_port}{gone}",
                                    ssl=context) as response:
                    assert response.status == 404
        # the SOAP listener no longer serves the dialects
        assert (await get(bridge.soap_port, KANNEL))[0] == 404


async def test_inbound_sms_to_an_accounts_number_is_pushed_to_its_mo_url(
        tmp_path: Path) -> None:
    secret = "mo-secret-0123456789"
    async with receiver([503]) as rec:
        config = http_config(tmp_path, account={"mo_url": rec.url("/mo?k=1"),
                                                "callback_secret": secret})
        async with running_bridge(config) as bridge:
            await bridge.simulator.send_mo(NUMBER, "+447400000001", "Reply ☺", encoding="ucs2")
            await bridge.simulator.send_mo(NUMBER, "+447499999999", "not ours")
            hits = await rec.wait(2)  # the 503, then again
            first, second = hits[:2]
            assert first.body == second.body.replace(b'"attempt":2', b'"attempt":1')
            document = json.loads(second.body)
            assert {k: document[k] for k in ("account", "from", "to", "text", "attempt")} == {
                "account": "acme", "from": NUMBER, "to": "+447400000001", "text": "Reply ☺",
                "attempt": 2}
            stamp = second.headers["X-SMS-Bridge-Timestamp"]
            mac = hmac.new(secret.encode(), stamp.encode() + b"." + second.body,
                           hashlib.sha256)
            assert second.headers["X-SMS-Bridge-Signature"] == "v1=" + mac.hexdigest()
            assert all(json.loads(h.body)["to"] == "+447400000001" for h in rec.hits)


async def test_an_unreachable_mo_url_is_retried_then_given_up(tmp_path: Path) -> None:
    config = http_config(tmp_path, http={"report_max_attempts": 2}, account={
        "mo_url": f"http://127.0.0.1:{closed_port()}/mo"})
    async with running_bridge(config) as bridge:
        await bridge.simulator.send_mo(NUMBER, "+447400000001", "lost?")
        given_up = 'sms_bridge_callbacks_total{outcome="gave_up"} 1.0'
        for _ in range(200):  # bounded: tried twice, then given up
            if given_up in (await get(bridge.soap_port, "/metrics"))[1]:
                break
            await asyncio.sleep(0.05)
        text = (await get(bridge.soap_port, "/metrics"))[1]
        assert given_up in text and 'sms_bridge_callbacks_total{outcome="retry"} 1.0' in text
        assert await bridge.store.pushes_due(now=1e12, limit=5) == []


async def test_soap_type_4_is_a_wap_push(tmp_path: Path) -> None:
    config = http_config(tmp_path, account={"password": "soap-pw", "password_hash": None})
    async with running_bridge(config) as bridge:
        c = await client(bridge.soap_port, "1.1", auth=("acme", "soap-pw"))
        [sub] = await call(c, "SendSms", recipients=[NUMBER], text="Open me", type=4,
                           url="https://www.example.org/x")
        assert sub.status == "accepted" and sub.encoding == "binary"
        await bridge.simulator.wait_for_submits(1)
        [sm] = bridge.simulator.submits
        assert sm.user_data == service_indication("https://www.example.org/x", "Open me")
