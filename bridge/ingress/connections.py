"""The sessions of one listener, by client address: who gets a slot, and which idle session
is closed to make room (bridge.core.floods decides; this module keeps the books and closes).

Shared by the SMTP listener and the aiohttp listeners (SOAP, HTTP): each of their connections
is a `Slot`. Refusals and closings come in floods, so they are logged as one episode per
listener (the first, a summary a minute, the end), never a line each.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Protocol

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from bridge.core.floods import ConnectionLimits, Room, pick_victim, room
from bridge.logs import Episode


class Slot(Protocol):
    """One connection as the table sees it."""

    @property
    def address(self) -> str: ...

    def idle_since(self) -> float | None:
        """Monotonic time its last work ended (or it connected); None while it works."""

    def evict(self) -> None:
        """Close it now, telling the client why when the protocol has a way."""


class ConnectionTable:
    """Slots of one listener (`name` in the log), within `limits`."""

    def __init__(self, name: str, limits: ConnectionLimits, *,
                 clock: Callable[[], float] = time.monotonic,
                 log: logging.Logger | None = None) -> None:
        self.name = name
        self.limits = limits
        self.clock = clock
        self.total = 0
        self.evicted = 0  # since start, for tests and metrics
        self.refused = 0
        self.peak = 0
        self._by_address: dict[str, dict[Slot, None]] = {}
        self.episode = Episode(log or logging.getLogger(f"bridge.{name}"), f"{name} listener")

    def count(self, address: str) -> int:
        slots = self._by_address.get(address)
        return len(slots) if slots else 0

    def admit(self, slot: Slot) -> Room:
        """Room.FREE when `slot` got a place (an idle session may have been closed for it);
        else why it was refused (its address holds its share, or the listener is full)."""
        where = self.make_room(slot.address)
        if where is Room.FREE:
            self.add(slot)
        return where

    def make_room(self, address: str) -> Room:
        """Room.FREE when a newcomer from `address` may take a slot (closing an idle session
        for it if need be): `add` it at once. Else why it is refused."""
        where = room(self.limits, self.total, self.count(address))
        if where is Room.FREE:
            self.episode.succeeded()
            return where
        victim = pick_victim(self.limits, self.clock(), where, address, self.count,
                             self._candidates(address, where))
        if victim is None:
            self.refused += 1
            self.episode.failed(f"refused ip={address}: {self._why(where)}")
            return where
        self.release(victim)
        victim.evict()
        self.evicted += 1
        self.episode.failed(f"closed an idle session of ip={victim.address} for "
                            f"ip={address}: {self._why(where)}")
        return Room.FREE

    def add(self, slot: Slot) -> None:
        """`slot` takes the place make_room made."""
        self._by_address.setdefault(slot.address, {})[slot] = None
        self.total += 1
        self.peak = max(self.peak, self.total)

    def release(self, slot: Slot) -> None:
        """`slot` is gone (or evicted); a second call is a no-op."""
        slots = self._by_address.get(slot.address)
        if slots is None or slot not in slots:
            return
        del slots[slot]
        if not slots:
            del self._by_address[slot.address]
        self.total -= 1

    def _candidates(self, newcomer: str, where: Room) -> Iterator[tuple[Slot, str,
                                                                        float | None]]:
        """The sessions pick_victim may choose from: the newcomer's address's, and when the
        listener is full those of addresses it may take from (the others are skipped whole,
        so a flood of even addresses costs a look at each address, not at each session)."""
        mine = self.count(newcomer)
        if where is Room.ADDRESS_FULL:
            looked = [(newcomer, self._by_address.get(newcomer, {}))]
        else:
            looked = [(address, slots) for address, slots in self._by_address.items()
                      if address == newcomer or mine == 0 or len(slots) >= mine + 2]
        for address, slots in looked:
            for slot in slots:
                yield slot, address, slot.idle_since()

    def _why(self, where: Room) -> str:
        if where is Room.ADDRESS_FULL:
            return f"the address holds its share ({self.limits.per_client})"
        return f"the listener is full ({self.limits.max_connections})"


class TablesCollector(Collector):
    """The listeners' sessions on /metrics (read when scraped, nothing counted twice)."""

    def __init__(self, tables: Mapping[str, ConnectionTable]) -> None:
        self.tables = tables

    def collect(self) -> Iterator[Metric]:
        held = GaugeMetricFamily("sms_bridge_connections", "Sessions a listener holds",
                                 labels=["listener"])
        refused = CounterMetricFamily("sms_bridge_connections_refused",
                                      "Newcomers refused: their address held its share or "
                                      "the listener was full, with no idle session to close",
                                      labels=["listener"])
        evicted = CounterMetricFamily("sms_bridge_connections_evicted",
                                      "Idle sessions closed to make room for a newcomer",
                                      labels=["listener"])
        for name, table in self.tables.items():
            held.add_metric([name], table.total)
            refused.add_metric([name], table.refused)
            evicted.add_metric([name], table.evicted)
        yield from (held, refused, evicted)
