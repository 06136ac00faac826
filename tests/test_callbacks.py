"""SendSms callback_url end to end: zeep against the real bridge, the simulator delivers, and a
real HTTP receiver on loopback gets the POST; receivers that fail, hang, redirect or are not
there at all; a restart in the middle; callbacks turned off."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import zeep
from aiohttp import web

from bridge.runtime.app import Bridge
from bridge.core.callbacks import SIGNATURE_HEADER, TIMESTAMP_HEADER
from bridge.config import Config
from tests.conftest import (DEMO_PASSWORD, at_least, closed_port, make_config, running_bridge,
                            timeline_until)
from tests.soap import NUMBER, call, client, fault_info

FAST = {"callback_retry_base_s": 0.05, "callback_retry_max_s": 0.2, "callback_timeout_s": 0.5}


@dataclass
class Receiver:
    """An HTTP receiver on 127.0.0.1:0 that answers its POSTs with `script`, in turn (an int
    status, "hang" for no answer in time, or "redirect"), then 200."""

    script: list[Any] = field(default_factory=list)
    posts: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)
    raw: list[tuple[dict[str, str], bytes]] = field(default_factory=list)  # headers, body
    port: int = 0
    got: asyncio.Event = field(default_factory=asyncio.Event)

    def url(self, path: str = "/dlr?token=s3cret") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.raw.append((dict(request.headers), await request.read()))
        self.posts.append((request.path_qs, request.content_type, await request.json()))
        self.got.set()
        action = self.script.pop(0) if self.script else 200
        if action == "hang":
            await asyncio.sleep(5)
            return web.Response(status=200)
        if action == "redirect":
            raise web.HTTPFound(self.url("/elsewhere"))
        return web.Response(status=int(action))


@asynccontextmanager
async def receiver(script: list[Any] | None = None) -> AsyncIterator[Receiver]:
    rec = Receiver(list(script or []))
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", rec.handle)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    assert site._server is not None
    rec.port = site._server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
    try:
        yield rec
    finally:
        await runner.cleanup()


def callback_config(tmp_path: Path, **soap: Any) -> Config:
    return make_config(tmp_path, soap={**FAST, **soap})


async def send(bridge: Bridge, url: str, **kw: Any) -> str:
    c = await client(bridge.soap_port, "1.1")
    [sub] = await call(c, "SendSms", recipients=[NUMBER], text="with a callback",
                       callback_url=url, **kw)
    assert sub.status == "accepted", sub
    return str(sub.message_id)



async def metrics(bridge: Bridge) -> str:
    async with aiohttp.ClientSession() as session:
        async with session.get(f"http://127.0.0.1:{bridge.soap_port}/metrics") as response:
            return await response.text()


async def test_delivered_message_is_posted_to_its_callback(tmp_path: Path) -> None:
    async with receiver() as rec, running_bridge(callback_config(tmp_path)) as bridge:
        message_id = await send(bridge, rec.url(), reference="order-1")
        await at_least(rec.posts, 1)
        path, content_type, document = rec.posts[0]
        assert (path, content_type) == ("/dlr?token=s3cret", "application/json")
        assert {k: document[k] for k in ("message_id", "reference", "recipient", "state",
                                         "parts", "parts_delivered", "error", "code",
                                         "attempt")} == {
            "message_id": message_id, "reference": "order-1", "recipient": NUMBER,
            "state": "delivered", "parts": 1, "parts_delivered": 1, "error": None,
            "code": None, "attempt": 1}
        assert document["at"].endswith("Z")
        assert SIGNATURE_HEADER not in rec.raw[0][0]  # no callback_secret: not signed
        events = await timeline_until(bridge, message_id, "callback")
        assert [e[0] for e in events][-2:] == ["delivered", "callback"]
        assert events[-1][1] == (f"POST http://127.0.0.1:{rec.port}/dlr: HTTP 200 "
                                 f"(attempt 1 of 10)")
        assert "s3cret" not in " ".join(d for _, d in events)  # the query stays out of logs
        assert 'sms_bridge_callbacks_total{outcome="delivered"} 1.0' in await metrics(bridge)
        await asyncio.sleep(0.3)
        assert len(rec.posts) == 1  # once delivered, never again


async def test_failing_hanging_and_redirecting_receivers_are_retried(tmp_path: Path) -> None:
    async with receiver(["redirect", "hang", 500, 200]) as rec, \
            running_bridge(callback_config(tmp_path)) as bridge:
        message_id = await send(bridge, rec.url())
        events = await timeline_until(bridge, message_id, "callback")
        assert [document["attempt"] for _, _, document in rec.posts] == [1, 2, 3, 4]
        assert {path for path, _, _ in rec.posts} == {"/dlr?token=s3cret"}  # never followed
        tried = [detail for state, detail in events if state.startswith("callback")]
        assert [d.split(": ", 1)[1].split(" (")[0] for d in tried] == [
            "HTTP 302", "no answer in time", "HTTP 500", "HTTP 200"]
        assert all(d.endswith("next in 0.05 s") or d.endswith("next in 0.1 s")
                   or d.endswith("next in 0.2 s") for d in tried[:3]), tried
        text = await metrics(bridge)
        assert 'sms_bridge_callbacks_total{outcome="retry"} 3.0' in text
        assert 'sms_bridge_callbacks_total{outcome="delivered"} 1.0' in text


async def test_an_absent_receiver_is_given_up_after_the_last_attempt(tmp_path: Path) -> None:
    port = closed_port()
    config = callback_config(tmp_path, callback_max_attempts=3)
    async with running_bridge(config) as bridge:
        message_id = await send(bridge, f"http://user:pw@127.0.0.1:{port}/dlr")
        events = await timeline_until(bridge, message_id, "callback_failed")
        tried = [(state, detail) for state, detail in events if state.startswith("callback")]
        assert [state for state, _ in tried] == ["callback_retry", "callback_retry",
                                                 "callback_failed"]
        assert tried[-1][1].startswith(f"POST http://127.0.0.1:{port}/dlr: cannot connect")
        assert tried[-1][1].endswith("(attempt 3 of 3)")
        assert "pw@" not in " ".join(d for _, d in tried)
        assert (await bridge.store.get_messages([message_id]))[0].state.value == "delivered"


async def test_a_callback_survives_a_restart(tmp_path: Path) -> None:
    """The first bridge stops while the receiver keeps the POST hanging; the second, on the
    same database, sends it again."""
    config = callback_config(tmp_path, callback_timeout_s=0.3, callback_retry_base_s=0.2,
                             callback_retry_max_s=0.2)
    async with receiver(["hang"]) as rec:
        async with running_bridge(config) as bridge:
            message_id = await send(bridge, rec.url())
            await asyncio.wait_for(rec.got.wait(), 10)
        assert len(rec.posts) == 1
        async with running_bridge(config) as bridge:
            await at_least(rec.posts, 2)
            events = await timeline_until(bridge, message_id, "callback")
        assert [document["message_id"] for _, _, document in rec.posts] == [message_id] * 2
        assert events[-1][0] == "callback"


async def test_callbacks_turned_off_refuse_a_callback_url(tmp_path: Path) -> None:
    async with running_bridge(callback_config(tmp_path, callbacks=False)) as bridge:
        c = await client(bridge.soap_port, "1.1")
        with pytest.raises(zeep.exceptions.Fault) as caught:
            await call(c, "SendSms", recipients=[NUMBER], text="x",
                       callback_url="http://127.0.0.1:9/dlr")
        assert fault_info(caught.value) == ("INVALID_DLR", 1708)
        assert "turned off" in str(caught.value.message)
        [sub] = await call(c, "SendSms", recipients=[NUMBER], text="without one")
        assert sub.status == "accepted"


@pytest.mark.parametrize("url", ["http://127.0.0.1:9/a b", "http://127.0.0.1:9/x#frag",
                                 "http:///nohost", "gopher://127.0.0.1/x"])
async def test_a_malformed_callback_url_is_refused_before_anything_is_stored(
        tmp_path: Path, url: str) -> None:
    async with running_bridge(callback_config(tmp_path)) as bridge:
        c = await client(bridge.soap_port, "1.1")
        with pytest.raises(zeep.exceptions.Fault) as caught:
            await call(c, "SendSms", recipients=[NUMBER], text="x", callback_url=url)
        assert fault_info(caught.value) == ("INVALID_DLR", 1708)
        total, _ = await bridge.store.list_messages("demo", offset=0, limit=10)
        assert total == 0


async def test_an_account_posts_only_to_its_callback_hosts(tmp_path: Path) -> None:
    config = make_config(tmp_path, soap=FAST, account=[{
        "name": "demo", "password": DEMO_PASSWORD, "default_sender": "ACME",
        "callback_hosts": ["127.0.0.1"]}])
    async with receiver() as rec, running_bridge(config) as bridge:
        c = await client(bridge.soap_port, "1.1")
        with pytest.raises(zeep.exceptions.Fault) as caught:
            await call(c, "SendSms", recipients=[NUMBER], text="x",
                       callback_url=f"http://localhost:{rec.port}/dlr")
        assert fault_info(caught.value) == ("INVALID_DLR", 1708)
        assert "not one this account may use" in str(caught.value.message)
        message_id = await send(bridge, rec.url())
        await at_least(rec.posts, 1)
        assert rec.posts[0][2]["message_id"] == message_id


async def test_an_account_with_a_callback_secret_signs_every_attempt(tmp_path: Path) -> None:
    secret = "whsec-0123456789abcdef"
    config = make_config(tmp_path, soap=FAST, account=[{
        "name": "demo", "password": DEMO_PASSWORD, "default_sender": "ACME",
        "callback_secret": secret}])
    async with receiver([500]) as rec, running_bridge(config) as bridge:
        await send(bridge, rec.url())
        await at_least(rec.posts, 2)  # the 500, then the retry
        for headers, body in rec.raw:
            timestamp = headers[TIMESTAMP_HEADER]
            assert abs(int(timestamp) - time.time()) < 60
            expected = hmac.new(secret.encode(), timestamp.encode() + b"." + body,
                                hashlib.sha256).hexdigest()
            assert headers[SIGNATURE_HEADER] == f"v1={expected}"
        assert [b'"attempt":1' in body for _, body in rec.raw] == [True, False]
