"""Sending policy (SPEC §3 `[policy]`, `rate_per_s`, `quota`) as pure functions.

The service owns the state (in memory or in the store) and the clock; these functions get the
previous state and `now` (float seconds, one clock per state) and return a verdict and the next
state. Nothing here sleeps, reads a clock or raises for a refusal: the service decides which
§5 error to raise (OVER_LIMIT, FLOOD, DUPLICATE, INSUFFICIENT_CREDIT), with `refuse` to help.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from bridge.core.errors import BridgeError, ErrorName

__all__ = [
    "Bucket", "take", "retry_after",
    "FloodRun", "flood_check",
    "duplicate_digest", "duplicate_digester", "within_window",
    "quota_allows", "quota_left", "credit_after", "CREDIT_MAX",
    "AcceptFacts", "AcceptLimits", "AcceptVerdict", "FloodLedger", "accept_verdict",
    "limits_verdict",
    "refuse",
]


# ---------------------------------------------------------------------------------------------
# Per-account rate: token bucket

@dataclass(frozen=True)
class Bucket:
    """Tokens available at time `updated` (before refilling for time passed since)."""

    tokens: float
    updated: float


def _refill(bucket: Bucket | None, now: float, rate: float, burst: float) -> tuple[float, float]:
    """(tokens, updated) after refilling; a pair, not a Bucket: `take` builds one per message."""
    if bucket is None:
        return burst, now  # a new account starts with a full burst
    # A clock that steps back (another instance, NTP) must not mint or burn tokens.
    elapsed = now - bucket.updated
    if elapsed <= 0:
        return min(bucket.tokens, burst), bucket.updated
    return min(burst, bucket.tokens + elapsed * rate), now


def take(
    bucket: Bucket | None, *, now: float, rate: float, burst: float, n: int = 1
) -> tuple[bool, Bucket]:
    """Take `n` tokens if available: (admitted, next state).

    rate 0 = unlimited. A refused take consumes nothing, so a client hammering a full bucket is
    not starved further. `n` > `burst` can never be admitted: size the burst for the largest
    batch taken at once (the caller's default is max(rate, 1)).
    """
    if rate < 0 or burst < 0 or n < 0:
        raise ValueError(f"take: rate={rate} burst={burst} n={n} must not be negative")
    if rate == 0:
        return True, bucket if bucket is not None else Bucket(burst, now)
    tokens, updated = _refill(bucket, now, rate, burst)
    if tokens >= n:
        return True, Bucket(tokens - n, updated)
    return False, Bucket(tokens, updated)


def retry_after(bucket: Bucket | None, *, now: float, rate: float, burst: float, n: int = 1) -> float:
    """Seconds until `take(..., n=n)` would succeed: 0 if it would now, inf if never (n > burst).

    For OVER_LIMIT replies that tell the client when to come back."""
    if rate == 0:
        return 0.0
    if n > burst:
        return float("inf")
    tokens, updated = _refill(bucket, now, rate, burst)
    missing = n - tokens
    return 0.0 if missing <= 0 else missing / rate + max(0.0, updated - now)


# ---------------------------------------------------------------------------------------------
# Per-subscriber flood

@dataclass(frozen=True)
class FloodRun:
    """`count` accepted messages to one subscriber in the current run, the last at `last`."""

    count: int
    last: float


def flood_check(
    run: FloodRun | None, *, now: float, flood_max: int, gap_s: float
) -> tuple[bool, FloodRun]:
    """Admit one message to a subscriber: (admitted, next state).

    A run is a sequence of messages each less than `gap_s` after the previous accepted one; its
    (flood_max+1)-th message is refused; a gap ≥ `gap_s` starts a new run. flood_max 0 = off.

    A refused message leaves the state unchanged: gaps are measured from the last *accepted*
    message, so retries of a refused message cannot keep a subscriber locked out; at worst the
    subscriber waits `gap_s` after the last message that went out.
    """
    if flood_max <= 0:
        return True, FloodRun(1, now)
    if run is None or now - run.last >= gap_s:
        return True, FloodRun(1, now)
    if run.count < flood_max:
        return True, FloodRun(run.count + 1, max(run.last, now))
    return False, run


# ---------------------------------------------------------------------------------------------
# Duplicate window

_DIGEST_VERSION = b"sms-bridge/duplicate/1\x00"


def _field(value: str | int | bool | None) -> bytes:
    """Self-delimiting encoding: a type tag, then the length before any variable bytes, so no
    two distinct field tuples encode the same (no separator can be forged inside a text)."""
    if value is None:
        return b"N"
    if isinstance(value, bool):  # before int: bool is an int
        return b"T" if value else b"F"
    if isinstance(value, int):
        data = str(value).encode("ascii")
        return b"I%d:%s" % (len(data), data)
    # surrogatepass: a text with a lone surrogate (from a lax decoder) still gets a digest.
    data = value.encode("utf-8", "surrogatepass")
    return b"S%d:%s" % (len(data), data)


def duplicate_digest(
    account: str,
    destination: str,
    sender: str | None,
    text: str,
    type_code: int | None,
    flash: bool,
) -> str:
    """sha256 hex naming a request for the duplicate window (SPEC §5 DUPLICATE): identical
    fields give the same digest on every instance and version; any difference changes it.
    Callers pass normalised values (E.164 destination, parsed sender) so spellings agree."""
    return duplicate_digester(account, sender, text, type_code, flash)(destination)


def duplicate_digester(
    account: str,
    sender: str | None,
    text: str,
    type_code: int | None,
    flash: bool,
) -> Callable[[str], str]:
    """`duplicate_digest` with every field but the destination fixed, for a request's many
    recipients: the fields they share are encoded once and the hash state before the
    destination is copied per call. Same digests, byte for byte."""
    head = hashlib.sha256(_DIGEST_VERSION)
    head.update(_field(account))
    tail = b"".join(_field(value) for value in (sender, text, type_code, flash))

    def digest(destination: str) -> str:
        h = head.copy()
        h.update(_field(destination))
        h.update(tail)
        return h.hexdigest()

    return digest


def doubling_delay(step: int, *, base_s: float, max_s: float) -> float:
    """Capped exponential backoff, the one schedule every retry uses: base_s · 2^step, at most
    max_s (steps below 0 count as 0; large ones cannot overflow). Callers add their jitter."""
    return float(min(max_s, base_s * 2.0 ** min(max(step, 0), 64)))


def within_window(first_seen: float | None, *, now: float, window_s: float) -> bool:
    """True when a request first seen at `first_seen` is still inside the duplicate window.

    Symmetric in time: with several instances sharing a store, `first_seen` may be slightly in
    this instance's future; that is a recent request, not a stale one. window_s ≤ 0 = off."""
    if first_seen is None or window_s <= 0:
        return False
    return abs(now - first_seen) < window_s


# ---------------------------------------------------------------------------------------------
# Quota

def quota_allows(used: int, quota: int, n: int, credit: int = 0) -> bool:
    """True when `n` more parts fit in the quota and the credit topped up beside it; quota 0 =
    unlimited. All or nothing: a request that does not fit entirely is refused
    (INSUFFICIENT_CREDIT), never half sent."""
    if quota < 0:
        raise ValueError(f"quota {quota} must not be negative (0 = unlimited)")
    return quota == 0 or used + n <= quota + credit


def quota_left(used: int, quota: int, credit: int = 0) -> int | None:
    """Parts left (never negative), or None when unlimited (GetAccount shows it so)."""
    if quota < 0:
        raise ValueError(f"quota {quota} must not be negative (0 = unlimited)")
    return None if quota == 0 else max(0, quota + credit - used)


#: The most credit an account may hold beyond its quota, in parts.
CREDIT_MAX = 10**15


def credit_after(quota: int, credit: int, change: int) -> int:
    """An account's credit after an operator's top-up of `change` parts (negative: taking
    back). ValueError, with words for the operator, when it cannot be: an unlimited account
    (quota 0) has nothing to top up, and what the account may send in all (quota + credit)
    never goes below zero."""
    if quota == 0:
        raise ValueError("the account is unlimited (quota = 0): give it a quota in its "
                         "[[account]] to make it count credit")
    after = credit + change
    if quota + after < 0:
        raise ValueError(f"it would leave the account {quota + after} parts in all "
                         f"(quota {quota}, credit {credit}): at most -{quota + credit}")
    if after > CREDIT_MAX:
        raise ValueError(f"credit would exceed {CREDIT_MAX} parts")
    return after


# ---------------------------------------------------------------------------------------------
# The accept decision, the one every store follows

@dataclass(frozen=True)
class AcceptLimits:
    """What one new message is held to (its account's and the policy's settings)."""

    window_s: float  # duplicate window; 0 = off
    quota: int  # parts; 0 = unlimited
    parts: int
    flood_max: int = 0  # messages to one subscriber in a run; 0 = off
    flood_gap_s: float = 0.0
    rate: float = 0.0  # the account's messages a second; 0 = unlimited

    @property
    def burst(self) -> float:
        """The bucket's size: a second's worth, at least one message."""
        return max(self.rate, 1.0)


@dataclass(frozen=True)
class AcceptFacts:
    """What the store knows, inside the accept transaction, about one new message."""

    #: The message its idempotency key already names (None: no key, or a new one).
    keyed: str | None
    #: The newest message with the same duplicate digest, and when it was accepted (None:
    #: no digest, or none kept).
    seen: tuple[str, float] | None
    #: Parts of the account's quota used so far, this transaction's accepts included.
    used: int
    #: The subscriber's current run of messages, and the account's tokens (None: none yet).
    flood: FloodRun | None = None
    bucket: Bucket | None = None
    #: Parts an operator topped up beside the quota (`credit_after`).
    credit: int = 0


@dataclass(frozen=True)
class AcceptVerdict:
    """`status`: "accepted", or why not: "idempotent" / "duplicate" (with the earlier id),
    "flood", "over_limit", "over_quota". An accepted message's new flood run and bucket are
    what the store keeps; a refused one changes nothing."""

    status: str
    earlier: str | None = None
    flood: FloodRun | None = None
    bucket: Bucket | None = None


def accept_verdict(facts: AcceptFacts, *, now: float, limits: AcceptLimits) -> AcceptVerdict:
    """The one decision on a new message, every store asks it, so the rules cannot differ
    between them. In this order: a repeat (same key, or the same request inside the window)
    is answered with the first id and consumes nothing; then the subscriber's flood limit,
    the account's rate, its quota with its credit. Nothing is consumed unless all of them pass."""
    if facts.keyed is not None:
        return AcceptVerdict("idempotent", facts.keyed)
    if facts.seen is not None and within_window(facts.seen[1], now=now,
                                                 window_s=limits.window_s):
        return AcceptVerdict("duplicate", facts.seen[0])
    ok, flood = flood_check(facts.flood, now=now, flood_max=limits.flood_max,
                            gap_s=limits.flood_gap_s)
    if not ok:
        return AcceptVerdict("flood")
    ok, bucket = take(facts.bucket, now=now, rate=limits.rate, burst=limits.burst)
    if not ok:
        return AcceptVerdict("over_limit")
    if not quota_allows(facts.used, limits.quota, limits.parts, facts.credit):
        return AcceptVerdict("over_quota")
    return AcceptVerdict("accepted", None, flood, bucket)


def limits_verdict(flood: FloodRun | None, bucket: Bucket | None, *, now: float,
                   limits: AcceptLimits) -> str | None:
    """What `accept_verdict` would refuse a message for now on these two limits ("flood",
    "over_limit"), or None: a look that consumes nothing (SMTP asks at RCPT time)."""
    if not flood_check(flood, now=now, flood_max=limits.flood_max, gap_s=limits.flood_gap_s)[0]:
        return "flood"
    if not take(bucket, now=now, rate=limits.rate, burst=limits.burst)[0]:
        return "over_limit"
    return None


class FloodLedger:
    """Every subscriber's current run, in the order they were last messaged, so runs that
    ended (no message for `gap_s`) leave from the front as time passes: an expiry costs the
    same with a million subscribers in the window as with a thousand (no rescan). The state a
    single store process keeps in memory; a shared store keeps the same runs in a table."""

    def __init__(self) -> None:
        self._runs: OrderedDict[str, FloodRun] = OrderedDict()

    def __len__(self) -> int:
        return len(self._runs)

    def get(self, subscriber: str) -> FloodRun | None:
        return self._runs.get(subscriber)

    def put(self, subscriber: str, run: FloodRun, *, now: float, gap_s: float) -> None:
        """Keep `run` as the subscriber's newest, then forget runs over for `gap_s`."""
        runs = self._runs
        runs[subscriber] = run
        runs.move_to_end(subscriber)
        horizon = now - gap_s
        while runs:
            oldest = next(iter(runs.values()))
            if oldest.last >= horizon:
                break
            runs.popitem(last=False)


def refuse(name: ErrorName, detail: str) -> BridgeError:
    """The BridgeError for a policy refusal; only the four policy errors are meant here."""
    if name not in _POLICY_ERRORS:
        raise ValueError(f"{name.value} is not a policy refusal")
    return BridgeError(name, detail)


_POLICY_ERRORS = frozenset({
    ErrorName.OVER_LIMIT, ErrorName.FLOOD, ErrorName.DUPLICATE, ErrorName.INSUFFICIENT_CREDIT,
})
