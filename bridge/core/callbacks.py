"""Delivery callbacks (SendSms `callback_url`): which URLs are taken, the document POSTed when a
message reaches a final state, and what to do after each attempt.

Pure: the store queues a callback in the transaction that makes a message final (so none is
lost), `bridge.outbound.notify.callbacks` does the HTTP and asks here what the answer means.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass
from datetime import datetime, timezone
from enum import Enum
from fnmatch import fnmatchcase
from urllib.parse import urlsplit, urlunsplit

from bridge.core.errors import ERROR_TABLE, ErrorName
from bridge.core.policy import doubling_delay

MAX_URL_LENGTH = 2048  # the SOAP schema's own bound for callback_url


def callback_url_problem(url: str, name: str = "callback_url") -> str | None:
    """Why `url` cannot be a callback URL, or None: an absolute http(s) URL with a host, no
    fragment, no whitespace or control characters (which some HTTP stacks would send raw).
    `name` is what the refusal calls it (the field the client filled in)."""
    if len(url) > MAX_URL_LENGTH:
        return f"{name} is longer than {MAX_URL_LENGTH} characters"
    if any(c.isspace() or ord(c) < 0x20 or ord(c) == 0x7F for c in url):
        return f"{name} must not contain spaces or control characters"
    try:
        parts = urlsplit(url)
        port = parts.port  # raises on a port that is not a number in range
    except ValueError as exc:
        return f"{name} is not a valid URL: {exc}"
    if parts.scheme.lower() not in ("http", "https"):
        return f"{name} must be an http(s) URL"
    if not parts.hostname:
        return f"{name} has no host"
    if port == 0:
        return f"{name} has port 0"
    if "#" in url:
        return f"{name} must not have a fragment"
    return None


def callback_host_pattern_problem(pattern: str) -> str | None:
    """A host pattern is a host name or address, optionally with `*` wildcards
    (`hooks.acme.example`, `*.acme.example`, `10.1.2.*`, `fd00::*`): no scheme, port or
    path (one colon reads as a port; an IPv6 address has more)."""
    if not pattern or any(c in pattern for c in "/@ ?#[]") or pattern.count(":") == 1:
        return f'"{pattern}" is not a host name pattern (no scheme, port or path)'
    return None


def callback_host_allowed(url: str, patterns: tuple[str, ...]) -> bool:
    """Whether `url`'s host matches one of an account's `callback_hosts` patterns (lower case;
    `*` matches any run of characters). No patterns: any host. Keeps an account from making
    the bridge POST into networks it should not reach."""
    if not patterns:
        return True
    try:
        host = urlsplit(url).hostname
    except ValueError:
        return False
    return host is not None and any(fnmatchcase(host, pattern) for pattern in patterns)


def redact_url(url: str) -> str:
    """The URL as logs may show it: scheme, host, port and path; no credentials, no query
    (both often carry the receiver's secret)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return "<invalid url>"
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{host}:{port}" if port is not None else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


class Verdict(str, Enum):
    DELIVERED = "delivered"  # the receiver answered 2xx: done
    RETRY = "retry"  # try again after `retry_delay`
    GAVE_UP = "gave_up"  # attempts exhausted: the timeline keeps the last error


@dataclass(frozen=True)
class RetrySchedule:
    max_attempts: int
    base_s: float
    max_s: float


def verdict(status: int | None, attempts: int, schedule: RetrySchedule, *,
            acknowledged: bool = True) -> Verdict:
    """After attempt number `attempts` (from 1) got HTTP `status` (None: no answer at all).
    Any 2xx is delivered, unless the receiver had to answer with a set body and did not
    (`acknowledged`: Jasmin's "ACK/Jasmin"). Anything else, redirects included (never
    followed: the URL the client gave is the only one we post to), is retried while
    attempts remain."""
    if status is not None and 200 <= status < 300 and acknowledged:
        return Verdict.DELIVERED
    return Verdict.RETRY if attempts < schedule.max_attempts else Verdict.GAVE_UP


def retry_delay(attempts: int, schedule: RetrySchedule) -> float:
    """Seconds before the attempt after attempt number `attempts`: doubling from base_s,
    capped at max_s."""
    return doubling_delay(attempts - 1, base_s=schedule.base_s, max_s=schedule.max_s)


def next_due(outcome: Verdict, attempts: int, schedule: RetrySchedule,
             now: float) -> tuple[float, str]:
    """When a queued callback or mail is due again after attempt number `attempts`, and what
    the timeline adds about it: a retry waits `retry_delay`; a final outcome is due never
    (its row goes), so `now` stands in."""
    if outcome is not Verdict.RETRY:
        return now, ""
    delay = retry_delay(attempts, schedule)
    return now + delay, f", next in {delay:g} s"


#: Headers of a signed callback (an account with a callback_secret).
TIMESTAMP_HEADER = "X-SMS-Bridge-Timestamp"
SIGNATURE_HEADER = "X-SMS-Bridge-Signature"


def callback_signature(secret: str, timestamp: int, body: bytes) -> str:
    """The signature header's value: "v1=" and the hex HMAC-SHA256, keyed with the account's
    callback_secret, of the timestamp (Unix seconds, as sent in its own header), a dot and
    the body. A receiver recomputes it, compares in constant time and refuses stale
    timestamps, so a captured callback can neither be forged nor replayed later."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return "v1=" + mac.hexdigest()


@dataclass(frozen=True)
class CallbackFacts:
    """What a callback reports: the message as it stood when the callback was queued (state,
    at) and as it stands now (parts delivered, error)."""

    message_id: str
    state: str  # the final MessageState value that queued this callback
    at: float  # when the message reached it
    recipient: str
    reference: str | None
    parts: int
    parts_delivered: int
    error: str | None  # an ErrorName value
    error_detail: str | None
    attempt: int  # from 1


def _iso(at: float) -> str:
    moment = datetime.fromtimestamp(at, tz=timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def callback_document(facts: CallbackFacts) -> bytes:
    """The JSON body POSTed to the callback URL (keys in a fixed order)."""
    code = None
    if facts.error is not None:
        try:
            code = ERROR_TABLE[ErrorName(facts.error)].code
        except ValueError:
            code = None
    document = {
        "message_id": facts.message_id,
        "reference": facts.reference,
        "recipient": facts.recipient,
        "state": facts.state,
        "at": _iso(facts.at),
        "parts": facts.parts,
        "parts_delivered": facts.parts_delivered,
        "error": facts.error,
        "code": code,
        "error_detail": facts.error_detail,
        "attempt": facts.attempt,
    }
    # ASCII with \u escapes: no text can make it fail to encode.
    return json.dumps(document, separators=(",", ":")).encode()
