"""All configured SMSCs, and prefix routing with fail-over between them.

Routing: an SMSC whose `prefixes` include a prefix of the E.164 number is a candidate; longer
(more specific) prefixes come first, ties in config order; SMSCs with no prefixes are
catch-alls and come last, in config order. `route` picks the first *bound* candidate.

`candidates(e164) == []` means "not routable" (INVALID_DESTINATION, permanent);
`candidates` non-empty but `route(e164) is None` means "routable, but no route bound right
now" (wait and retry). `Routes.routable(e164)` states the first case directly.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from types import MappingProxyType
from typing import Callable, Mapping, Sequence

from bridge.config import SmscConfig
from bridge.outbound.smpp.client import MoHandler, ReceiptHandler, SmppBind

log = logging.getLogger("bridge.smpp")

SslContextFactory = Callable[[SmscConfig], "ssl.SSLContext | None"]


def _normalise(e164: str) -> str:
    number = e164.strip()
    return number if number.startswith("+") else "+" + number


class Routes:
    """The routing rule over the SMSC configs, by name: also usable where no bind runs (the
    ingress process checks routability at RCPT / SendSms time)."""

    def __init__(self, configs: Sequence[SmscConfig]) -> None:
        order = {config.name: i for i, config in enumerate(configs)}
        # (prefix, name) for every configured prefix, most specific first.
        self._prefixed: list[tuple[str, str]] = sorted(
            ((_normalise(prefix), config.name) for config in configs
             for prefix in config.prefixes),
            key=lambda item: (-len(item[0]), order[item[1]]))
        self._catch_all = [config.name for config in configs if not config.prefixes]

    def candidates(self, e164: str) -> list[str]:
        """SMSC names whose prefix matches, longest prefix first, then catch-alls; [] = no
        route."""
        number = _normalise(e164)
        out: list[str] = []
        for prefix, name in self._prefixed:
            if number.startswith(prefix) and name not in out:
                out.append(name)
        for name in self._catch_all:
            if name not in out:
                out.append(name)
        return out

    def routable(self, e164: str) -> bool:
        return bool(self.candidates(e164))


class SmscPool:
    def __init__(self, configs: Sequence[SmscConfig], *, on_receipt: ReceiptHandler,
                 on_mo: MoHandler, ssl_context_factory: SslContextFactory | None = None) -> None:
        binds: dict[str, SmppBind] = {}
        for config in configs:
            if config.name in binds:
                raise ValueError(f"duplicate SMSC name {config.name!r}")
            context = ssl_context_factory(config) if ssl_context_factory is not None else None
            binds[config.name] = SmppBind(config, on_receipt=on_receipt, on_mo=on_mo,
                                          ssl_context=context)
        self.binds: Mapping[str, SmppBind] = MappingProxyType(binds)
        self.routes = Routes(configs)

    def candidates(self, e164: str) -> list[SmppBind]:
        """Binds in `Routes.candidates` order; [] = no route."""
        return [self.binds[name] for name in self.routes.candidates(e164)]

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
