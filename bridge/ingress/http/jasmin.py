"""Jasmin's HTTP API `/send` (`[http] jasmin_path`), GET, form POST or JSON POST:

    username, password, to, from, coding, content or hex-content, priority, sdt,
    validity-period, dlr (yes/no), dlr-url, dlr-level (1 SMSC, 2 terminal, 3 both), dlr-method
    (GET/POST), tags

checked as Jasmin checks them (its argument table, in its order) and answered as Jasmin does:
200 `Success "<id>"`, or `Error "<reason>"` with Jasmin's status (400 for an argument, 403 for
credentials, throughput and charging, 412 for no route). The reports go to dlr-url with
Jasmin's fields and are sent again until the receiver answers `ACK/Jasmin`
(bridge.core.dialect_reports).

Content in coding 0 is UTF-8 text sent in the cheapest encoding that holds it exactly (Jasmin
would put "?" for what GSM cannot hold); 1 is ASCII, 2 and 4 are 8-bit data, 3 Latin-1, 8
UCS-2 (the content is UTF-16BE, as Jasmin takes it); hex-content gives the octets in hex.
Codings the bridge has no alphabet for (5 JIS, 6 Cyrillic, 7 Hebrew, 9 and up) are refused
as an invalid argument.
"""

from __future__ import annotations

import binascii
import calendar
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from aiohttp import web

from bridge.config import AccountConfig, Config
from bridge.core.dialect_reports import Dialect
from bridge.core.encoding import Encoding
from bridge.core.errors import BridgeError, ErrorName
from bridge.core.gsm import gsm7_decode
from bridge.core.meta import MetaKey
from bridge.core.model import Ingress
from bridge.core.reports import ALL_EVENTS, ReportEvent
from bridge.ingress.http.common import BadInput, log, read_params, refused, submit
from bridge.ingress.listener import TooLarge, read_body
from bridge.intake.credentials import AuthGuard
from bridge.intake.service import Recipient, Service, SubmitRequest, is_unroutable
from bridge.metrics import Metrics

_N = ErrorName


@dataclass(frozen=True)
class _Arg:
    optional: bool
    pattern: re.Pattern[str] | None = None


#: Jasmin's argument table, in its order (jasmin/protocols/http/endpoints/send.py).
ARGS: Mapping[str, _Arg] = MappingProxyType({
    "to": _Arg(False, re.compile(r"\+?\d+\Z")),
    "from": _Arg(True),
    "coding": _Arg(True, re.compile(r"(0|1|2|3|4|5|6|7|8|9|10|13|14)\Z")),
    "username": _Arg(False, re.compile(r".{1,16}\Z", re.S)),
    "password": _Arg(False, re.compile(r".{1,16}\Z", re.S)),
    "priority": _Arg(True, re.compile(r"[0-3]\Z")),
    "sdt": _Arg(True, re.compile(r"\d{12}\d\d{2}[+\-R]\Z")),
    "validity-period": _Arg(True, re.compile(r"\d+\Z")),
    "dlr": _Arg(False, re.compile(r"(yes|no)\Z")),
    "dlr-url": _Arg(True, re.compile(r"https?://.*\Z", re.S)),
    "dlr-level": _Arg(True, re.compile(r"[1-3]\Z")),
    "dlr-method": _Arg(True, re.compile(r"(get|post)\Z", re.I)),
    "tags": _Arg(True, re.compile(r"[-a-zA-Z0-9,]*\Z")),
    "content": _Arg(True),
    "hex-content": _Arg(True),
    "custom_tlvs": _Arg(True),
})

#: The one table from §5 to Jasmin's statuses and reasons (`{}` takes the detail).
ANSWERS: Mapping[ErrorName, tuple[int, str]] = MappingProxyType({
    _N.INVALID_PARAMETER: (400, "{}"),
    _N.AUTH_FAILED: (403, "Authentication failure for username:{}"),
    _N.INVALID_TYPE: (400, "Argument [coding] has an invalid value: [{}]."),
    _N.INVALID_MESSAGE: (400, "Argument [content] has an invalid value: [{}]."),
    _N.INVALID_DESTINATION: (400, "Argument [to] has an invalid value: [{}]."),
    _N.INVALID_SOURCE: (400, "Value filter failed for user [{}] (source_address filter "
                             "mismatch)."),
    _N.INVALID_DLR: (400, "Argument [dlr-url] has an invalid value: [{}]."),
    _N.VALIDATION_FAILED: (403, "Authorization failed for user [{}] (Cannot send MT "
                                "messages)."),
    _N.INTERNAL_ERROR: (500, "Cannot send submit_sm, check SMPPClientManagerPB log file "
                             "for details"),
    _N.INSUFFICIENT_CREDIT: (403, "Cannot charge submit_sm, check RouterPB log file for "
                                  "details"),
    _N.OVER_LIMIT: (403, "User throughput exceeded"),
    _N.FLOOD: (403, "User throughput exceeded"),
    _N.TOO_MANY_RECIPIENTS: (400, "Argument [to] has an invalid value: [{}]."),
    _N.STORE_UNAVAILABLE: (500, "Cannot send submit_sm, check SMPPClientManagerPB log file "
                                "for details"),
})
NO_ROUTE = (412, "No route found")
#: Coding → (the content's charset, the encoding it is sent in).
_CODINGS: Mapping[int, tuple[str, Encoding | None]] = MappingProxyType({
    0: ("utf-8", None), 1: ("ascii", Encoding.GSM7), 2: ("latin-1", Encoding.BINARY),
    3: ("latin-1", Encoding.LATIN1), 4: ("latin-1", Encoding.BINARY),
    8: ("utf-16-be", Encoding.UCS2),
})
_LEVELS = {1: ReportEvent.SUBMITTED | ReportEvent.FAILED,
           2: ReportEvent.DELIVERED | ReportEvent.UNDELIVERED | ReportEvent.BUFFERED,
           3: ALL_EVENTS}


class Refusal(Exception):
    def __init__(self, status: int, reason: str, name: ErrorName = _N.INVALID_PARAMETER) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.name = name


def reply(status: int, body: str) -> web.Response:
    return web.Response(status=status, text=body, content_type="text/plain")


def _answer(name: ErrorName, detail: str) -> Refusal:
    status, words = ANSWERS[name]
    return Refusal(status, words.format(detail), name)


def _invalid(name: str, value: str) -> Refusal:
    return Refusal(400, f"Argument [{name}] has an invalid value: [{value}].")


def validate(args: Mapping[str, str]) -> None:
    """Jasmin's UrlArgsValidator: unknown arguments, then each known one's pattern or
    absence, in the table's order."""
    if not args:
        raise Refusal(400, "Mandatory arguments not found, please refer to the HTTPAPI "
                           "specifications.")
    for name in args:
        if name not in ARGS:
            raise Refusal(400, f"Argument [{name}] is unknown.")
    for name, arg in ARGS.items():
        if name in args:
            if arg.pattern is not None and arg.pattern.match(args[name]) is None:
                raise _invalid(name, args[name])
        elif not arg.optional:
            raise Refusal(400, f"Mandatory argument [{name}] is not found.")
    if ("content" in args) == ("hex-content" in args):
        raise Refusal(400, "content or hex-content not present." if "content" not in args
                      else "content and hex-content cannot be used both in same request.")


def with_defaults(args: dict[str, str]) -> dict[str, str]:
    """Jasmin's defaults: coding 0; dlr yes when a dlr-url or dlr-level is given, then level
    1 and method POST unless given."""
    args.setdefault("coding", "0")
    if "dlr-url" in args or "dlr-level" in args:
        args["dlr"] = "yes"
    args.setdefault("dlr", "no")
    if args["dlr"] == "yes":
        args.setdefault("dlr-level", "1")
        args.setdefault("dlr-method", "POST")
    if "dlr-method" in args:
        args["dlr-method"] = args["dlr-method"].upper()
    return args


def smpp_time(text: str, now: float) -> float:
    """An SMPP 3.4 §7.1.1 time `YYMMDDhhmmsstnnp`: absolute (p "+"/"-": quarter hours from
    UTC) or relative ("R")."""
    yy, mo, dd, hh, mi, ss = (int(text[i:i + 2]) for i in range(0, 12, 2))
    offset = int(text[13:15]) * 15 * 60
    if text[15] == "R":
        return now + ((yy * 365 + mo * 30 + dd) * 86400 + hh * 3600 + mi * 60 + ss)
    try:
        at = calendar.timegm((2000 + yy, mo, dd, hh, mi, ss, 0, 0, 0))
    except (ValueError, OverflowError):
        raise _invalid("sdt", text) from None
    return at - offset if text[15] == "+" else at + offset


def _content(args: Mapping[str, str], raw: bytes | None) -> tuple[str, Encoding | None]:
    coding = int(args["coding"])
    if coding not in _CODINGS:
        raise _invalid("coding", args["coding"])
    charset, encoding = _CODINGS[coding]
    if "hex-content" in args:
        try:
            data = binascii.unhexlify(args["hex-content"])
        except (binascii.Error, ValueError):
            raise Refusal(400, f"Invalid hex-content data: '{args['hex-content']}'") from None
        if coding == 0:
            try:
                return gsm7_decode(data, strict=True), Encoding.GSM7
            except ValueError:
                raise _invalid("hex-content", args["hex-content"]) from None
    else:
        data = raw or b""
    try:
        return data.decode(charset), encoding
    except UnicodeDecodeError:
        raise _invalid("content", data.decode("utf-8", "replace")) from None


class JasminSend:
    def __init__(self, service: Service, config: Config, metrics: Metrics,
                 auth: AuthGuard) -> None:
        self.service = service
        self.http = config.http
        self.metrics = metrics
        self.auth = auth  # the listener's throttled credential check

    async def handle(self, request: web.Request) -> web.StreamResponse:
        try:
            args, content = await self._args(request)
            return await self._send(args, content, request.remote or "unknown")
        except TooLarge:
            refused(self.metrics, _N.INVALID_PARAMETER, "too large")
            return reply(413, 'Error "Request too large."')
        except BadInput as exc:
            refused(self.metrics, _N.INVALID_PARAMETER, str(exc))
            return reply(400, f'Error "Argument [{exc.name}] has an invalid value: '
                              f'[{exc.reason}]."')
        except Refusal as exc:
            refused(self.metrics, exc.name, exc.reason)
            return reply(exc.status, f'Error "{exc.reason}"')
        except Exception:  # a bug: Jasmin's own words for it, never a traceback
            log.exception("jasmin send request failed")
            return reply(500, 'Error "Unknown error"')

    async def _args(self, request: web.Request) -> tuple[dict[str, str], bytes | None]:
        """The arguments as text, one value each, and `content` as octets (UCS-2 and 8-bit
        content are not UTF-8); a JSON body's fields join them."""
        if request.method not in ("GET", "POST"):
            raise Refusal(405, f"{request.method} is not supported")
        params = await read_params(request, self.http.max_request_bytes)
        if request.method == "POST" and request.content_type == "application/json":
            for name, value in _json_args(await read_body(request,
                                                          self.http.max_request_bytes)):
                params.add(name, value)
        args = {name: (params.text(name) if name != "content" else "") or ""
                for name in params.names()}
        return with_defaults(args), params.one("content")

    async def _send(self, args: dict[str, str], content: bytes | None,
                    peer: str) -> web.Response:
        validate(args)
        text, encoding = _content(args, content)
        account = (await self.auth.password(args["username"], args["password"], peer)).account
        if account is None:
            raise _answer(_N.AUTH_FAILED, args["username"])
        try:
            results = await submit(self.service, self.metrics,
                                   self._request(account, args, text, encoding))
        except BridgeError as exc:
            return self._refusal(exc, account, args)
        first = results[0]
        if first.message_id is not None:
            return reply(200, f'Success "{first.message_id}"')
        assert first.error is not None
        return self._refusal(first.error, account, args)

    @staticmethod
    def _refusal(exc: BridgeError, account: AccountConfig, args: Mapping[str, str]
                 ) -> web.Response:
        if is_unroutable(exc):
            return reply(NO_ROUTE[0], f'Error "{NO_ROUTE[1]}"')
        detail = {_N.INVALID_SOURCE: account.name, _N.VALIDATION_FAILED: account.name,
                  _N.INVALID_DESTINATION: args["to"], _N.TOO_MANY_RECIPIENTS: args["to"],
                  _N.INVALID_TYPE: args["coding"], _N.INVALID_DLR: args.get("dlr-url", ""),
                  _N.INVALID_MESSAGE: exc.detail}.get(exc.name, exc.detail)
        refusal = _answer(exc.name, detail)
        return reply(refusal.status, f'Error "{refusal.reason}"')

    def _request(self, account: AccountConfig, args: Mapping[str, str], text: str,
                 encoding: Encoding | None) -> SubmitRequest:
        level = int(args.get("dlr-level", "0")) if args["dlr"] == "yes" else 0
        url = args.get("dlr-url") if level else None
        mask = _LEVELS.get(level, ReportEvent(0))
        sender = args.get("from") or None
        meta = ((MetaKey.DIALECT, Dialect.JASMIN.value), (MetaKey.DLR_LEVEL, str(level)),
                (MetaKey.DLR_METHOD, args.get("dlr-method", "POST")),
                (MetaKey.SENDER, sender or account.default_sender or ""))
        now = self.service.clock()
        return SubmitRequest(
            account=account.name, recipients=(Recipient(args["to"]),), text=text,
            ingress=Ingress.HTTP, sender=sender, encoding=encoding,
            dlr=bool(mask & ~(ReportEvent.SUBMITTED | ReportEvent.FAILED)),
            validity_minutes=int(args["validity-period"]) if "validity-period" in args
            else None, send_at=smpp_time(args["sdt"], now) if "sdt" in args else None,
            callback_url=url, report_mask=int(mask) if url else None, meta=meta)


def _json_args(body: bytes) -> list[tuple[str, bytes]]:
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise Refusal(400, "Invalid JSON body") from None
    if not isinstance(data, dict):
        raise Refusal(400, "Invalid JSON body")
    out = []
    for name, value in data.items():
        if isinstance(value, (dict, list)) or value is None:
            value = json.dumps(value)
        out.append((str(name), str(value).encode("utf-8")))
    return out
