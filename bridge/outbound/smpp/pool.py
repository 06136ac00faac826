"""All configured SMSCs, and routing with fail-over between them.

Routing is bridge.core.routing's rule (prefix tiers, accounts' own lists, weights), over the
[[smsc]] configs: `candidates(e164) == []` means "not routable" (INVALID_DESTINATION,
permanent); candidates but `route(e164) is None` means "routable, but no route bound right
now" (wait and retry). `Routes.routable(e164)` states the first case directly.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from types import MappingProxyType
from typing import Callable, Mapping, Sequence

from bridge.config import AccountConfig, SmscConfig
from bridge.core.encoding import Encoding
from bridge.core.routing import Routes, RouteSpec
from bridge.core.segmentation import ConcatMode, RouteForm
from bridge.outbound.smpp.client import MoHandler, ReceiptHandler, SmppBind

__all__ = ["Routes", "SmscPool", "first_bound", "route_form", "routes_of"]

log = logging.getLogger("bridge.smpp")

SslContextFactory = Callable[[SmscConfig], "ssl.SSLContext | None"]


def route_form(config: SmscConfig) -> RouteForm:
    """How messages to this SMSC are planned: its concat and the encodings it takes."""
    return RouteForm(ConcatMode(config.concat), tuple(Encoding(e) for e in config.encodings))


def routes_of(configs: Sequence[SmscConfig],
              accounts: Sequence[AccountConfig] = ()) -> Routes:
    """The routing rule over these SMSCs and the accounts' own lists (the ingress process
    checks routability with it too, where no bind runs)."""
    return Routes([RouteSpec(c.name, c.prefixes, c.weight, route_form(c)) for c in configs],
                  {a.name: a.smscs for a in accounts if a.smscs})


class SmscPool:
    def __init__(self, configs: Sequence[SmscConfig], *, on_receipt: ReceiptHandler,
                 on_mo: MoHandler, ssl_context_factory: SslContextFactory | None = None,
                 accounts: Sequence[AccountConfig] = ()) -> None:
        binds: dict[str, SmppBind] = {}
        for config in configs:
            if config.name in binds:
                raise ValueError(f"duplicate SMSC name {config.name!r}")
            context = ssl_context_factory(config) if ssl_context_factory is not None else None
            binds[config.name] = SmppBind(config, on_receipt=on_receipt, on_mo=on_mo,
                                          ssl_context=context)
        self.binds: Mapping[str, SmppBind] = MappingProxyType(binds)
        self.routes = routes_of(configs, accounts)

    def candidates(self, e164: str, account: str | None = None) -> list[SmppBind]:
        """Binds in `Routes.candidates` order; [] = no route."""
        return [self.binds[name] for name in self.routes.candidates(e164, account)]

    def ordered(self, e164: str, account: str | None, draw: float) -> list[SmppBind]:
        """Binds in fail-over order with each tier's first drawn by weight (`Routes.ordered`)."""
        return [self.binds[name] for name in self.routes.ordered(e164, account, draw)]

    def route(self, e164: str) -> SmppBind | None:
        """The first bound candidate (fail-over), or None: check `routes.routable` to tell
        "no route at all" from "no route bound right now"."""
        return first_bound(self.candidates(e164))

    async def start(self) -> None:
        for bind in self.binds.values():
            await bind.start()

    async def wait_bound(self, timeout: float) -> bool:
        """Wait until every bind this instance holds is up (one another instance holds under
        `cluster_binds` is not waited for)."""
        held = [b for b in self.binds.values() if b.holding]
        results = await asyncio.gather(*(b.wait_bound(timeout) for b in held))
        return all(results)

    async def stop(self, drain_timeout: float = 10.0) -> None:
        await asyncio.gather(*(b.stop(drain_timeout) for b in self.binds.values()),
                             return_exceptions=True)
        log.info("smpp pool stopped (%d bind(s))", len(self.binds))


def first_bound(candidates: list[SmppBind]) -> SmppBind | None:
    """The fail-over rule: the first candidate whose bind is up, in `candidates` order."""
    return next((bind for bind in candidates if bind.bound), None)
