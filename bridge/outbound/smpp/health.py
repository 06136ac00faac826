"""One bind's health: bridge.core.health's circuit breaker, kept per bind on the monotonic
clock, fed by the bind itself (every submit's outcome) and asked by the dispatcher (may a
message take this route now?). One log line per change of circuit, never one per submit."""

from __future__ import annotations

import logging
import time
from typing import Callable

from bridge.config import SmscConfig
from bridge.core.health import Breaker, BreakerRule, Circuit, Fault, admit, available, observe

log = logging.getLogger("bridge.smpp")


def breaker_rule(config: SmscConfig) -> BreakerRule:
    return BreakerRule(failure_rate=config.breaker_failure_rate,
                       min_submits=config.breaker_min_submits,
                       window_s=config.breaker_window_s, cooldown_s=config.breaker_cooldown_s)


class LinkHealth:
    def __init__(self, name: str, rule: BreakerRule,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.name = name
        self.rule = rule
        self.clock = clock
        self.breaker = Breaker()
        self.opened = 0  # times taken out of routing

    @property
    def circuit(self) -> Circuit:
        return self.breaker.circuit

    def record(self, fault: Fault, n: int = 1) -> None:
        """`n` submits ended with `fault` (counted while closed, a probe's verdict while
        half-open)."""
        for _ in range(n):
            before = self.breaker
            self.breaker = observe(before, self.rule, fault, self.clock())
            if self.breaker.circuit is not before.circuit:
                self._changed(before, fault)

    def admit(self) -> bool:
        """May a submit go now: True in routing; once cooled, True for the one probe."""
        before = self.breaker
        ok, self.breaker = admit(before, self.rule, self.clock())
        if self.breaker.circuit is not before.circuit:
            self._changed(before, None)
        return ok

    def available(self) -> bool:
        """What `admit` would say, without taking the probe."""
        return available(self.breaker, self.rule, self.clock())

    def _changed(self, before: Breaker, fault: Fault | None) -> None:
        now = self.breaker.circuit
        if now is Circuit.OPEN:
            self.opened += 1
            if before.circuit is Circuit.HALF_OPEN:
                why = "the probe failed"
            else:
                total, faults = before.counted
                why = f"{faults + 1} of {total + 1} outcomes in {self.rule.window_s:g} s " \
                      f"were the link's fault"
            log.warning("smsc=%s out of routing for %g s: %s", self.name,
                        self.rule.cooldown_s, why)
        elif now is Circuit.HALF_OPEN:
            log.info("smsc=%s cool-down over: one submit goes as a probe", self.name)
        else:
            log.warning("smsc=%s back in routing: the probe %s", self.name,
                        "was answered" if fault is not None else "passed")
