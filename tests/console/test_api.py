"""The admin API and the page's routes against a real bridge (store process, dispatcher,
simulator), with hostile input: wrong or malformed credentials, malformed ids, unknown states,
oversized bodies, a cancel of a delivered message, cross-site requests. Never a 500, never a
traceback, never a message's text."""

from __future__ import annotations

import asyncio
import base64
import logging
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from bridge.core.states import MessageState
from bridge.runtime.app import Bridge
from tests.conftest import make_config, running_bridge
from tests.console import ADMIN, ADMIN_PASSWORD, SECRET_TEXT, console_config, later, request

pytestmark = pytest.mark.asyncio(loop_scope="module")

BASIC = "Basic " + base64.b64encode(f"{ADMIN}:{ADMIN_PASSWORD}".encode()).decode()
JSON = {"Content-Type": "application/json"}


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def bridge(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Bridge]:
    async with running_bridge(console_config(tmp_path_factory.mktemp("console"))) as b:
        yield b


def base(bridge: Bridge) -> str:
    return f"http://127.0.0.1:{bridge.admin_port}"


def browser() -> aiohttp.ClientSession:
    return aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))


async def logged_in(bridge: Bridge, client: aiohttp.ClientSession) -> str:
    """Log in through the form; the page's CSRF token."""
    async with client.post(base(bridge) + "/admin/login", allow_redirects=False,
                           data={"name": ADMIN, "password": ADMIN_PASSWORD}) as r:
        assert r.status == 303 and r.headers["Location"] == "/"
        assert "HttpOnly" in r.headers["Set-Cookie"] and "SameSite=Strict" in r.headers["Set-Cookie"]
    async with client.get(base(bridge) + "/") as r:
        assert r.status == 200
        found = re.search(r'name="csrf-token" content="([^"]+)"', await r.text())
    assert found
    return found.group(1)


async def api(bridge: Bridge, method: str, path: str, *, auth: str | None = BASIC,
              client: aiohttp.ClientSession | None = None, **kw: Any) -> tuple[int, Any]:
    headers = dict(kw.pop("headers", {}))
    if auth is not None:
        headers["Authorization"] = auth
    own = client is None
    session = client or aiohttp.ClientSession()
    try:
        async with session.request(method, base(bridge) + path, headers=headers, **kw) as r:
            text = await r.text()
            assert "Traceback" not in text and r.status != 500, text
            assert r.content_type == "application/json", (r.status, text)
            return r.status, await r.json()
    finally:
        if own:
            await session.close()


async def state_of(bridge: Bridge, mid: str) -> MessageState:
    [view] = await bridge.store.get_messages([mid])
    return view.state


async def delivered_message(bridge: Bridge, number: str) -> str:
    assert bridge.service is not None
    [result] = await bridge.service.submit(request(SECRET_TEXT, number))
    assert result.message_id is not None
    for _ in range(200):
        if await state_of(bridge, result.message_id) is MessageState.DELIVERED:
            return result.message_id
        await asyncio.sleep(0.02)
    raise AssertionError("not delivered")


async def scheduled_message(bridge: Bridge, number: str) -> str:
    assert bridge.service is not None
    [result] = await bridge.service.submit(request(SECRET_TEXT, number, send_at=later(3600)))
    assert result.message_id is not None
    return result.message_id


# ------------------------------------------------------------------ who may

async def test_wrong_credentials_get_401_and_the_auth_failure_line(
        bridge: Bridge, caplog: pytest.LogCaptureFixture) -> None:
    async with browser() as client:
        async with client.get(base(bridge) + "/", allow_redirects=False) as r:
            assert (r.status, r.headers["Location"]) == (303, "/admin/login")
        with caplog.at_level(logging.WARNING, logger="bridge.auth"):
            async with client.post(base(bridge) + "/admin/login",
                                   data={"name": ADMIN, "password": "guess"}) as r:
                assert r.status == 401 and "Wrong name or password" in await r.text()
        # the line every listener's throttled check writes, which fail2ban's filter reads
        assert 'auth failed ingress=console ip=127.0.0.1 user="ops" failures=1' in caplog.text
    status, body = await api(bridge, "GET", "/admin/api/status", auth=None)
    assert status == 401 and "log in" in body["error"]
    for auth in ("Basic " + base64.b64encode(b"ops:guess").decode(), "Basic !!!not-base64",
                 "Basic " + base64.b64encode(b"\xff\xfe").decode(), "Bearer x", "Basic "):
        status, body = await api(bridge, "GET", "/admin/api/status", auth=auth)
        assert status == 401, auth


async def test_a_login_form_with_too_many_fields_is_a_400(bridge: Bridge) -> None:
    async with browser() as client:
        async with client.post(base(bridge) + "/admin/login",
                               data="&".join(f"f{i}=x" for i in range(50)),
                               headers={"Content-Type": "application/x-www-form-urlencoded"}
                               ) as r:
            assert r.status == 400 and "form" in await r.text()


async def test_logout_needs_the_page_s_token_and_ends_the_session(bridge: Bridge) -> None:
    async with browser() as client:
        csrf = await logged_in(bridge, client)
        async with client.post(base(bridge) + "/admin/logout", data={"csrf": "forged"},
                               allow_redirects=False) as r:
            assert r.status == 403
        async with client.get(base(bridge) + "/admin/live") as r:
            assert r.status == 200  # still logged in
        async with client.post(base(bridge) + "/admin/logout", data={"csrf": csrf},
                               allow_redirects=False) as r:
            assert (r.status, r.headers["Location"]) == (303, "/admin/login")
        async with client.get(base(bridge) + "/admin/live") as r:
            assert r.status == 401


# ------------------------------------------------------------------ reading

async def test_status_and_messages_masked_and_never_the_text(bridge: Bridge) -> None:
    mid = await delivered_message(bridge, "+447400123401")
    await asyncio.sleep(1.1)  # the series count whole seconds that are over
    status, body = await api(bridge, "GET", "/admin/api/status")
    assert status == 200
    assert body["binds"] == [{"name": "simulator", "up": True, "in_flight": 0, "window": 50,
                              "tps": body["binds"][0]["tps"], "max_tps": 0.0}]
    assert set(body["queue"]) == {s.value for s in MessageState}
    assert {len(counts) for counts in body["series"].values()} == {599}
    assert sum(body["series"]["submitted"]) >= 1 and sum(body["series"]["delivered"]) >= 1
    assert body["latency_s"]["submit_to_receipt"]["p50"] is not None
    assert any(m["id"] == mid and m["recipient"] == "+447******401" for m in body["messages"])
    status, body = await api(bridge, "GET", "/admin/api/messages?state=delivered&limit=5")
    assert status == 200 and mid in [m["id"] for m in body["messages"]]
    status, one = await api(bridge, "GET", f"/admin/api/messages/{mid}")
    assert status == 200 and [e["event"] for e in one["timeline"]][-1] == "delivered"
    status, none = await api(bridge, "GET", "/admin/api/messages?account=metered&since=1h")
    assert (status, none["total"]) == (200, 0)
    async with browser() as client:
        await logged_in(bridge, client)
        async with client.get(base(bridge) + f"/?id={mid}") as r:
            page = await r.text()
    for text in (str(body), str(one), page):
        assert SECRET_TEXT not in text and "+447400123401" not in text


@pytest.mark.parametrize(("path", "status", "said"), [
    ("/admin/api/messages/%27%20OR%201%3D1", 400, "not a message id"),
    ("/admin/api/messages/" + "a" * 65, 400, "not a message id"),
    ("/admin/api/messages/nosuchmessage", 404, "no such message"),
    ("/admin/api/messages?state=lost", 400, "unknown state"),
    ("/admin/api/messages?since=yesterday", 400, "not a time"),
    ("/admin/api/messages?limit=0", 400, "limit"),
    ("/admin/api/messages?limit=999999999999999999999", 400, "limit"),
    ("/admin/api/messages?account=nobody", 400, "no account"),
    ("/admin/api/accounts/nobody", 400, "no account"),
    ("/admin/api/nothing/here", 404, "no such admin API call"),
])
async def test_what_cannot_be_read_is_a_clear_4xx(bridge: Bridge, path: str, status: int,
                                                  said: str) -> None:
    got, body = await api(bridge, "GET", path)
    assert got == status and said in body["error"]


# ------------------------------------------------------------------ changing

async def test_a_body_that_comes_in_pieces_is_read_whole(bridge: Bridge) -> None:
    """A change's JSON sent in two pieces a moment apart (a large id list does, over a real
    network): the console reads to its end before it parses."""
    waiting = await scheduled_message(bridge, "+447400123406")
    body = f'{{"ids": ["{waiting}"]}}'.encode()

    async def pieces() -> AsyncIterator[bytes]:
        yield body[:7]
        await asyncio.sleep(0.2)
        yield body[7:]

    status, answer = await api(bridge, "POST", "/admin/api/messages/cancel", headers=JSON,
                               data=pieces())
    assert status == 200 and answer["results"][0]["done"] is True, answer


async def test_cancel_and_retry(bridge: Bridge) -> None:
    waiting = await scheduled_message(bridge, "+447400123402")
    status, body = await api(bridge, "POST", "/admin/api/messages/cancel", headers=JSON,
                             json={"ids": [waiting]})
    assert status == 200 and body["results"] == [
        {"id": waiting, "done": True, "state": "cancelled", "detail": "cancelled by admin:ops"}]
    assert await state_of(bridge, waiting) is MessageState.CANCELLED
    delivered = await delivered_message(bridge, "+447400123403")
    status, body = await api(bridge, "POST", "/admin/api/messages/cancel", headers=JSON,
                             json={"ids": [delivered, "nosuchmessage"]})
    assert status == 409 and [(r["done"], r["detail"]) for r in body["results"]] == [
        (False, "it is delivered: only queued or scheduled messages can be cancelled"),
        (False, "no such message")]
    failed = await scheduled_message(bridge, "+447400123404")
    await bridge.store.record_state(failed, MessageState.FAILED, at=time.time(),
                                    error="INVALID_DESTINATION", detail="test")
    status, body = await api(bridge, "POST", "/admin/api/messages/retry", headers=JSON,
                             json={"ids": [failed]})
    assert status == 200 and body["results"][0]["state"] == "queued"
    for _ in range(200):
        if await state_of(bridge, failed) is MessageState.DELIVERED:
            break
        await asyncio.sleep(0.02)
    assert await state_of(bridge, failed) is MessageState.DELIVERED


@pytest.mark.parametrize(("kw", "status", "said"), [
    ({"data": "ids=x", "headers": {"Content-Type": "application/x-www-form-urlencoded"}},
     415, "send JSON"),
    ({"data": "{not json", "headers": JSON}, 400, "not JSON"),
    ({"json": {"ids": "abc"}}, 400, '{"ids"'),
    ({"json": ["abc"]}, 400, '{"ids"'),
    ({"json": {"ids": []}}, 400, "no message id"),
    ({"json": {"ids": ["a b"]}}, 400, "not a message id"),
    ({"json": {"ids": [{"$ne": 1}]}}, 400, "not a message id"),
    ({"json": {"ids": [f"m{i}" for i in range(1001)]}}, 400, "at most 1000"),
    ({"data": b"x" * 200_000, "headers": JSON}, 413, "larger than"),
    ({"json": {"ids": ["abc"]}, "headers": {**JSON, "Origin": "http://evil.example"}},
     403, "another site"),
])
async def test_hostile_changes_are_refused(bridge: Bridge, kw: dict[str, Any], status: int,
                                           said: str) -> None:
    got, body = await api(bridge, "POST", "/admin/api/messages/cancel", **kw)
    assert got == status and said in body["error"]


async def test_a_session_must_send_its_csrf_token(bridge: Bridge) -> None:
    waiting = await scheduled_message(bridge, "+447400123405")
    async with browser() as client:
        csrf = await logged_in(bridge, client)
        for headers in (JSON, {**JSON, "X-CSRF-Token": "forged"}):
            status, body = await api(bridge, "POST", "/admin/api/messages/cancel", auth=None,
                                     client=client, headers=headers, json={"ids": [waiting]})
            assert status == 403 and "X-CSRF-Token" in body["error"]
        assert await state_of(bridge, waiting) is MessageState.SCHEDULED
        status, body = await api(bridge, "POST", "/admin/api/messages/cancel", auth=None,
                                 client=client, headers={**JSON, "X-CSRF-Token": csrf},
                                 json={"ids": [waiting]})
        assert status == 200 and body["results"][0]["done"]


async def test_accounts_and_credit(bridge: Bridge) -> None:
    status, body = await api(bridge, "GET", "/admin/api/accounts")
    rows = {a["name"]: a for a in body["accounts"]}
    assert rows["demo"]["left"] is None and rows["metered"]["left"] == 10
    status, row = await api(bridge, "POST", "/admin/api/accounts/metered/credit", headers=JSON,
                            json={"change": "+5"})
    assert status == 200 and (row["credit"], row["left"], row["refused"]) == (5, 15, None)
    status, row = await api(bridge, "POST", "/admin/api/accounts/demo/credit", headers=JSON,
                            json={"change": 5})
    assert status == 409 and "unlimited" in row["refused"]
    for change, said in (("5", "+N or -N"), ("+0", "+N or -N"), ("-99", "at most -15")):
        status, body = await api(bridge, "POST", "/admin/api/accounts/metered/credit",
                                 headers=JSON, json={"change": change})
        assert status in (400, 409) and said in (body.get("error") or body.get("refused")), body
    status, body = await api(bridge, "POST", "/admin/api/accounts/nobody/credit", headers=JSON,
                             json={"change": "+1"})
    assert status == 400 and "no account" in body["error"]
    status, body = await api(bridge, "GET", "/admin/api/accounts/metered")
    assert [(h["change"], h["actor"]) for h in body["history"]] == [(5, "admin:ops")]
    # SOAP GetAccount shows it to the account itself
    envelope = ('<e:Envelope xmlns:e="http://schemas.xmlsoap.org/soap/envelope/" '
                'xmlns:t="urn:sms-bridge:v1"><e:Body><t:GetAccount/></e:Body></e:Envelope>')
    async with aiohttp.ClientSession() as client:
        async with client.post(f"http://127.0.0.1:{bridge.soap_port}/soap", data=envelope,
                               auth=aiohttp.BasicAuth("metered", "metered-pw"),
                               headers={"Content-Type": "text/xml; charset=utf-8"}) as r:
            answer = await r.text()
    assert "<tns:quota_left>15</tns:quota_left>" in answer
    assert "<tns:credit>5</tns:credit>" in answer


async def test_without_admin_users_the_page_says_how_to_add_one(tmp_path: Path) -> None:
    async with running_bridge(make_config(tmp_path)) as other:
        async with aiohttp.ClientSession() as client:
            async with client.get(base(other) + "/") as r:
                assert r.status == 404 and "sms-bridge passwd" in await r.text()
        status, body = await api(other, "GET", "/admin/api/status")
        assert status == 404 and "not configured" in body["error"]
