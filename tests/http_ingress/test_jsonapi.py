"""The JSON API end to end: bearer tokens, the four charsets as the simulator receives them,
status and pages, 429 over the rate, the report at callbackUrl; wrong JSON of every kind is
this dialect's error object, never a traceback."""

from __future__ import annotations

import asyncio

import hashlib
import hmac
import json
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import running_bridge
from tests.http_ingress import NUMBER, TOKEN, get, http_config, number, post, receiver, stdlib_get

PATH = "/api/sms"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


async def send(port: int, body: Any, headers: dict[str, str] | None = None
               ) -> tuple[int, Any]:
    status, text, _ = await post(port, PATH, data=json.dumps(body),
                                 headers={**AUTH, **(headers or {}),
                                          "Content-Type": "application/json"})
    return status, json.loads(text) if text else None


@pytest.mark.parametrize(("charset", "given", "sent", "dcs"), [
    (0, "auto ☺", "auto ☺", 0x08), (0, "plain", "plain", 0x00), (1, "gsm {}", "gsm {}", 0x00),
    (6, "010101090121", "āĉġ", 0x08), (8, "%7F%7E%1B%65", "àü€", 0x00)])
async def test_charsets_reach_the_smsc_as_meant(tmp_path: Path, charset: int, given: str,
                                                sent: str, dcs: int) -> None:
    async with running_bridge(http_config(tmp_path)) as bridge:
        status, answer = await send(bridge.http_port, {
            "recipients": [NUMBER], "sender": "+447400000001",
            "message": {"charset": charset, "text": given}})
        assert status == 200 and answer["code"] == "SUCCESS"
        [submission] = answer["submissions"]
        assert submission["status"] == "submitted"
        await bridge.simulator.wait_for_submits(1)
        [sm] = bridge.simulator.submits
        assert (sm.text, sm.data_coding, sm.source_ton, sm.source_npi) == (sent, dcs, 1, 1)


async def test_one_submission_per_recipient_in_order_then_status_and_pages(
        tmp_path: Path) -> None:
    async with running_bridge(http_config(tmp_path)) as bridge:
        port = bridge.http_port
        status, answer = await send(port, {
            "recipients": [number(1), "12", number(2)],
            "message": {"charset": 0, "text": "hello"}})
        assert status == 200
        first, bad, third = answer["submissions"]
        assert (first["status"], bad, third["status"]) == (
            "submitted", {"status": "invalid_destination", "recipient": "12"}, "submitted")
        await bridge.simulator.wait_for_submits(2)
        for _ in range(100):  # the SMSC has it; its answer is recorded a moment later
            status, text, _ = await get(port, f"{PATH}/{first['submissionId']}", headers=AUTH)
            view = json.loads(text)["submission"]
            if view["status"] != "queued":
                break
            await asyncio.sleep(0.05)
        assert (status, view["submissionId"], view["recipient"]) == (
            200, first["submissionId"], number(1))
        assert view["status"] in ("submitted", "delivered") and view["sender"] == "ACME"
        for i in range(30):
            await send(port, {"recipients": [number(10 + i)],
                              "message": {"charset": 0, "text": f"m{i}"}})
        status, text, _ = await get(port, f"{PATH}?page=2", headers=AUTH)
        listing = json.loads(text)
        assert listing["page"] == {"count": 2, "number": 2} and len(listing["submissions"]) == 7
        status, text, _ = await get(port, f"{PATH}/nope", headers=AUTH)
        assert status == 404 and json.loads(text)["error"]["code"] == "INVALID_PARAMETER"
        status, text, _ = await get(port, f"{PATH}?page=x", headers=AUTH)
        assert status == 400


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"},
                                     {"Authorization": f"Basic {TOKEN}"},
                                     {"Authorization": "Bearer "}])
async def test_a_missing_or_bad_token_is_401_with_an_empty_body(tmp_path: Path,
                                                                headers: dict[str, str]
                                                                ) -> None:
    async with running_bridge(http_config(tmp_path)) as bridge:
        for method in (post, get):
            status, text, _ = await method(bridge.http_port, PATH, headers=headers)
            assert (status, text) == (401, "")


async def test_over_the_rate_is_429_over_limit(tmp_path: Path) -> None:
    async with running_bridge(http_config(tmp_path, account={"rate_per_s": 1})) as bridge:
        body = {"recipients": [NUMBER], "message": {"charset": 0, "text": "one"}}
        assert (await send(bridge.http_port, body))[0] == 200
        status, answer = await send(bridge.http_port, {**body, "recipients": [number(3)]})
        assert status == 429 and answer["error"]["code"] == "OVER_LIMIT"


async def test_no_credit_is_account_no_balance(tmp_path: Path) -> None:
    async with running_bridge(http_config(tmp_path, account={"quota": 1})) as bridge:
        status, answer = await send(bridge.http_port, {
            "recipients": [number(1), number(2)], "message": {"charset": 0, "text": "q"}})
        assert status == 200
        assert [s["status"] for s in answer["submissions"]] == ["submitted",
                                                                 "account_no_balance"]


async def test_the_report_goes_to_callback_url_signed(tmp_path: Path) -> None:
    secret = "whsec-0123456789abcdef"
    async with receiver() as rec:
        config = http_config(tmp_path, account={"callback_secret": secret})
        async with running_bridge(config) as bridge:
            status, answer = await send(bridge.http_port, {
                "recipients": [NUMBER], "message": {"charset": 0, "text": "report me"},
                "callbackUrl": rec.url("/cb?x=1")})
            [hit] = await rec.wait(1)
            document = json.loads(hit.body)
            assert document["submissionId"] == answer["submissions"][0]["submissionId"]
            assert (document["status"], document["recipient"]) == ("delivered", NUMBER)
            stamp = hit.headers["X-SMS-Bridge-Timestamp"]
            mac = hmac.new(secret.encode(), stamp.encode() + b"." + hit.body, hashlib.sha256)
            assert hit.headers["X-SMS-Bridge-Signature"] == "v1=" + mac.hexdigest()


@pytest.mark.parametrize(("body", "status", "code"), [
    (b"not json", 400, "INVALID_PARAMETER"),
    (b"[1, 2]", 400, "INVALID_PARAMETER"),
    (b'{"recipients": "447400123456", "message": {"charset": 0, "text": "x"}}', 400,
     "INVALID_PARAMETER"),
    (b'{"recipients": [447400123456], "message": {"charset": 0, "text": "x"}}', 400,
     "INVALID_PARAMETER"),
    (b'{"recipients": [], "message": {"charset": 0, "text": "x"}}', 400, "INVALID_PARAMETER"),
    (b'{"recipients": ["+447400123456"], "message": "x"}', 400, "INVALID_PARAMETER"),
    (b'{"recipients": ["+447400123456"], "message": {"charset": true, "text": "x"}}', 400,
     "INVALID_PARAMETER"),
    (b'{"recipients": ["+447400123456"], "message": {"charset": 3, "text": "x"}}', 400,
     "INVALID_TYPE"),
    (b'{"recipients": ["+447400123456"], "message": {"charset": "0", "text": "x"}}', 400,
     "INVALID_PARAMETER"),
    (b'{"recipients": ["+447400123456"], "message": {"charset": 0, "text": 5}}', 400,
     "INVALID_PARAMETER"),
    (b'{"recipients": ["+447400123456"], "message": {"charset": 6, "text": "0101zz"}}', 400,
     "INVALID_MESSAGE"),
    (b'{"recipients": ["+447400123456"], "message": {"charset": 6, "text": "d800"}}', 400,
     "INVALID_MESSAGE"),
    (b'{"recipients": ["+447400123456"], "message": {"charset": 8, "text": "%80"}}', 400,
     "INVALID_MESSAGE"),
    (b'{"recipients": ["+447400123456"], "message": {"charset": 8, "text": "%7"}}', 400,
     "INVALID_MESSAGE"),
    (b'{"recipients": ["+447400123456"], "message": {"charset": 0, "text": ""}}', 400,
     "INVALID_MESSAGE"),
    (b'{"recipients": ["+447400123456"], "sender": 7, "message": {"charset": 0, "text": "x"}}',
     400, "INVALID_PARAMETER"),
    (b'{"recipients": ["+447400123456"], "sender": "NOPE", "message": {"charset": 0, '
     b'"text": "x"}}', 400, "INVALID_SOURCE"),
    (b'{"recipients": ["+447400123456"], "callbackUrl": "ftp://x", "message": {"charset": 0, '
     b'"text": "x"}}', 400, "INVALID_DLR"),
    (b"\xff\xfe", 400, "INVALID_PARAMETER"),
    (b"[" * 100_000, 400, "INVALID_PARAMETER"),
])
async def test_wrong_json_is_an_error_object(tmp_path: Path, body: bytes, status: int,
                                             code: str) -> None:
    async with running_bridge(http_config(tmp_path, http={"max_request_bytes": 200_000})
                              ) as bridge:
        got, text, _ = await post(bridge.http_port, PATH, data=body, headers=AUTH)
        assert got == status, text
        error = json.loads(text)["error"]
        assert error["code"] == code and "Traceback" not in error["description"]
        assert bridge.simulator.submits == []


async def test_a_body_over_the_limit_is_413_and_other_methods_405(tmp_path: Path) -> None:
    async with running_bridge(http_config(tmp_path, http={"max_request_bytes": 1024})
                              ) as bridge:
        status, answer = await send(bridge.http_port, {
            "recipients": [NUMBER], "message": {"charset": 0, "text": "x" * 5000}})
        assert status == 413 and answer["error"]["code"] == "INVALID_PARAMETER"
        status, body = await stdlib_get(f"http://127.0.0.1:{bridge.http_port}{PATH}/x",
                                        data=b"{}", headers=AUTH)
        assert status == 405 and json.loads(body)["error"]["code"] == "INVALID_PARAMETER"
