"""The SOAP contract (SPEC §6 SOAP) as Spyne types and a Spyne service.

Spyne cannot await, and the bridge's `Service` is async. So every operation here is an
`async def`: Spyne calls it like any handler, gets a coroutine back as the "result", and the
transport in `bridge.ingress.soap.app` awaits it before Spyne serialises the response. Each operation
body only forwards to `Operations` (typed, plain Python) found in `ctx.udc`, so the untyped
Spyne surface is this module's declarations.

Repeated fields are plain repeated elements (`maxOccurs="unbounded"`), never ArrayOf wrappers.
Operation docstrings become the WSDL documentation.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable, Sequence

from spyne import (
    Application,
    Boolean,
    ComplexModel,
    DateTime,
    Double,
    Fault,
    Integer,
    ServiceBase,
    Unicode,
    rpc,
)
from spyne.evmgr import EventManager
from spyne.model.complex import ComplexModelBase
from spyne.protocol.soap import Soap11, Soap12

from bridge.config import AccountConfig
from bridge.core.errors import ERROR_TABLE, BridgeError, ErrorName
from bridge.core.model import Ingress
from bridge.core.states import MessageState
from bridge.metrics import Metrics
from bridge.intake.service import Recipient, Service, SubmitRequest, report_results
from bridge.ingress.soap.faults import TNS, SoapVersion
from bridge.store.base import MessageView

APP_NAME = "SmsBridge"
HTTP_TRANSPORT = "http://schemas.xmlsoap.org/soap/http"
_STATES = tuple(s.value for s in MessageState)


def _required(kind: Any, **kw: Any) -> Any:
    return kind(min_occurs=1, nillable=False, **kw)


def _optional(kind: Any, **kw: Any) -> Any:
    return kind(min_occurs=0, nillable=False, **kw)


class Submission(ComplexModel):  # type: ignore[misc]
    """The outcome for one recipient of a SendSms call."""

    __namespace__ = TNS
    _type_info = [
        ("recipient", _required(Unicode)),
        ("status", _required(Unicode)),  # "accepted" or a §5 error name
        ("message_id", _optional(Unicode)),
        ("parts", _required(Integer)),
        ("encoding", _optional(Unicode)),
        ("error", _optional(Unicode)),
        ("code", _optional(Integer)),
        ("detail", _optional(Unicode)),
    ]


class MessageStatus(ComplexModel):  # type: ignore[misc]
    """Where one message stands."""

    __namespace__ = TNS
    _type_info = [
        ("id", _required(Unicode)),
        ("state", _required(Unicode)),  # a §4 state, or "unknown"
        ("recipient", _optional(Unicode)),
        ("encoding", _optional(Unicode)),
        ("parts", _required(Integer)),
        ("parts_delivered", _required(Integer)),
        ("smsc_ids", _optional(Unicode, max_occurs="unbounded")),
        ("created", _optional(DateTime)),
        ("updated", _optional(DateTime)),
        ("error", _optional(Unicode)),
        ("code", _optional(Integer)),
    ]


class PageInfo(ComplexModel):  # type: ignore[misc]
    __namespace__ = TNS
    _type_info = [
        ("count", _required(Integer)),  # pages in all
        ("number", _required(Integer)),  # this page, from 1
        ("total", _required(Integer)),  # messages in all
    ]


class SmsBridgeService(ServiceBase):  # type: ignore[misc]
    @rpc(_required(Unicode, max_occurs="unbounded"), _required(Unicode), _optional(Unicode),  # type: ignore[untyped-decorator]
         _optional(Integer), _optional(Boolean), _optional(Boolean), _optional(Integer),
         _optional(DateTime), _optional(Unicode, max_len=256), _optional(Unicode, max_len=2048),
         _optional(Unicode, max_len=2048),
         _in_variable_names={"type_": "type"},
         _returns=Submission.customize(max_occurs="unbounded"),
         _out_variable_name="submissions")
    async def SendSms(ctx: Any, recipients: list[str] | None, text: str | None,
                      sender: str | None, type_: int | None, flash: bool | None,
                      dlr: bool | None, validity_minutes: int | None, send_at: datetime | None,
                      reference: str | None, callback_url: str | None,
                      url: str | None) -> list[Any]:
        """Send one SMS to each recipient. Returns one submission per recipient, in order:
        status "accepted" with its message_id, or the error name (e.g. INVALID_DESTINATION)
        and code; one bad number does not reject the others. type: 0 GSM text, 1 GSM flash,
        2 Unicode, 5 Latin-1, 6 Unicode flash, 7 Latin-1 flash (absent: cheapest exact
        encoding); 4 WAP Push: a Service Indication showing text and opening url.
        send_at schedules; reference is an idempotency key (the same key again
        returns the same ids). callback_url (http or https) gets a POST of JSON when the
        message reaches a final state: message_id, reference, recipient, state, at, parts,
        parts_delivered, error, code, error_detail, attempt; tried again, with a growing
        wait, until it answers 2xx or the bridge's attempts run out.
        Request-level refusals are SOAP faults carrying the error name and code."""
        ops: Operations = ctx.udc
        return await ops.send_sms(recipients or [], text, sender=sender, type_code=type_,
                                  flash=flash, dlr=dlr, validity_minutes=validity_minutes,
                                  send_at=send_at, reference=reference,
                                  callback_url=callback_url, url=url)

    @rpc(_required(Unicode, max_occurs="unbounded"),  # type: ignore[untyped-decorator]
         _returns=MessageStatus.customize(max_occurs="unbounded"),
         _out_variable_name="messages")
    async def GetStatus(ctx: Any, message_ids: list[str] | None) -> list[Any]:
        """Status of each message id, in order: state, parts, parts delivered, SMSC ids,
        created and updated times, error. Ids that are unknown (or belong to another account)
        come back with state "unknown"."""
        ops: Operations = ctx.udc
        return await ops.get_status(message_ids or [])

    @rpc(Integer(min_occurs=0, nillable=False, default=1, ge=1),  # type: ignore[untyped-decorator]
         _optional(Unicode, values=_STATES), _optional(DateTime),
         _returns=(PageInfo, MessageStatus.customize(max_occurs="unbounded")),
         _out_variable_names=("page", "messages"))
    async def ListMessages(ctx: Any, page: int | None, state: str | None,
                           since: datetime | None) -> tuple[Any, list[Any]]:
        """The account's messages, newest first, 25 per page (page numbers from 1), optionally
        only those in one state or created since a time."""
        ops: Operations = ctx.udc
        return await ops.list_messages(page or 1, state, since)

    @rpc(_returns=(_required(Unicode), _required(Integer), _optional(Integer),  # type: ignore[untyped-decorator]
                   _required(Double), _optional(Integer)),
         _out_variable_names=("name", "quota", "quota_left", "rate_per_s", "credit"))
    async def GetAccount(ctx: Any) -> tuple[str, int, int | None, float, int]:
        """The calling account: name, quota in parts (0 = unlimited), parts left (absent when
        unlimited; the credit counts), rate limit in messages per second, and the credit in
        parts an operator topped up beside the quota."""
        ops: Operations = ctx.udc
        return await ops.get_account()


class _PreparsedMixin:
    """The body was already parsed (hardened) by the transport: use that document, without
    SOAP-encoding href resolution (an amplification vector, and not needed by doc/literal),
    and find Header/Body with `find` (Spyne's version compiles two XPath expressions per
    request, ~60 µs, and fails with an AttributeError on an empty Body)."""

    ns_soap_env: str

    def create_in_document(self, ctx: Any, charset: str | None = None) -> None:
        if ctx.in_document is None:  # only the transport's pre-parsed path is supported
            raise RuntimeError("request body was not pre-parsed")

    def decompose_incoming_envelope(self, ctx: Any, message: Any = None) -> None:
        envelope, _ = ctx.in_document
        ns = self.ns_soap_env
        if envelope.tag != f"{{{ns}}}Envelope":
            raise Fault("Client.SoapError", f"No {{{ns}}}Envelope element was found")
        header = envelope.find(f"{{{ns}}}Header")
        body = envelope.find(f"{{{ns}}}Body")
        payload = body[0] if body is not None and len(body) else None
        if payload is None or payload.tag == f"{{{ns}}}Fault":
            raise Fault("Client.SoapError", "the SOAP Body holds no request")
        ctx.in_document = envelope
        ctx.in_header_doc = list(header) if header is not None else None
        ctx.in_body_doc = payload
        ctx.method_request_string = payload.tag
        self.validate_body(ctx, self.REQUEST)  # type: ignore[attr-defined]

    def deserialize(self, ctx: Any, message: Any) -> None:
        """The operation's arguments, in order, decoded by `decode_request` (a compiled decoder
        ~10x faster than Spyne's; the body already passed Spyne's schema validation)."""
        if not self.fast_decode or message != self.REQUEST:  # type: ignore[attr-defined]
            super().deserialize(ctx, message)  # type: ignore[misc]
            return
        try:
            ctx.in_object = decode_request(ctx.descriptor.in_message, ctx.in_body_doc)
        except (ValueError, TypeError, OverflowError) as exc:
            raise Fault("Client.ValidationError", str(exc)) from None

    fast_decode = True


class _Soap11(_PreparsedMixin, Soap11):  # type: ignore[misc]
    pass


class _Soap12(_PreparsedMixin, Soap12):  # type: ignore[misc]
    pass


def build_application(version: SoapVersion, services: Sequence[Any] = (SmsBridgeService,),
                      *, validate: bool = True) -> Any:
    """One Spyne Application per SOAP version (the in/out protocol decides the binding), on
    the protocols that take the transport's pre-parsed document."""
    proto: Any = _Soap11 if version is SoapVersion.V11 else _Soap12
    app = Application(list(services), tns=TNS, name=APP_NAME,
                      in_protocol=proto(validator="lxml" if validate else None),
                      out_protocol=proto())
    app.transport = HTTP_TRANSPORT
    quiet_events(app, app.in_protocol, app.out_protocol, app.interface, *services)
    return app


class _QuietEventManager(EventManager):  # type: ignore[misc]
    """Spyne's `fire_event` builds an empty ordered set, a self-referencing list, for every
    event nobody listens to: about ten per request, each left for the cyclic GC. This one
    looks the listeners up without building anything."""

    def fire_event(self, event_name: str, ctx: Any, *args: Any, **kwargs: Any) -> None:
        handlers = self.handlers.get(event_name)
        if handlers:
            for handler in handlers:
                handler(ctx, *args, **kwargs)


def quiet_events(*owners: Any) -> None:
    """Give each owner's Spyne event manager `_QuietEventManager`'s `fire_event` (same
    listeners, same order)."""
    for owner in owners:
        manager = getattr(owner, "event_manager", None)
        if type(manager) is EventManager:
            manager.__class__ = _QuietEventManager


# ------------------------------------------------------------------------------ responses
#
# Spyne's serialiser costs ~270 µs for a one-submission SendSms response (more than the rest of
# the SOAP path together), mostly per-field attribute lookups and namespace cleanup. This
# encoder is compiled once per response type from the same Spyne declarations and writes the
# bytes Spyne would write (tests/soap/test_soap_encoding.py compares the two byte for byte).

_INVALID_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")
_ENV_PREFIX = {SoapVersion.V11: "soap11env", SoapVersion.V12: "soap12env"}

_Field = tuple[str, bool, Callable[[Any], str]]


def _text(value: Any) -> str:
    text = str(value)
    if "&" in text:
        text = text.replace("&", "&amp;")
    if "<" in text:
        text = text.replace("<", "&lt;")
    if ">" in text:
        text = text.replace(">", "&gt;")
    if "\r" in text:
        text = text.replace("\r", "&#13;")
    return _INVALID_XML.sub("", text)


def _boolean(value: Any) -> str:
    return "true" if value else "false"


def _integer(value: Any) -> str:
    return str(int(value))


def _double(value: Any) -> str:
    return repr(float(value))


def _datetime(value: Any) -> str:
    return str(value.isoformat())


def _encoder(kind: Any) -> Callable[[Any], str]:
    if issubclass(kind, ComplexModelBase):
        fields = _fields(kind)
        return lambda value: _members(fields, [getattr(value, f[0], None) for f in fields])
    for base, encode in ((Boolean, _boolean), (Integer, _integer), (Double, _double),
                         (DateTime, _datetime), (Unicode, _text)):
        if issubclass(kind, base):
            return encode
    raise TypeError(f"no fast encoder for {kind!r}")


def _fields(cls: Any) -> tuple[_Field, ...]:
    return tuple((name, (kind.Attributes.max_occurs or 1) > 1, _encoder(kind))
                 for name, kind in cls._type_info.items())


def _members(fields: Sequence[_Field], values: Sequence[Any]) -> str:
    out = []
    for (name, many, encode), value in zip(fields, values):
        if value is None:
            continue
        for item in (value if many else (value,)):
            if item is not None:
                out.append(f"<tns:{name}>{encode(item)}</tns:{name}>")
    return "".join(out)


_PLANS: dict[Any, tuple[str, tuple[_Field, ...]]] = {}


def encode_response(version: SoapVersion, descriptor: Any, out_object: Sequence[Any]) -> bytes:
    """The response envelope for a wrapped document/literal operation whose result values
    are `out_object` (one per output part, as Spyne holds them)."""
    message = descriptor.out_message
    plan = _PLANS.get(message)
    if plan is None:
        plan = _PLANS[message] = (message.get_type_name(), _fields(message))
    name, fields = plan
    env = _ENV_PREFIX[version]
    body = _members(fields, out_object)
    inner = f"<tns:{name}>{body}</tns:{name}>" if body else f"<tns:{name}/>"
    return (f"<?xml version='1.0' encoding='UTF-8'?>\n<{env}:Envelope "
            f'xmlns:{env}="{version.envelope_ns}" xmlns:tns="{TNS}"><{env}:Body>{inner}'
            f"</{env}:Body></{env}:Envelope>").encode()


# ------------------------------------------------------------------------------ requests
#
# The request counterpart: after schema validation, an operation's arguments are decoded by a
# plan compiled once per request type from the Spyne declarations (Spyne's own decoder costs
# ~85 µs for a one-recipient SendSms). tests/soap/test_soap_encoding.py checks it agrees with
# Spyne's decoder on the same documents.

_Arg = tuple[int, bool, Callable[[str], Any]]


def _decode_boolean(text: str) -> bool:
    value = text.strip()
    if value in ("true", "1"):
        return True
    if value in ("false", "0"):
        return False
    raise ValueError(f"not a boolean: {value!r}")


def _decode_integer(text: str) -> int:
    return int(text.strip())


def _decode_double(text: str) -> float:
    return float(text.strip())


def _decode_datetime(text: str) -> datetime:
    return datetime.fromisoformat(text.strip())


def _decode_text(text: str) -> str:
    return text


def _decoder(kind: Any) -> Callable[[str], Any]:
    for base, decode in ((Boolean, _decode_boolean), (Integer, _decode_integer),
                         (Double, _decode_double), (DateTime, _decode_datetime),
                         (Unicode, _decode_text)):
        if issubclass(kind, base):
            return decode
    raise TypeError(f"no fast decoder for {kind!r}")


_ARGS: dict[Any, tuple[dict[str, _Arg], list[Any]]] = {}


def decode_request(message: Any, element: Any) -> list[Any]:
    """Argument values (in declaration order) of a wrapped request element; missing ones are
    their declared default or None, repeated ones a list (empty when absent)."""
    plan = _ARGS.get(message)
    if plan is None:
        ns = message.get_namespace()
        args: dict[str, _Arg] = {}
        defaults: list[Any] = []
        for index, (name, kind) in enumerate(message._type_info.items()):
            many = (kind.Attributes.max_occurs or 1) > 1
            args[f"{{{ns}}}{name}"] = (index, many, _decoder(kind))
            defaults.append([] if many else kind.Attributes.default)
        plan = _ARGS[message] = (args, defaults)
    args, defaults = plan
    values = [list(d) if isinstance(d, list) else d for d in defaults]
    for child in element:
        found = args.get(child.tag)
        if found is None:
            raise ValueError(f"unexpected element {child.tag}")
        index, many, decode = found
        value = decode(child.text or "")
        if many:
            values[index].append(value)
        else:
            values[index] = value
    return values


# ------------------------------------------------------------------------------ operations


def _utc(moment: datetime) -> float:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.timestamp()


def _dt(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, tz=timezone.utc)


@dataclass(slots=True)
class SubmissionRow:
    """A `Submission` value. The response encoder reads values by the Spyne field names, so
    plain slotted objects do (constructing Spyne ComplexModel instances costs ~30 µs each);
    tests/soap/test_soap_encoding.py keeps the field lists identical."""

    recipient: str
    status: str
    parts: int
    message_id: str | None = None
    encoding: str | None = None
    error: str | None = None
    code: int | None = None
    detail: str | None = None


@dataclass(slots=True)
class StatusRow:
    """A `MessageStatus` value (see SubmissionRow)."""

    id: str
    state: str
    parts: int
    parts_delivered: int
    recipient: str | None = None
    encoding: str | None = None
    smsc_ids: list[str] | None = None
    created: datetime | None = None
    updated: datetime | None = None
    error: str | None = None
    code: int | None = None


def _status_of(view: MessageView) -> StatusRow:
    code = ERROR_TABLE[ErrorName(view.error)].code if view.error in ErrorName.__members__ else None
    return StatusRow(id=view.id, state=view.state.value, recipient=view.recipient,
                     encoding=view.encoding, parts=view.parts,
                     parts_delivered=view.parts_delivered, smsc_ids=list(view.smsc_ids),
                     created=_dt(view.created_at), updated=_dt(view.updated_at),
                     error=view.error, code=code)


@dataclass(slots=True)
class Operations:
    """What one authenticated request may do; the typed side of each Spyne operation."""

    service: Service
    account: AccountConfig
    metrics: Metrics
    max_recipients: int

    async def send_sms(self, recipients: Sequence[str | None], text: str | None, *,
                       sender: str | None, type_code: int | None, flash: bool | None,
                       dlr: bool | None, validity_minutes: int | None,
                       send_at: datetime | None, reference: str | None,
                       callback_url: str | None, url: str | None = None
                       ) -> list[SubmissionRow]:
        count = max(1, len(recipients))
        try:
            if text is None:
                raise BridgeError(ErrorName.INVALID_PARAMETER, "text is required")
            request = SubmitRequest(
                account=self.account.name,
                recipients=tuple(Recipient(r or "") for r in recipients),
                text=text, ingress=Ingress.SOAP, sender=sender or None, type_code=type_code,
                flash=bool(flash), dlr=True if dlr is None else dlr,
                validity_minutes=validity_minutes,
                send_at=_utc(send_at) if send_at is not None else None,
                reference=reference or None, callback_url=callback_url or None,
                url=url or None)
            results = await self.service.submit(request)
        except BridgeError as exc:
            self.metrics.rejected("soap", exc.name.value, count)
            raise
        report_results(results, ingress=Ingress.SOAP, account=self.account.name, metrics=self.metrics)
        out: list[SubmissionRow] = []
        for r in results:
            if r.status == "accepted":
                out.append(SubmissionRow(recipient=r.recipient, status="accepted",
                                         message_id=r.message_id, parts=r.parts,
                                         encoding=r.encoding))
            else:
                err = r.error
                out.append(SubmissionRow(
                    recipient=r.recipient, status=r.status, message_id=r.message_id,
                    parts=r.parts, encoding=r.encoding, error=r.status,
                    code=err.spec.code if err is not None else None,
                    detail=(err.detail or None) if err is not None else None))
        return out

    async def get_status(self, ids: Sequence[str | None]) -> list[StatusRow]:
        if len(ids) > self.max_recipients:
            raise BridgeError(ErrorName.INVALID_PARAMETER,
                              f"at most {self.max_recipients} ids per request")
        wanted = [i or "" for i in ids]
        views = {v.id: v for v in await self.service.status(self.account, wanted)}
        return [_status_of(views[i]) if i in views else
                StatusRow(id=i, state="unknown", parts=0, parts_delivered=0)
                for i in wanted]

    async def list_messages(self, page: int, state: str | None,
                            since: datetime | None) -> tuple[Any, list[StatusRow]]:
        try:
            wanted = MessageState(state) if state else None
        except ValueError:
            raise BridgeError(ErrorName.INVALID_PARAMETER, f"unknown state {state!r}") from None
        result = await self.service.list_messages(
            self.account, page=page, state=wanted,
            since=_utc(since) if since is not None else None)
        info = PageInfo(count=result.count, number=result.number, total=result.total)
        return info, [_status_of(v) for v in result.messages]

    async def get_account(self) -> tuple[str, int, int | None, float, int]:
        info = await self.service.account_info(self.account)
        return info.name, info.quota, info.quota_left, info.rate_per_s, info.credit
