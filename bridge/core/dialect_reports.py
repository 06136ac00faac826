"""Each HTTP dialect's delivery report, as its clients know it (SPEC §6 HTTP): what request a
queued report event becomes, and what answer ends it.

- Kannel (`dlr-url`): a GET of the client's URL with Kannel 1.4.5's %-escapes filled in for
  the DLR message Kannel would build: type %d (1 delivered, 2 failed, 4 buffered, 8 SMSC
  accepted, 16 SMSC rejected), the receipt or "ACK/" / "NACK/…" as the text, receiver and
  sender as the client wrote them, and so on (`kannel_url`).
- Jasmin (`dlr-url`, `dlr-level`, `dlr-method`): the fields of Jasmin's HTTP DLR, level 1 for
  the SMSC's answer and level 2 for the receipt; ended only by the body `ACK/Jasmin`.
- Bulk-SMS (`dlr=1`, the account's `dlr_url`): a form POST of the bulk-HTTP report push.
- The JSON API (`callbackUrl`): a JSON POST.

The bridge keeps a receipt's stat and err, not the SMSC's text, so where a report quotes the
receipt it is written in the SMPP 3.4 Appendix B form from what was kept (the message's first
20 characters as its text, anything but plain ASCII as "?", as most SMSCs write them).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from enum import Enum
from urllib.parse import urlencode

from bridge.core.errors import ERROR_TABLE, ErrorName
from bridge.core.meta import MetaKey
from bridge.core.reports import BUFFERED, EVENT_OF, FINAL_EVENTS, ReportEvent
from bridge.core.smpp_status import kannel_description, refused_status, status_name
from bridge.core.states import MessageState


class Dialect(str, Enum):
    BULKSMS = "bulksms"
    JSON = "json"
    KANNEL = "kannel"
    JASMIN = "jasmin"


@dataclass(frozen=True)
class ReportFacts:
    """One queued report event and the message it is about (bridge.store.base.DueCallback,
    with what the config knows of its SMSC)."""

    message_id: str
    event: str  # a MessageState value or "buffered"
    event_detail: str | None  # a buffered event's receipt stat
    at: float
    account: str
    recipient: str  # E.164
    raw_recipient: str  # as the client wrote it
    source_addr: str | None
    text: str
    created_at: float
    submitted_at: float | None
    smsc: str | None
    smsc_id: str | None
    smsc_system_id: str
    smsc_id_format: str  # [[smsc]] id_format: hex, dec or auto
    receipt_stat: str | None
    receipt_err: str | None
    error: str | None
    error_detail: str | None
    parts: int
    mask: int | None
    meta: Mapping[MetaKey, str]
    attempt: int  # from 1

    @property
    def kind(self) -> ReportEvent:
        return EVENT_OF[self.event]

    @property
    def sender(self) -> str:
        return self.meta.get(MetaKey.SENDER) or self.source_addr or ""


@dataclass(frozen=True)
class ReportRequest:
    method: str  # GET or POST
    url: str
    body: bytes = b""
    content_type: str | None = None
    #: The body the receiver must answer with for the report to count as delivered (Jasmin);
    #: None: any 2xx.
    ack: str | None = None


# ------------------------------------------------------------------ the receipt as text

_RECEIPT_SAFE = re.compile(r"[^A-Za-z0-9 .,!?;:'\"()+\-/%&*#=<>]")


def _utc(at: float, form: str) -> str:
    return datetime.fromtimestamp(at, tz=timezone.utc).strftime(form)


def _date10(at: float) -> str:
    return _utc(at, "%y%m%d%H%M")


def receipt_stat(facts: ReportFacts) -> str:
    """The Appendix B stat the event stands for: the receipt's, else what the state says."""
    if facts.event == BUFFERED:
        return facts.event_detail or "ACCEPTD"
    if facts.receipt_stat and facts.event != MessageState.FAILED.value:
        return facts.receipt_stat
    return {MessageState.DELIVERED.value: "DELIVRD", MessageState.EXPIRED.value: "EXPIRED",
            MessageState.UNDELIVERABLE.value: "UNDELIV"}.get(facts.event, "REJECTD")


def smsc_id(facts: ReportFacts) -> str:
    """The SMSC's id as Kannel shows it with msg-id-type 0x01 (submits answered in hex,
    receipts in decimal: the decimal form): an id the SMSC writes in hex (id_format "hex",
    or "auto" and not all digits) in decimal, any other as it is."""
    found = facts.smsc_id
    if found is None:
        return ""
    if facts.smsc_id_format == "hex" or (facts.smsc_id_format == "auto" and not found.isdigit()):
        try:
            return str(int(found, 16))
        except ValueError:
            return found
    return found


def receipt_text(facts: ReportFacts) -> str:
    stat = receipt_stat(facts)
    return (f"id:{smsc_id(facts)} sub:001 dlvrd:{'001' if stat == 'DELIVRD' else '000'} "
            f"submit date:{_date10(facts.submitted_at or facts.created_at)} "
            f"done date:{_date10(facts.at)} stat:{stat} err:{facts.receipt_err or '000'} "
            f"text:{_RECEIPT_SAFE.sub('?', facts.text[:20])}")


# ------------------------------------------------------------------ Kannel

_KANNEL_SAFE = frozenset(b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                         b"-_.!~*'()")


def kannel_encode(text: str | bytes) -> str:
    """Kannel's octstr_url_encode: alphanumerics and -_.!~*'() kept, a space as "+",
    every other octet as %XX."""
    data = text.encode("utf-8") if isinstance(text, str) else text
    return "".join(chr(b) if b in _KANNEL_SAFE else "+" if b == 0x20 else f"%{b:02X}"
                   for b in data)


def kannel_type(facts: ReportFacts) -> int:
    """Kannel's DLR type for the event (the dlr-mask bits are the report events' own)."""
    return int(facts.kind)


def kannel_text(facts: ReportFacts) -> str:
    kind = facts.kind
    if kind is ReportEvent.SUBMITTED:
        return "ACK/"
    if kind is ReportEvent.FAILED:
        status = refused_status(facts.error_detail)
        if status is None:
            status = 0xFF
        return f"NACK/0x{status:08x}/{kannel_description(status)}"
    return receipt_text(facts)


def _kannel_meta(facts: ReportFacts) -> bytes:
    mask = facts.mask if facts.mask is not None else int(FINAL_EVENTS)
    if facts.kind in (ReportEvent.SUBMITTED, ReportEvent.FAILED):
        # Kannel marks the answer to a submit; a message it had to split has none of its own.
        head = "?smpp_resp?" if facts.parts == 1 else ""
        return f"{head}?orig_msg?dlr_mask={mask}&".encode()
    try:
        err = int(facts.receipt_err or "0")
    except ValueError:
        err = 0
    code = kannel_encode(bytes((0x03, (err >> 8) & 0xFF, err & 0xFF)))
    return f"?orig_msg?dlr_mask={mask}&?smpp?dlr_err={code}&".encode()


def _plus_for_00(number: str) -> str:
    return "%2B" + kannel_encode(number[2:]) if number.startswith("00") else kannel_encode(number)


def _receipt_side(facts: ReportFacts) -> bool:
    return facts.kind not in (ReportEvent.SUBMITTED, ReportEvent.FAILED)


def kannel_url(template: str, facts: ReportFacts) -> str:
    """`template` with every %-escape Kannel 1.4.5 fills in for a DLR (urltrans.c): the same
    letters, the same values, the same encoding; an unknown letter stays as written."""
    text = kannel_text(facts)
    words = text.split()
    sender, receiver = facts.sender, facts.raw_recipient
    fixed: dict[str, str] = {
        "A": kannel_encode(text), "b": kannel_encode(text),
        "a": "+".join(kannel_encode(w) for w in words),
        "k": kannel_encode(words[0]) if words else "",
        "B": "", "c": "-1", "C": "UTF-8", "d": str(kannel_type(facts)),
        "D": kannel_encode(_kannel_meta(facts)), "f": "",
        "F": kannel_encode(smsc_id(facts)) if facts.kind is not ReportEvent.FAILED else "",
        "i": kannel_encode(facts.smsc or ""), "I": facts.message_id,
        "m": "-1", "M": "-1", "n": kannel_encode(facts.meta.get(MetaKey.USER, facts.account)),
        "o": kannel_encode(facts.smsc_system_id) if _receipt_side(facts) else "", "O": "00",
        "p": kannel_encode(receiver), "P": kannel_encode(sender),
        "q": _plus_for_00(receiver), "Q": _plus_for_00(sender),
        "t": _utc(facts.at, "%Y-%m-%d+%H:%M:%S"),
        "T": str(int(facts.at)), "u": "", "%": "%",
    }
    out: list[str] = []
    next_word = 1
    pos = 0
    while pos < len(template):
        c = template[pos]
        if c != "%" or pos + 1 >= len(template):
            out.append(c)
            pos += 1
            continue
        letter = template[pos + 1]
        pos += 2
        if letter in fixed:
            out.append(fixed[letter])
        elif letter == "r":
            out.append("+".join(kannel_encode(w) for w in words[next_word:]))
        elif letter in ("s", "S"):
            if next_word < len(words):
                word = words[next_word]
                out.append(kannel_encode(word) if letter == "s" else word.replace("*", "~"))
                next_word += 1
        else:
            out.append("%" + letter)
    return "".join(out)


# ------------------------------------------------------------------ Jasmin

JASMIN_ACK = "ACK/Jasmin"


def jasmin_fields(facts: ReportFacts) -> dict[str, str]:
    """Level 1 (the SMSC's answer) or level 2 (the receipt) fields of a Jasmin DLR."""
    connector = facts.smsc or ""
    if facts.kind in (ReportEvent.SUBMITTED, ReportEvent.FAILED):
        status = 0 if facts.kind is ReportEvent.SUBMITTED else \
            refused_status(facts.error_detail)
        return {"id": facts.message_id, "message_status":
                status_name(0xFF if status is None else status), "level": "1",
                "connector": connector}
    stat = receipt_stat(facts)
    return {"id": facts.message_id, "message_status": stat, "level": "2",
            "connector": connector, "id_smsc": facts.smsc_id or "", "sub": "001",
            "dlvrd": "001" if stat == "DELIVRD" else "000",
            "subdate": _date10(facts.submitted_at or facts.created_at),
            "donedate": _date10(facts.at), "err": facts.receipt_err or "000",
            "text": facts.text[:20]}


def jasmin_request(url: str, facts: ReportFacts) -> ReportRequest:
    fields = urlencode(jasmin_fields(facts))
    if facts.meta.get(MetaKey.DLR_METHOD, "GET").upper() == "POST":
        return ReportRequest("POST", url, fields.encode(), "application/x-www-form-urlencoded",
                             ack=JASMIN_ACK)
    return ReportRequest("GET", f"{url}{'&' if '?' in url else '?'}{fields}", ack=JASMIN_ACK)


# ------------------------------------------------------------------ bulk-SMS and JSON

def _stamp(at: float) -> str:
    return _utc(at, "%Y-%m-%d %H:%M:%S")


def _error_code(facts: ReportFacts) -> int:
    if facts.receipt_err and facts.receipt_err.isdigit() and facts.event != "failed":
        return int(facts.receipt_err)
    try:
        return ERROR_TABLE[ErrorName(facts.error)].code if facts.error else 0
    except ValueError:
        return 0


def bulksms_fields(facts: ReportFacts) -> dict[str, str]:
    """The bulk-HTTP report push: sStatus DELIVRD, UNDELIV, EXPIRED or REJECTD."""
    return {"sMessageId": facts.message_id, "sMobileNo": facts.recipient.lstrip("+"),
            "sSender": facts.sender, "sStatus": receipt_stat(facts),
            "dtSubmit": _stamp(facts.submitted_at or facts.created_at),
            "dtDone": _stamp(facts.at), "iErrCode": str(_error_code(facts))}


def json_document(facts: ReportFacts) -> bytes:
    """The JSON API's report: the submission's id and status as `GET /api/sms/{id}` names
    them, the §5 error if any."""
    status = "buffered" if facts.event == BUFFERED else facts.event
    document = {"submissionId": facts.message_id, "recipient": facts.recipient,
                "status": status, "at": _stamp(facts.at).replace(" ", "T") + "Z",
                "error": (facts.error or "").lower() or None, "attempt": facts.attempt}
    return json.dumps(document, separators=(",", ":")).encode()


def report_request(dialect: Dialect, url: str, facts: ReportFacts) -> ReportRequest:
    """The HTTP request that reports `facts` in `dialect`."""
    if dialect is Dialect.KANNEL:
        return ReportRequest("GET", kannel_url(url, facts))
    if dialect is Dialect.JASMIN:
        return jasmin_request(url, facts)
    if dialect is Dialect.BULKSMS:
        return ReportRequest("POST", url, urlencode(bulksms_fields(facts)).encode(),
                             "application/x-www-form-urlencoded")
    return ReportRequest("POST", url, json_document(facts), "application/json; charset=utf-8")


def dialect_of(meta: Mapping[MetaKey, str]) -> Dialect | None:
    """The dialect that took a message, from its meta; None for SMTP and SOAP."""
    try:
        return Dialect(meta[MetaKey.DIALECT])
    except (KeyError, ValueError):
        return None
