"""Connection and password floods, as rules without I/O: the clock is an argument.

Connections. A listener holds at most `max_connections` sessions, and one client address at
most `per_client` of them (its share). A session is *working* while one of its commands is
being handled or (SMTP) while it has a mail transaction open, or (HTTP) while one of its
requests is being handled; otherwise it is *idle*, since the moment its last work ended (or it
connected). An idle session may be closed to make room for a newcomer:
- a newcomer whose address already holds its share takes the slot of that address's longest
  idle session, if idle for `idle_evict_s`; never another address's;
- a newcomer to a full listener takes the slot of an idle session of an address holding at
  least two sessions more than its own, however briefly idle; else, if idle for
  `idle_evict_s`, of its own address, or (when its address holds none) of any address. The
  address holding the most goes first, then the longest idle;
- with no such session, the newcomer is refused.
A working session is never closed for a newcomer, so a relay whose sessions work keeps them,
and addresses that hold many idle sessions give them up first, even those they just opened:
a flood that keeps reconnecting cannot keep every idle session too young to close. Each such
move leaves the shares more even, so a flood's own reconnects settle (refused) instead of
churning, while an address with few sessions still gets in at once; `idle_evict_s` shields a
new session from newcomers of addresses holding about as many.

Authentication failures. Per listener, the failures of each client address and of each user
name are counted over the last `window_s`:
- a failure is answered late, by `failure_delay(rule, n)` for the larger of the two counts n
  (the first `free_failures` at once, then `delay_s` doubling up to `delay_max_s`); a success
  is answered at once;
- an address with `max_failures` in the window is refused without a check until the oldest
  of them leaves the window: at most `max_failures` guesses per address per window;
- a user name with `max_failures_per_user` in the window is refused the same way, except from
  an address where it authenticated within the window (a distributed guess cannot lock a
  working client out of its own account).
Refused attempts are not counted (a lock ends when the window passes, however hard it is
knocked on) and no success clears a count (a client with one good password cannot wipe its
address's failures with it).
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import Enum
from typing import NamedTuple, TypeVar

K = TypeVar("K")


# ---------------------------------------------------------------- connections


@dataclass(frozen=True)
class ConnectionLimits:
    max_connections: int = 1000
    per_client: int = 100
    idle_evict_s: float = 5.0


class Room(Enum):
    FREE = "free"
    ADDRESS_FULL = "address"  # the newcomer's address holds its share
    LISTENER_FULL = "listener"


def room(limits: ConnectionLimits, total: int, mine: int) -> Room:
    """Whether a newcomer whose address holds `mine` of the listener's `total` sessions fits."""
    if mine >= limits.per_client:
        return Room.ADDRESS_FULL
    if total >= limits.max_connections:
        return Room.LISTENER_FULL
    return Room.FREE


def pick_victim(limits: ConnectionLimits, now: float, where: Room, address: str,
                count: Callable[[str], int],
                sessions: Iterable[tuple[K, str, float | None]]) -> K | None:
    """The session whose slot a newcomer from `address` takes, or None (refuse it).

    `sessions`: (key, its address, idle since or None while working); for ADDRESS_FULL only
    the newcomer's address's are looked at. `count(address)`: sessions it holds."""
    mine = count(address)
    best: tuple[int, float] | None = None
    chosen: K | None = None
    for key, owner, idle_since in sessions:
        if idle_since is None:
            continue
        held, idle = count(owner), now - idle_since
        if not _may_take(limits, where, owner == address, mine, held, idle):
            continue
        if best is None or (held, idle) > best:
            best, chosen = (held, idle), key
    return chosen


def _may_take(limits: ConnectionLimits, where: Room, own: bool, mine: int, held: int,
              idle: float) -> bool:
    """Whether a newcomer whose address holds `mine` may take the slot of a session idle for
    `idle` whose address (its own when `own`) holds `held`."""
    aged = idle >= limits.idle_evict_s
    if own or where is Room.ADDRESS_FULL:
        return own and aged
    return held >= mine + 2 or (mine == 0 and aged)


# ---------------------------------------------------------------- authentication


@dataclass(frozen=True)
class AuthRule:
    window_s: float = 300.0
    free_failures: int = 3
    delay_s: float = 0.5
    delay_max_s: float = 8.0
    max_failures: int = 10  # per address
    max_failures_per_user: int = 50


def failure_delay(rule: AuthRule, failures: int) -> float:
    """How long the answer to a failure is held, when it makes `failures` in the window."""
    extra = failures - rule.free_failures
    if extra <= 0:
        return 0.0
    return min(rule.delay_max_s, rule.delay_s * 2.0 ** min(extra - 1, 60))


class AuthVerdict(NamedTuple):
    refused: bool
    retry_after_s: float = 0.0
    why: str = ""  # "address" or "user" when refused


#: User names are kept (and logged) up to this many characters.
USER_KEPT = 64


class _Window:
    """Failure times per key over the last `window_s`, the keys in order of their last
    failure so that expired ones leave from the front: each call costs the same however
    many keys there are. At most `max_keys` keys (the oldest go first)."""

    def __init__(self, window_s: float, per_key: int, max_keys: int) -> None:
        self.window_s = window_s
        self.per_key = per_key
        self.max_keys = max_keys
        self._keys: OrderedDict[str, deque[float]] = OrderedDict()

    def times(self, key: str, now: float) -> deque[float] | None:
        """The key's failures still in the window (oldest first), or None."""
        self.expire(now)
        times = self._keys.get(key)
        if times is None:
            return None
        while times and times[0] <= now - self.window_s:
            times.popleft()
        return times

    def add(self, key: str, now: float) -> int:
        """One more failure; how many the key has in the window."""
        times = self.times(key, now)
        if times is None:
            times = self._keys[key] = deque(maxlen=self.per_key)
        times.append(now)
        self._keys.move_to_end(key)
        while len(self._keys) > self.max_keys:
            self._keys.popitem(last=False)
        return len(times)

    def expire(self, now: float) -> None:
        """Forget the keys whose last failure left the window."""
        while self._keys:
            times = next(iter(self._keys.values()))
            if times and times[-1] > now - self.window_s:
                return
            self._keys.popitem(last=False)

    def __len__(self) -> int:
        return len(self._keys)


class AuthThrottle:
    """The authentication failures of one listener, in memory (see the module's docstring).
    Every method takes `now`, a monotonic time in seconds."""

    def __init__(self, rule: AuthRule, *, max_keys: int = 100_000) -> None:
        self.rule = rule
        self._addresses = _Window(rule.window_s, rule.max_failures, max_keys)
        self._users = _Window(rule.window_s, rule.max_failures_per_user, max_keys)
        self._good: OrderedDict[tuple[str, str], float] = OrderedDict()
        self._max_keys = max_keys

    def verdict(self, address: str, user: str | None, now: float) -> AuthVerdict:
        """Before the check: refused (and for how long) or not."""
        rule = self.rule
        times = self._addresses.times(address, now)
        if times is not None and len(times) >= rule.max_failures:
            return AuthVerdict(True, times[0] + rule.window_s - now, "address")
        if user is None:
            return AuthVerdict(False)
        times = self._users.times(user[:USER_KEPT], now)
        if times is not None and len(times) >= rule.max_failures_per_user \
                and not self._known_good(user, address, now):
            return AuthVerdict(True, times[0] + rule.window_s - now, "user")
        return AuthVerdict(False)

    def failed(self, address: str, user: str | None, now: float) -> tuple[int, float]:
        """A checked attempt failed: (the failures it makes, the larger count of its address
        and its user; how long its answer is held)."""
        self._users.expire(now)
        failures = self._addresses.add(address, now)
        if user is not None:
            failures = max(failures, self._users.add(user[:USER_KEPT], now))
        return failures, failure_delay(self.rule, failures)

    def succeeded(self, address: str, user: str | None, now: float) -> None:
        """A checked attempt succeeded: the user is not locked out from this address."""
        if user is None:
            return
        key = (user[:USER_KEPT], address)
        self._good[key] = now
        self._good.move_to_end(key)
        horizon = now - self.rule.window_s
        while self._good and (len(self._good) > self._max_keys
                              or next(iter(self._good.values())) <= horizon):
            self._good.popitem(last=False)

    def _known_good(self, user: str, address: str, now: float) -> bool:
        when = self._good.get((user[:USER_KEPT], address))
        return when is not None and when > now - self.rule.window_s

    def keys(self) -> int:
        """Addresses and users with failures still remembered (for tests and metrics)."""
        return len(self._addresses) + len(self._users)
