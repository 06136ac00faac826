"""The operator's console (SPEC §8): the status page at `/` and the admin API under
`/admin/api/`, for `[admin] users` only, on the operations listener (the SOAP listener, or
`[admin] listen`).

    GET  /                      the status page (login first); ?id=ID shows a message's timeline
    GET  /admin/login, POST     the login form; a session cookie (bridge.ingress.console.sessions)
    POST /admin/logout          ends the session (the form carries the session's CSRF token)
    GET  /admin/live            the page's live part, which console.js fetches again
    GET  /admin/found?id=ID     a message and its timeline, as the page shows it
    GET  /admin/static/NAME     console.js and console.css, served by the bridge itself

    GET  /admin/api/status                  binds, queue, per-second series, latencies,
                                            refusals, last messages, accounts
    GET  /admin/api/messages?state=&account=&since=&limit=
    GET  /admin/api/messages/ID             one message and its timeline
    POST /admin/api/messages/cancel         {"ids": [...]}: 200 when each was cancelled, else 409
    POST /admin/api/messages/retry          {"ids": [...]}: the same for retry
    GET  /admin/api/accounts                quota, credit, used, left, rate of each account
    GET  /admin/api/accounts/NAME           one account with its credit history
    POST /admin/api/accounts/NAME/credit    {"change": "+500"}: 200, or 409 and why not

The API takes the session cookie (the page) or HTTP Basic with an admin user's name and
password (scripts). A call that changes something must be JSON (`Content-Type:
application/json`, which no form of another site can send without this server agreeing), come
from this origin when the browser names one, and with a session also carry its CSRF token in
`X-CSRF-Token`. Never a message's text; recipients masked unless `[admin] show_numbers`.
Without `[admin] users` every path here answers 404 and the page says how to add a user.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import Any
from urllib.parse import parse_qs

from aiohttp import web

from bridge.core.errors import ErrorName
from bridge.ingress.console import page
from bridge.ingress.console.sessions import COOKIE, Session, Sessions, csrf_matches
from bridge.ingress.console.status import Outbound, gather_status
from bridge.ingress.listener import TooLarge, read_body
from bridge.intake.admin import Admin, AdminInputError
from bridge.metrics import Metrics
from bridge.store.base import StoreUnavailable

log = logging.getLogger("bridge.console")

#: Checks an admin user's name and password for a client address: True when they match.
#: The composition root passes it (bridge.intake.credentials.PasswordBook), so a guard that
#: throttles failures can wrap it without this module changing.
Check = Callable[[str, str, str], Awaitable[bool]]

#: The largest body the console reads (a cancel of the most ids at once fits).
MAX_BODY = 128 * 1024
_STATIC = {"console.js": "text/javascript", "console.css": "text/css"}
_PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; "
                               "frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    # same-origin, not no-referrer: with no-referrer a browser's form POST says "Origin: null",
    # which the check of the origin must refuse (a sandboxed frame of another site says so too).
    "X-Frame-Options": "DENY", "Referrer-Policy": "same-origin", "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff"}


class _Refused(Exception):
    """Answer the request with this status and JSON error (API) or page (HTML)."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.headers = headers or {}


class Console:
    def __init__(self, admin: Admin, metrics: Metrics, outbound: Outbound, *,
                 users: bool, check: Check, version: str) -> None:
        """`users`: whether `[admin] users` names anyone (else every path answers 404)."""
        self.admin = admin
        self.metrics = metrics
        self.outbound = outbound
        self.users = users
        self.check = check
        self.version = version
        self.sessions = Sessions()

    # ------------------------------------------------------------------ who asks

    def _session(self, request: web.Request) -> Session | None:
        return self.sessions.find(request.cookies.get(COOKIE), self.metrics.clock())

    async def _api_user(self, request: web.Request) -> tuple[str, Session | None]:
        """The admin user of an API call: its session, else its HTTP Basic credentials."""
        if not self.users:
            raise _Refused(404, "the admin console is not configured ([admin] users)")
        session = self._session(request)
        if session is not None:
            return session.user, session
        header = request.headers.get("Authorization", "")
        if not header.lower().startswith("basic "):
            raise _Refused(401, "log in, or send HTTP Basic credentials of an admin user")
        try:
            name, _, password = base64.b64decode(header[6:].strip(), validate=True) \
                .decode("utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError, ValueError):
            name, password = "", ""
        if not await self._checked(request, name, password):
            raise _Refused(401, "wrong name or password",
                           {"WWW-Authenticate": 'Basic realm="sms-bridge admin", charset="UTF-8"'})
        return name, None

    async def _checked(self, request: web.Request, name: str, password: str) -> bool:
        # The check is throttled and logs each failure (address and user, for fail2ban).
        if await self.check(name, password, request.remote or "-"):
            return True
        self.metrics.rejected("admin", ErrorName.AUTH_FAILED.value)
        return False

    async def _form(self, request: web.Request) -> dict[str, list[str]]:
        """A form posted by the page itself (login, logout): same origin, a small body."""
        self._same_origin(request)
        try:
            return parse_qs((await _body(request)).decode("utf-8", "replace"),
                            max_num_fields=10)
        except ValueError:  # more fields than a page's form has
            raise _Refused(400, "a form with too many fields") from None

    @staticmethod
    def _same_origin(request: web.Request) -> None:
        origin = request.headers.get("Origin")
        if origin is not None and origin != f"{request.scheme}://{request.host}":
            raise _Refused(403, "a request from another site")
        if request.headers.get("Sec-Fetch-Site", "same-origin") not in ("same-origin", "none"):
            raise _Refused(403, "a request from another site")

    async def _changes(self, request: web.Request) -> tuple[str, Any]:
        """An API call that changes something: its user and its JSON body, once the CSRF
        rules passed (module docstring)."""
        user, session = await self._api_user(request)
        self._same_origin(request)
        if request.content_type != "application/json":
            raise _Refused(415, "send JSON (Content-Type: application/json)")
        if session is not None and not csrf_matches(session, request.headers.get("X-CSRF-Token")):
            raise _Refused(403, "missing or wrong X-CSRF-Token")
        body = await _body(request)
        try:
            return user, json.loads(body)
        except (ValueError, UnicodeDecodeError):
            raise _Refused(400, "the body is not JSON") from None

    # ------------------------------------------------------------------ pages

    async def index(self, request: web.Request) -> web.StreamResponse:
        if not self.users:
            return _html(page.not_configured_page(), status=404)
        session = self._session(request)
        if session is None:
            raise web.HTTPSeeOther("/admin/login")
        wanted = request.query.get("id", "").strip()
        found = await self._found(wanted) if wanted else ""
        try:
            status = await gather_status(self.admin, self.metrics, self.outbound,
                                         version=self.version)
        except StoreUnavailable as exc:
            return _html(page.page(None, user=session.user, csrf=session.csrf, found=found,
                                   error=str(exc)), status=503)
        return _html(page.page(status, user=session.user, csrf=session.csrf, found=found))

    async def live(self, request: web.Request) -> web.StreamResponse:
        if self._session(request) is None:
            return _html("", status=401 if self.users else 404)
        try:
            status = await gather_status(self.admin, self.metrics, self.outbound,
                                         version=self.version)
        except StoreUnavailable as exc:
            return _html(f'<p class="bad">The store did not answer: {exc}</p>', status=503)
        return _html(page.live_panel(status))

    async def found(self, request: web.Request) -> web.StreamResponse:
        if self._session(request) is None:
            return _html("", status=401 if self.users else 404)
        return _html(await self._found(request.query.get("id", "").strip()))

    async def _found(self, wanted: str) -> str:
        try:
            return page.found_panel(await self.admin.message(wanted), wanted)
        except AdminInputError as exc:
            return page.found_panel(None, wanted, problem=str(exc))
        except StoreUnavailable:
            return page.found_panel(None, wanted, problem="the store did not answer")

    async def login_form(self, request: web.Request) -> web.StreamResponse:
        if not self.users:
            return _html(page.not_configured_page(), status=404)
        return _html(page.login_page())

    async def login(self, request: web.Request) -> web.StreamResponse:
        if not self.users:
            return _html(page.not_configured_page(), status=404)
        try:
            form = await self._form(request)
        except _Refused as refused:
            return _html(page.login_page(problem=str(refused)), status=refused.status)
        name = form.get("name", [""])[0][:256]
        if not await self._checked(request, name, form.get("password", [""])[0][:1024]):
            return _html(page.login_page(problem="Wrong name or password.", name=name),
                         status=401)
        session = self.sessions.start(name, self.metrics.clock())
        log.info("admin login user=%r ip=%s", name[:64], request.remote)
        response = _see_other("/")
        response.set_cookie(COOKIE, session.token, httponly=True, samesite="Strict", path="/",
                            secure=request.secure)
        return response

    async def logout(self, request: web.Request) -> web.StreamResponse:
        session = self._session(request)
        if session is not None:
            try:
                form = await self._form(request)
            except _Refused as refused:
                return _html(page.login_page(problem=str(refused)), status=refused.status)
            if not csrf_matches(session, form.get("csrf", [None])[0]):
                return _html(page.login_page(problem="Log out from the page itself."),
                             status=403)
            self.sessions.end(session.token)
        response = _see_other("/admin/login")
        response.del_cookie(COOKIE, path="/")
        return response

    async def static(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        kind = _STATIC.get(name)
        if kind is None:
            raise web.HTTPNotFound()
        body = resources.files("bridge.ingress.console").joinpath("static", name).read_bytes()
        return web.Response(body=body, content_type=kind,
                            headers={"Cache-Control": "no-cache",
                                     "X-Content-Type-Options": "nosniff"})

    # ------------------------------------------------------------------ the API

    async def api_status(self, request: web.Request) -> web.StreamResponse:
        await self._api_user(request)
        status = await gather_status(self.admin, self.metrics, self.outbound,
                                     version=self.version)
        return web.json_response(status.as_json())

    async def api_messages(self, request: web.Request) -> web.StreamResponse:
        await self._api_user(request)
        query = request.query
        return web.json_response(await self.admin.messages(
            state=query.get("state"), account=query.get("account"), since=query.get("since"),
            limit=query.get("limit")))

    async def api_message(self, request: web.Request) -> web.StreamResponse:
        await self._api_user(request)
        message = await self.admin.message(request.match_info["id"])
        if message is None:
            raise _Refused(404, "no such message")
        return web.json_response(message)

    async def api_cancel(self, request: web.Request) -> web.StreamResponse:
        return await self._act(request, self.admin.cancel)

    async def api_retry(self, request: web.Request) -> web.StreamResponse:
        return await self._act(request, self.admin.retry)

    async def _act(self, request: web.Request,
                   action: Callable[[list[object], str], Awaitable[list[dict[str, Any]]]]
                   ) -> web.StreamResponse:
        user, body = await self._changes(request)
        ids = body.get("ids") if isinstance(body, dict) else None
        if not isinstance(ids, list):
            raise _Refused(400, 'send {"ids": ["message id", ...]}')
        results = await action(ids, f"admin:{user}")
        return web.json_response({"results": results},
                                 status=200 if all(r["done"] for r in results) else 409)

    async def api_accounts(self, request: web.Request) -> web.StreamResponse:
        await self._api_user(request)
        return web.json_response({"accounts": await self.admin.accounts()})

    async def api_account(self, request: web.Request) -> web.StreamResponse:
        await self._api_user(request)
        name = request.match_info["name"]
        history = await self.admin.credit_history(name)
        [row] = [a for a in await self.admin.accounts() if a["name"] == name]
        return web.json_response({**row, "history": history})

    async def api_credit(self, request: web.Request) -> web.StreamResponse:
        user, body = await self._changes(request)
        if not isinstance(body, dict) or "change" not in body:
            raise _Refused(400, 'send {"change": "+500"} (or "-20" to take back)')
        row = await self.admin.credit(request.match_info["name"], body["change"],
                                      f"admin:{user}")
        return web.json_response(row, status=409 if row["refused"] else 200)

    async def api_unknown(self, request: web.Request) -> web.StreamResponse:
        await self._api_user(request)
        raise _Refused(404, "no such admin API call")


async def _body(request: web.Request) -> bytes:
    try:
        return await read_body(request, MAX_BODY)
    except TooLarge:
        raise _Refused(413, f"the body is larger than {MAX_BODY} bytes") from None


def _see_other(location: str) -> web.Response:
    """A redirect that sets or clears the cookie (aiohttp no longer wants an HTTPException
    returned, and one raised would lose the cookie)."""
    return web.Response(status=303, headers={"Location": location, "Cache-Control": "no-store"})


def _html(text: str, *, status: int = 200) -> web.Response:
    return web.Response(text=text, status=status, content_type="text/html",
                        headers=_PAGE_HEADERS)


@web.middleware
async def _answers(request: web.Request,
                   handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                   ) -> web.StreamResponse:
    """The API's refusals as JSON `{"error": ...}`: an input it cannot read 400, a store that
    cannot answer 503; never a traceback to the client."""
    if not request.path.startswith("/admin/api/"):
        return await handler(request)
    try:
        return await handler(request)
    except _Refused as refused:
        return _error(refused.status, str(refused), refused.headers)
    except AdminInputError as exc:
        return _error(400, str(exc))
    except StoreUnavailable:
        return _error(503, "the store is unavailable; try again")
    except web.HTTPException as exc:
        return _error(exc.status, exc.reason)
    except Exception:
        log.exception("admin API %s %s failed", request.method, request.path)
        return _error(500, "internal error (logged)")


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"error": message}, status=status, headers=headers)


def add_console_routes(app: web.Application, console: Console) -> None:
    """The console's routes on `app` (the operations listener's application)."""
    app.middlewares.append(_answers)
    router = app.router
    router.add_get("/", console.index)
    router.add_get("/admin/login", console.login_form)
    router.add_post("/admin/login", console.login)
    router.add_post("/admin/logout", console.logout)
    router.add_get("/admin/live", console.live)
    router.add_get("/admin/found", console.found)
    router.add_get("/admin/static/{name}", console.static)
    router.add_get("/admin/api/status", console.api_status)
    router.add_get("/admin/api/messages", console.api_messages)
    router.add_post("/admin/api/messages/cancel", console.api_cancel)
    router.add_post("/admin/api/messages/retry", console.api_retry)
    router.add_get("/admin/api/messages/{id}", console.api_message)
    router.add_get("/admin/api/accounts", console.api_accounts)
    router.add_get("/admin/api/accounts/{name}", console.api_account)
    router.add_post("/admin/api/accounts/{name}/credit", console.api_credit)
    router.add_route("*", "/admin/api/{rest:.*}", console.api_unknown)
