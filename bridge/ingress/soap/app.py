"""The SOAP listener: an aiohttp application running Spyne on the asyncio loop.

Endpoints (one aiohttp app, mounted by bridge/app.py on `[soap] listen`, TLS when configured):

    POST {path}          SOAP request; the envelope version follows the Content-Type
    POST {path}12        (application/soap+xml = SOAP 1.2, anything else = SOAP 1.1) on both
    GET  {path}?wsdl     WSDL with the SOAP 1.1 binding, address {path}
    GET  {path}12?wsdl   WSDL with the SOAP 1.2 binding, address {path}12

(/healthz and /metrics on the same listener are bridge.ingress.ops's.)

A POST goes through, in order: size limit (413), hardened XML parse (DTDs refused, no entity
expansion, no network), authentication (HTTP Basic, else WS-Security UsernameToken in the SOAP
header), Spyne's method lookup and schema validation, decoding of the arguments, the
operation (awaited on the loop: Spyne calls the `async def` operation, gets its coroutine back
as the result, and this transport awaits it), encoding of the response.

Spyne runs on the loop via aiohttp-spyne's `AioBase` with `threads=None`; aiohttp-spyne's own
request handler cannot await, so the request flow above is this module's, using Spyne's
context, envelope, validation and call steps. Arguments and responses go through decoders and
encoders compiled from the Spyne declarations (bridge.ingress.soap.service), ~10x cheaper than Spyne's
and byte-identical to them. Faults are rendered by `bridge.ingress.soap.faults` (never by Spyne).

Measured per request on this machine (one-recipient SendSms, µs): hardened parse 20, Spyne
context 35, envelope + method lookup + schema validation 50, decoding 8 (Spyne's own: 85),
encoding 20 (Spyne's own: 270). The compiled decoder/encoder (bridge.ingress.soap.service) are checked
against Spyne's by tests. A no-op operation through this endpoint (auth included) serves more
calls per second than the same no-op on stock aiohttp-spyne; see `python -m bridge.bench.soap`.

Authentication failures, missing or invalid, are HTTP 401 with
`WWW-Authenticate: Basic realm="sms-bridge"` and an AUTH_FAILED (1703) SOAP fault body, so
both HTTP-level clients and SOAP toolkits (which read the fault) see the reason. Checks go
through the listener's AuthGuard ([soap] auth_*): a failure's answer is held longer as
failures pile up, and an address (or user) with too many is answered 401 with Retry-After
without a check; each failure is logged with the client address and the user. Missing
credentials are not a failure (clients commonly try without, then answer the challenge).
"""

from __future__ import annotations

import inspect
import logging
import time
from typing import Any, Awaitable, Callable, Mapping

from aiohttp import web
from aiohttp_spyne.aio_base import AioBase
from aiohttp_spyne.aio_method_ctx import AioMethodContext

from bridge.config import AccountConfig, Config
from bridge.core.errors import BridgeError, ErrorName
from bridge.metrics import Metrics
from bridge.intake.credentials import AuthGuard, Check
from bridge.intake.service import Service
from bridge.ingress.soap.faults import SOAP_FAULTS, SoapVersion, render_fault
from bridge.ingress.soap.security import (
    REALM,
    AuthError,
    NonceCache,
    UsernameToken,
    XmlRejected,
    check_freshness,
    digest_matches,
    find_username_token,
    make_parser,
    parse_basic,
    parse_xml,
)
from bridge.ingress.soap.service import (
    Operations,
    build_application,
    encode_response,
    quiet_events,
)
from bridge.ingress.soap.wsdl import render_wsdl

log = logging.getLogger("bridge.soap")

WSS_WINDOW_S = 300.0  # a UsernameToken's Created may be this old; nonces are kept this long
WSS_SKEW_S = 60.0  # ... and this far in the future (clock skew)
_WSDL_CACHE_MAX = 32

class SoapEndpoint:
    """Request handling for every route of the SOAP app."""

    def __init__(self, service: Service, config: Config, metrics: Metrics, *,
                 clock: Callable[[], float] = time.time,
                 wss_window_s: float = WSS_WINDOW_S, wss_skew_s: float = WSS_SKEW_S) -> None:
        self.service = service
        self.config = config
        self.soap = config.soap
        self.path = self.soap.path.rstrip("/") or "/"
        self.metrics = metrics
        self.clock = clock
        self.wss_window_s = wss_window_s
        self.wss_skew_s = wss_skew_s
        self.nonces = NonceCache(ttl_s=wss_window_s + wss_skew_s)
        self.auth = AuthGuard(service.credentials, self.soap.auth, "soap")
        self.parser = make_parser()
        # aiohttp-spyne's server base per SOAP version: Spyne on the loop, no thread pool.
        self.transports: dict[SoapVersion, Any] = {
            v: AioBase(build_application(v), threads=None) for v in SoapVersion}
        quiet_events(*self.transports.values())
        self._wsdl: dict[tuple[SoapVersion, str], bytes] = {}

    # ------------------------------------------------------------------ replies

    def _fault(self, version: SoapVersion, name: ErrorName, message: str = "", *,
               status: int | None = None, headers: Mapping[str, str] | None = None
               ) -> web.Response:
        all_headers = {"Content-Type": version.content_type}
        if name is ErrorName.AUTH_FAILED:
            all_headers["WWW-Authenticate"] = REALM
        if headers:
            all_headers.update(headers)
        return web.Response(body=render_fault(version, name, message),
                            status=status or SOAP_FAULTS[name].http_status(version),
                            headers=all_headers)

    # ------------------------------------------------------------------ POST

    async def post(self, request: web.Request) -> web.StreamResponse:
        version = SoapVersion.from_content_type(request.content_type)
        limit = self.soap.max_request_bytes
        if request.content_length is not None and request.content_length > limit:
            self.metrics.rejected("soap", ErrorName.INVALID_PARAMETER.value)
            return self._fault(version, ErrorName.INVALID_PARAMETER,
                               f"request larger than {limit} bytes", status=413,
                               headers={"Connection": "close"})
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            self.metrics.rejected("soap", ErrorName.INVALID_PARAMETER.value)
            return self._fault(version, ErrorName.INVALID_PARAMETER,
                               f"request larger than {limit} bytes", status=413,
                               headers={"Connection": "close"})
        try:
            root = parse_xml(body, self.parser)
        except XmlRejected as exc:
            self.metrics.rejected("soap", ErrorName.INVALID_PARAMETER.value)
            log.info("soap request refused: %s", exc)
            return self._fault(version, ErrorName.INVALID_PARAMETER, str(exc))
        try:
            account = await self._authenticate(request, root, version)
        except AuthError as exc:
            return self._auth_refused(request, version, exc)
        return await self._dispatch(request, version, root, account)

    async def _dispatch(self, request: web.Request, version: SoapVersion, root: Any,
                        account: AccountConfig) -> web.StreamResponse:
        """Spyne's steps (context, envelope, method lookup, schema validation, decoding, the
        call), then the awaited operation, then the response encoding."""
        transport = self.transports[version]
        ctx: Any = None
        p_ctx: Any = None
        settled = False
        try:
            ctx = AioMethodContext(transport, request, version.content_type,
                                   aiohttp_app=request.app)
            ctx.in_document = (root, {})  # pre-parsed: see bridge.ingress.soap.service._PreparsedMixin
            ctx.udc = Operations(self.service, account, self.metrics, self.soap.max_recipients)
            p_ctx = transport.generate_contexts(ctx)[0]
            if p_ctx.in_error is None:
                transport.get_in_object(p_ctx)
            if p_ctx.in_error is not None:
                return self._spyne_fault(version, p_ctx.in_error, account)
            transport.get_out_object(p_ctx)  # calls the operation: its coroutine comes back
            if p_ctx.out_error is not None:
                return self._spyne_fault(version, p_ctx.out_error, account)
            settled = True
            p_ctx.out_object = await _settle(p_ctx.out_object)
            body = encode_response(version, p_ctx.descriptor, p_ctx.out_object)
            return web.Response(body=body, headers={"Content-Type": version.content_type})
        except BridgeError as exc:
            log.info("soap fault %s account=%s: %s", exc.name.value, account.name, exc.detail)
            return self._fault(version, exc.name, exc.detail)
        except Exception:
            log.exception("soap request failed account=%s", account.name)
            return self._fault(version, ErrorName.INTERNAL_ERROR, "nothing was accepted")
        finally:
            # Not p_ctx.close(): it only fires an event nobody listens to, closes files we never
            # open, and runs a full gc.collect() once a second (~30 ms with a large heap).
            if not settled and p_ctx is not None:
                _close_unawaited(p_ctx.out_object)
            _break_cycles(ctx, p_ctx)

    def _spyne_fault(self, version: SoapVersion, fault: Any,
                     account: AccountConfig) -> web.Response:
        """A fault raised inside Spyne (decode, validation, unknown operation)."""
        code = str(getattr(fault, "faultcode", "Server"))
        who = account.name
        if code.startswith("Client"):
            message = str(getattr(fault, "faultstring", "") or "invalid request")
            log.info("soap request invalid account=%s: %s", who, message.splitlines()[0][:200])
            self.metrics.rejected("soap", ErrorName.INVALID_PARAMETER.value)
            return self._fault(version, ErrorName.INVALID_PARAMETER, message)
        log.error("soap internal fault account=%s code=%s", who, code)
        return self._fault(version, ErrorName.INTERNAL_ERROR, "nothing was accepted")

    # ------------------------------------------------------------------ auth

    async def _authenticate(self, request: web.Request, root: Any,
                            version: SoapVersion) -> AccountConfig:
        """The account of the request's Basic credentials, else of its UsernameToken, through
        the listener's AuthGuard; AuthError otherwise."""
        user: str | None
        try:
            basic = parse_basic(request.headers.get("Authorization"))
            if basic is not None:
                user = basic.username
                check = self._password_check(basic.username, basic.password)
            else:
                token = find_username_token(root, version.envelope_ns)
                if token is None:
                    raise AuthError("no credentials", missing=True)
                user, check = token.username, self._token_check(token)
        except AuthError as exc:
            if exc.missing:
                raise
            user, check = None, _failing(exc.reason)  # malformed: a failure all the same
        outcome = await self.auth.attempt(request.remote or "unknown", user, check)
        if outcome.refused:
            raise AuthError("too many authentication failures",
                            retry_after_s=max(1.0, outcome.retry_after_s))
        if outcome.account is None:
            raise AuthError("bad credentials")
        return outcome.account

    def _password_check(self, username: str, password: str) -> Check:
        async def check() -> AccountConfig | str:
            return await self.service.credentials.password(username, password) \
                or "bad password"
        return check

    def _token_check(self, token: UsernameToken) -> Check:
        """A UsernameToken's check: its freshness, its password or digest, its nonce; the
        reason of a failure for the log."""
        async def check() -> AccountConfig | str:
            now = self.clock()
            try:
                check_freshness(token, now=now, window_s=self.wss_window_s,
                                skew_s=self.wss_skew_s)
            except AuthError as exc:
                return exc.reason
            if token.digest:
                found = self.service.credentials.account(token.username)
                secret = found.password if found is not None else None
                # Compare even for unknown accounts so names cannot be probed by timing.
                ok = digest_matches(token, secret if secret is not None else "\0")
                if found is None or secret is None or not ok:
                    return "bad PasswordDigest"
                account = found
            else:
                checked = await self.service.credentials.password(token.username,
                                                                  token.password)
                if checked is None:
                    return "bad password"
                account = checked
            if token.nonce is not None and not self.nonces.add(token.username, token.nonce,
                                                               now=now):
                return "UsernameToken nonce already used"
            return account
        return check

    def _auth_refused(self, request: web.Request, version: SoapVersion,
                      exc: AuthError) -> web.Response:
        """401 with an AUTH_FAILED fault; the guard has logged a failure with its address."""
        self.metrics.rejected("soap", ErrorName.AUTH_FAILED.value)
        if exc.missing:
            log.info("soap credentials missing ip=%s", request.remote)
            return self._fault(version, ErrorName.AUTH_FAILED, "credentials required")
        if exc.retry_after_s:
            return self._fault(version, ErrorName.AUTH_FAILED,
                               "too many authentication failures, try again later",
                               headers={"Retry-After": f"{exc.retry_after_s:.0f}"})
        return self._fault(version, ErrorName.AUTH_FAILED, "bad credentials")

    # ------------------------------------------------------------------ GET

    async def get_v11(self, request: web.Request) -> web.StreamResponse:
        return self._get(request, SoapVersion.V11)

    async def get_v12(self, request: web.Request) -> web.StreamResponse:
        return self._get(request, SoapVersion.V12)

    def _get(self, request: web.Request, version: SoapVersion) -> web.StreamResponse:
        if not any(key.lower() == "wsdl" for key in request.query):
            return web.Response(status=405, text="POST a SOAP request, or GET ?wsdl\n",
                                headers={"Allow": "GET, POST"})
        base = f"{request.scheme}://{request.host}{self.path}"
        key = (version, base)
        document = self._wsdl.get(key)
        if document is None:
            document = render_wsdl(version, base)
            if len(self._wsdl) < _WSDL_CACHE_MAX:
                self._wsdl[key] = document
        return web.Response(body=document, headers={"Content-Type": "text/xml; charset=utf-8"})


def _failing(reason: str) -> Check:
    async def check() -> AccountConfig | str:
        return reason
    return check


async def _settle(pending: Any) -> Any:
    """Spyne's out_object holds the operation's coroutine (alone for multi-value returns, in a
    one-item list otherwise); await it in place."""
    if inspect.isawaitable(pending):
        return await pending
    if isinstance(pending, (list, tuple)) and len(pending) == 1 and inspect.isawaitable(pending[0]):
        awaitable: Awaitable[Any] = pending[0]
        return [await awaitable]
    return pending


_SUB_CONTEXTS = ("transport", "inprot_ctx", "outprot_ctx", "event", "aux")


def _break_cycles(*contexts: Any) -> None:
    """Spyne's contexts point at each other (sub-context `parent`, a defaultdict whose factory
    closes over its owner), so every request left cyclic garbage that only the cyclic GC
    reclaims: about 12 % of this process's CPU under load went to collections. Emptied, they
    are freed by reference counting as the request ends."""
    for ctx in contexts:
        if ctx is None:
            continue
        fields = vars(ctx)
        for name in _SUB_CONTEXTS:
            sub = fields.get(name)
            if sub is not None:
                vars(sub).clear()
        fields.clear()


def _close_unawaited(pending: Any) -> None:
    items = pending if isinstance(pending, (list, tuple)) else (pending,)
    for item in items:
        if inspect.iscoroutine(item):
            item.close()


SOAP_ENDPOINT = web.AppKey("soap_endpoint", SoapEndpoint)


def create_soap_app(service: Service, config: Config, metrics: Metrics, *,
                    clock: Callable[[], float] = time.time) -> web.Application:
    """The SOAP endpoint's aiohttp application (bridge.runtime.app runs it on the SOAP listener,
    with bridge.ingress.ops's routes and, unless [http] has a listener of its own, the HTTP
    dialects).
    `clock` is for WS-Security timestamps."""
    # Spyne logs every client fault with a traceback; the adapter logs one line itself.
    logging.getLogger("spyne").setLevel(logging.CRITICAL)
    endpoint = SoapEndpoint(service, config, metrics, clock=clock)
    app = web.Application(client_max_size=config.soap.max_request_bytes)
    path = endpoint.path
    app.router.add_post(path, endpoint.post)
    app.router.add_post(path + "12", endpoint.post)
    app.router.add_get(path, endpoint.get_v11)
    app.router.add_get(path + "12", endpoint.get_v12)
    app[SOAP_ENDPOINT] = endpoint
    return app
