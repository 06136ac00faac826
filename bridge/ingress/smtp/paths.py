"""The path of MAIL FROM and RCPT TO (RFC 5321 §4.1.2, with RFC 6531's UTF-8), parsed here
rather than by aiosmtpd's private `_getaddr`, whose RFC 5322 parser also takes comments and
folding that no SMTP path has.

    Path       = "<" [ A-d-l ":" ] Mailbox ">"
    Mailbox    = Local-part "@" ( Domain / address-literal )
    Local-part = Dot-string / Quoted-string

A source route (A-d-l) is dropped (RFC 5321 §4.1.2: to be ignored). Without angle brackets
a bare mailbox is taken too, as common clients are lenient there.
"""

from __future__ import annotations

import re

# atext (RFC 5322 §3.2.3) and, with SMTPUTF8, any non-ASCII character (RFC 6531 §3.3).
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~\-\u0080-\U0010FFFF]+"
_DOT_STRING = rf"{_ATOM}(?:\.{_ATOM})*"
# qtextSMTP / quoted-pairSMTP (RFC 5321 §4.1.2), UTF-8 allowed inside.
_QUOTED = r'"(?:[\x20\x21\x23-\x5B\x5D-\x7E\u0080-\U0010FFFF]|\\[\x20-\x7E])*"'
_LABEL = r"[A-Za-z0-9\u0080-\U0010FFFF](?:[A-Za-z0-9\-\u0080-\U0010FFFF]*[A-Za-z0-9\u0080-\U0010FFFF])?"
_DOMAIN = rf"{_LABEL}(?:\.{_LABEL})*"
_LITERAL = r"\[[\x21-\x5A\x5E-\x7E]+\]"
_LOCAL = rf"(?:{_DOT_STRING}|{_QUOTED})"
_MAILBOX = rf"{_LOCAL}@(?:{_DOMAIN}|{_LITERAL})"
_ROUTE = rf"@{_DOMAIN}(?:,@{_DOMAIN})*:"

# A local part alone (<postmaster>, RFC 5321 §4.1.1.3) is a path the caller answers itself.
_ANGLED = re.compile(rf"<(?:{_ROUTE})?({_MAILBOX}|{_LOCAL})>(?=\s|\Z)(.*)\Z", re.S)
_BARE = re.compile(rf"({_MAILBOX})(?=\s|\Z)(.*)\Z", re.S)


def split_path(arg: str) -> tuple[str, str] | None:
    """`<mailbox> parameters` → (mailbox, the parameters after it, if any), or None when `arg`
    does not start with a path (or one not followed by a space)."""
    text = arg.lstrip()
    found = (_ANGLED if text.startswith("<") else _BARE).match(text)
    if found is None:
        return None
    return found.group(1), found.group(2).lstrip()


def strip_keyword(keyword: str, arg: str) -> str | None:
    """The argument after `FROM:` / `TO:` (any case), stripped; None when it is not there."""
    if arg[:len(keyword)].upper() != keyword:
        return None
    return arg[len(keyword):].strip()
