"""Every SMTP/LMTP reply line the bridge sends, in one place.

Refusals that the core decides (bad number, flood, rate, quota, sender, size, store…) come from
the §5 error table through `BridgeError.smtp_reply`; this module adds the replies that only an
SMTP listener has a reason to give (relay, AUTH, envelope syntax, connection limits) and the
success lines. Codes follow RFC 5321, RFC 3463/5248 (enhanced codes), RFC 4954 (AUTH), RFC 3461
(DSN parameters) and RFC 2033 (LMTP).
"""

from __future__ import annotations

import re
from typing import Sequence

from bridge.core.errors import ERROR_TABLE, MESSAGE_TOO_BIG, BridgeError, ErrorName

# --- greeting, connection
TOO_MANY_CONNECTIONS = "421 4.7.0 Too many connections from your address, try again later"
TOO_MANY_AUTH_FAILURES = "421 4.7.0 Too many authentication failures, closing connection"
LISTENER_FULL = "421 4.3.2 Too many connections, try again later"
IDLE_CLOSED = "421 4.4.2 Idle too long while others wait, closing connection"

# --- who may send
AUTH_REQUIRED = "530 5.7.0 Authentication required"
AUTH_OK = "235 2.7.0 Authentication successful"
AUTH_FAILED = ERROR_TABLE[ErrorName.AUTH_FAILED].smtp.render()  # 535 5.7.8
# RFC 4954's temporary failure: too many failures from this address lately, not checked.
AUTH_TEMPORARILY_REFUSED = "454 4.7.0 Too many authentication failures, try again later"
AUTH_DURING_MAIL = "503 5.5.1 AUTH not permitted during a mail transaction"
AUTH_BAD_BASE64 = "501 5.5.2 Cannot decode base64"
AUTH_BAD_PLAIN = "501 5.5.2 Cannot split PLAIN response"
RELAY_DENIED = "550 5.7.1 Relay access denied: {domain} is not an SMS domain of this bridge"
NO_DOMAIN = "550 5.1.1 Recipient must be <number>@<sms domain>"
SENDER_NOT_ALLOWED = "553 5.1.7 Sender address not allowed for this account"

# --- envelope
MAIL_OK = "250 2.1.0 Sender OK"
RCPT_OK = "250 2.1.5 Recipient OK"
MAIL_SYNTAX = "501 5.5.4 Syntax: MAIL FROM:<address> [parameters]"
RCPT_SYNTAX = "501 5.5.4 Syntax: RCPT TO:<address> [parameters]"
BAD_ADDRESS = "501 5.1.3 Malformed address"
BAD_SENDER_ADDRESS = "501 5.1.7 Malformed sender address"
NESTED_MAIL = "503 5.5.1 Error: nested MAIL command"
NEED_MAIL = "503 5.5.1 Error: need MAIL command"
NO_VALID_RECIPIENTS = "554 5.5.1 Error: no valid recipients"
DATA_SYNTAX = "501 5.5.4 Syntax: DATA"
VRFY_SYNTAX = "501 5.5.4 Syntax: VRFY <address>"
# Whether a number exists is not said (RFC 5321 §7.3): the message is tried.
VRFY_NEVER = "252 2.0.0 Cannot VRFY user, but will accept message and attempt delivery"
PARAM_UNKNOWN = "555 5.5.4 {keyword} parameter not recognized or not implemented"
PARAM_BAD = "501 5.5.4 Invalid {keyword} parameter"
PARAM_TWICE = "501 5.5.4 {keyword} parameter given twice"
SMTPUTF8_ARG = "501 5.5.4 SMTPUTF8 takes no value"
TOO_MANY_RECIPIENTS = BridgeError(ErrorName.TOO_MANY_RECIPIENTS,
                                  "at most {limit} per message").smtp_reply
SIZE_EXCEEDED = MESSAGE_TOO_BIG.code, "5.3.4", "Message size exceeds the maximum of {limit} bytes"

# --- data
DATA_START = "354 End data with <CR><LF>.<CR><LF>"
INTERNAL = ERROR_TABLE[ErrorName.INTERNAL_ERROR].smtp.render()  # 451 4.3.0

# --- LMTP
LMTP_NO_HELO = '500 5.5.1 Error: command "HELO" not recognized, use LHLO'
LMTP_NO_EHLO = '500 5.5.1 Error: command "EHLO" not recognized, use LHLO'

_MAX_IDS = 8  # ids listed in one SMTP reply (a reply line stays far below 512 octets)


def size_exceeded(limit: int) -> str:
    code, enhanced, text = SIZE_EXCEEDED
    return f"{code} {enhanced} {text.format(limit=limit)}"


def too_many_recipients(limit: int) -> str:
    return TOO_MANY_RECIPIENTS.format(limit=limit)


def relay_denied(domain: str) -> str:
    return RELAY_DENIED.format(domain=domain or "(none)")


def param_unknown(keyword: str) -> str:
    return PARAM_UNKNOWN.format(keyword=keyword)


def param_bad(keyword: str) -> str:
    return PARAM_BAD.format(keyword=keyword)


def param_twice(keyword: str) -> str:
    return PARAM_TWICE.format(keyword=keyword)


def error(exc: BridgeError) -> str:
    """A §5 refusal as one reply line (552 5.3.4 when the core says too big)."""
    return _one_line(exc.smtp_reply)


def accepted(ids: Sequence[str]) -> str:
    """`250 2.0.0 Accepted id1,id2,…` — at most _MAX_IDS ids, then how many more."""
    ids = list(dict.fromkeys(ids))  # a repeated recipient maps to the same id
    shown = ",".join(ids[:_MAX_IDS])
    more = f" (+{len(ids) - _MAX_IDS} more)" if len(ids) > _MAX_IDS else ""
    return f"250 2.0.0 Accepted {shown}{more}"


def lmtp_accepted(message_id: str, recipient: str) -> str:
    """RFC 2033 per-recipient success line."""
    return f"250 2.0.0 Accepted {message_id} <{_one_line(recipient)}>"


# RFC 2034: once ENHANCEDSTATUSCODES is advertised every reply carries one. aiosmtpd's own
# replies ("250 OK", "503 Error: send HELO first", "530 Must issue a STARTTLS command first"…)
# get the code that fits their basic code. The greeting, EHLO/HELO/LHLO and 334 are exempt.
_ENHANCED = re.compile(r"^[245]\d\d[ -][245]\.\d{1,3}\.\d{1,3}(?:[ \r]|$)")
_DEFAULT_ENHANCED = {
    "221": "2.0.0", "250": "2.0.0", "251": "2.1.5", "252": "2.0.0",
    "421": "4.3.0", "450": "4.2.0", "451": "4.3.0", "452": "4.3.1", "454": "4.7.0",
    "500": "5.5.2", "501": "5.5.4", "502": "5.5.1", "503": "5.5.1", "504": "5.5.4",
    "530": "5.7.0", "534": "5.7.9", "535": "5.7.8", "538": "5.7.11", "550": "5.0.0",
    "551": "5.1.6", "552": "5.3.4", "553": "5.1.3", "554": "5.0.0", "555": "5.5.4",
}


def enhance(line: str) -> str:
    """`line` with an enhanced status code after the basic one, if it lacks one."""
    code = line[:3]
    if code in ("220", "235", "334", "354") or _ENHANCED.match(line):
        return line
    enhanced = _DEFAULT_ENHANCED.get(code) or (f"{code[0]}.0.0" if code[:1] in "245" else "")
    if not enhanced or len(line) < 3 or not code.isdigit():
        return line
    return f"{code}{line[3:4] or ' '}{enhanced} {line[4:]}".rstrip()


def _one_line(text: str) -> str:
    return " ".join(text.split())[:480]
