"""Kannel's sendsms (`[http] kannel_path`, default /cgi-bin/sendsms), answering as Kannel 1.4.5
does: the same status lines and bodies for the same requests, checked in the same order
(tests/http_ingress/kannel_compare.py holds the two side by side).

GET with `username` (or `user`), `password` (or `pass`), `to` (receivers separated by spaces),
`text`, `from`, `coding` (0 7-bit, 1 8-bit, 2 UCS-2), `charset`, `mclass`, `validity`,
`deferred` (minutes), `priority`, `dlr-mask`, `dlr-url`; or POST with the text as the body
(text/plain or application/octet-stream, its charset as the content type's) and the rest in
X-Kannel-* headers (X-Kannel-Username, X-Kannel-To, X-Kannel-DLR-Mask…). As Kannel, the first of a repeated parameter counts and a
`%` that starts no escape is kept as it is.

Where Kannel takes what SPEC §5 refuses (no text, a number no handset has, more parts than
max_parts), the refusal is in Kannel's own form, a 400 whose body ends ", rejected", as for a
`udh` of the client's own, which the bridge does not send; where
Kannel turns text it cannot put in GSM into "?", the bridge sends it in the encoding that
holds it. The delivery reports go to `dlr-url` for the `dlr-mask` bits, with Kannel's
%-escapes (bridge.core.dialect_reports).
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass
from types import MappingProxyType
from typing import Mapping

from aiohttp import web

from bridge.config import AccountConfig, Config
from bridge.core.dialect_reports import Dialect
from bridge.core.encoding import Encoding
from bridge.core.errors import BridgeError, ErrorName
from bridge.core.meta import MetaKey
from bridge.core.model import Ingress
from bridge.core.reports import ALL_EVENTS, ReportEvent
from bridge.ingress.http.common import (Params, log, parse_urlencoded, raw_query, refused,
                                        submit)
from bridge.ingress.listener import TooLarge, read_body
from bridge.intake.credentials import AuthGuard
from bridge.intake.service import Recipient, Service, SubmitRequest, is_unroutable
from bridge.metrics import Metrics

_N = ErrorName
ACCEPTED = (202, "0: Accepted for delivery")
DENIED = "Number(s) has/have been denied by white- and/or black-lists."
NOT_ROUTABLE = (403, "Not routable. Do not try again.")
TEMPORARY = (503, "Temporal failure, try again later.")

#: The one table from §5 to Kannel's answers; a refusal may name Kannel's own words for its
#: field instead (`Refusal.words`), as Kannel does.
ANSWERS: Mapping[ErrorName, tuple[int, str]] = MappingProxyType({
    _N.INVALID_PARAMETER: (400, "Invalid request, rejected"),
    _N.AUTH_FAILED: (403, "Authorization failed for sendsms"),
    _N.INVALID_TYPE: (400, "Coding field misformed, rejected"),
    _N.INVALID_MESSAGE: (400, "Charset or body misformed, rejected"),
    _N.INVALID_DESTINATION: (400, DENIED),
    _N.INVALID_SOURCE: (400, "Sender not allowed, rejected"),
    _N.INVALID_DLR: (400, "DLR-URL field misformed, rejected"),
    _N.VALIDATION_FAILED: TEMPORARY,
    _N.INTERNAL_ERROR: TEMPORARY,
    _N.INSUFFICIENT_CREDIT: (403, "Account quota exhausted, rejected"),
    _N.OVER_LIMIT: TEMPORARY,
    _N.DUPLICATE: ACCEPTED,
    _N.FLOOD: TEMPORARY,
    _N.TOO_MANY_RECIPIENTS: (400, "Too many receivers, rejected"),
    _N.STORE_UNAVAILABLE: TEMPORARY,
})
_RECEIVER = re.compile(r"\+?[0-9]+\Z")
_NUMBER = re.compile(rb"\s*(-?[0-9]+)")
_HEADER_PREFIX = "x-kannel-"
_TEXT_TYPES = ("text/plain", "application/octet-stream")


class Refusal(Exception):
    """A refusal in Kannel's words: `words` is the field's phrase (", rejected" follows)."""

    def __init__(self, name: ErrorName, words: str | None = None) -> None:
        super().__init__(words or name.value)
        self.name = name
        self.words = words


def reply(status_body: tuple[int, str]) -> web.Response:
    status, body = status_body
    return web.Response(status=status, text=body, content_type="text/html",
                        headers={"Pragma": "no-cache", "Cache-Control": "no-cache"})


def refusal_reply(exc: Refusal | BridgeError) -> web.Response:
    if isinstance(exc, Refusal) and exc.words is not None:
        return reply((ANSWERS[exc.name][0], f"{exc.words}, rejected"))
    if isinstance(exc, BridgeError):
        if is_unroutable(exc):
            return reply(NOT_ROUTABLE)
        if exc.name is _N.INVALID_MESSAGE:
            words = "Text too long" if exc.too_big else \
                "Missing text" if exc.detail == "empty message" else None
            if words:
                return reply((400, f"{words}, rejected"))
    return reply(ANSWERS[exc.name])


def _int(params: Params, name: str, low: int, high: int, words: str,
         error: ErrorName = _N.INVALID_PARAMETER) -> int | None:
    """A number field as Kannel reads it: absent, not a number (sscanf) or -1 is unset;
    below -1 or above `high` is misformed."""
    value = params.raw(name)
    match = _NUMBER.match(value) if value else None
    if match is None:
        return None
    number = int(match.group(1))
    if number == -1:
        return None
    if not low <= number <= high:
        raise Refusal(error, words)
    return number


@dataclass(frozen=True)
class _Fields:
    coding: int | None
    mclass: int | None
    validity: int | None
    deferred: int | None
    mask: int | None
    url: str | None


def _fields(params: Params) -> _Fields:
    """The numeric fields, checked in Kannel's order."""
    url = params.raw("dlr-url")
    mask = _int(params, "dlr-mask", 0, 255, "DLR-Mask field misformed", _N.INVALID_DLR)
    mclass = _int(params, "mclass", 0, 3, "MClass field misformed", _N.INVALID_TYPE)
    coding = _int(params, "coding", 0, 2, "Coding field misformed", _N.INVALID_TYPE)
    validity = _int(params, "validity", 0, 60 * 24 * 30, "Validity field misformed")
    deferred = _int(params, "deferred", 0, 60 * 24 * 365, "Deferred field misformed")
    _int(params, "priority", 0, 3, "Priority field misformed")
    return _Fields(coding, mclass, validity or None, deferred, mask,
                   url.decode("utf-8", "replace") if url else None)


def _text(raw: bytes, coding: int | None, charset: str | None) -> tuple[str, Encoding | None]:
    """The text and its encoding as Kannel reads `text`: 8-bit data as octets, else in
    `charset` (UTF-8 for 7-bit, UTF-16BE for UCS-2, unless given)."""
    if coding == 1:
        return raw.decode("latin-1"), Encoding.BINARY
    name = charset or ("UTF-16BE" if coding == 2 else "UTF-8")
    try:
        text = raw.decode(codecs.lookup(name).name)
    except (LookupError, UnicodeDecodeError):
        raise Refusal(_N.INVALID_MESSAGE, "Charset or body misformed") from None
    return text, (Encoding.UCS2 if coding == 2 else None)


class KannelSendsms:
    def __init__(self, service: Service, config: Config, metrics: Metrics,
                 auth: AuthGuard) -> None:
        self.service = service
        self.http = config.http
        self.metrics = metrics
        self.auth = auth  # the listener's throttled credential check

    async def handle(self, request: web.Request) -> web.StreamResponse:
        try:
            params = await self._params(request)
            if params is None:
                return reply((400, "Invalid content-type"))
            return await self._send(request, params)
        except TooLarge:
            refused(self.metrics, _N.INVALID_PARAMETER, "too large")
            return reply((413, "Request too large, rejected"))
        except Refusal as exc:
            refused(self.metrics, exc.name, str(exc))
            return refusal_reply(exc)
        except BridgeError as exc:  # the Service's refusal, counted there
            return refusal_reply(exc)
        except Exception:  # a bug: the client hears Kannel's temporary failure
            log.exception("kannel sendsms request failed")
            return reply(TEMPORARY)

    async def _params(self, request: web.Request) -> Params | None:
        """GET: the query. POST (as Kannel, the query is not read then): the X-Kannel-*
        headers, and the body as `text`; None for a body of another type."""
        limit = self.http.max_request_bytes
        query = raw_query(request)
        if len(query) > limit:
            raise TooLarge()
        if request.method != "POST":
            return Params(parse_urlencoded(query, strict=False))
        if request.content_type not in _TEXT_TYPES:
            return None
        params = Params()
        for name, value in request.headers.items():
            if name.lower().startswith(_HEADER_PREFIX):
                params.add(name[len(_HEADER_PREFIX):].lower(),
                           value.encode("utf-8", "surrogateescape"))
        params.add("text", await read_body(request, limit), first=True)
        if request.charset and not params.raw("charset"):
            params.add("charset", request.charset.encode())
        return params

    async def _account(self, params: Params, peer: str) -> AccountConfig:
        user = params.raw("username") or params.raw("user") or b""
        password = params.raw("password") or params.raw("pass") or b""
        account = (await self.auth.password(
            user.decode("utf-8", "replace"), password.decode("utf-8", "replace"), peer)).account
        if account is None:
            raise Refusal(_N.AUTH_FAILED)
        return account

    async def _send(self, request: web.Request, params: Params) -> web.Response:
        account = await self._account(params, request.remote or "unknown")
        to = params.raw("to")
        if to is None:
            raise Refusal(_N.INVALID_PARAMETER, "Missing receiver number")
        receivers = to.decode("utf-8", "replace").split()
        if not receivers:
            raise Refusal(_N.INVALID_PARAMETER, "Empty receiver number not allowed")
        allowed = [r for r in receivers if _RECEIVER.match(r)]
        if not allowed:
            raise Refusal(_N.INVALID_DESTINATION)
        sender = (params.raw("from") or b"").decode("utf-8", "replace")
        if not sender and not account.default_sender:
            raise Refusal(_N.INVALID_SOURCE, "Sender missing and no global set")
        if params.raw("udh"):  # a client's own UDH is not sent: refused, not dropped
            raise Refusal(_N.INVALID_PARAMETER, "UDH field misformed")
        fields = _fields(params)
        charset = params.raw("charset")
        text, encoding = _text(params.raw("text") or b"", fields.coding,
                               charset.decode("latin-1") if charset else None)
        results = await submit(self.service, self.metrics, self._request(
            account, params, allowed, sender, text, encoding, fields))
        first = results[0]  # Kannel answers for its first receiver
        if first.message_id is not None:
            return reply(ACCEPTED)
        assert first.error is not None
        return refusal_reply(first.error)

    def _request(self, account: AccountConfig, params: Params, receivers: list[str],
                 sender: str, text: str, encoding: Encoding | None,
                 fields: _Fields) -> SubmitRequest:
        mask = (fields.mask or 0) & int(ALL_EVENTS)
        url = fields.url if mask else None
        user = (params.raw("username") or params.raw("user") or b"").decode("utf-8", "replace")
        meta = ((MetaKey.DIALECT, Dialect.KANNEL.value), (MetaKey.USER, user),
                (MetaKey.SENDER, sender or account.default_sender or ""))
        receipts = ReportEvent.DELIVERED | ReportEvent.UNDELIVERED | ReportEvent.BUFFERED
        send_at = None if not fields.deferred else self.service.clock() + 60 * fields.deferred
        return SubmitRequest(
            account=account.name, recipients=tuple(Recipient(r) for r in receivers),
            text=text, ingress=Ingress.HTTP, sender=sender or None, encoding=encoding,
            message_class=fields.mclass, dlr=bool(mask & receipts),
            validity_minutes=fields.validity, send_at=send_at, callback_url=url,
            report_mask=mask if url else None, meta=meta)
