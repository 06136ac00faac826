"""The HTTP dialects' routes: added to the SOAP listener's application when `[http] listen`
is not set (one port answers both), or served by an application of their own."""

from __future__ import annotations

from aiohttp import web

from bridge.config import Config
from bridge.ingress.http.bulksms import BulkSms
from bridge.ingress.http.jasmin import JasminSend
from bridge.ingress.http.jsonapi import JsonApi
from bridge.ingress.http.kannel import KannelSendsms
from bridge.intake.credentials import AuthGuard
from bridge.intake.service import Service
from bridge.metrics import Metrics


def add_http_routes(app: web.Application, service: Service, config: Config,
                    metrics: Metrics) -> None:
    """Each dialect whose path is set, on `app`; they share one throttle of authentication
    failures ([http] auth_*), wherever they are served."""
    http = config.http
    auth = AuthGuard(service.credentials, http.auth, "http")
    if http.bulksms_path:
        app.router.add_route("*", http.bulksms_path, BulkSms(service, config, metrics, auth).handle)
    if http.json_path:
        api = JsonApi(service, config, metrics, auth)
        base = http.json_path.rstrip("/")
        app.router.add_route("*", base, api.collection)
        app.router.add_route("*", base + "/{id}", api.item)
    if http.kannel_path:
        app.router.add_route("*", http.kannel_path,
                             KannelSendsms(service, config, metrics, auth).handle)
    if http.jasmin_path:
        app.router.add_route("*", http.jasmin_path, JasminSend(service, config, metrics, auth).handle)


def create_http_app(service: Service, config: Config, metrics: Metrics) -> web.Application:
    """The application of an HTTP listener of its own (`[http] listen`)."""
    app = web.Application(client_max_size=config.http.max_request_bytes)
    add_http_routes(app, service, config, metrics)
    return app


#: aiohttp's own bound on a request line.
DEFAULT_LINE = 8190


def max_line_size(config: Config) -> int:
    """The request-line bound of the listener that serves the dialects: a GET's whole URL
    may be as long as max_request_bytes (bulk destination lists), so the line must fit it;
    a longer one gets the dialect's own 413."""
    return max(DEFAULT_LINE, config.http.max_request_bytes + 1024)
