"""What the HTTP dialects share: reading parameters the way a strict server must (the raw query
and form body, %-escapes checked, repeated names seen, sizes bounded), and handing a request to
the Service so that every dialect counts and logs alike.

Parameters stay bytes until a dialect says how to read them: Kannel reads `text` in the
charset its request names, the others as UTF-8; each dialect turns a problem into its own
answer.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from urllib.parse import unquote_to_bytes

from aiohttp import web

from bridge.core.errors import BridgeError, ErrorName
from bridge.ingress.listener import TooLarge, read_body
from bridge.core.model import Ingress
from bridge.intake.service import RecipientResult, Service, SubmitRequest, report_results
from bridge.metrics import Metrics

log = logging.getLogger("bridge.http")

FORM = "application/x-www-form-urlencoded"


class BadInput(Exception):
    """A parameter cannot be read: a bad %-escape, text that is not in its charset, a name
    given twice where one value is meant. `name` is the parameter; `charset`: the value was
    read but is not text in its charset (a dialect may call that the field's own error)."""

    def __init__(self, name: str, reason: str, *, charset: bool = False) -> None:
        super().__init__(f"{name}: {reason}")
        self.name = name
        self.reason = reason
        self.charset = charset


_BAD_ESCAPE = re.compile(rb"%(?![0-9A-Fa-f]{2})")


def _unquote(data: bytes, name: str, *, strict: bool) -> bytes:
    """`+` as a space and %XX as its octet; a `%` not followed by two hex digits is a
    BadInput when `strict`, else kept as it is (Kannel's way, and unquote_to_bytes's)."""
    data = data.replace(b"+", b" ")
    if b"%" not in data:
        return data
    if strict and _BAD_ESCAPE.search(data):
        raise BadInput(name, "a % not followed by two hex digits")
    return unquote_to_bytes(data)


def parse_urlencoded(data: bytes, *, strict: bool = True) -> list[tuple[str, bytes]]:
    """`a=1&b=2` → [("a", b"1"), ("b", b"2")], in order, repeats kept."""
    out: list[tuple[str, bytes]] = []
    for pair in data.split(b"&"):
        if not pair:
            continue
        raw_name, _, raw_value = pair.partition(b"=")
        name = _unquote(raw_name, "(name)", strict=strict).decode("utf-8", "replace")
        out.append((name, _unquote(raw_value, name, strict=strict)))
    return out


class Params:
    """Parameters in the order given, repeats kept, looked up by name."""

    __slots__ = ("_by_name",)

    def __init__(self, items: list[tuple[str, bytes]] | None = None) -> None:
        self._by_name: dict[str, list[bytes]] = {}
        for name, value in items or ():
            self.add(name, value)

    def add(self, name: str, value: bytes, *, first: bool = False) -> None:
        values = self._by_name.setdefault(name, [])
        if first:
            values.insert(0, value)
        else:
            values.append(value)

    def all(self, name: str) -> list[bytes]:
        return self._by_name.get(name, [])

    def raw(self, name: str) -> bytes | None:
        """The first value given for `name` (Kannel's reading of a repeat)."""
        values = self._by_name.get(name)
        return values[0] if values else None

    def one(self, name: str) -> bytes | None:
        """The value of `name`; BadInput when it is given more than once."""
        values = self._by_name.get(name)
        if not values:
            return None
        if len(values) > 1:
            raise BadInput(name, "given more than once")
        return values[0]

    def text(self, name: str, *, first: bool = False) -> str | None:
        """`one(name)` (or the first value) as UTF-8 text; BadInput when it is not."""
        value = self.raw(name) if first else self.one(name)
        if value is None:
            return None
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            raise BadInput(name, "not UTF-8", charset=True) from None

    def names(self) -> set[str]:
        return set(self._by_name)


def raw_query(request: web.Request) -> bytes:
    """The query exactly as the client sent it (aiohttp's own parsing forgives bad
    %-escapes and bad UTF-8, which a dialect must see)."""
    return request.raw_path.partition("?")[2].encode("latin-1", "replace")


async def read_params(request: web.Request, limit: int, *, strict: bool = True) -> Params:
    """The query's parameters, then a form body's (a GET's or a form POST's)."""
    query = raw_query(request)
    if len(query) > limit:
        raise TooLarge()
    params = Params(parse_urlencoded(query, strict=strict))
    if request.method == "POST" and request.content_type == FORM:
        for name, value in parse_urlencoded(await read_body(request, limit), strict=strict):
            params.add(name, value)
    return params


def too_large(limit: int) -> str:
    return f"request larger than {limit} bytes"


async def submit(service: Service, metrics: Metrics, request: SubmitRequest,
                 peer: str = "") -> list[RecipientResult]:
    """`Service.submit`, counted and logged as every ingress does (report_results); a
    request-level refusal is counted for each recipient, then raised on."""
    try:
        results = await service.submit(request)
    except BridgeError as exc:
        metrics.rejected(Ingress.HTTP.value, exc.name.value, max(1, len(request.recipients)))
        log.info("http refused account=%s: %s", request.account, exc)
        raise
    report_results(results, ingress=Ingress.HTTP, account=request.account, metrics=metrics,
                   peer=peer)
    return results


def refused(metrics: Metrics, name: ErrorName, why: str, account: str = "-") -> None:
    """A request refused before the Service saw it (auth, parameters): counted and logged
    like the Service's own refusals."""
    metrics.rejected(Ingress.HTTP.value, name.value)
    log.info("http refused account=%s: %s: %s", account, name.value, why)


def sole_error(results: Sequence[RecipientResult]) -> BridgeError | None:
    """When no recipient was accepted and all share one error, that error (a dialect with a
    request-level answer for it gives that answer); else None."""
    if not results or any(r.accepted for r in results):
        return None
    names = {r.error.name for r in results if r.error is not None}
    if len(names) != 1:
        return None
    return next(r.error for r in results if r.error is not None)
