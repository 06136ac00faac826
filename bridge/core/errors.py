"""The one error table (SPEC §5) used by every interface.

Each adapter turns an `ErrorName` into its own wire reply by reading this table; nothing else
decides SMTP codes, SOAP fault codes or numeric codes. `BridgeError` is what the core raises:
like h11's errors it carries a hint (the table entry) for the I/O layer.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from types import MappingProxyType
from typing import Mapping


class ErrorName(str, Enum):
    SUCCESS = "SUCCESS"
    INVALID_PARAMETER = "INVALID_PARAMETER"
    AUTH_FAILED = "AUTH_FAILED"
    INVALID_TYPE = "INVALID_TYPE"
    INVALID_MESSAGE = "INVALID_MESSAGE"
    INVALID_DESTINATION = "INVALID_DESTINATION"
    INVALID_SOURCE = "INVALID_SOURCE"
    INVALID_DLR = "INVALID_DLR"
    VALIDATION_FAILED = "VALIDATION_FAILED"
    INTERNAL_ERROR = "INTERNAL_ERROR"
    INSUFFICIENT_CREDIT = "INSUFFICIENT_CREDIT"
    OVER_LIMIT = "OVER_LIMIT"
    DUPLICATE = "DUPLICATE"
    FLOOD = "FLOOD"
    TOO_MANY_RECIPIENTS = "TOO_MANY_RECIPIENTS"
    STORE_UNAVAILABLE = "STORE_UNAVAILABLE"


@dataclass(frozen=True)
class SmtpReply:
    code: int
    enhanced: str
    text: str

    def render(self, detail: str = "") -> str:
        """One reply line as aiosmtpd expects it: `550 5.1.1 text: detail`."""
        tail = f"{self.text}: {detail}" if detail else self.text
        return f"{self.code} {self.enhanced} {tail}"


@dataclass(frozen=True)
class ErrorSpec:
    name: ErrorName
    code: int
    retry: bool
    smtp: SmtpReply
    soap_fault: str  # "Client" (the caller must change something) or "Server"
    meaning: str


def _spec(
    name: ErrorName, code: int, retry: bool, smtp: tuple[int, str, str], soap: str, meaning: str
) -> ErrorSpec:
    return ErrorSpec(name, code, retry, SmtpReply(*smtp), soap, meaning)


_N = ErrorName
ERROR_TABLE: Mapping[ErrorName, ErrorSpec] = MappingProxyType(
    {
        s.name: s
        for s in (
            _spec(_N.SUCCESS, 1701, False, (250, "2.0.0", "Accepted"), "", "accepted and durably queued"),
            _spec(_N.INVALID_PARAMETER, 1702, False, (501, "5.5.4", "Invalid parameter"), "Client",
                  "a required field missing or malformed"),
            _spec(_N.AUTH_FAILED, 1703, False, (535, "5.7.8", "Authentication failed"), "Client",
                  "bad credentials"),
            _spec(_N.INVALID_TYPE, 1704, False, (554, "5.6.0", "Invalid message type"), "Client",
                  "unknown message type / encoding"),
            _spec(_N.INVALID_MESSAGE, 1705, False, (554, "5.6.0", "Invalid message"), "Client",
                  "empty, unencodable or too many parts"),
            _spec(_N.INVALID_DESTINATION, 1706, False, (550, "5.1.1", "Invalid destination"), "Client",
                  "not a dialable number / not routable"),
            _spec(_N.INVALID_SOURCE, 1707, False, (553, "5.1.7", "Invalid sender"), "Client",
                  "sender id not allowed or malformed"),
            _spec(_N.INVALID_DLR, 1708, False, (501, "5.5.4", "Invalid delivery report request"),
                  "Client", "bad delivery-report request"),
            _spec(_N.VALIDATION_FAILED, 1709, True, (454, "4.7.0", "Account temporarily unusable"),
                  "Server", "account temporarily unusable"),
            _spec(_N.INTERNAL_ERROR, 1710, True, (451, "4.3.0", "Internal error, nothing accepted"),
                  "Server", "the bridge failed; nothing was accepted"),
            _spec(_N.INSUFFICIENT_CREDIT, 1025, False, (552, "5.2.2", "Quota exhausted"), "Client",
                  "account quota exhausted"),
            _spec(_N.OVER_LIMIT, 1711, True, (451, "4.7.1", "Rate limit exceeded, try later"),
                  "Server", "account rate limit exceeded"),
            _spec(_N.DUPLICATE, 1712, False, (250, "2.0.0", "Duplicate, already accepted"), "Client",
                  "identical request inside the duplicate window"),
            _spec(_N.FLOOD, 1713, True, (450, "4.7.1", "Too many messages to this subscriber"),
                  "Server", "too many messages to one subscriber too fast"),
            _spec(_N.TOO_MANY_RECIPIENTS, 1714, False, (452, "4.5.3", "Too many recipients"),
                  "Client", "more recipients than allowed"),
            _spec(_N.STORE_UNAVAILABLE, 1715, True, (452, "4.3.1", "Cannot store, try later"),
                  "Server", "cannot persist; nothing accepted"),
        )
    }
)

# INVALID_MESSAGE has two SMTP forms (SPEC §5): 554 5.6.0 for content, 552 5.3.4 for size.
MESSAGE_TOO_BIG = SmtpReply(552, "5.3.4", "Message too long for SMS")


class BridgeError(Exception):
    """A refusal the caller should see; `spec` tells each adapter how to say it."""

    def __init__(self, name: ErrorName, detail: str = "", *, too_big: bool = False) -> None:
        super().__init__(f"{name.value}: {detail}" if detail else name.value)
        self.name = name
        self.detail = detail
        self.too_big = too_big

    @property
    def spec(self) -> ErrorSpec:
        return ERROR_TABLE[self.name]

    @property
    def smtp_reply(self) -> str:
        reply = MESSAGE_TOO_BIG if self.too_big else self.spec.smtp
        return reply.render(self.detail)

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, BridgeError)
            and (self.name, self.detail, self.too_big) == (other.name, other.detail, other.too_big)
        )

    def __hash__(self) -> int:
        return hash((self.name, self.detail, self.too_big))
