"""SMTP / LMTP ingress on the bridge's loop (aiosmtpd; the only module that imports it).

One `BridgeSMTP` protocol per connection, created by `loop.create_server` (no Controller, no
thread). What aiosmtpd does not do the way a gateway needs, this module does itself:
- MAIL and RCPT parse their parameters here: DSN (RET, ENVID, NOTIFY, ORCPT) is accepted and
  kept with its original case (aiosmtpd refuses RCPT parameters and upper-cases values);
- who may send (AUTH or a relay network), relay control and per-recipient checks happen at
  MAIL/RCPT time, so a relay bounces only the recipients that are bad;
- DATA is read in bulk, replies `250` only after `Service.submit` returned (durably stored),
  and in LMTP mode answers once per accepted recipient (RFC 2033);
- EHLO advertises what is really supported, PIPELINING included;
- connections are limited per listener and per client address (bridge.ingress.connections):
  a session is idle while it has no mail transaction open and no command being handled,
  counted from its connection, its TLS handshake, its AUTH success or the end of its last
  transaction (other commands, NOOP, RSET, EHLO, a refused MAIL, do not make it work); an
  idle session is closed with 421 when a newcomer needs its slot (bridge.core.floods);
- AUTH is checked off the loop, and slowed and refused per address and per user
  (bridge.intake.credentials.AuthGuard).
Where aiosmtpd has a hook (EHLO, HELO, RSET, AUTH) the hook is used; of its internals only its
stream reader and writer and its idle timer are touched (DATA read in bulk, pipelined replies
sent together), which tests/smtp/test_paths.py holds to.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import logging
import re
import ssl
import time
from base64 import b64decode
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

from aiosmtpd.smtp import MISSING, SMTP, AuthResult, Envelope, Session, syntax

from bridge.config import AccountConfig, Config, is_loopback
from bridge.core.errors import BridgeError, ErrorName
from bridge.core.floods import Room
from bridge.core.mailback import answers_an_sms, dsn_conditions, parse_notify
from bridge.core.meta import MetaKey
from bridge.core.model import Address, Ingress
from bridge.metrics import Metrics
from bridge.intake.credentials import AuthGuard
from bridge.intake.service import Recipient, RecipientResult, Service, SubmitRequest, report_results
from bridge.ingress.connections import ConnectionTable
from bridge.ingress.smtp import replies
from bridge.ingress.smtp.paths import split_path, strip_keyword
from bridge.ingress.smtp.text import parse_mail
from bridge.ingress.tls import server_context

log = logging.getLogger("bridge.smtp")

_READ_CHUNK = 1 << 20
_OFFLOAD_BYTES = 256 * 1024  # mails larger than this are parsed in a worker thread
_MAX_AUTH_FAILURES = 3
# Replies after which the client must act or the connection changes: never held back.
_FLUSH_NOW = frozenset({b"220", b"221", b"334", b"354", b"421"})


# ---------------------------------------------------------------- parameters (RFC 3461 etc.)


class ParamError(Exception):
    """A MAIL/RCPT parameter problem; the argument is the reply line."""


def xtext_decode(value: str) -> str:
    """RFC 3461 xtext: `+XX` hex escapes, otherwise printable ASCII except `+` and `=`.
    Non-ASCII characters (RFC 6533 with SMTPUTF8) are kept as they are."""
    out = bytearray()
    i = 0
    while i < len(value):
        c = value[i]
        if c == "+":
            pair = value[i + 1:i + 3]
            if len(pair) != 2 or any(h not in "0123456789ABCDEFabcdef" for h in pair):
                raise ValueError("bad xtext escape")
            out.append(int(pair, 16))
            i += 3
            continue
        if c == "=" or (c < "!") or c == "\x7f":
            raise ValueError("bad xtext character")
        out += c.encode("utf-8", "surrogateescape")
        i += 1
    return out.decode("utf-8", "replace")


def parse_params(text: str) -> dict[str, str | None]:
    """`KEY=value KEY …` → {KEY (upper case): value (case kept) or None}."""
    params: dict[str, str | None] = {}
    for token in text.split():
        key, eq, value = token.partition("=")
        if not key or not key.replace("-", "").isalnum() or (eq and not value):
            raise ParamError(replies.param_bad(key.upper() or "(empty)"))
        upper = key.upper()
        if upper in params:
            raise ParamError(replies.param_twice(upper))
        params[upper] = value if eq else None
    return params


def _require(params: dict[str, str | None], key: str) -> str:
    value = params.get(key)
    if value is None:
        raise ParamError(replies.param_bad(key))
    return value


def notify_words(raw: str) -> frozenset[str]:
    try:
        return parse_notify(raw)
    except ValueError:
        raise ParamError(replies.param_bad("NOTIFY")) from None


def orcpt_value(raw: str) -> str:
    addr_type, sep, xtext = raw.partition(";")
    if not sep or not addr_type or not xtext or not addr_type.replace("-", "").isalnum():
        raise ParamError(replies.param_bad("ORCPT"))
    try:
        decoded = xtext_decode(xtext)
    except ValueError:
        raise ParamError(replies.param_bad("ORCPT")) from None
    if len(decoded) > 500:
        raise ParamError(replies.param_bad("ORCPT"))
    return f"{addr_type};{decoded}"


#: Characters of a mail's Subject kept with its messages (DSNs and replies quote it).
SUBJECT_KEPT = 200


# ---------------------------------------------------------------- shared state


@dataclass
class _Listener:
    """What every connection of one listener shares."""

    service: Service
    config: Config
    metrics: Metrics
    domains: frozenset[str]
    #: [smtp] notify_default, parsed once; None when no DSN goes back (no smarthost, dsn off).
    notify_default: frozenset[str] | None
    delay_notices: bool  # NOTIFY=DELAY is honoured ([smtp] dsn_delay_after_s > 0)
    connections: ConnectionTable
    auth: AuthGuard
    tasks: set[asyncio.Future[Any]] = field(default_factory=set)

    def finished(self, task: asyncio.Future[Any]) -> None:
        """A submit outlived its session: its outcome is in the store and was logged."""
        self.tasks.discard(task)
        if not task.cancelled():
            task.exception()  # retrieved, so asyncio does not report it at collection


@dataclass
class _Rcpt:
    address: str  # as given in RCPT TO
    destination: Address  # read at RCPT time; the submit does not read it again
    notify: str | None  # as given (upper case), for the message's meta
    notify_words: frozenset[str] | None  # parsed once, here
    orcpt: str | None


@dataclass
class _Txn:
    account: AccountConfig
    mail_from: str  # "" for the null reverse path
    meta: list[tuple[MetaKey, str]]  # mail_from, client_ip, helo, DSN RET/ENVID
    rcpts: list[_Rcpt] = field(default_factory=list)


# ---------------------------------------------------------------- protocol


class _Handler:
    """aiosmtpd hooks; the SMTP commands themselves are methods of BridgeSMTP."""

    async def handle_EHLO(self, server: SMTP, session: Session, envelope: Any, hostname: str,
                          responses: list[str]) -> list[str]:
        assert isinstance(server, BridgeSMTP)
        server.end_transaction()  # EHLO resets the session too
        session.host_name = hostname
        lines = [r[4:] for r in responses if not r[4:].startswith("HELP")]
        head, rest = lines[0], lines[1:]
        rest.insert(0, "PIPELINING")
        rest += ["DSN", "ENHANCEDSTATUSCODES"]
        out = [f"250-{head}"] + [f"250-{line}" for line in rest]
        out[-1] = "250 " + out[-1][4:]
        return out

    async def handle_HELO(self, server: SMTP, session: Session, envelope: Any,
                          hostname: str) -> str:
        assert isinstance(server, BridgeSMTP)
        server.end_transaction()  # HELO resets the session (RFC 5321 §4.1.4)
        session.host_name = hostname
        return f"250 {server.hostname}"

    async def handle_RSET(self, server: SMTP, session: Session, envelope: Any) -> str:
        assert isinstance(server, BridgeSMTP)
        server.end_transaction()
        return "250 OK"

    async def handle_exception(self, error: Exception) -> str:
        log.error("smtp session error: %r", error, exc_info=error)
        return replies.INTERNAL


class BridgeSMTP(SMTP):
    """One client connection."""

    def __init__(self, listener: _Listener, *, tls_context: ssl.SSLContext | None,
                 auth_require_tls: bool, ident: str) -> None:
        smtp = listener.config.smtp
        super().__init__(
            _Handler(),
            data_size_limit=smtp.max_message_bytes,
            enable_SMTPUTF8=True,
            decode_data=False,
            hostname=smtp.hostname,
            ident=ident,
            tls_context=tls_context,
            require_starttls=smtp.require_tls and tls_context is not None,
            timeout=smtp.command_timeout_s,
            auth_required=False,
            auth_require_tls=auth_require_tls,
            loop=asyncio.get_running_loop(),
        )
        # Per connection (aiosmtpd keeps this dict on the class); DSN makes lines longer.
        self.command_size_limits = collections.defaultdict(lambda: 512,
                                                           {"MAIL": 1024, "RCPT": 1024})
        self._listener = listener
        self._txn: _Txn | None = None
        self._ip: str | None = None
        self._counted = False
        self._busy = 0  # commands being handled (an LMTP greeting runs EHLO's inside)
        self._worked_at = time.monotonic()  # see idle_since
        self._auth_failures = 0
        self._out: list[bytes] = []  # replies held back while pipelined commands wait
        self._plain_replies = False  # HELO/EHLO/LHLO lines carry no enhanced status code

    # ---- connection accounting

    @property
    def address(self) -> str:
        return self._ip or "unknown"

    def idle_since(self) -> float | None:
        """None while a command is handled or a mail transaction is open; else when the
        session last worked (connected, finished TLS, authenticated, ended a transaction)."""
        if self._busy or self._txn is not None:
            return None
        return self._worked_at

    def evict(self) -> None:
        """Closed for a newcomer: idle, so no reply is pending and the 421 goes out alone."""
        transport = self.transport
        if isinstance(transport, asyncio.WriteTransport):
            transport.write(replies.IDLE_CLOSED.encode() + b"\r\n")
        if transport is not None:
            transport.close()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _track_commands(cls, own_only=True)

    def _work_state(self) -> tuple[bool, bool]:
        """(a transaction is open, authenticated): a command that changes either worked."""
        session = self.session
        return self._txn is not None, bool(session is not None and session.authenticated)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """The first time from _Gate, which made room for it: it takes its slot."""
        first = self.transport is None
        super().connection_made(transport)
        self._worked_at = time.monotonic()  # connected, or TLS set up after STARTTLS
        if first:
            self._ip = _peer_address(transport)
            self._listener.connections.add(self)
            self._counted = True

    def connection_lost(self, error: Exception | None) -> None:
        if self._counted:
            self._listener.connections.release(self)
            self._counted = False
        super().connection_lost(error)

    async def push(self, status: str | bytes) -> None:
        """Replies to pipelined commands are sent together (RFC 2920 §3.2): a reply waits while
        another complete command is already buffered, and goes out with the next one."""
        if isinstance(status, str):
            if not self._plain_replies:
                status = replies.enhance(status)
            # A reply may echo what the client sent; bytes that were not UTF-8 (kept as
            # surrogates) go back as "?" instead of breaking the session.
            data = status.encode("utf-8", "replace")
        else:
            data = status
        self._out.append(data + b"\r\n")
        pending = getattr(self._reader, "_buffer", None)
        if data[:3] in _FLUSH_NOW or not isinstance(pending, bytearray) or b"\n" not in pending:
            await self._flush()

    async def _flush(self) -> None:
        if self._out:
            self._writer.write(b"".join(self._out))
            self._out.clear()
            await self._writer.drain()

    @syntax("HELO hostname")
    async def smtp_HELO(self, hostname: str) -> None:
        self._plain_replies = True
        try:
            await super().smtp_HELO(hostname)
        finally:
            self._plain_replies = False

    @syntax("EHLO hostname")
    async def smtp_EHLO(self, hostname: str) -> None:
        self._plain_replies = bool(hostname)  # "501 Syntax: EHLO hostname" gets its code
        try:
            await super().smtp_EHLO(hostname)
        finally:
            self._plain_replies = False

    def end_transaction(self) -> None:
        """After DATA, RSET, HELO or EHLO: no mail transaction (aiosmtpd's envelope anew)."""
        self.envelope = Envelope()
        self._txn = None

    # ---- who may send

    def _account(self) -> AccountConfig | None:
        assert self.session is not None
        if self.session.authenticated and isinstance(self.session.auth_data, AccountConfig):
            return self.session.auth_data
        return self._listener.service.relay_account(self._ip or "")

    @syntax("AUTH <mechanism>")
    async def smtp_AUTH(self, arg: str) -> None:
        if self._txn is not None:
            await self.push(replies.AUTH_DURING_MAIL)
            return
        await super().smtp_AUTH(arg)

    async def _first_response(self, args: list[str], prompt: str) -> bytes | None:
        """The initial response given with AUTH, else the answer to a challenge; None (reply
        already sent) when the client cancelled or sent bad base64."""
        if len(args) == 1:
            blob = await self.challenge_auth(prompt)
            return None if blob is MISSING else blob
        try:
            return b64decode(args[1].encode(), validate=True)
        except ValueError:
            await self.push(replies.AUTH_BAD_BASE64)
            return None

    async def auth_PLAIN(self, _: Any, args: list[str]) -> AuthResult:
        blob = await self._first_response(args, "")
        if blob is None:
            return AuthResult(success=False, handled=True)
        fields = blob.split(b"\x00")
        if len(fields) != 3:
            await self.push(replies.AUTH_BAD_PLAIN)
            return AuthResult(success=False, handled=True)
        return await self._check_credentials(fields[1], fields[2])

    async def auth_LOGIN(self, _: Any, args: list[str]) -> AuthResult:
        login = await self._first_response(args, "Username:")
        if login is None:
            return AuthResult(success=False, handled=True)
        password = await self.challenge_auth("Password:")
        if password is MISSING:
            return AuthResult(success=False, handled=True)
        assert isinstance(password, bytes)
        return await self._check_credentials(login, password)

    async def _check_credentials(self, login: bytes, password: bytes) -> AuthResult:
        name = login.decode("utf-8", "replace")
        outcome = await self._listener.auth.password(
            name, password.decode("utf-8", "replace"), self.address)
        if outcome.account is None:  # logged by the guard, with the address and the user
            self._auth_failures += 1
            self._listener.metrics.rejected("smtp", ErrorName.AUTH_FAILED.value)
            if self._auth_failures >= _MAX_AUTH_FAILURES:
                await self.push(replies.TOO_MANY_AUTH_FAILURES)
                assert self.transport is not None
                self.transport.close()
                return AuthResult(success=False, handled=True)
            if outcome.refused:
                await self.push(replies.AUTH_TEMPORARILY_REFUSED)
                return AuthResult(success=False, handled=True)
            return AuthResult(success=False, handled=False, message=replies.AUTH_FAILED)
        account = outcome.account
        log.info("smtp auth ok ip=%s account=%s", self._ip, account.name)
        return AuthResult(success=True, auth_data=account, message=replies.AUTH_OK)

    # ---- envelope

    async def _path(self, rest: str, malformed: str, syntax: str) -> tuple[str, str] | None:
        """`<address> params` of MAIL or RCPT, or None once the refusal has been sent."""
        if not rest:
            await self.push(syntax)
            return None
        path = split_path(rest)
        if path is None:
            await self.push(malformed)
        return path

    @syntax("MAIL FROM: <address>", extended=" [SP <mail-parameters>]")
    async def smtp_MAIL(self, arg: str | None) -> None:
        if await self.check_helo_needed():
            return
        if self._txn is not None:
            await self.push(replies.NESTED_MAIL)
            return
        account = self._account()
        if account is None:
            log.info("smtp refused ip=%s: not authenticated, not a relay network", self._ip)
            await self.push(replies.AUTH_REQUIRED)
            return
        rest = strip_keyword("FROM:", arg or "")
        if rest is None:
            await self.push(replies.MAIL_SYNTAX)
            return
        if rest.lstrip().startswith("<>"):
            address, params_text = "", rest.lstrip()[2:]
        else:
            path = await self._path(rest, replies.BAD_SENDER_ADDRESS, replies.MAIL_SYNTAX)
            if path is None:
                return
            address, params_text = path
        try:
            meta = self._mail_params(params_text)
        except ParamError as exc:
            await self.push(str(exc))
            return
        if not self._listener.service.mail_from_allowed(account, address):
            log.info("smtp refused ip=%s account=%s: sender %r not allowed", self._ip,
                     account.name, address)
            self._listener.metrics.rejected("smtp", ErrorName.INVALID_SOURCE.value)
            await self.push(replies.SENDER_NOT_ALLOWED)
            return
        assert self.session is not None and self.envelope is not None
        meta = [(MetaKey.MAIL_FROM, address), (MetaKey.CLIENT_IP, self._ip or ""),
                (MetaKey.HELO, self.session.host_name or ""), *meta]
        self._txn = _Txn(account, address, meta)
        self.envelope.mail_from = address
        await self.push(replies.MAIL_OK)

    def _mail_params(self, text: str) -> list[tuple[MetaKey, str]]:
        params = parse_params(text)
        assert self.session is not None
        if params and not self.session.extended_smtp:
            raise ParamError(replies.MAIL_SYNTAX)
        meta: list[tuple[MetaKey, str]] = []
        for key, value in params.items():
            if key == "SIZE":
                if value is None or not value.isdigit():
                    raise ParamError(replies.param_bad(key))
                limit = self._listener.config.smtp.max_message_bytes
                if int(value) > limit:
                    raise ParamError(replies.size_exceeded(limit))
            elif key == "BODY":
                if _require(params, key).upper() not in ("7BIT", "8BITMIME"):
                    raise ParamError(replies.param_bad(key))
            elif key == "SMTPUTF8":
                if value is not None:
                    raise ParamError(replies.SMTPUTF8_ARG)
            elif key == "RET":
                ret = _require(params, key).upper()
                if ret not in ("FULL", "HDRS"):
                    raise ParamError(replies.param_bad(key))
                meta.append((MetaKey.RET, ret))
            elif key == "ENVID":
                try:
                    envid = xtext_decode(_require(params, key))
                except ValueError:
                    raise ParamError(replies.param_bad(key)) from None
                if len(envid) > 100:
                    raise ParamError(replies.param_bad(key))
                meta.append((MetaKey.ENVID, envid))
            elif key == "AUTH":  # RFC 4954 §5: informational, the session's AUTH decides
                _require(params, key)
            else:
                raise ParamError(replies.param_unknown(key))
        return meta

    async def _open_transaction(self) -> _Txn | None:
        """The transaction MAIL opened, or None once the refusal (HELO first, MAIL first, or
        AUTH first) has been sent: RCPT and DATA both start here."""
        if await self.check_helo_needed():
            return None
        if self._txn is None:
            await self.push(replies.NEED_MAIL if self._account() else replies.AUTH_REQUIRED)
        return self._txn

    @syntax("RCPT TO: <address>", extended=" [SP <mail-parameters>]")
    async def smtp_RCPT(self, arg: str | None) -> None:
        txn = await self._open_transaction()
        if txn is None:
            return
        listener = self._listener
        rest = strip_keyword("TO:", arg or "")
        if rest is None:
            await self.push(replies.RCPT_SYNTAX)
            return
        path = await self._path(rest, replies.BAD_ADDRESS, replies.RCPT_SYNTAX)
        if path is None:
            return
        address, params_text = path
        assert self.session is not None
        try:
            params = parse_params(params_text)
            if params and not self.session.extended_smtp:
                raise ParamError(replies.RCPT_SYNTAX)
            notify = orcpt = None
            words: frozenset[str] | None = None
            for key, value in params.items():
                if key == "NOTIFY":
                    raw = _require(params, key)
                    words = notify_words(raw)
                    notify = raw.upper()
                elif key == "ORCPT":
                    orcpt = orcpt_value(_require(params, key))
                else:
                    raise ParamError(replies.param_unknown(key))
        except ParamError as exc:
            await self.push(str(exc))
            return
        local, at, domain = address.rpartition("@")
        if not at or not local:
            await self.push(replies.NO_DOMAIN)
            return
        domain = domain.lower().rstrip(".")
        if domain not in listener.domains:
            log.info("smtp relay denied ip=%s account=%s domain=%s", self._ip,
                     txn.account.name, domain[:100])
            await self.push(replies.relay_denied(domain[:100]))
            return
        limit = listener.config.smtp.max_recipients
        if len(txn.rcpts) >= limit:
            listener.metrics.rejected("smtp", ErrorName.TOO_MANY_RECIPIENTS.value)
            log.info("smtp recipient refused ip=%s account=%s rcpt=%s: more than %d in one "
                     "mail", self._ip, txn.account.name, local[:64], limit)
            await self.push(replies.too_many_recipients(limit))
            return
        if len(local) > 1 and local[0] == local[-1] == '"':
            local = local[1:-1]
        try:
            destination = await listener.service.check_recipient(txn.account, local)
        except BridgeError as exc:
            listener.metrics.rejected("smtp", exc.name.value)
            log.info("smtp recipient refused ip=%s account=%s rcpt=%s: %s", self._ip,
                     txn.account.name, local[:64], exc)
            await self.push(replies.error(exc))
            return
        txn.rcpts.append(_Rcpt(address, destination, notify, words, orcpt))
        assert self.envelope is not None
        self.envelope.rcpt_tos.append(address)
        await self.push(replies.RCPT_OK)

    # ---- data

    @syntax("VRFY <address>")
    async def smtp_VRFY(self, arg: str | None) -> None:
        await self.push(replies.VRFY_NEVER if arg else replies.VRFY_SYNTAX)

    @syntax("DATA")
    async def smtp_DATA(self, arg: str | None) -> None:
        txn = await self._open_transaction()
        if txn is None:
            return
        if not txn.rcpts:
            await self.push(replies.NO_VALID_RECIPIENTS)
            return
        if arg:
            await self.push(replies.DATA_SYNTAX)
            return
        await self.push(replies.DATA_START)
        content = await self._read_data()
        self.end_transaction()
        if content is None:
            limit = self._listener.config.smtp.max_message_bytes
            self._listener.metrics.rejected("smtp", ErrorName.INVALID_MESSAGE.value,
                                            len(txn.rcpts))
            await self._reply_all(txn, replies.size_exceeded(limit))
            return
        await self.push("\r\n".join(await self._deliver(txn, content)))

    async def _read_data(self) -> bytes | None:
        """The mail up to CRLF.CRLF, dot-unstuffed; None when over max_message_bytes (the
        rest is read and dropped so the session stays in step). Bytes after the terminator
        (pipelined commands) go back to the reader."""
        reader = self._reader
        limit = self._listener.config.smtp.max_message_bytes
        buf = bytearray(b"\r\n")  # so that a first line of "." is found like any other
        start = 0
        dropped = 0
        while True:
            await self._flush()
            chunk = await reader.read(_READ_CHUNK)
            if not chunk:
                raise ConnectionResetError("connection closed during DATA")
            self._reset_timeout()
            buf += chunk
            end = buf.find(b"\r\n.\r\n", start)
            if end >= 0:
                rest = bytes(buf[end + 5:])
                pending = getattr(reader, "_buffer", None)  # anything read() left behind
                if rest and isinstance(pending, bytearray) and pending:
                    rest += bytes(pending)
                    pending.clear()
                if rest:
                    reader.feed_data(rest)
                if dropped or end > limit:
                    return None
                return bytes(buf[:end + 2]).replace(b"\r\n.", b"\r\n")[2:]
            if dropped or len(buf) - 2 > limit:  # too big: keep only a possible terminator start
                dropped += len(buf) - 4
                del buf[:-4]
                start = 0
            else:
                start = max(0, len(buf) - 4)

    async def _reply_all(self, txn: _Txn, line: str) -> None:
        await self.push("\r\n".join([line] * (len(txn.rcpts) if self._lmtp else 1)))

    @property
    def _lmtp(self) -> bool:
        return self._listener.config.smtp.lmtp

    async def _deliver(self, txn: _Txn, content: bytes) -> list[str]:
        """Reply lines for one mail: one (SMTP) or one per accepted RCPT (LMTP)."""
        listener = self._listener
        n = len(txn.rcpts)
        try:
            request, order = await self._request(txn, content)
        except BridgeError as exc:
            listener.metrics.rejected("smtp", exc.name.value, n)
            log.info("smtp refused ip=%s account=%s rcpts=%d: %s", self._ip, txn.account.name,
                     n, exc)
            return [replies.error(exc)] * (n if self._lmtp else 1)
        except Exception:
            listener.metrics.rejected("smtp", ErrorName.INVALID_MESSAGE.value, n)
            log.exception("smtp unreadable mail ip=%s account=%s", self._ip, txn.account.name)
            reply = replies.error(BridgeError(ErrorName.INVALID_MESSAGE, "malformed mail"))
            return [reply] * (n if self._lmtp else 1)
        # The submit runs to the end even if the client goes away meanwhile: once the store
        # has the messages, the dispatcher must get them too.
        task = asyncio.ensure_future(listener.service.submit(request))
        listener.tasks.add(task)
        task.add_done_callback(listener.finished)
        try:
            results = await asyncio.shield(task)
        except BridgeError as exc:
            listener.metrics.rejected("smtp", exc.name.value, n)
            log.info("smtp refused ip=%s account=%s rcpts=%d: %s", self._ip, txn.account.name,
                     n, exc)
            return [replies.error(exc)] * (n if self._lmtp else 1)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("smtp submit failed ip=%s account=%s", self._ip, txn.account.name)
            return [replies.INTERNAL] * (n if self._lmtp else 1)
        return self._replies(txn, request, results, order)

    async def _request(self, txn: _Txn, content: bytes) -> tuple[SubmitRequest, list[int]]:
        smtp = self._listener.config.smtp
        if len(content) > _OFFLOAD_BYTES:
            mail = await asyncio.to_thread(parse_mail, content, subject=smtp.subject)
        else:
            mail = parse_mail(content, subject=smtp.subject)
        # One submission per distinct number; `order[i]` is the submission of RCPT i.
        index: dict[str, int] = {}
        order: list[int] = []
        recipients: list[Recipient] = []
        for rcpt in txn.rcpts:
            e164 = rcpt.destination.e164
            if e164 not in index:
                index[e164] = len(recipients)
                meta = [(MetaKey.RCPT_TO, rcpt.address)]
                if rcpt.notify is not None:
                    meta.append((MetaKey.NOTIFY, rcpt.notify))
                if rcpt.orcpt is not None:
                    meta.append((MetaKey.ORCPT, rcpt.orcpt))
                key = f"mid:{mail.message_id}\x1f{e164}" if mail.message_id else None
                # DSNs as each RCPT's NOTIFY (or the default) asks, when they go back at all.
                default = self._listener.notify_default
                conditions = None if default is None else \
                    dsn_conditions(rcpt.notify_words, default, txn.mail_from,
                                   delays=self._listener.delay_notices)
                recipients.append(Recipient(e164, key, tuple(meta), rcpt.destination,
                                            dsn_notify=conditions))
            order.append(index[e164])
        meta = list(txn.meta)
        if mail.message_id:
            meta.append((MetaKey.MESSAGE_ID, mail.message_id))
        if mail.subject:  # DSNs and SMS replies name and thread the mail they answer
            meta.append((MetaKey.SUBJECT, mail.subject[:SUBJECT_KEPT]))
        # An answer to an SMS reply continues a conversation: the phone gets only what is new.
        text = mail.body if mail.body and answers_an_sms(mail.in_reply_to, smtp.domains) \
            else mail.text
        request = SubmitRequest(account=txn.account.name, recipients=tuple(recipients),
                                text=text, ingress=Ingress.SMTP, meta=tuple(meta),
                                truncate=smtp.too_long == "truncate")
        return request, order

    def _replies(self, txn: _Txn, request: SubmitRequest, results: list[RecipientResult],
                 order: list[int]) -> list[str]:
        ids = report_results(results, ingress=Ingress.SMTP, account=txn.account.name,
                             metrics=self._listener.metrics, peer=f"ip={self._ip} ")
        if self._lmtp:
            lines = []
            for rcpt, i in zip(txn.rcpts, order):
                r = results[i]
                if r.message_id is not None:
                    lines.append(replies.lmtp_accepted(r.message_id, rcpt.address))
                else:
                    lines.append(replies.error(r.error or BridgeError(ErrorName.INTERNAL_ERROR)))
            return lines
        if ids:
            return [replies.accepted(ids)]
        first = next((r.error for r in results if r.error is not None), None)
        return [replies.error(first or BridgeError(ErrorName.INTERNAL_ERROR))]


def _track_commands(cls: type[BridgeSMTP], *, own_only: bool) -> None:
    """Every smtp_* command of `cls` (or only those it defines) marks its session busy while
    it runs, and working when it opens or ends a transaction or authenticates. Done once
    per class: aiosmtpd then finds the tracked methods as it finds any command."""
    names = [n for n in (vars(cls) if own_only else dir(cls)) if n.startswith("smtp_")]
    for name in names:
        setattr(cls, name, _tracked(getattr(cls, name)))


Command = Callable[[Any, "str | None"], Awaitable[None]]


def _tracked(method: Command) -> Command:
    @functools.wraps(method)  # keeps @syntax's attributes for HELP
    async def run(self: BridgeSMTP, arg: str | None) -> None:
        before = self._work_state()
        self._busy += 1
        try:
            await method(self, arg)
        finally:
            self._busy -= 1
            if self._work_state() != before:
                self._worked_at = time.monotonic()
    return run


_track_commands(BridgeSMTP, own_only=False)


def _peer_address(transport: asyncio.BaseTransport) -> str:
    peer = transport.get_extra_info("peername")
    return str(peer[0]) if isinstance(peer, tuple) and peer else "unknown"


class _Gate(asyncio.Protocol):
    """A connection's first protocol: it asks the listener's table for a slot before the
    session exists (an aiosmtpd session costs far more to build than a refusal), then hands
    the transport to the session, or answers 421 and closes."""

    def __init__(self, connections: ConnectionTable, session: Callable[[], BridgeSMTP]
                 ) -> None:
        self._connections = connections
        self._session = session

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        where = self._connections.make_room(_peer_address(transport))
        if where is not Room.FREE:
            transport.write((replies.TOO_MANY_CONNECTIONS if where is Room.ADDRESS_FULL
                             else replies.LISTENER_FULL).encode() + b"\r\n")
            transport.close()
            return
        session = self._session()
        transport.set_protocol(session)
        session.connection_made(transport)


class BridgeLMTP(BridgeSMTP):
    """RFC 2033: LHLO instead of HELO/EHLO, one reply per recipient after DATA."""

    @syntax("LHLO hostname")
    async def smtp_LHLO(self, arg: str) -> None:
        await super().smtp_EHLO(arg)

    async def smtp_HELO(self, arg: str) -> None:
        await self.push(replies.LMTP_NO_HELO)

    async def smtp_EHLO(self, arg: str) -> None:
        await self.push(replies.LMTP_NO_EHLO)

    async def check_helo_needed(self, helo: str = "HELO") -> bool:
        return bool(await super().check_helo_needed("LHLO"))


# ---------------------------------------------------------------- listener


async def start_smtp(service: Service, config: Config, metrics: Metrics, *,
                     connections: ConnectionTable | None = None) -> asyncio.Server:
    """Listen on [smtp] listen on the running loop; returns the asyncio server.
    `connections`: the listener's table of sessions, when the caller wants to see it."""
    smtp = config.smtp
    # aiosmtpd logs every command line at INFO ("AUTH PLAIN <credentials>" included).
    logging.getLogger("mail.log").setLevel(logging.WARNING)
    loop = asyncio.get_running_loop()
    tls = server_context(config.base_dir, smtp.tls_cert, smtp.tls_key, section="smtp")
    auth_require_tls = not (smtp.auth_without_tls_on_loopback and is_loopback(smtp.listen_host))
    listener = _Listener(service, config, metrics, frozenset(smtp.domains),
                         parse_notify(smtp.notify_default)
                         if smtp.mail_back and smtp.dsn else None,
                         smtp.dsn_delay_after_s > 0,
                         connections or ConnectionTable("smtp", smtp.connection_limits,
                                                        log=log),
                         AuthGuard(service.credentials, smtp.auth, "smtp"))
    cls = BridgeLMTP if smtp.lmtp else BridgeSMTP
    ident = "sms-bridge LMTP" if smtp.lmtp else "sms-bridge ESMTP"
    server = await loop.create_server(
        lambda: _Gate(listener.connections, lambda: cls(
            listener, tls_context=tls, auth_require_tls=auth_require_tls, ident=ident)),
        smtp.listen_host, smtp.listen_port, backlog=511)
    log.info("smtp listening on %s:%d (%s, tls=%s)", smtp.listen_host,
             server.sockets[0].getsockname()[1], "lmtp" if smtp.lmtp else "smtp", tls is not None)
    return server


__all__ = ["BridgeLMTP", "BridgeSMTP", "start_smtp", "xtext_decode", "parse_params"]
