"""Composition root. Two processes: this one runs the SMTP, SOAP and HTTP listeners, the Service and
(when configured) the embedded SMSC simulator on one asyncio loop; the store process runs the
SQLite store and the outbound side, SMPP binds and dispatcher (bridge.runtime.outbound says why)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

from aiohttp import web

from bridge.config import Config, SmscConfig, effective_smscs
from bridge.metrics import Metrics
from bridge.runtime.outbound import OutboundSetup
from bridge.intake.service import Service
from bridge.simulator import SmscSimulator
from bridge.outbound.smpp.pool import routes_of
from bridge.ingress.smtp.server import start_smtp
from bridge.ingress.connections import ConnectionTable, TablesCollector
from bridge.ingress.http.app import DEFAULT_LINE, add_http_routes, create_http_app, max_line_size
from bridge.ingress.listener import GuardedListener, raise_file_limit, serve
from bridge import __version__
from bridge.ingress.console import Console, add_console_routes
from bridge.ingress.console.app import MAX_BODY as CONSOLE_MAX_BODY
from bridge.ingress.ops import add_ops_routes
from bridge.intake.admin import Admin
from bridge.intake.credentials import AuthGuard, PasswordBook
from bridge.ingress.tls import server_context
from bridge.ingress.soap.app import create_soap_app
from bridge.runtime import StoreProcess, open_store

log = logging.getLogger("bridge.app")


class ListenError(Exception):
    """A listener could not open its port (in use, an address not on this host, a name that
    does not resolve): `serve` names it and exits 1."""


@contextlib.contextmanager
def _opening(listener: str, host: str, port: int) -> Iterator[None]:
    try:
        yield
    except OSError as exc:  # socket.gaierror is one
        reason = exc.strerror or str(exc)
        raise ListenError(f"cannot listen for {listener} on {host}:{port}: {reason}") from None


class Bridge:
    """Start/stop the whole gateway; ports are known after `start` (port 0 = ephemeral)."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.metrics = Metrics()
        self.simulator: SmscSimulator | None = None
        self.smtp_port = 0
        self.soap_port = 0
        self.http_port = 0  # the SOAP port when [http] has no listener of its own
        self.admin_port = 0  # the status page's: the SOAP port unless [admin] listen
        self._smtp_server: asyncio.Server | None = None
        #: Each listener's sessions ("smtp", "soap", "http" when it has its own listener).
        self.connections: dict[str, ConnectionTable] = {}
        self._soap_listener: GuardedListener | None = None
        self._http_listener: GuardedListener | None = None
        self._admin_listener: GuardedListener | None = None
        self.store: StoreProcess = open_store(config.store, config.base_dir)
        self.service: Service | None = None
        #: Set when the bridge cannot go on (its store is lost); `serve` then stops, exit 1.
        self.failed = asyncio.Event()

    async def start(self) -> None:
        config = self.config
        smscs = effective_smscs(config)
        if config.simulator.enabled:
            self.simulator = SmscSimulator(config.simulator)
            with _opening("the simulator ([simulator] port)", config.simulator.host,
                          config.simulator.port):
                port = await self.simulator.start()
            # Entries that point at the embedded simulator follow it to its real port.
            smscs = tuple(_follow_simulator(s, config, port) for s in smscs)
        store = self.store
        store.on_lost = self.failed.set
        await store.open(outbound=OutboundSetup(
            config, tuple(smscs), logging.getLogger().getEffectiveLevel(),
            exclusive=store.spec.sqlite is not None))
        # Each recipient's message is planned for its first route's form (bridge.core.routing).
        self.service = Service(config, store, routes=routes_of(smscs, config.accounts))
        http = config.http
        raise_file_limit(256 + config.smtp.max_connections + config.soap.limits.max_connections
                         + (0 if http.shared else http.limits.max_connections))
        self.connections["smtp"] = ConnectionTable("smtp", config.smtp.connection_limits,
                                                   log=logging.getLogger("bridge.smtp"))
        with _opening("SMTP ([smtp] listen)", config.smtp.listen_host, config.smtp.listen_port):
            self._smtp_server = await start_smtp(self.service, config, self.metrics,
                                                 connections=self.connections["smtp"])
        self.smtp_port = self._smtp_server.sockets[0].getsockname()[1]
        app = create_soap_app(self.service, config, self.metrics)
        add_ops_routes(app, self.metrics, self.health, store.outbound_metrics)
        console = self._console()
        admin = config.admin
        if admin.listen_host is None:
            add_console_routes(app, console)
        if http.shared:
            add_http_routes(app, self.service, config, self.metrics)
        soap_tls = server_context(config.base_dir, config.soap.tls_cert, config.soap.tls_key,
                                  section="soap")
        with _opening("SOAP ([soap] listen)", config.soap.listen_host, config.soap.listen_port):
            self._soap_listener = await serve(
                "soap", app, config.soap.listen_host, config.soap.listen_port, soap_tls,
                max_line_size(config) if http.shared else DEFAULT_LINE, config.soap.limits)
        self.soap_port = self.http_port = self._soap_listener.port
        self.connections["soap"] = self._soap_listener.table
        self.admin_port = self.soap_port
        if admin.listen_host is not None:
            console_app = web.Application(client_max_size=CONSOLE_MAX_BODY)
            add_console_routes(console_app, console)
            with _opening("the status page ([admin] listen)", admin.listen_host,
                          admin.listen_port):
                self._admin_listener = await serve(
                    "admin", console_app, admin.listen_host, admin.listen_port,
                    server_context(config.base_dir, admin.tls_cert, admin.tls_key,
                                   section="admin"), DEFAULT_LINE, config.soap.limits)
            self.admin_port = self._admin_listener.port
            self.connections["admin"] = self._admin_listener.table
        if not http.shared:
            assert http.listen_host is not None
            with _opening("HTTP ([http] listen)", http.listen_host, http.listen_port):
                self._http_listener = await serve(
                    "http", create_http_app(self.service, config, self.metrics),
                    http.listen_host, http.listen_port,
                    server_context(config.base_dir, http.tls_cert, http.tls_key,
                                   section="http"), max_line_size(config), http.limits)
            self.http_port = self._http_listener.port
            self.connections["http"] = self._http_listener.table
        self.metrics.registry.register(TablesCollector(self.connections))
        log.info("serving smtp=%s:%d soap=%s:%d%s http=%s:%d", config.smtp.listen_host,
                 self.smtp_port, config.soap.listen_host, self.soap_port, config.soap.path,
                 http.listen_host or config.soap.listen_host, self.http_port)
        admin_tls = admin.tls_cert if admin.listen_host is not None else config.soap.tls_cert
        if admin.users:
            log.info("status page on http%s://%s:%d/ for %d admin user(s)",
                     "s" if admin_tls else "", admin.listen_host or config.soap.listen_host,
                     self.admin_port, len(admin.users))
        else:
            log.info("no status page: no [admin] users (README.md, \"The status page\")")

    def _console(self) -> Console:
        """The status page and admin API over this bridge's store, metrics and outbound side
        (each instance's own plots; the queue and the messages are the store's)."""
        passwords = PasswordBook(self.config.admin.password_hashes())
        assert self.service is not None
        # Throttled and logged as every listener's checks are (fail2ban reads the lines).
        guard = AuthGuard(self.service.credentials, self.config.soap.auth, "console")

        async def check(name: str, password: str, peer: str) -> bool:
            async def attempt() -> bool | str:
                return await passwords.check(name, password) or "bad password"
            return (await guard.attempt(peer, name, attempt)).passed
        return Console(Admin(self.config, self.store), self.metrics, self.store.outbound_picture,
                       users=bool(passwords), check=check, version=__version__)

    async def wait_bound(self, timeout: float) -> bool:
        """True once every SMSC bind is up (tests and benchmarks start sending after this)."""
        return await self.store.wait_bound(timeout)

    async def health(self) -> dict[str, Any]:
        store = "ok" if self.store.healthy() else "unavailable"
        binds: dict[str, bool] = {}
        health: dict[str, str] = {}
        queue_depth = 0
        instance, instances = "", []
        if store == "ok":
            try:
                status = await asyncio.wait_for(self.store.outbound_status(), 5.0)
                binds, queue_depth, health = status.binds, status.queue_depth, status.health
                instance, instances = status.instance, list(status.instances)
                if not status.store_writable:
                    store = "not writable"  # records fail: the outbound side is paused
            except Exception as exc:
                log.error("health: the store process did not answer: %s", exc)
                store = "unavailable"
        # Ok while some SMSC can take traffic: bound and in routing (its health), or bound
        # by another live instance (cluster_binds) that sends what this one accepts.
        usable = any(up and health.get(name) != "open" for name, up in binds.items())
        sending = usable or any(i.get("alive") and i.get("binds") for i in instances)
        return {"status": "ok" if sending and store == "ok" else "degraded",
                "binds": binds, "smsc_health": health, "store": store,
                "queue_depth": queue_depth, "time": time.time(),
                "instance": instance, "instances": instances}

    async def stop(self, drain_timeout: float = 10.0) -> None:
        """Graceful: stop intake, answer the requests already inside, then the store process
        drains in-flight submits, unbinds and closes the store."""
        if self._smtp_server is not None:
            self._smtp_server.close()
        for listener in (self._soap_listener, self._http_listener, self._admin_listener):
            if listener is not None:
                await listener.stop()
        if self.service is not None and not await self.service.drained(drain_timeout):
            log.warning("stop: requests still in flight after %.0f s; closing anyway "
                        "(their clients get no acceptance, so they retry)", drain_timeout)
        if self._smtp_server is not None:
            await self._smtp_server.wait_closed()
        await self.store.close(drain_timeout=drain_timeout)
        if self.simulator is not None:
            await self.simulator.stop()


def freeze_startup_heap() -> None:
    """For a process that serves until it exits (`sms-bridge serve`, the benches' servers):
    the ~60,000 objects built at start (Spyne, lxml, phonenumbers, aiohttp) live as long as
    the process, yet every full collection walked them (about 50 ms each under SOAP load).
    Frozen, collections walk only what came after. Not for tests: what is frozen is never
    collected."""
    gc.collect()
    gc.freeze()


def _follow_simulator(smsc: SmscConfig, config: Config, port: int) -> SmscConfig:
    sim = config.simulator
    if smsc.host == sim.host and smsc.port == sim.port:
        return replace(smsc, port=port)
    return smsc
