"""What the operator's console (SPEC §8: status page and admin API) computes, without I/O: the
masked form of a number, latency percentiles, counts per second over the last minutes, and the
picture of the outbound side that the store process hands to the page.

Each process keeps the history of the events it sees (the bridge process: accepted and
refused; the store process: submitted and delivered, and the latencies), in memory: the clock
is passed in, so the tests drive time by hand.
"""

from __future__ import annotations

import bisect
import math
from collections import deque
from dataclasses import dataclass, field
from typing import Mapping, Sequence

__all__ = ["mask_number", "percentiles", "PerSecond", "Samples", "BindPicture",
           "OutboundPicture", "HISTORY_S", "QUANTILES"]

#: How far back the plots go, in seconds.
HISTORY_S = 600
#: The latency percentiles shown.
QUANTILES = (0.5, 0.9, 0.99)
_HIDDEN = "*"


def mask_number(number: str, *, show: bool = False) -> str:
    """A phone number as the console shows it: a third of it from the front and its last
    digits, the rest hidden, so that an operator can tell messages apart without reading
    whom they went to (`[admin] show_numbers` shows it whole)."""
    if show:
        return number
    if len(number) <= 4:
        return _HIDDEN * len(number)
    head, tail = (len(number) // 3, 3) if len(number) > 8 else (1, 2)
    return number[:head] + _HIDDEN * (len(number) - head - tail) + number[-tail:]


def percentiles(samples: Sequence[float],
                quantiles: Sequence[float] = QUANTILES) -> dict[str, float | None]:
    """Nearest-rank percentiles ("p50", "p90", "p99"), None for each when there is no sample:
    each is a latency that some message really had, never an interpolation."""
    ordered = sorted(samples)
    out: dict[str, float | None] = {}
    for q in quantiles:
        name = f"p{q * 100:g}"
        if not ordered:
            out[name] = None
            continue
        rank = max(1, math.ceil(q * len(ordered)))
        out[name] = ordered[rank - 1]
    return out


class PerSecond:
    """Counts per whole second for the last `span` seconds, per name ("accepted",
    "submitted:smsc1"…): a ring of slots per name, each slot knowing which second it counts,
    so an idle name needs no ticking and a slot from an earlier lap reads as zero."""

    def __init__(self, span: int = HISTORY_S) -> None:
        self.span = span
        self._rings: dict[str, tuple[list[int], list[int]]] = {}  # name → (seconds, counts)

    def add(self, name: str, n: int, now: float) -> None:
        ring = self._rings.get(name)
        if ring is None:
            ring = self._rings[name] = ([-1] * self.span, [0] * self.span)
        second = int(now)
        slot = second % self.span
        seconds, counts = ring
        if seconds[slot] != second:
            seconds[slot] = second
            counts[slot] = 0
        counts[slot] += n

    def names(self) -> list[str]:
        return sorted(self._rings)

    def window(self, name: str, now: float, seconds: int | None = None) -> list[int]:
        """The counts of the last `seconds` whole seconds before `now` (the one running is
        not over), oldest first."""
        length = min(self.span - 1, seconds if seconds is not None else self.span - 1)
        last = int(now) - 1
        ring = self._rings.get(name)
        if ring is None:
            return [0] * length
        stamps, counts = ring
        return [counts[s % self.span] if stamps[s % self.span] == s else 0
                for s in range(last - length + 1, last + 1)]

    def total(self, name: str, now: float, seconds: int) -> int:
        return sum(self.window(name, now, seconds))


class Samples:
    """The latest `size` measurements with when each was taken, for percentiles over the
    last minutes."""

    def __init__(self, size: int = 20_000) -> None:
        self._items: deque[tuple[float, float]] = deque(maxlen=size)

    def add(self, value: float, now: float) -> None:
        self._items.append((now, value))

    def recent(self, now: float, span_s: float) -> list[float]:
        """Values measured in the last `span_s` seconds (they come in time order, so the old
        ones are found by bisection)."""
        items = list(self._items)
        start = bisect.bisect_left(items, (now - span_s, -math.inf))
        return [value for _, value in items[start:]]


@dataclass(frozen=True)
class BindPicture:
    """One SMSC bind as the console shows it."""

    name: str
    up: bool
    in_flight: int  # submits awaiting their response
    window: int
    tps: float  # submits a second, over the last seconds
    max_tps: float  # this instance's share of the SMSC's limit; 0 = unlimited


@dataclass(frozen=True)
class OutboundPicture:
    """What the store process (the outbound side) tells the console: its binds, its counts
    per second over the history (oldest first, ending at `at`) and its latency
    percentiles in seconds ("accept_to_submit", "submit_to_receipt")."""

    at: float
    binds: tuple[BindPicture, ...] = ()
    series: Mapping[str, tuple[int, ...]] = field(default_factory=dict)
    latency: Mapping[str, Mapping[str, float | None]] = field(default_factory=dict)
    queue_depth: int = 0
    instance: str = ""
