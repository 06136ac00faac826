"""Composition root. Two processes: this one runs the SMTP, SOAP and HTTP listeners, the Service and
(when configured) the embedded SMSC simulator on one asyncio loop; the store process runs the
SQLite store and the outbound side, SMPP binds and dispatcher (bridge.runtime.outbound says why)."""

from __future__ import annotations

import asyncio
import gc
import logging
import ssl
import time
from dataclasses import replace
from typing import Any

from aiohttp import web

from bridge.config import Config, SmscConfig, effective_smscs
from bridge.core.segmentation import ConcatMode
from bridge.metrics import Metrics
from bridge.runtime.outbound import OutboundSetup
from bridge.intake.service import Service
from bridge.simulator import SmscSimulator
from bridge.outbound.smpp.pool import Routes
from bridge.ingress.smtp.server import start_smtp
from bridge.ingress.http.app import DEFAULT_LINE, add_http_routes, create_http_app, max_line_size
from bridge import __version__
from bridge.ingress.console import Console, add_console_routes
from bridge.ingress.console.app import MAX_BODY as CONSOLE_MAX_BODY
from bridge.ingress.ops import add_ops_routes
from bridge.intake.admin import Admin
from bridge.intake.credentials import PasswordBook
from bridge.ingress.tls import server_context
from bridge.ingress.soap.app import create_soap_app
from bridge.runtime import StoreProcess, open_store

log = logging.getLogger("bridge.app")


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
        self._soap_runner: web.AppRunner | None = None
        self._http_runner: web.AppRunner | None = None
        self._admin_runner: web.AppRunner | None = None
        self.store: StoreProcess = open_store(config.store, config.base_dir)
        self.service: Service | None = None
        #: Set when the bridge cannot go on (its store is lost); `serve` then stops, exit 1.
        self.failed = asyncio.Event()

    async def start(self) -> None:
        config = self.config
        smscs = effective_smscs(config)
        if config.simulator.enabled:
            self.simulator = SmscSimulator(config.simulator)
            port = await self.simulator.start()
            # Entries that point at the embedded simulator follow it to its real port.
            smscs = tuple(_follow_simulator(s, config, port) for s in smscs)
        store = self.store
        store.on_lost = self.failed.set
        await store.open(outbound=OutboundSetup(
            config, tuple(smscs), logging.getLogger().getEffectiveLevel(),
            exclusive=store.spec.sqlite is not None))
        concat = ConcatMode(smscs[0].concat)  # config guarantees one form for every route
        self.service = Service(config, store, routes=Routes(smscs).candidates, concat=concat)
        self._smtp_server = await start_smtp(self.service, config, self.metrics)
        self.smtp_port = self._smtp_server.sockets[0].getsockname()[1]
        app = create_soap_app(self.service, config, self.metrics)
        add_ops_routes(app, self.metrics, self.health, store.outbound_metrics)
        console = self._console()
        admin = config.admin
        if admin.listen_host is None:
            add_console_routes(app, console)
        http = config.http
        if http.shared:
            add_http_routes(app, self.service, config, self.metrics)
        soap_tls = server_context(config.base_dir, config.soap.tls_cert, config.soap.tls_key,
                                  section="soap")
        self._soap_runner, self.soap_port = await _listen(
            app, config.soap.listen_host, config.soap.listen_port, soap_tls,
            max_line_size(config) if http.shared else DEFAULT_LINE)
        self.http_port = self.admin_port = self.soap_port
        if admin.listen_host is not None:
            console_app = web.Application(client_max_size=CONSOLE_MAX_BODY)
            add_console_routes(console_app, console)
            self._admin_runner, self.admin_port = await _listen(
                console_app, admin.listen_host, admin.listen_port,
                server_context(config.base_dir, admin.tls_cert, admin.tls_key,
                               section="admin"), DEFAULT_LINE)
        if not http.shared:
            assert http.listen_host is not None
            self._http_runner, self.http_port = await _listen(
                create_http_app(self.service, config, self.metrics), http.listen_host,
                http.listen_port, server_context(config.base_dir, http.tls_cert, http.tls_key,
                                                 section="http"), max_line_size(config))
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
        return Console(Admin(self.config, self.store), self.metrics, self.store.outbound_picture,
                       users=bool(passwords), check=passwords.check, version=__version__)

    async def wait_bound(self, timeout: float) -> bool:
        """True once every SMSC bind is up (tests and benchmarks start sending after this)."""
        return await self.store.wait_bound(timeout)

    async def health(self) -> dict[str, Any]:
        store = "ok" if self.store.healthy() else "unavailable"
        binds: dict[str, bool] = {}
        queue_depth = 0
        instance, instances = "", []
        if store == "ok":
            try:
                status = await asyncio.wait_for(self.store.outbound_status(), 5.0)
                binds, queue_depth = status.binds, status.queue_depth
                instance, instances = status.instance, list(status.instances)
                if not status.store_writable:
                    store = "not writable"  # records fail: the outbound side is paused
            except Exception as exc:
                log.error("health: the store process did not answer: %s", exc)
                store = "unavailable"
        # A bind left to another live instance (cluster_binds) still sends what this accepts.
        sending = any(binds.values()) or any(i.get("alive") and i.get("binds") for i in instances)
        return {"status": "ok" if sending and store == "ok" else "degraded",
                "binds": binds, "store": store, "queue_depth": queue_depth, "time": time.time(),
                "instance": instance, "instances": instances}

    async def stop(self, drain_timeout: float = 10.0) -> None:
        """Graceful: stop intake, answer the requests already inside, then the store process
        drains in-flight submits, unbinds and closes the store."""
        if self._smtp_server is not None:
            self._smtp_server.close()
        for runner in (self._soap_runner, self._http_runner, self._admin_runner):
            if runner is not None:
                await runner.cleanup()
        if self.service is not None and not await self.service.drained(drain_timeout):
            log.warning("stop: requests still in flight after %.0f s; closing anyway "
                        "(their clients get no acceptance, so they retry)", drain_timeout)
        if self._smtp_server is not None:
            await self._smtp_server.wait_closed()
        await self.store.close(drain_timeout=drain_timeout)
        if self.simulator is not None:
            await self.simulator.stop()


async def _listen(app: web.Application, host: str, port: int, tls: ssl.SSLContext | None,
                  line: int) -> tuple[web.AppRunner, int]:
    """Serve `app` on host:port (TLS when given, request lines up to `line` octets); the
    runner and the port it got."""
    runner = web.AppRunner(app, access_log=None, max_line_size=line)
    await runner.setup()
    site = web.TCPSite(runner, host, port, ssl_context=tls, reuse_address=True)
    await site.start()
    server = site._server  # aiohttp keeps the asyncio server here
    assert server is not None
    return runner, int(server.sockets[0].getsockname()[1])  # type: ignore[attr-defined]


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
