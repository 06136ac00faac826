"""The JSON API (`[http] json_path`, default /api/sms), with `Authorization: Bearer <token>`
(an `api_tokens` entry of the account):

    POST {path}        {"recipients": [...], "sender": "...", "message": {"charset": 0|1|6|8,
                        "text": "..."}, "callbackUrl": "..."} → 200 {"code": "SUCCESS",
                        "submissions": [{"status": "submitted", "submissionId": "…"}, …]}
    GET  {path}/{id}   one submission's status
    GET  {path}?page=N the account's submissions, 25 a page, with "page": {count, number}

charset 0 lets the bridge choose the encoding, 1 is GSM 7-bit, 6 takes the text as hex UCS-2
("010101090121" is "āĉġ") and 8 as %-escaped GSM 03.38 codes ("%7F%7E" is "àü"). A refusal
is `{"error": {"code": "<NAME>", "description": "…"}}` with the status `ANSWERS` gives its §5
error; a submission refused alone carries the same name in lower case as its status
(`account_no_balance` for 1025). A missing or wrong token is 401 with an empty body. With
callbackUrl, each final state is POSTed there as JSON (bridge.core.dialect_reports), signed
with the account's callback_secret.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone
from types import MappingProxyType
from typing import Any, Mapping

from aiohttp import web

from bridge.config import AccountConfig, Config
from bridge.core.dialect_reports import Dialect
from bridge.core.errors import BridgeError, ErrorName
from bridge.core.gsm import gsm7_decode
from bridge.core.meta import MetaKey
from bridge.core.model import Ingress
from bridge.core.reports import FINAL_EVENTS
from bridge.ingress.http.common import log, refused, sole_error, submit, too_large
from bridge.ingress.listener import TooLarge, read_body
from bridge.intake.credentials import AuthGuard
from bridge.intake.service import Recipient, RecipientResult, Service, SubmitRequest
from bridge.metrics import Metrics
from bridge.store.base import MessageView

_N = ErrorName


@dataclass(frozen=True)
class Answer:
    status: int
    word: str  # the submission status; upper case, the error code


#: The one table from §5 to this dialect.
ANSWERS: Mapping[ErrorName, Answer] = MappingProxyType({
    name: Answer(status, word or name.value.lower()) for name, status, word in (
        (_N.INVALID_PARAMETER, 400, ""), (_N.AUTH_FAILED, 401, ""), (_N.INVALID_TYPE, 400, ""),
        (_N.INVALID_MESSAGE, 400, ""), (_N.INVALID_DESTINATION, 400, ""),
        (_N.INVALID_SOURCE, 400, ""), (_N.INVALID_DLR, 400, ""),
        (_N.VALIDATION_FAILED, 403, ""), (_N.INTERNAL_ERROR, 503, ""),
        (_N.INSUFFICIENT_CREDIT, 402, "account_no_balance"), (_N.OVER_LIMIT, 429, ""),
        (_N.DUPLICATE, 409, ""), (_N.FLOOD, 429, ""), (_N.TOO_MANY_RECIPIENTS, 400, ""),
        (_N.STORE_UNAVAILABLE, 503, ""))
})
_CHARSETS = (0, 1, 6, 8)
#: Refusals of every recipient that are the account's, not a number's: answered for the
#: request (429 for the rate), as a client retries the whole request.
_REQUEST_WIDE = frozenset({_N.OVER_LIMIT, _N.FLOOD})
_NOT_JSON = (ValueError, UnicodeDecodeError, RecursionError)


def error(name: ErrorName, description: str, status: int | None = None) -> web.Response:
    entry = ANSWERS[name]
    if name is ErrorName.AUTH_FAILED:
        return web.Response(status=401, headers={"WWW-Authenticate": "Bearer"})
    return web.json_response({"error": {"code": entry.word.upper(), "description": description}},
                             status=status or entry.status)


def _decode_text(charset: int, text: str) -> tuple[str, int | None]:
    """The text to send and its legacy type code, from the message's charset."""
    if charset == 6:
        try:
            return bytes.fromhex(text).decode("utf-16-be"), 2
        except (ValueError, UnicodeDecodeError):
            raise BridgeError(_N.INVALID_MESSAGE, "charset 6: text must be hex UCS-2") from None
    if charset == 8:
        codes = text.split("%")
        try:
            if codes[0] or any(len(code) != 2 for code in codes[1:]):
                raise ValueError(text)
            data = bytes.fromhex("".join(codes[1:]))
            if any(b > 0x7F for b in data):
                raise ValueError(text)
            return gsm7_decode(data, strict=True), 0
        except ValueError:
            raise BridgeError(_N.INVALID_MESSAGE, "charset 8: text must be %-escaped GSM "
                                                  "03.38 codes, e.g. %7F%7E") from None
    return text, (0 if charset == 1 else None)


def _field(body: Mapping[str, Any], name: str, kind: type | tuple[type, ...],
           required: bool = True) -> Any:
    value = body.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        raise BridgeError(_N.INVALID_PARAMETER, f"{name} is missing or of the wrong type")
    return value


def _iso(at: float) -> str:
    return datetime.fromtimestamp(at, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _view(view: MessageView) -> dict[str, Any]:
    return {"submissionId": view.id, "recipient": view.recipient, "sender": view.source_addr,
            "status": view.state.value, "parts": view.parts,
            "partsDelivered": view.parts_delivered, "encoding": view.encoding,
            "createdAt": _iso(view.created_at), "updatedAt": _iso(view.updated_at),
            "error": view.error.lower() if view.error else None}


def _submission(result: RecipientResult) -> dict[str, Any]:
    if result.message_id is not None:  # a duplicate too: its first id, nothing sent twice
        return {"status": "submitted", "submissionId": result.message_id}
    name = result.error.name if result.error is not None else _N.INTERNAL_ERROR
    return {"status": ANSWERS[name].word, "recipient": result.recipient}


class JsonApi:
    def __init__(self, service: Service, config: Config, metrics: Metrics,
                 auth: AuthGuard) -> None:
        self.service = service
        self.http = config.http
        self.metrics = metrics
        self.auth = auth  # the listener's throttled credential check

    async def _account(self, request: web.Request) -> AccountConfig | None:
        scheme, _, token = request.headers.get("Authorization", "").strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None
        return (await self.auth.token(token.strip(), request.remote or "unknown")).account

    async def collection(self, request: web.Request) -> web.StreamResponse:
        """POST: send; GET: list."""
        return await self._guarded(request, self._send if request.method == "POST"
                                   else self._list if request.method == "GET" else None)

    async def item(self, request: web.Request) -> web.StreamResponse:
        return await self._guarded(request, self._status if request.method == "GET" else None)

    async def _guarded(self, request: web.Request, handler: Any) -> web.StreamResponse:
        """Authentication, then `handler`, with every refusal in this dialect's form."""
        try:
            account = await self._account(request)
            if account is None:
                refused(self.metrics, _N.AUTH_FAILED, "no or bad bearer token")
                return error(_N.AUTH_FAILED, "")
            if handler is None:
                return error(_N.INVALID_PARAMETER, f"{request.method} is not allowed here",
                             405)
            response: web.StreamResponse = await handler(request, account)
            return response
        except TooLarge:
            limit = self.http.max_request_bytes
            refused(self.metrics, _N.INVALID_PARAMETER, "too large")
            return error(_N.INVALID_PARAMETER, too_large(limit), 413)
        except BridgeError as exc:
            return error(exc.name, exc.detail or ANSWERS[exc.name].word)
        except Exception:  # a bug: the client hears "internal error", never a traceback
            log.exception("json api request failed")
            return error(_N.INTERNAL_ERROR, "nothing was accepted")

    async def _send(self, request: web.Request, account: AccountConfig) -> web.Response:
        raw = await read_body(request, self.http.max_request_bytes)
        try:
            body = json.loads(raw)
        except _NOT_JSON as exc:
            body = f"body is not JSON: {exc}"
        if not isinstance(body, dict):
            refused(self.metrics, _N.INVALID_PARAMETER, "not a JSON object", account.name)
            raise BridgeError(_N.INVALID_PARAMETER, body if isinstance(body, str) else
                              "body must be a JSON object")
        try:
            submission = self._request(account, body)
        except BridgeError as exc:
            refused(self.metrics, exc.name, exc.detail, account.name)
            raise
        results = await submit(self.service, self.metrics, submission)
        alone = sole_error(results)
        if alone is not None and alone.name in _REQUEST_WIDE:
            return error(alone.name, alone.detail or ANSWERS[alone.name].word)
        return web.json_response({"code": "SUCCESS",
                                  "submissions": [_submission(r) for r in results]})

    def _request(self, account: AccountConfig, body: Mapping[str, Any]) -> SubmitRequest:
        recipients = _field(body, "recipients", list)
        if not recipients or not all(isinstance(r, str) for r in recipients):
            raise BridgeError(_N.INVALID_PARAMETER, "recipients must be a list of numbers")
        sender = _field(body, "sender", str, required=False)
        message = _field(body, "message", dict)
        charset = _field(message, "charset", int)
        if charset not in _CHARSETS:
            raise BridgeError(_N.INVALID_TYPE, "message.charset must be 0, 1, 6 or 8")
        text, type_code = _decode_text(charset, _field(message, "text", str))
        callback = _field(body, "callbackUrl", str, required=False)
        meta = ((MetaKey.DIALECT, Dialect.JSON.value),)
        return SubmitRequest(
            account=account.name, recipients=tuple(Recipient(r) for r in recipients),
            text=text, ingress=Ingress.HTTP, sender=sender or None, type_code=type_code,
            meta=meta, callback_url=callback or None,
            report_mask=int(FINAL_EVENTS) if callback else None)

    async def _status(self, request: web.Request, account: AccountConfig) -> web.Response:
        wanted = request.match_info["id"]
        views = await self.service.status(account, [wanted])
        if not views:
            return error(_N.INVALID_PARAMETER, f"no submission {wanted}", 404)
        return web.json_response({"code": "SUCCESS", "submission": _view(views[0])})

    async def _list(self, request: web.Request, account: AccountConfig) -> web.Response:
        page_text = request.query.get("page", "1")
        if not page_text.isdigit():
            raise BridgeError(_N.INVALID_PARAMETER, "page must be a number from 1")
        page = await self.service.list_messages(account, page=int(page_text))
        return web.json_response({"code": "SUCCESS",
                                  "page": {"count": page.count, "number": page.number},
                                  "submissions": [_view(v) for v in page.messages]})
