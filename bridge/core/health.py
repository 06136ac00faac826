"""Whose fault an SMSC's answer is, and the circuit breaker that takes a failing link out of
routing for a cool-down (SPEC §6, SMPP upstream: several SMSCs, fail-over).

Two tables decide, and the rest follows them:
- `SUBMIT_FAULT`: a submit_sm_resp command_status → whose fault it is. A refusal of the
  message for what it is (0x0B, a bad destination) says the link works; a system error
  (0x08), a failed submit (0x45) or no answer in time says it does not; throttling (0x58,
  0x14) says it works, slower (the dispatcher backs off, bridge.core.states). What the
  message's own fate is stays `upstream_verdict`'s business: this table only judges the link.
- `CIRCUIT_MOVES`: the breaker's states and the events that move it, like h11's `_state.py`:

      closed --trip--> open --cooled--> half_open --probe_ok--> closed
                                          half_open --probe_failed--> open

  Closed, it counts the link's outcomes over the last `window_s` in a few time buckets and
  trips when at least `min_submits` were counted and `failure_rate` of them were the link's
  fault. Open, it admits nothing until `cooldown_s` has passed; then one submit goes as the
  probe (half-open) and the next outcome heard decides: closed again, or open for another
  cool-down. A probe that is never heard of (its worker did not submit after all) frees the
  slot after another `cooldown_s`.

Pure: the clock comes in as `now`, every state is a frozen value, nothing here keeps time.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import Enum
from types import MappingProxyType
from typing import Mapping


class Fault(str, Enum):
    NONE = "none"  # accepted
    MESSAGE = "message"  # the message is refused for what it is: the link works
    BUSY = "busy"  # throttled or queue full: the link works, slower
    LINK = "link"  # the SMSC or the link failed, not the message


_M, _L, _B = Fault.MESSAGE, Fault.LINK, Fault.BUSY

#: A submit_sm_resp's command_status → whose fault it is (SMPP 3.4 §5.1.3, REFERENCES).
SUBMIT_FAULT: Mapping[int, Fault] = MappingProxyType({
    0x00: Fault.NONE,
    0x01: _M,  # RINVMSGLEN
    0x08: _L,  # RSYSERR: the SMSC's own trouble
    0x0A: _M,  # RINVSRCADR
    0x0B: _M,  # RINVDSTADR: the number, not the link
    0x14: _B,  # RMSGQFUL: like throttling
    0x45: _L,  # RSUBMITFAIL: the SMSC could not take it, whatever it was
    0x48: _M,  # RINVSRCTON
    0x49: _M,  # RINVSRCNPI
    0x50: _M,  # RINVDSTTON
    0x51: _M,  # RINVDSTNPI
    0x58: _B,  # RTHROTTLED
    0x61: _M,  # RINVSCHED
    0x62: _M,  # RINVEXPIRY
    0xFE: _M,  # RDELIVERYFAILURE: this message's delivery failed
    0xFF: _L,  # RUNKNOWNERR: the SMSC cannot say; not the message's doing
})
#: A submit whose answer never came in time (wait_ack expiry, or past response_timeout_s).
TIMEOUT_FAULT = Fault.LINK


def submit_fault(command_status: int) -> Fault:
    """Unknown statuses are the message's: the link is not punished for what it names."""
    return SUBMIT_FAULT.get(command_status, Fault.MESSAGE)


class Circuit(str, Enum):
    CLOSED = "closed"  # in routing
    OPEN = "open"  # out of routing for a cool-down
    HALF_OPEN = "half_open"  # one probe submit decides


class Move(str, Enum):
    TRIP = "trip"
    COOLED = "cooled"
    PROBE_OK = "probe_ok"
    PROBE_FAILED = "probe_failed"


_C = Circuit
CIRCUIT_MOVES: Mapping[tuple[Circuit, Move], Circuit] = MappingProxyType({
    (_C.CLOSED, Move.TRIP): _C.OPEN,
    (_C.OPEN, Move.COOLED): _C.HALF_OPEN,
    (_C.HALF_OPEN, Move.PROBE_OK): _C.CLOSED,
    (_C.HALF_OPEN, Move.PROBE_FAILED): _C.OPEN,
})

#: The window is counted in this many buckets: a constant cost per outcome at any rate.
BUCKETS = 10


@dataclass(frozen=True)
class BreakerRule:
    failure_rate: float = 0.5  # 0 = never trips
    min_submits: int = 10
    window_s: float = 30.0
    cooldown_s: float = 30.0


@dataclass(frozen=True)
class Breaker:
    circuit: Circuit = Circuit.CLOSED
    since: float = 0.0  # when it entered `circuit`
    #: Closed: (bucket start, outcomes, link faults) for the buckets inside the window.
    buckets: tuple[tuple[float, int, int], ...] = ()
    probe_at: float | None = None  # half-open: when the probe was let through

    @property
    def counted(self) -> tuple[int, int]:
        """(outcomes, link faults) in the window as last updated."""
        return sum(b[1] for b in self.buckets), sum(b[2] for b in self.buckets)


def move(breaker: Breaker, event: Move, now: float) -> Breaker:
    """The breaker after `event`, by `CIRCUIT_MOVES`; ValueError for a move it does not
    allow (a caller bug)."""
    target = CIRCUIT_MOVES.get((breaker.circuit, event))
    if target is None:
        raise ValueError(f"no move {event.value} from {breaker.circuit.value}")
    return Breaker(target, now)


def observe(breaker: Breaker, rule: BreakerRule, fault: Fault, now: float) -> Breaker:
    """The breaker after a submit's outcome. Closed: counted, and tripped when the window
    says so. Half-open: the outcome is the probe's verdict. Open: ignored (answers to
    submits sent before it opened)."""
    failed = fault is Fault.LINK
    if breaker.circuit is Circuit.HALF_OPEN:
        return move(breaker, Move.PROBE_FAILED if failed else Move.PROBE_OK, now)
    if breaker.circuit is Circuit.OPEN:
        return breaker
    buckets = _counted(breaker.buckets, rule, failed, now)
    total = sum(b[1] for b in buckets)
    faults = sum(b[2] for b in buckets)
    if rule.failure_rate > 0 and total >= rule.min_submits and \
            faults >= rule.failure_rate * total:
        return move(breaker, Move.TRIP, now)
    return replace(breaker, buckets=buckets)


def _counted(buckets: tuple[tuple[float, int, int], ...], rule: BreakerRule, failed: bool,
             now: float) -> tuple[tuple[float, int, int], ...]:
    width = rule.window_s / BUCKETS
    start = now - now % width if width > 0 else now
    kept = tuple(b for b in buckets if b[0] > now - rule.window_s)
    if kept and kept[-1][0] == start:
        _, n, f = kept[-1]
        return kept[:-1] + ((start, n + 1, f + failed),)
    return kept + ((start, 1, int(failed)),)


def admit(breaker: Breaker, rule: BreakerRule, now: float) -> tuple[bool, Breaker]:
    """May a submit go on this link now, and the breaker after: closed admits all; open
    admits the probe once cooled (and turns half-open); half-open admits nothing while its
    probe is out, and another probe once that one has been out for `cooldown_s`."""
    if breaker.circuit is Circuit.CLOSED:
        return True, breaker
    if breaker.circuit is Circuit.OPEN:
        if now - breaker.since < rule.cooldown_s:
            return False, breaker
        return True, replace(move(breaker, Move.COOLED, now), probe_at=now)
    if breaker.probe_at is not None and now - breaker.probe_at < rule.cooldown_s:
        return False, breaker
    return True, replace(breaker, probe_at=now)


def available(breaker: Breaker, rule: BreakerRule, now: float) -> bool:
    """What `admit` would answer, without taking the probe (for routing questions such as
    "is there another route?" and for /healthz)."""
    return admit(breaker, rule, now)[0]
