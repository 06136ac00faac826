"""Helpers for the SOAP tests: zeep clients built from the served WSDL, fault decoding, raw
envelopes. zeep is synchronous, so calls run in a thread while the bridge serves on the loop."""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import requests
import zeep
from zeep.transports import Transport

from tests.conftest import DEMO_PASSWORD

TNS = "urn:sms-bridge:v1"
ENV11 = "http://schemas.xmlsoap.org/soap/envelope/"
ENV12 = "http://www.w3.org/2003/05/soap-envelope"
CT11 = "text/xml; charset=utf-8"
CT12 = "application/soap+xml; charset=utf-8"
VERSIONS = ("1.1", "1.2")

# Numbers libphonenumber calls valid UK mobiles (07400 …).
NUMBER = "+447400123456"


def number(i: int) -> str:
    return f"+4474001{i:05d}"


def basic(user: str = "demo", password: str = DEMO_PASSWORD) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def wsdl_url(port: int, version: str, scheme: str = "http") -> str:
    return f"{scheme}://127.0.0.1:{port}/soap{'12' if version == '1.2' else ''}?wsdl"


def make_client(port: int, version: str, *, auth: tuple[str, str] | None = ("demo", DEMO_PASSWORD),
                wsse: Any = None, scheme: str = "http", verify: str | None = None) -> zeep.Client:
    session = requests.Session()
    session.trust_env = False  # loopback only: no proxy or CA bundle from the environment
    if auth is not None:
        session.auth = auth
    if verify is not None:
        session.verify = verify
    return zeep.Client(wsdl_url(port, version, scheme), wsse=wsse,
                       transport=Transport(session=session, timeout=10, operation_timeout=10))


async def client(port: int, version: str, **kw: Any) -> zeep.Client:
    return await asyncio.to_thread(make_client, port, version, **kw)


async def call(c: zeep.Client, operation: str, **kw: Any) -> Any:
    return await asyncio.to_thread(getattr(c.service, operation), **kw)


def fault_info(exc: zeep.exceptions.Fault) -> tuple[str, int]:
    """(§5 name, numeric code) from the fault's detail element."""
    assert exc.detail is not None, exc
    error = exc.detail.find(f"{{{TNS}}}error")
    assert error is not None
    return error.findtext(f"{{{TNS}}}name") or "", int(error.findtext(f"{{{TNS}}}code") or 0)


def fault_code(exc: zeep.exceptions.Fault, version: str) -> str:
    """`Client.NAME` / `Server.NAME` for 1.1; `Sender.NAME` / `Receiver.NAME` for 1.2."""
    if version == "1.1":
        return str(exc.code).split(":", 1)[1]
    return f"{str(exc.code).split(':', 1)[1]}.{exc.subcodes[0].localname}"


def envelope(body: str, version: str = "1.1", header: str = "") -> bytes:
    env = ENV11 if version == "1.1" else ENV12
    head = f"<e:Header>{header}</e:Header>" if header else ""
    return (f'<?xml version="1.0" encoding="UTF-8"?><e:Envelope xmlns:e="{env}" '
            f'xmlns:t="{TNS}">{head}<e:Body>{body}</e:Body></e:Envelope>').encode()


def content_type(version: str) -> str:
    return CT11 if version == "1.1" else CT12
