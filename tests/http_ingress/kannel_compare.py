"""Kannel 1.4.5 and the bridge side by side: the same sendsms requests to both, the answers
(status line and body) and the dlr-url requests each makes for a delivered and a failed
message, diffed with ids and times masked.

    python -m tests.http_ingress.kannel_compare    # prints the comparison; 1 on a difference

Each side has an SMSC simulator of its own with the same settings (`sms-bridge simulator`
for Kannel's bearerbox, the embedded one for the bridge), every second receipt UNDELIV, so the
first message with a dlr-url is delivered and the second fails on both. Kannel runs as
bearerbox + smsbox on loopback ports, from a config written here; the bridge runs in this
process. Needs Kannel's `bearerbox` and `smsbox` on PATH (Debian: apt-get install kannel).

Some requests Kannel takes where SPEC §5 refuses them (no text, a number no handset has, a
text over the part limit, a sender no SMSC takes, text that is not UTF-8): for those the
bridge must answer in Kannel's own refusal form, a 4xx whose body ends ", rejected" or Kannel's
words for a number it refuses; they are listed apart, with both answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import aiohttp
from aiohttp import web

from bridge.bench.kannel import free_port, installed, kannel as run_kannel, process, wait_port

USER, PASSWORD = "demo", "demo-password"
#: Every %-escape Kannel knows, and three it does not.
ESCAPES = "&".join(f"{c}=%{c}" for c in "aAbBcCdDfFiIkmMnoOpPqQrsStTuxz%")
KANNEL_DENIED = "Number(s) has/have been denied by white- and/or black-lists."


@dataclass(frozen=True)
class Case:
    name: str
    params: dict[str, str]
    #: Why the bridge refuses what Kannel takes (then only the form of its refusal is held
    #: to Kannel's); None: the answers must be the same.
    refused_by_design: str | None = None
    post: dict[str, str] | None = None  # POST: headers; the "text" param is the body


def _sent(**params: str) -> dict[str, str]:
    return {"username": USER, "password": PASSWORD, **params}


CASES: tuple[Case, ...] = (
    Case("accepted", _sent(to="447400123456", text="hello", **{"from": "ACME"})),
    Case("two receivers", _sent(to="447400123456 447400123457", text="two", **{"from": "ACME"})),
    Case("user and pass", {"user": USER, "pass": PASSWORD, "to": "447400123456", "text": "a",
                           "from": "ACME"}),
    Case("missing to", _sent(text="x", **{"from": "ACME"})),
    Case("empty to", _sent(to="", text="x", **{"from": "ACME"})),
    Case("letters for a number", _sent(to="abc", text="x", **{"from": "ACME"})),
    Case("bad credentials", {"username": USER, "password": "wrong", "to": "447400123456",
                             "text": "x"}),
    Case("no username", {"password": PASSWORD, "to": "447400123456", "text": "x"}),
    Case("missing from", _sent(to="447400123456", text="x")),
    Case("bad coding", _sent(to="447400123456", text="x", coding="9", **{"from": "ACME"})),
    Case("coding -1", _sent(to="447400123456", text="x", coding="-1", **{"from": "ACME"})),
    Case("bad mclass", _sent(to="447400123456", text="x", mclass="7", **{"from": "ACME"})),
    Case("bad validity", _sent(to="447400123456", text="x", validity="-5", **{"from": "ACME"})),
    Case("validity 60", _sent(to="447400123456", text="x", validity="60", **{"from": "ACME"})),
    Case("bad priority", _sent(to="447400123456", text="x", priority="9", **{"from": "ACME"})),
    Case("bad charset", _sent(to="447400123456", text="x", charset="xyz", **{"from": "ACME"})),
    Case("bad dlr-mask", _sent(to="447400123456", text="x", **{"from": "ACME",
                                                                "dlr-mask": "300"})),
    Case("dlr-mask not a number", _sent(to="447400123456", text="x", **{
        "from": "ACME", "dlr-mask": "abc"})),
    Case("dlr-url not a URL", _sent(to="447400123456", text="x", **{
        "from": "ACME", "dlr-mask": "1", "dlr-url": "notaurl"})),
    Case("unroutable", _sent(to="+33612345678", text="x", **{"from": "ACME"})),
    Case("UTF-8 without coding", _sent(to="447400123456", text="Grüße ☺", **{"from": "ACME"})),
    Case("UCS-2 from UTF-8", _sent(to="447400123456", text="Ω", coding="2", charset="UTF-8",
                                   **{"from": "ACME"})),
    Case("8-bit", _sent(to="447400123456", text="\x01\x02", coding="1", **{"from": "ACME"})),
    Case("flash", _sent(to="447400123456", text="x", mclass="0", **{"from": "ACME"})),
    Case("deferred", _sent(to="447400123456", text="later", deferred="1", **{"from": "ACME"})),
    Case("a bad %-escape", _sent(to="447400123456", text="50%ZZ", **{"from": "ACME"})),
    Case("POST, credentials in the query", {"username": USER, "password": PASSWORD,
                                            "text": "posted"},
         post={"Content-Type": "text/plain", "X-Kannel-To": "447400123456",
               "X-Kannel-From": "ACME"}),
    Case("POST with X-Kannel headers", {"text": "posted ☺"},
         post={"Content-Type": "text/plain; charset=UTF-8", "X-Kannel-Username": USER,
               "X-Kannel-Password": PASSWORD, "X-Kannel-To": "447400123456",
               "X-Kannel-From": "ACME", "X-Kannel-Coding": "2"}),
    Case("POST a form", _sent(to="447400123456", text="form", **{"from": "ACME"}),
         post={"Content-Type": "application/x-www-form-urlencoded"}),
    Case("no text", _sent(to="447400123456", **{"from": "ACME"}),
         refused_by_design="an empty SMS (SPEC §5 INVALID_MESSAGE)"),
    Case("empty text", _sent(to="447400123456", text="", **{"from": "ACME"}),
         refused_by_design="an empty SMS (SPEC §5 INVALID_MESSAGE)"),
    Case("undialable number", _sent(to="123", text="x", **{"from": "ACME"}),
         refused_by_design="a number no handset has (SPEC §5 INVALID_DESTINATION)"),
    Case("too long", _sent(to="447400123456", text="x" * 2000, **{"from": "ACME"}),
         refused_by_design="more parts than max_parts (SPEC §5 INVALID_MESSAGE)"),
    Case("sender over 11 letters", _sent(to="447400123456", text="x", **{
        "from": "VERYLONGSENDER1"}),
         refused_by_design="a sender no SMSC takes (SPEC §5 INVALID_SOURCE)"),
    Case("not UTF-8", {**_sent(to="447400123456", **{"from": "ACME"}), "text": "\udcc3("},
         refused_by_design="text that is not in its charset (SPEC §5 INVALID_MESSAGE)"),
)


def _query(params: dict[str, str]) -> str:
    """%-encoded as a client would, octets kept (a lone surrogate stands for one octet)."""
    return "&".join(f"{quote(k, safe='')}="
                    f"{quote(v.encode('utf-8', 'surrogateescape'), safe='')}"
                    for k, v in params.items())


# ------------------------------------------------------------------ masking

_MASKS = (
    (re.compile(r"\b(id(?:%3A|:))[0-9A-Fa-f]+"), r"\1<id>"),
    (re.compile(r"\b(date(?:%3A|:))\d{10,12}"), r"\1<time>"),
)
_MASKED_FIELDS = {"F": "<id>", "I": "<id>", "t": "<time>", "T": "<time>"}


def mask(query: str) -> str:
    """A dlr-url query with its ids (%F, %I, the receipt's id:) and times (%t, %T, the
    receipt's dates) replaced by placeholders; everything else as it came."""
    pairs = []
    for pair in query.split("&"):
        name, eq, value = pair.partition("=")
        if name in _MASKED_FIELDS and value:
            value = _MASKED_FIELDS[name]
        for pattern, replacement in _MASKS:
            value = pattern.sub(replacement, value)
        pairs.append(f"{name}{eq}{value}")
    return "&".join(pairs)


# ------------------------------------------------------------------ the two gateways

SIMULATOR = ("--fail-receipt-every", "2", "--receipt-delay", "0.05")


@contextlib.asynccontextmanager
async def kannel(directory: Path) -> AsyncIterator[int]:
    """Kannel (bearerbox, smsbox) bound to a simulator of its own (`sms-bridge simulator`);
    yields the sendsms port."""
    smsc = free_port()
    async with process(sys.executable, "-m", "bridge", "simulator", "--port", str(smsc),
                       *SIMULATOR):
        await wait_port(smsc)
        async with run_kannel(directory, smsc_port=smsc, user=USER, password=PASSWORD,
                              window=10, allowed_prefix="44;+44;0044") as peer:
            yield peer.sendsms_port


@contextlib.asynccontextmanager
async def bridge(directory: Path) -> AsyncIterator[int]:
    """The bridge, its embedded simulator set like Kannel's; yields the HTTP port."""
    from bridge.config import parse_config
    from bridge.runtime.app import Bridge

    sim = free_port()
    config = parse_config({
        "smtp": {"listen": "127.0.0.1:0"}, "soap": {"listen": "127.0.0.1:0"},
        "http": {"report_retry_base_s": 0.1},
        "store": {"url": f"sqlite:///{directory / 'bridge.db'}"},
        "simulator": {"enabled": True, "port": sim, "fail_receipt_every": 2,
                      "receipt_delay_s": 0.05},
        "smsc": [{"name": "sim", "host": "127.0.0.1", "port": sim, "system_id": "bridge",
                  "password": "secret", "prefixes": ["+44"]}],
        "account": [{"name": USER, "password": PASSWORD, "rate_per_s": 1000}],
    }, base_dir=directory)
    gateway = Bridge(config)
    await gateway.start()
    try:
        await gateway.wait_bound(10.0)
        yield gateway.http_port
    finally:
        await gateway.stop()


# ------------------------------------------------------------------ comparing

@dataclass
class DlrReceiver:
    """dlr-url requests by the side that made them ("kannel" or "bridge")."""

    hits: dict[str, list[tuple[str, str]]] = field(default_factory=lambda: {"kannel": [],
                                                                            "bridge": []})
    port: int = 0

    async def handle(self, request: web.Request) -> web.Response:
        side = request.path.strip("/")
        self.hits.setdefault(side, []).append((request.method,
                                               request.raw_path.partition("?")[2]))
        return web.Response(text="ok")

    async def wait(self, n: int, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while any(len(h) < n for h in self.hits.values()) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def dlr_receiver() -> AsyncIterator[DlrReceiver]:
    rec = DlrReceiver()
    app = web.Application()
    app.router.add_route("*", "/{side}", rec.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    assert site._server is not None
    rec.port = site._server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
    try:
        yield rec
    finally:
        await runner.cleanup()


async def _ask(http: aiohttp.ClientSession, port: int, case: Case) -> tuple[int, str]:
    base = f"http://127.0.0.1:{port}/cgi-bin/sendsms"
    if case.post is None:
        async with http.get(f"{base}?{_query(case.params)}") as response:
            return response.status, await response.text()
    params = dict(case.params)
    body = params.pop("text", "")
    if case.post.get("Content-Type", "").startswith("application/x-www-form"):
        async with http.post(base, data=urlencode({**params, "text": body}),
                             headers=case.post) as response:
            return response.status, await response.text()
    async with http.post(f"{base}?{_query(params)}", data=body.encode(),
                         headers=case.post) as response:
        return response.status, await response.text()


def _kannel_form(status: int, body: str) -> bool:
    return 400 <= status < 500 and (body.endswith(", rejected") or body == KANNEL_DENIED)


async def compare() -> dict[str, Any]:
    """Run both gateways and compare; the result lists every case and dlr-url request."""
    with tempfile.TemporaryDirectory(prefix="kannel-compare-") as tmp:
        directory = Path(tmp)
        (directory / "bridge").mkdir()
        async with dlr_receiver() as rec, kannel(directory) as kannel_port, \
                bridge(directory / "bridge") as bridge_port, aiohttp.ClientSession() as http:
            ports = {"kannel": kannel_port, "bridge": bridge_port}
            dlrs = await _dlr_round(http, ports, rec)
            answers = []
            for case in CASES:
                got = {side: await _ask(http, port, case) for side, port in ports.items()}
                same = got["kannel"] == got["bridge"]
                ok = same if case.refused_by_design is None else \
                    _kannel_form(*got["bridge"])
                answers.append({"case": case.name, "kannel": got["kannel"],
                                "bridge": got["bridge"], "same": same, "ok": ok,
                                "refused_by_design": case.refused_by_design})
    return {"answers": answers, "dlr": dlrs,
            "differences": sum(not a["ok"] for a in answers) + sum(not d["same"]
                                                                     for d in dlrs)}


async def _dlr_round(http: aiohttp.ClientSession, ports: dict[str, int],
                     rec: DlrReceiver) -> list[dict[str, Any]]:
    """One delivered and one failed message with dlr-mask 31 on each side; their dlr-url
    requests (SMSC accepted, then the receipt), masked, side by side."""
    for n, (to, text) in enumerate((("447400123456", "first msg"),
                                    ("447400123457", "second msg"))):
        for side, port in ports.items():
            case = Case("dlr", _sent(to=to, text=text, **{
                "from": "ACME", "dlr-mask": "31",
                "dlr-url": f"http://127.0.0.1:{rec.port}/{side}?{ESCAPES}"}))
            status, _ = await _ask(http, port, case)
            assert status == 202, (side, status)
        await rec.wait(2 * (n + 1))  # the receipt of one before the next is sent
    out = []
    for (k_method, k_query), (b_method, b_query) in zip(rec.hits["kannel"],
                                                        rec.hits["bridge"]):
        kannel_side, bridge_side = f"{k_method} {mask(k_query)}", f"{b_method} {mask(b_query)}"
        out.append({"kannel": kannel_side, "bridge": bridge_side,
                    "same": kannel_side == bridge_side})
    if len(rec.hits["kannel"]) != len(rec.hits["bridge"]):
        out.append({"kannel": f"{len(rec.hits['kannel'])} requests",
                    "bridge": f"{len(rec.hits['bridge'])} requests", "same": False})
    return out


def render(result: dict[str, Any]) -> str:
    lines = ["sendsms answers (status, body): Kannel 1.4.5 | the bridge"]
    for a in result["answers"]:
        mark = "same" if a["same"] else ("refused by design" if a["ok"] else "DIFFERENT")
        lines.append(f"  [{mark}] {a['case']}: {a['kannel'][0]} {a['kannel'][1]!r}"
                     + ("" if a["same"] else f" | {a['bridge'][0]} {a['bridge'][1]!r}"
                        + (f" ({a['refused_by_design']})" if a["refused_by_design"] else "")))
    lines.append("dlr-url requests, ids and times masked (delivered message, then failed):")
    for d in result["dlr"]:
        lines.append(f"  [{'same' if d['same'] else 'DIFFERENT'}] kannel: {d['kannel']}")
        if not d["same"]:
            lines.append(f"  {'':>6} bridge: {d['bridge']}")
    lines.append(f"differences: {result['differences']}")
    return "\n".join(lines)


def kannel_installed() -> bool:
    return installed()


def main(argv: Sequence[str] | None = None) -> int:
    if not kannel_installed():
        print("Kannel (bearerbox, smsbox) is not installed", file=sys.stderr)
        return 2
    os.environ.setdefault("PYTHONPATH", str(Path(__file__).resolve().parents[2]))
    result = asyncio.run(compare())
    print(render(result))
    return 1 if result["differences"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
