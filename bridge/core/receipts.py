"""Delivery receipts (SMPP 3.4 Appendix B) and SMSC message-id matching keys. Pure: no I/O.

A receipt arrives as a deliver_sm whose short_message is conventionally

    id:IIIIIIIIII sub:SSS dlvrd:DDD submit date:YYMMDDhhmm done date:YYMMDDhhmm stat:DDDDDDD err:E text:...

but real SMSCs vary the field order and case ("Text:", "Stat:"), leave fields out, write dates
with seconds (12 digits), add their own fields ("imsi:", "mcc:"), or send nothing but the
receipted_message_id / message_state TLVs. `parse_receipt` accepts all of these.

Matching a receipt to its submit is done on *keys* (`smsc_id_keys`), not on the raw string:
many SMSCs answer submit_sm with a hex id and put the decimal form of the same number in the
receipt text, and some zero-pad one side.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from types import MappingProxyType
from typing import Mapping

from bridge.core.states import MESSAGE_STATE_STAT

# Appendix B final and interim states, as written in the receipt text.
STAT_NAMES: tuple[str, ...] = (
    "DELIVRD", "EXPIRED", "DELETED", "UNDELIV", "ACCEPTD", "UNKNOWN", "REJECTD",
)

# Receipt-text stat → message_state TLV value (the inverse of states.MESSAGE_STATE_STAT).
_STAT_MESSAGE_STATE: Mapping[str, int] = MappingProxyType(
    {stat: state for state, stat in MESSAGE_STATE_STAT.items()})

# Spellings seen in the wild for the seven-letter Appendix B names.
_STAT_ALIASES: Mapping[str, str] = MappingProxyType({
    "DELIVERED": "DELIVRD", "DELIVER": "DELIVRD", "UNDELIVERABLE": "UNDELIV",
    "UNDELIVERED": "UNDELIV", "ACCEPTED": "ACCEPTD", "REJECTED": "REJECTD",
    "ENROUTE": "ENROUTE", "EN_ROUTE": "ENROUTE",
})


@dataclass(frozen=True)
class Receipt:
    message_id: str            # the SMSC id as written in the receipt (TLV preferred)
    stat: str | None           # Appendix B name (aliases normalised), or from message_state
    message_state: int | None  # TLV 0x0427, or derived from stat when the TLV is absent
    err: str | None
    submit_date: str | None    # digits as sent: YYMMDDhhmm or YYMMDDhhmmss
    done_date: str | None
    text: str | None


# A field name starts at the beginning or after whitespace/separator; "submit date" may also be
# written "submit_date" or "submitdate".
_FIELD = re.compile(
    r"(?:^|(?<=[\s,;]))(id|sub|dlvrd|submit[ _]?date|done[ _]?date|stat|err|text)\s*:\s*",
    re.IGNORECASE)


def _canonical_field(name: str) -> str:
    name = name.lower()
    if name.startswith("submit"):
        return "submit_date"
    if name.startswith("done"):
        return "done_date"
    return name


_TOKEN = re.compile(r"[^\s,;]+")


def _first_token(value: str) -> str | None:
    match = _TOKEN.match(value.lstrip())
    return match.group(0) if match else None


def _normalise_stat(stat: str | None) -> str | None:
    if stat is None:
        return None
    upper = stat.strip().upper()
    if not upper:
        return None
    return _STAT_ALIASES.get(upper, upper)


def _text_of(short_message: bytes | str) -> str:
    if isinstance(short_message, str):
        return short_message
    # Receipt texts are ASCII in practice; Latin-1 never fails and keeps every byte visible.
    return short_message.decode("latin-1")


# The exact Appendix B layout, which most SMSCs (and the simulator) send: one regex, no scan.
_STANDARD = re.compile(
    r"id:(?P<id>[^\s,;]+) sub:\S* dlvrd:\S* submit date:(?P<submit_date>\S*) "
    r"done date:(?P<done_date>\S*) stat:(?P<stat>[^\s,;]*) err:(?P<err>[^\s,;]*)"
    r"(?: text:\s*(?P<text>.*))?\Z", re.DOTALL)


def _fields_any(body: str) -> tuple[dict[str, str], str | None]:
    """Fields in any order and case, with extra fields and a text anywhere."""
    matches = [(_canonical_field(m.group(1)), m) for m in _FIELD.finditer(body)]
    text_value: str | None = None
    text_span = (len(body), len(body))
    for index, (name, match) in enumerate(matches):
        if name != "text":
            continue
        before = {n for n, _ in matches[:index]}
        end = len(body)
        for later_name, later in matches[index + 1:]:
            if later_name != "text" and later_name not in before:
                end = later.start()
                break
        text_value = body[match.end():end].rstrip()
        text_span = (match.start(), end)
        break
    fields: dict[str, str] = {}
    for index, (name, match) in enumerate(matches):
        if name == "text" or name in fields or text_span[0] <= match.start() < text_span[1]:
            continue
        end = matches[index + 1][1].start() if index + 1 < len(matches) else len(body)
        token = _first_token(body[match.end():end])
        if token is not None:
            fields[name] = token
    return fields, text_value


def parse_receipt(short_message: bytes | str, *, receipted_message_id: str | None = None,
                  message_state: int | None = None) -> Receipt | None:
    """Parse an Appendix B receipt text plus its TLVs; None when no message id can be found.

    Rules: every field but `text` is the first whitespace-delimited token after its name, so
    unknown extra fields cannot leak into them. `text` runs to the end of the message, except
    when fields not yet seen follow it (an SMSC that puts text first): then it stops there.
    The receipted_message_id TLV is preferred over the text's id (SMPP 3.4 defines it as the
    id given in submit_sm_resp); missing stat / message_state are derived from each other.
    """
    body = _body(short_message)
    match = _STANDARD.match(body)
    if match is not None:  # nearly every SMSC: the fields straight from the regex groups
        text_id, submit_date, done_date, stat, err, text = match.groups()
        return _receipt(text_id, submit_date, done_date, stat, err, text,
                        receipted_message_id, message_state)
    return _receipt_any(body, receipted_message_id, message_state)


def _body(short_message: bytes | str) -> str:
    body = _text_of(short_message)
    return body.replace("\x00", "") if "\x00" in body else body


def _receipt_any(body: str, receipted_message_id: str | None,
                 message_state: int | None) -> Receipt | None:
    """Fields in any order and case (`_fields_any`)."""
    fields, text = _fields_any(body)
    return _receipt(fields.get("id"), fields.get("submit_date"), fields.get("done_date"),
                    fields.get("stat"), fields.get("err"), text, receipted_message_id,
                    message_state)


def _receipt(text_id: str | None, submit_date: str | None, done_date: str | None,
             stat: str | None, err: str | None, text: str | None,
             receipted_message_id: str | None, message_state: int | None) -> Receipt | None:
    """The Receipt of one receipt's fields (in `_STANDARD`'s group order) and TLVs."""
    tlv_id = receipted_message_id.replace("\x00", "").strip() if receipted_message_id else ""
    message_id = tlv_id or text_id
    if not message_id:
        return None
    stat = _normalise_stat(stat)
    if stat is None and message_state is not None:
        stat = MESSAGE_STATE_STAT.get(message_state)
    state = message_state
    if state is None and stat is not None:
        state = _STAT_MESSAGE_STATE.get(stat)
    if text is not None:
        text = text.rstrip() or None
    return Receipt(message_id, stat, state, err or None,
                   submit_date if submit_date and submit_date.isdigit() else None,
                   done_date if done_date and done_date.isdigit() else None, text)


# ------------------------------------------------------------------ id matching keys

_HEX_DIGITS = "0123456789abcdef"


def smsc_id_keys(raw: str, id_format: str) -> tuple[str, ...]:
    """Canonical match keys of an SMSC message id; a receipt matches a submit when their key
    sets intersect. Keys carry their kind as a prefix ("int:", "raw:") so a store can index
    them in one column.

    - "hex": the id is a base-16 number: ("int:<value>",). Case and zero padding do not matter.
    - "dec": the id is a base-10 number: ("int:<value>",).
    - "auto": every plausible reading: "raw:<lowercase, leading zeros stripped>", plus the
      base-10 value when all digits, plus the base-16 value when all hex digits.
    An id that is not a number in the configured base (e.g. a UUID) falls back to its raw key,
    so such ids still match themselves exactly. The strongest key (raw in "auto") comes first.

    False-match risk of "auto": an all-digit id has two readings, so the decimal receipt id
    "22" (= 0x16) also carries int:34 (0x22), which is the key of the *different* hex id "22".
    Two pending submits can therefore share a key with one receipt when (a) both are still
    awaiting a receipt on the same SMSC (the store must scope keys by SMSC), and (b) one id's
    hex digits spell the other's decimal value. For SMSCs with long random or time-based ids
    (the common case: 8–16 hex digits / 10+ decimal digits) this is vanishingly rare; for an
    SMSC with small sequential ids it is systematic. It is accepted as the default because the
    alternative — guessing one base — loses *every* receipt of an SMSC that acks in hex and
    reports in decimal, and a mismatch only misattributes a status, it never sends anything.
    The store should prefer a match on an earlier key (raw) and, when still ambiguous, the
    most recent submit; operators of SMSCs with small sequential ids set "hex" or "dec".
    """
    text = (raw.replace("\x00", "") if "\x00" in raw else raw).strip().lower()
    if not text:
        return ("raw:",)
    is_dec = text.isascii() and text.isdigit()
    is_hex = not text.strip(_HEX_DIGITS)  # nothing left once every hex digit is stripped
    if id_format == "hex":
        return (f"int:{int(text, 16)}",) if is_hex else (f"raw:{text}",)
    if id_format == "dec":
        return (f"int:{int(text, 10)}",) if is_dec else (f"raw:{text}",)
    stripped = text.lstrip("0") or "0"
    keys = [f"raw:{stripped}"]
    if is_dec:
        keys.append(f"int:{int(text, 10)}")
    if is_hex:
        key = f"int:{int(text, 16)}"
        if key not in keys:
            keys.append(key)
    return tuple(keys)
