"""Helpers for the HTTP dialect tests: a bridge with a hashed password and an API token, real
HTTP clients (aiohttp, urllib), and a real receiver on loopback for dlr-url, callbackUrl,
dlr_url and mo_url that records every request and answers as told."""

from __future__ import annotations

import asyncio
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import aiohttp
from aiohttp import web

from bridge.config import Config
from bridge.intake.credentials import hash_password
from tests.conftest import make_config

PASSWORD = "s3cret-pw"
TOKEN = "tok-0123456789abcdef"
#: Numbers libphonenumber calls valid UK mobiles (07400 …).
NUMBER = "+447400123456"
FAST_REPORTS = {"report_retry_base_s": 0.05, "report_retry_max_s": 0.2, "report_timeout_s": 1.0}


def number(i: int) -> str:
    return f"+4474001{i:05d}"


def http_config(tmp_path: Path, *, account: dict[str, Any] | None = None,
                **sections: Any) -> Config:
    """The test bridge, with account "acme": a hashed password, an API token, senders ACME
    and +447400000001, any extra keys in `account` (None leaves a key out)."""
    acct = {"name": "acme", "password_hash": hash_password(PASSWORD, iterations=1000),
            "api_tokens": [hash_password(TOKEN, iterations=1000)],
            "senders": ["ACME", "+447400000001"], "default_sender": "ACME",
            "rate_per_s": 10_000, **(account or {})}
    http = {**FAST_REPORTS, **sections.pop("http", {})}
    acct = {key: value for key, value in acct.items() if value is not None}
    return make_config(tmp_path, account=[acct], http=http, **sections)


async def get(port: int, path: str, **kw: Any) -> tuple[int, str, dict[str, str]]:
    async with aiohttp.ClientSession() as session:
        async with session.get(f"http://127.0.0.1:{port}{path}", **kw) as response:
            return response.status, await response.text(), dict(response.headers)


async def post(port: int, path: str, **kw: Any) -> tuple[int, str, dict[str, str]]:
    async with aiohttp.ClientSession() as session:
        async with session.post(f"http://127.0.0.1:{port}{path}", **kw) as response:
            return response.status, await response.text(), dict(response.headers)


def urlopen(url: str, data: bytes | None = None,
            headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    """The standard library's client (a second, unrelated HTTP stack), in a thread."""
    request = urllib.request.Request(url, data=data, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


async def stdlib_get(url: str, **kw: Any) -> tuple[int, bytes]:
    return await asyncio.to_thread(urlopen, url, **kw)


@dataclass
class Hit:
    method: str
    path: str
    query: list[tuple[str, str]]
    headers: dict[str, str]
    body: bytes

    @property
    def fields(self) -> dict[str, str]:
        """The query's and a form body's fields."""
        form = parse_qsl(self.body.decode(), keep_blank_values=True) \
            if self.headers.get("Content-Type", "").startswith(
                "application/x-www-form-urlencoded") else []
        return dict(self.query + form)


@dataclass
class Receiver:
    """A receiver on 127.0.0.1:0: `script` answers in turn (a status, or (status, body)),
    then 200 with `default_body`."""

    script: list[Any] = field(default_factory=list)
    default_body: str = "ok"
    hits: list[Hit] = field(default_factory=list)
    port: int = 0

    def url(self, path: str = "/dlr") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    async def handle(self, request: web.Request) -> web.StreamResponse:
        raw_query = request.raw_path.partition("?")[2]
        self.hits.append(Hit(request.method, request.path, parse_qsl(raw_query,
                                                                     keep_blank_values=True),
                             dict(request.headers), await request.read()))
        action = self.script.pop(0) if self.script else (200, self.default_body)
        status, body = action if isinstance(action, tuple) else (action, "")
        return web.Response(status=status, text=body)

    async def wait(self, n: int, timeout: float = 10.0) -> list[Hit]:
        deadline = asyncio.get_running_loop().time() + timeout
        while len(self.hits) < n and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.02)
        assert len(self.hits) >= n, self.hits
        return self.hits


@asynccontextmanager
async def receiver(script: list[Any] | None = None,
                   default_body: str = "ok") -> AsyncIterator[Receiver]:
    rec = Receiver(list(script or []), default_body)
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


def query(url: str) -> dict[str, str]:
    return dict(parse_qsl(urlsplit(url).query, keep_blank_values=True))


#: The last digits of a number the refusing SMSC answers with ESME_RINVDSTADR.
REFUSED_SUFFIX = "99"


def refusing_simulator() -> Any:
    """An SMSC simulator (loopback, port 0, receipts after 10 ms) that answers a submit_sm to
    a number ending in REFUSED_SUFFIX with ESME_RINVDSTADR (0x0B), as a strict SMSC does."""
    from bridge.simulator import pdu as P
    from bridge.simulator.misbehaving import default_config
    from bridge.simulator.server import SmscSimulator

    class Refusing(SmscSimulator):
        def _decode_submit(self, session: Any, seq: int, body: bytes,
                           message_id: str) -> Any:
            submit = super()._decode_submit(session, seq, body, message_id)
            if submit.destination.endswith(REFUSED_SUFFIX):
                raise P.PduError("no such subscriber", P.ESME_RINVDSTADR)
            return submit

    return Refusing(default_config())


def with_smsc(port: int, **smsc: Any) -> dict[str, Any]:
    """Config sections for a bridge bound to an SMSC simulator of the test's own."""
    return {"simulator": {"enabled": False},
            "smsc": [{"name": "sim", "host": "127.0.0.1", "port": port, "system_id": "bridge",
                      "password": "secret", "id_format": "hex", **smsc}]}
