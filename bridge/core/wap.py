"""WAP Push Service Indication over SMS (legacy type 4): the bytes a handset expects.

Three layers, each from its specification, each table-driven:

- the SI document in WBXML (WAP-167 ServiceInd §8: tag and attribute tokens, the URL value
  tokens, dates as OPAQUE packed digits; the same tables as Kannel's wap_push_si_compiler.c);
- the WSP connectionless Push PDU around it (WAP-230 WSP §8.2.4.1: TID, PDU type 0x06, the
  headers' length as a uintvar, the content type as a well-known value,
  application/vnd.wap.sic = 0x2E);
- the WDP datagram over SMS (WAP-259 WDP Annex A / TS 23.040 §9.2.3.24.4): a UDH with 16-bit
  application ports, destination 2948 (WAP Push connectionless) and source 9200, and the
  concatenation element when the PDU needs more than one SMS; 8-bit data (data_coding 0x04).

Pure: the caller gives the concatenation reference, as for text messages.
"""

from __future__ import annotations

import re

from bridge.core.errors import BridgeError, ErrorName

WBXML_VERSION = 0x02  # 1.2
SI_PUBLIC_ID = 0x05  # -//WAPFORUM//DTD SI 1.0//EN
CHARSET_UTF8 = 0x6A  # IANA MIBenum 106

_END, _STR_I, _OPAQUE = 0x01, 0x03, 0xC3
_CONTENT, _ATTRIBUTES = 0x40, 0x80
_SI, _INDICATION = 0x05, 0x06

#: Attribute start tokens (WAP-167 §8.3.2), longest value prefix first.
_HREF_STARTS: tuple[tuple[str, int], ...] = (
    ("https://www.", 0x0F), ("http://www.", 0x0D), ("https://", 0x0E), ("http://", 0x0C),
    ("", 0x0B))
ACTIONS = {"signal-none": 0x05, "signal-low": 0x06, "signal-medium": 0x07,
           "signal-high": 0x08, "delete": 0x09}
_CREATED, _SI_EXPIRES, _SI_ID = 0x0A, 0x10, 0x11
#: Attribute value tokens (WAP-167 §8.3.3).
_URL_VALUES = {".com/": 0x85, ".edu/": 0x86, ".net/": 0x87, ".org/": 0x88}
_URL_VALUE = re.compile("|".join(re.escape(v) for v in _URL_VALUES))

WSP_PUSH = 0x06
CONTENT_TYPE_SIC = 0xAE  # well-known 0x2E with the high bit: application/vnd.wap.sic

PORT_WAP_PUSH = 2948
PORT_WAP_CONNECTIONLESS = 9200
#: The application port element: IEI 0x05, length 4, destination port, source port.
PORT_IE = bytes((0x05, 0x04, PORT_WAP_PUSH >> 8, PORT_WAP_PUSH & 0xFF,
                 PORT_WAP_CONNECTIONLESS >> 8, PORT_WAP_CONNECTIONLESS & 0xFF))
DATA_CODING_8BIT = 0x04


def _inline(text: str) -> bytes:
    data = text.encode("utf-8")
    if b"\x00" in data:
        raise BridgeError(ErrorName.INVALID_MESSAGE, "a WAP Push cannot carry a NUL character")
    return bytes((_STR_I,)) + data + b"\x00"


def _href(url: str) -> bytes:
    """The href attribute: the longest start token, then inline strings with the URL value
    tokens (".com/" …) in between."""
    start, token = next((p, t) for p, t in _HREF_STARTS if url.startswith(p))
    out = bytearray((token,))
    rest = url[len(start):]
    pos = 0
    for match in _URL_VALUE.finditer(rest):
        if match.start() > pos:
            out += _inline(rest[pos:match.start()])
        out.append(_URL_VALUES[match.group()])
        pos = match.end()
    if pos < len(rest):
        out += _inline(rest[pos:])
    return bytes(out)


def _date(token: int, stamp: str) -> bytes:
    """A date attribute: `YYYY-MM-DDThh:mm:ssZ` as 14 digits packed two to an octet, trailing
    zero octets left out (WAP-167 §8.2.2)."""
    digits = re.sub(r"[-:TZ]", "", stamp)
    if len(digits) != 14 or not digits.isdigit():
        raise BridgeError(ErrorName.INVALID_PARAMETER, f"{stamp!r} is not YYYY-MM-DDThh:mm:ssZ")
    packed = bytes.fromhex(digits).rstrip(b"\x00")
    return bytes((token, _OPAQUE, len(packed))) + packed


def si_document(href: str, text: str, *, action: str | None = None, si_id: str | None = None,
                created: str | None = None, expires: str | None = None) -> bytes:
    """The SI in WBXML: `<si><indication href=… [action] [created] [si-expires] [si-id]>text
    </indication></si>`, no string table."""
    if not href:
        raise BridgeError(ErrorName.INVALID_PARAMETER, "a WAP Push needs a url")
    attributes = bytearray(_href(href))
    if action is not None:
        if action not in ACTIONS:
            raise BridgeError(ErrorName.INVALID_PARAMETER, f"unknown SI action {action!r}")
        attributes.append(ACTIONS[action])
    if created is not None:
        attributes += _date(_CREATED, created)
    if expires is not None:
        attributes += _date(_SI_EXPIRES, expires)
    if si_id is not None:
        attributes += bytes((_SI_ID,)) + _inline(si_id)
    body = bytes((_INDICATION | _ATTRIBUTES | (_CONTENT if text else 0),)) + attributes + \
        bytes((_END,)) + (_inline(text) + bytes((_END,)) if text else b"")
    return bytes((WBXML_VERSION, SI_PUBLIC_ID, CHARSET_UTF8, 0x00, _SI | _CONTENT)) + body + \
        bytes((_END,))


def uintvar(value: int) -> bytes:
    """WSP variable-length unsigned integer: 7 bits an octet, high bit set on all but the
    last (WAP-230 §8.1.2)."""
    out = [value & 0x7F]
    value >>= 7
    while value:
        out.append(0x80 | (value & 0x7F))
        value >>= 7
    return bytes(reversed(out))


def push_pdu(document: bytes, tid: int = 0x01) -> bytes:
    """A connectionless WSP Push carrying an SI: TID, Push, headers length, content type."""
    headers = bytes((CONTENT_TYPE_SIC,))
    return bytes((tid, WSP_PUSH)) + uintvar(len(headers)) + headers + document


def service_indication(href: str, text: str) -> bytes:
    """What type 4 sends: the SI with `text` shown and `href` to open, in its Push PDU."""
    return push_pdu(si_document(href, text))
