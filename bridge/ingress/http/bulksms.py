"""The bulk-SMS URL API (`[http] bulksms_path`, default /bulksms/bulksms), GET or form POST:

    username, password, type (0 GSM, 1 GSM flash, 2 Unicode, 4 WAP Push, 5 Latin-1,
    6 Unicode flash, 7 Latin-1 flash; absent: the cheapest exact), dlr (0/1), destination
    (comma-separated, "+" optional), source (≤ 18 digits or ≤ 11 alphanumerics, a leading "+"
    kept), message (UTF-8), url (the link of a WAP Push)

answered 200 text/plain with one entry per destination joined by commas, `1701|<destination>|
<message id>` or `<code>|<destination>`, or a bare code for the whole request. Codes are the
§5 table's (`ANSWERS` says which refusals are request-wide). With dlr=1 the report goes to the
account's `dlr_url` as a form POST (bridge.core.dialect_reports).
"""

from __future__ import annotations

import re

from aiohttp import web

from bridge.config import AccountConfig, Config
from bridge.core.dialect_reports import Dialect
from bridge.core.errors import ERROR_TABLE, BridgeError, ErrorName
from bridge.core.meta import Meta, MetaKey
from bridge.core.model import Ingress
from bridge.core.reports import FINAL_EVENTS
from bridge.ingress.http.common import BadInput, Params, log, read_params, refused, submit
from bridge.ingress.listener import TooLarge
from bridge.intake.credentials import AuthGuard
from bridge.intake.service import Recipient, RecipientResult, Service, SubmitRequest
from bridge.metrics import Metrics

_TEXT = "text/plain"
_TYPES = frozenset({0, 1, 2, 4, 5, 6, 7})
_SOURCE = re.compile(r"\+?[0-9]{1,18}\Z|[A-Za-z0-9]{1,11}\Z")
#: Which parameter's text is not UTF-8 is which code (the rest, and bad %-escapes and repeats
#: anywhere: 1702, a parameter missing or malformed).
_PARAM_ERRORS = {"type": ErrorName.INVALID_TYPE, "dlr": ErrorName.INVALID_DLR,
                 "source": ErrorName.INVALID_SOURCE, "message": ErrorName.INVALID_MESSAGE}


def answer(name: ErrorName, status: int = 200) -> web.Response:
    """The one table from §5 to this dialect: the error's numeric code, bare."""
    return web.Response(text=str(ERROR_TABLE[name].code), status=status, content_type=_TEXT)


class BulkSms:
    def __init__(self, service: Service, config: Config, metrics: Metrics,
                 auth: AuthGuard) -> None:
        self.service = service
        self.http = config.http
        self.metrics = metrics
        self.auth = auth  # the listener's throttled credential check

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if request.method not in ("GET", "POST"):
            return answer(ErrorName.INVALID_PARAMETER, 405)
        try:
            params = await read_params(request, self.http.max_request_bytes)
            return await self._send(params, request.remote or "unknown")
        except TooLarge:
            refused(self.metrics, ErrorName.INVALID_PARAMETER, "too large")
            return answer(ErrorName.INVALID_PARAMETER, 413)
        except BadInput as exc:
            name = _PARAM_ERRORS.get(exc.name, ErrorName.INVALID_PARAMETER) if exc.charset \
                else ErrorName.INVALID_PARAMETER
            refused(self.metrics, name, str(exc))
            return answer(name)
        except BridgeError as exc:
            return answer(exc.name)
        except Exception:  # a bug: the client hears "internal error", never a traceback
            log.exception("bulksms request failed")
            return answer(ErrorName.INTERNAL_ERROR)

    async def _send(self, params: Params, peer: str) -> web.Response:
        username, password = params.text("username"), params.text("password")
        destinations, message = params.text("destination"), params.text("message")
        if not username or password is None or not destinations or message is None:
            refused(self.metrics, ErrorName.INVALID_PARAMETER, "a required parameter is missing")
            return answer(ErrorName.INVALID_PARAMETER)
        account = (await self.auth.password(username, password, peer)).account
        if account is None:
            refused(self.metrics, ErrorName.AUTH_FAILED, "bad credentials", username)
            return answer(ErrorName.AUTH_FAILED)
        try:
            request = self._request(account, params, destinations, message)
        except BridgeError as exc:
            refused(self.metrics, exc.name, exc.detail, account.name)
            raise
        results = await submit(self.service, self.metrics, request)
        if results and all(r.error is not None and r.error.name is
                           ErrorName.INSUFFICIENT_CREDIT for r in results):
            return answer(ErrorName.INSUFFICIENT_CREDIT)
        return web.Response(text=",".join(_entry(r) for r in results), content_type=_TEXT)

    def _request(self, account: AccountConfig, params: Params, destinations: str,
                 message: str) -> SubmitRequest:
        type_code = _number(params, "type", _TYPES, ErrorName.INVALID_TYPE)
        dlr = _number(params, "dlr", frozenset({0, 1}), ErrorName.INVALID_DLR) == 1
        source = params.text("source")
        if source is not None and not _SOURCE.match(source):
            raise BridgeError(ErrorName.INVALID_SOURCE, "source must be up to 18 digits or "
                                                        "11 letters and digits")
        url = params.text("url")
        if type_code == 4 and not url:
            raise BridgeError(ErrorName.INVALID_PARAMETER, "a WAP Push needs url")
        recipients = tuple(Recipient(d.strip()) for d in destinations.split(","))
        meta: Meta = ((MetaKey.DIALECT, Dialect.BULKSMS.value),)
        if source:
            meta += ((MetaKey.SENDER, source),)
        report = dlr and account.dlr_url is not None
        return SubmitRequest(
            account=account.name, recipients=recipients, text=message, ingress=Ingress.HTTP,
            sender=source or None, type_code=type_code, dlr=dlr,
            url=url if type_code == 4 else None, meta=meta,
            callback_url=account.dlr_url if report else None,
            report_mask=int(FINAL_EVENTS) if report else None)


def _number(params: Params, name: str, allowed: frozenset[int],
            error: ErrorName) -> int | None:
    text = params.text(name)
    if text is None or text == "":
        return None
    if not text.isdigit() or int(text) not in allowed:
        raise BridgeError(error, f"{name} must be one of {sorted(allowed)}")
    return int(text)


def _entry(result: RecipientResult) -> str:
    """`1701|<destination>|<id>` (a duplicate too: its first id, nothing sent twice) or
    `<code>|<destination>`."""
    if result.message_id is not None:
        return f"{ERROR_TABLE[ErrorName.SUCCESS].code}|{result.recipient}|{result.message_id}"
    name = result.error.name if result.error is not None else ErrorName.INTERNAL_ERROR
    return f"{ERROR_TABLE[name].code}|{result.recipient}"
