"""The outbound side, the SMPP binds, the dispatcher, the delivery callbacks and the mail
back to email senders, run inside the store process (with the retention sweep: one process
per database does each of these).

Why there and not beside SMTP and SOAP: on two cores the ingress process was the bottleneck
(`python -m bridge.bench.soap`: it ran at 100 % while the store process idled at 40 %), and a
fifth of its CPU went to the dispatcher, the binds and the receipts, whose store calls
(`record_submitted`, `record_receipt`) crossed the pipe twice each. In the store process
they call SQLite directly, and new messages reach the dispatcher the moment their
transaction commits, without travelling back. The ingress process keeps only HTTP/SMTP and
the Service, and asks for health and metrics through the same pipe.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bridge.core.console import BindPicture, OutboundPicture
from bridge.outbound.notify.callbacks import DRAIN_S as CALLBACK_DRAIN_S
from bridge.outbound.notify.callbacks import CallbackSender
from bridge.config import Config, SmscConfig
from bridge.core.health import Circuit
from bridge.outbound.dispatcher import Dispatcher
from bridge.ingress.tls import client_context
from bridge.outbound.notify.mailback import DRAIN_S as MAIL_DRAIN_S
from bridge.outbound.notify.mailback import MailBack
from bridge.metrics import OutboundMetrics
from bridge.outbound.retention import Retention
from bridge.outbound.smpp.pool import SmscPool
from bridge.store.base import AcceptOutcome, OutboundMessage, Store
from bridge.store.rows import AcceptRow, outbound_message


#: The seconds a bind's submits a second are averaged over, on the status page.
TPS_S = 10


@dataclass(frozen=True)
class OutboundSetup:
    """What the store process needs to run the outbound side: the config and the SMSCs as
    the bridge resolved them (the embedded simulator's real port already filled in)."""
    config: Config
    smscs: tuple[SmscConfig, ...]
    #: The bridge's own level, so that both processes log alike (tests leave it at WARNING).
    log_level: int = logging.WARNING
    #: No other outbound side can run on this store (a SQLite file, under its lock).
    exclusive: bool = True


@dataclass(frozen=True)
class OutboundStatus:
    binds: dict[str, bool]
    queue_depth: int
    #: False while the store cannot record what the SMSCs answer (the outbound side is paused).
    store_writable: bool = True
    #: This instance's id, and every instance as this one last saw them.
    instance: str = ""
    instances: tuple[dict[str, object], ...] = ()
    #: Each SMSC's circuit (bridge.core.health): "closed" in routing, "open" out of it.
    health: dict[str, str] = field(default_factory=dict)


def accepted_messages(rows: Sequence[AcceptRow],
                      outcomes: Sequence[AcceptOutcome]) -> list[OutboundMessage]:
    """What a committed `accept` gives the dispatcher: the messages it took on and holds, not
    repeats, nor those that wait to be claimed."""
    return [outbound_message(r) for r, o in zip(rows, outcomes)
            if o.status == "accepted" and o.held]


def smpp_tls(base_dir: Path, smsc: SmscConfig, index: int) -> ssl.SSLContext | None:
    """The client context of `[[smsc]]` number `index`, by the listeners' rule for files
    (bridge.ingress.tls): `tls_ca` relative to the config's base_dir."""
    if not smsc.tls:
        return None
    return client_context(base_dir, smsc.tls_ca, verify_hostname=smsc.tls_verify_hostname,
                          key=f"smsc[{index}].tls_ca")


class Outbound:
    """Binds plus dispatcher over one store, with their own metrics registry."""

    def __init__(self, setup: OutboundSetup, store: Store) -> None:
        self.metrics = OutboundMetrics()
        self.dispatcher = Dispatcher(setup.config, store, metrics=self.metrics,
                                     exclusive=setup.exclusive)
        base_dir = setup.config.base_dir
        index = {smsc.name: i for i, smsc in enumerate(setup.smscs)}
        self.pool = SmscPool(setup.smscs, on_receipt=self.dispatcher.on_receipt,
                             on_mo=self.dispatcher.on_mo,
                             ssl_context_factory=lambda smsc: smpp_tls(base_dir, smsc,
                                                                       index[smsc.name]),
                             accounts=setup.config.accounts)
        self.dispatcher.attach(self.pool)
        config = setup.config
        owner = self.dispatcher.instance
        self.callbacks = CallbackSender(config, store, self.metrics, owner=owner,
                                        smscs=setup.smscs) \
            if config.soap.callbacks or config.http.reports else None
        self.mailback = MailBack(setup.config.smtp, store, self.metrics, owner=owner) \
            if setup.config.smtp.mail_back else None
        retention_days = setup.config.store.retention_days
        self.retention = Retention(store, retention_days * 86400) if retention_days else None

    async def start(self) -> None:
        await self.pool.start()
        await self.dispatcher.start()
        if self.callbacks is not None:
            await self.callbacks.start()
        if self.mailback is not None:
            await self.mailback.start()
        if self.retention is not None:
            self.retention.start()

    def accepted(self, rows: Sequence[AcceptRow], outcomes: Sequence[AcceptOutcome]) -> None:
        """Hand the messages a committed `accept` took on (not repeats) to the dispatcher."""
        fresh = accepted_messages(rows, outcomes)
        if fresh:
            self.dispatcher.enqueue(fresh)

    def status(self) -> OutboundStatus:
        membership = self.dispatcher.membership
        binds = self.pool.binds
        return OutboundStatus({name: b.bound for name, b in binds.items()},
                              self.dispatcher.queue_depth, self.dispatcher.gate.is_open,
                              membership.id, tuple(v.as_json() for v in membership.peers),
                              {name: b.health.circuit.value for name, b in binds.items()})

    async def wait_bound(self, timeout: float) -> bool:
        return await self.pool.wait_bound(timeout)

    def picture(self) -> OutboundPicture:
        """What the status page shows of this side (bridge.ingress.console): each bind, its
        window in use and its submits a second lately, the per-second series, latencies."""
        metrics = self.metrics
        now = metrics.clock()
        binds = tuple(BindPicture(
            name=name, up=bind.bound, in_flight=bind.in_flight, window=bind.config.window,
            tps=metrics.history.total(f"submitted:{name}", now, TPS_S) / TPS_S,
            max_tps=bind.config.max_tps / bind.tps_share) for name, bind in self.pool.binds.items())
        return OutboundPicture(
            at=now, binds=binds, latency=metrics.latencies(now),
            series={name: tuple(metrics.history.window(name, now))
                    for name in ("submitted", "delivered")},
            queue_depth=self.dispatcher.queue_depth, instance=self.dispatcher.membership.id)

    def metrics_text(self) -> bytes:
        """Bind states are read at scrape time, so the gauge is never stale."""
        states = [c.value for c in Circuit]
        for name, bind in self.pool.binds.items():
            self.metrics.set_binds_up(name, bind.bound)
            self.metrics.set_smsc_health(name, bind.health.circuit.value, states,
                                         bind.health.opened)
        self.metrics.set_instances(self.dispatcher.membership.peers)
        return self.metrics.render()[0]

    async def stop(self, drain_timeout: float) -> None:
        """Let the submits, callbacks and mails in flight finish (bounded), then unbind."""
        if self.retention is not None:
            await self.retention.stop()
        await asyncio.gather(
            *([self.callbacks.stop(min(drain_timeout, CALLBACK_DRAIN_S))]
              if self.callbacks is not None else []),
            *([self.mailback.stop(min(drain_timeout, MAIL_DRAIN_S))]
              if self.mailback is not None else []))
        await self.dispatcher.stop(drain_timeout)
        await self.pool.stop()
