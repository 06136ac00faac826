"""SOAP ingress security: hardened XML parsing, HTTP Basic and WS-Security UsernameToken.

Pure functions and small stateful helpers with an injected clock; no I/O and no Spyne here, so
every rule is testable on its own. `bridge.ingress.soap.app` glues them to the request.

XML: the body is parsed by a libxml2 parser that resolves no entities, loads no DTD, touches no
network, refuses huge trees (libxml2's default depth limit of 256 and text node limits) and keeps
no ids; any document type declaration is refused outright, before parsing when it is visible in
the raw bytes and after parsing otherwise (e.g. UTF-16 bodies). So XXE and entity expansion
("billion laughs") never reach Spyne.

WS-Security (OASIS UsernameToken Profile 1.0/1.1): PasswordText and PasswordDigest
(Base64(SHA-1(nonce + created + password))). A token carrying a Created time must be within the
window; a token carrying a Nonce may be used once (nonces are remembered for the window), so a
captured digest cannot be replayed. PasswordDigest requires Nonce and Created and an account
configured with a plaintext `password` (a `password_hash` cannot be digested).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timezone

from lxml import etree

WSSE_NS = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"
WSU_NS = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd"
_TOKEN_PROFILE = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-username-token-profile-1.0"
PASSWORD_TEXT = f"{_TOKEN_PROFILE}#PasswordText"
PASSWORD_DIGEST = f"{_TOKEN_PROFILE}#PasswordDigest"

REALM = 'Basic realm="sms-bridge"'


# ------------------------------------------------------------------------------------ XML


class XmlRejected(Exception):
    """The body is not acceptable XML (malformed, DTD, too deep, too big)."""


def make_parser() -> etree.XMLParser:
    """One per thread (lxml parsers are not shared across threads)."""
    return etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False,
                           dtd_validation=False, huge_tree=False, remove_pis=True,
                           remove_comments=True, collect_ids=False, attribute_defaults=False)


def parse_xml(body: bytes, parser: etree.XMLParser) -> etree._Element:
    """The document element of `body`, or XmlRejected. Never expands an entity."""
    if not body.strip():
        raise XmlRejected("empty request body")
    if b"<!DOCTYPE" in body or b"<!ENTITY" in body:
        raise XmlRejected("document type declarations are not allowed")
    try:
        root = etree.fromstring(body, parser)
    except etree.XMLSyntaxError as exc:
        raise XmlRejected(f"malformed XML: {_first_line(str(exc))}") from None
    docinfo = root.getroottree().docinfo
    if docinfo.doctype or docinfo.internalDTD is not None or docinfo.externalDTD is not None:
        raise XmlRejected("document type declarations are not allowed")
    return root


def _first_line(text: str) -> str:
    return text.splitlines()[0][:200] if text else "syntax error"


# ------------------------------------------------------------------------------------ auth


class AuthError(Exception):
    """Authentication refused. `missing` = no credentials at all (HTTP 401 challenge);
    `retry_after_s` > 0: not checked, too many failures lately (try again after it)."""

    def __init__(self, reason: str, *, missing: bool = False,
                 retry_after_s: float = 0.0) -> None:
        super().__init__(reason)
        self.reason = reason
        self.missing = missing
        self.retry_after_s = retry_after_s


@dataclass(frozen=True, slots=True)
class BasicCredentials:
    username: str
    password: str


def parse_basic(header: str | None) -> BasicCredentials | None:
    """HTTP Basic credentials from an Authorization header; None when there is no Basic header."""
    if not header:
        return None
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise AuthError("malformed Basic credentials") from None
    username, sep, password = decoded.partition(":")
    if not sep or not username:
        raise AuthError("malformed Basic credentials")
    return BasicCredentials(username, password)


@dataclass(frozen=True, slots=True)
class UsernameToken:
    username: str
    password: str
    digest: bool  # PasswordDigest (else PasswordText)
    nonce: bytes | None
    created: str | None
    expires: str | None  # wsu:Timestamp/wsu:Expires, when present


def find_username_token(envelope: etree._Element, envelope_ns: str) -> UsernameToken | None:
    """The first wsse:UsernameToken in the SOAP Header, or None. Malformed → AuthError."""
    header = envelope.find(f"{{{envelope_ns}}}Header")
    if header is None:
        return None
    security = header.find(f"{{{WSSE_NS}}}Security")
    if security is None:
        return None
    token = security.find(f"{{{WSSE_NS}}}UsernameToken")
    if token is None:
        return None
    username = (token.findtext(f"{{{WSSE_NS}}}Username") or "").strip()
    password_el = token.find(f"{{{WSSE_NS}}}Password")
    if not username or password_el is None:
        raise AuthError("UsernameToken without Username or Password")
    # The profile's URIs; some toolkits write the QName form (wsse:PasswordDigest) instead.
    kind = password_el.get("Type", PASSWORD_TEXT)
    if kind.endswith("PasswordDigest"):
        digest = True
    elif kind.endswith("PasswordText"):
        digest = False
    else:
        raise AuthError("unsupported UsernameToken password type")
    nonce: bytes | None = None
    nonce_text = token.findtext(f"{{{WSSE_NS}}}Nonce")
    if nonce_text is not None:
        try:
            nonce = base64.b64decode(nonce_text.strip(), validate=True)
        except binascii.Error:
            raise AuthError("malformed Nonce") from None
    created = token.findtext(f"{{{WSU_NS}}}Created")
    expires = security.findtext(f"{{{WSU_NS}}}Timestamp/{{{WSU_NS}}}Expires")
    if created is None:
        created = security.findtext(f"{{{WSU_NS}}}Timestamp/{{{WSU_NS}}}Created")
    return UsernameToken(username, password_el.text or "", digest, nonce,
                         created.strip() if created else None,
                         expires.strip() if expires else None)


def password_digest(nonce: bytes, created: str, password: str) -> str:
    """Base64(SHA-1(nonce + created + password)) per the UsernameToken Profile."""
    raw = hashlib.sha1(nonce + created.encode() + password.encode()).digest()  # noqa: S324
    return base64.b64encode(raw).decode("ascii")


def digest_matches(token: UsernameToken, password: str) -> bool:
    if token.nonce is None or token.created is None:
        return False
    expected = password_digest(token.nonce, token.created, password)
    return hmac.compare_digest(expected.encode(), token.password.strip().encode())


def parse_timestamp(text: str) -> float:
    """xs:dateTime → epoch seconds (no zone = UTC)."""
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise AuthError("malformed timestamp") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.timestamp()


def check_freshness(token: UsernameToken, *, now: float, window_s: float, skew_s: float) -> None:
    """Created must be at most `window_s` old and at most `skew_s` in the future; Expires (if
    any) not past. A digest token must carry Created (and a Nonce)."""
    if token.digest and (token.created is None or token.nonce is None):
        raise AuthError("PasswordDigest requires Nonce and Created")
    if token.created is not None:
        created = parse_timestamp(token.created)
        if created < now - window_s:
            raise AuthError("stale UsernameToken (Created too old)")
        if created > now + skew_s:
            raise AuthError("UsernameToken Created in the future")
    if token.expires is not None and parse_timestamp(token.expires) < now - skew_s:
        raise AuthError("expired security Timestamp")


class NonceCache:
    """Nonces seen in the last `ttl_s` seconds. Bounded: when full of live entries, new nonces
    are refused (fail closed) rather than forgetting one that could then be replayed."""

    def __init__(self, ttl_s: float, max_entries: int = 100_000) -> None:
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._seen: OrderedDict[tuple[str, bytes], float] = OrderedDict()

    def __len__(self) -> int:
        return len(self._seen)

    def add(self, username: str, nonce: bytes, *, now: float) -> bool:
        """Record a nonce; False if it was already used (a replay) or the cache is full."""
        self._expire(now)
        key = (username, nonce)
        if key in self._seen or len(self._seen) >= self.max_entries:
            return False
        self._seen[key] = now + self.ttl_s
        return True

    def _expire(self, now: float) -> None:
        seen = self._seen
        while seen:
            key, expiry = next(iter(seen.items()))
            if expiry > now:
                break
            del seen[key]
