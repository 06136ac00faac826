"""What the status page and `GET /admin/api/status` show, gathered from the three places that
know it: the store (the queue by state, the newest messages, the accounts: shared by every
instance on one PostgreSQL), this process's metrics (accepted and refused per second: the
ingress runs here) and the outbound side in the store process (binds, submitted and delivered
per second, latencies), which answers through the status callable the composition root passes.
Each instance shows its own plots; the queue and the messages are the cluster's.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from bridge.core.console import HISTORY_S, BindPicture, OutboundPicture
from bridge.core.errors import ERROR_TABLE, ErrorName
from bridge.intake.admin import Admin
from bridge.metrics import Metrics

log = logging.getLogger("bridge.console")

Json = dict[str, Any]
#: The outbound side's picture (bridge.runtime.process.StoreProcess.outbound_picture).
Outbound = Callable[[], Awaitable[OutboundPicture]]

#: The series the page plots, in order, with what each counts.
PLOTS: tuple[tuple[str, str], ...] = (
    ("accepted", "messages accepted"),
    ("submitted", "parts submitted to an SMSC"),
    ("delivered", "parts delivered (receipts)"),
    ("refused", "recipients refused"),
)
#: Messages the page lists.
LAST_MESSAGES = 20
#: How long the page waits for the outbound side before it shows the rest without it.
OUTBOUND_WAIT_S = 3.0


@dataclass(frozen=True)
class ConsoleStatus:
    at: float
    version: str
    instance: str
    #: Why the outbound side's part is missing (its process did not answer), else None.
    outbound_error: str | None
    binds: tuple[BindPicture, ...]
    queue: Mapping[str, int]
    #: Each of PLOTS: counts per second, oldest first, the last HISTORY_S seconds.
    series: Mapping[str, Sequence[int]]
    latency: Mapping[str, Mapping[str, float | None]]
    #: Refusals by SPEC §5 error name over the history, most first.
    refusals: Sequence[tuple[str, int]]
    messages: Sequence[Json] = ()
    accounts: Sequence[Json] = ()
    queue_depth: int = 0
    error_codes: Mapping[str, int] = field(default_factory=dict)

    def as_json(self) -> Json:
        return {
            "at": self.at, "version": self.version, "instance": self.instance,
            "outbound_error": self.outbound_error,
            "binds": [{"name": b.name, "up": b.up, "in_flight": b.in_flight, "window": b.window,
                       "tps": b.tps, "max_tps": b.max_tps} for b in self.binds],
            "queue": dict(self.queue), "held": self.queue_depth,
            "series": {name: list(counts) for name, counts in self.series.items()},
            "latency_s": {kind: dict(p) for kind, p in self.latency.items()},
            "refusals": [{"error": name, "code": self.error_codes.get(name), "count": n}
                         for name, n in self.refusals],
            "messages": list(self.messages), "accounts": list(self.accounts)}


async def gather_status(admin: Admin, metrics: Metrics, outbound: Outbound, *,
                        version: str) -> ConsoleStatus:
    """Everything at once: the store's reads and the outbound side's answer side by side. A
    store that cannot answer fails the whole (the page says so); an outbound side that cannot
    leaves its part empty and says why."""
    picture, queue, listed, accounts = await asyncio.gather(
        _picture(outbound), admin.queue(), admin.messages(limit=LAST_MESSAGES),
        admin.accounts())
    now = metrics.clock()
    history = metrics.history
    series: dict[str, Sequence[int]] = {
        "accepted": history.window("accepted", now), "refused": history.window("refused", now)}
    empty = (0,) * len(series["accepted"])
    got = picture if isinstance(picture, OutboundPicture) else None
    for name in ("submitted", "delivered"):
        series[name] = _fit(got.series.get(name, empty) if got else empty, len(empty))
    refusals = sorted(((name.split(":", 1)[1], history.total(name, now, HISTORY_S))
                       for name in history.names() if name.startswith("refused:")),
                      key=lambda item: (-item[1], item[0]))
    return ConsoleStatus(
        at=now, version=version, instance=got.instance if got else "",
        outbound_error=None if got else str(picture), binds=got.binds if got else (),
        queue=queue, series=series, latency=got.latency if got else {},
        refusals=[(name, n) for name, n in refusals if n],
        messages=listed["messages"], accounts=accounts,
        queue_depth=got.queue_depth if got else 0,
        error_codes={e.value: ERROR_TABLE[e].code for e in ErrorName})


async def _picture(outbound: Outbound) -> OutboundPicture | str:
    try:
        return await asyncio.wait_for(outbound(), OUTBOUND_WAIT_S)
    except Exception as exc:  # the page still shows the store's part
        log.warning("console: the outbound side did not answer: %s", exc)
        return f"the outbound side did not answer ({type(exc).__name__})"


def _fit(counts: Sequence[int], length: int) -> Sequence[int]:
    """The outbound side's series, as long as this process's (the two clocks' seconds)."""
    counts = tuple(counts)[-length:]
    return (0,) * (length - len(counts)) + counts
