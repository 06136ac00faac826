"""Which SMSCs may send a message, in fail-over order (SPEC §6, SMPP upstream).

The rule, in three steps:

1. Prefixes. An SMSC whose `prefixes` include a prefix of the E.164 number covers it; an
   SMSC with no prefixes covers every number (a catch-all). The covering SMSCs fall into
   tiers: the longest matching prefix first, then shorter ones, catch-alls last; within a
   tier, config order.
2. Accounts. An account with its own `smscs` list sends only through those, in the order it
   lists them (each one a tier of its own), and each only for the numbers it covers; an
   account without one uses the prefix tiers. So an account can be pinned to its own SMSCs,
   and prefixes still say which numbers each SMSC can reach.
3. Weights. Within a tier, SMSCs with a `weight` above 0 share the tier's traffic: each
   message draws its first route among them in proportion to the weights; the others of the
   tier follow in config order (fail-over). An SMSC without a weight (0) is fail-over only.

No SMSC covering the number means "not routable" (INVALID_DESTINATION). Pure: the random
draw comes in as an argument.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

from bridge.core.segmentation import RouteForm


@dataclass(frozen=True)
class RouteSpec:
    """One SMSC as routing sees it: its name, the prefixes it covers ("+44"; none: all
    numbers), its weight within its tier and the form its messages are planned in."""

    name: str
    prefixes: tuple[str, ...] = ()
    weight: int = 0
    form: RouteForm = field(default_factory=RouteForm)


def _normalise(e164: str) -> str:
    number = e164.strip()
    return number if number.startswith("+") else "+" + number


Tier = tuple[str, ...]


class Routes:
    """The routing rule over a config's SMSCs and accounts' lists, by name."""

    def __init__(self, specs: Sequence[RouteSpec],
                 accounts: Mapping[str, Sequence[str]] | None = None) -> None:
        self._order = {spec.name: i for i, spec in enumerate(specs)}
        self._specs = MappingProxyType({spec.name: spec for spec in specs})
        # (prefix, name) for every configured prefix, most specific first.
        self._prefixed = sorted(((_normalise(p), s.name) for s in specs for p in s.prefixes),
                                key=lambda item: (-len(item[0]), self._order[item[1]]))
        self._catch_all: Tier = tuple(s.name for s in specs if not s.prefixes)
        self._accounts = MappingProxyType({name: tuple(smscs) for name, smscs
                                           in (accounts or {}).items() if smscs})

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self._specs)

    def form(self, name: str) -> RouteForm:
        return self._specs[name].form

    def tiers(self, e164: str, account: str | None = None) -> tuple[Tier, ...]:
        """The SMSCs that may send to `e164` for `account`, tier by tier (see the module)."""
        number = _normalise(e164)
        listed = self._accounts.get(account) if account is not None else None
        if listed is not None:
            return tuple((name,) for name in listed if self._covers(name, number))
        tiers: list[list[str]] = []
        length = -1
        seen: set[str] = set()
        for prefix, name in self._prefixed:
            if name in seen or not number.startswith(prefix):
                continue
            seen.add(name)
            if len(prefix) != length:
                tiers.append([])
                length = len(prefix)
            tiers[-1].append(name)
        out = [tuple(tier) for tier in tiers]
        if self._catch_all:
            out.append(self._catch_all)
        return tuple(out)

    def _covers(self, name: str, number: str) -> bool:
        spec = self._specs.get(name)
        return spec is not None and (not spec.prefixes or any(
            number.startswith(_normalise(p)) for p in spec.prefixes))

    def candidates(self, e164: str, account: str | None = None) -> list[str]:
        """Every SMSC that may send to `e164`, in fail-over order without the weights' draw
        (what the store keeps as the message's routes); [] = not routable."""
        return [name for tier in self.tiers(e164, account) for name in tier]

    def routable(self, e164: str, account: str | None = None) -> bool:
        return bool(self.tiers(e164, account))

    def ordered(self, e164: str, account: str | None, draw: float) -> list[str]:
        """`candidates` with each tier's first route drawn by weight (`draw` in [0, 1))."""
        return [name for tier in self.tiers(e164, account)
                for name in weighted_first(tier, [self._specs[n].weight for n in tier], draw)]


def weighted_first(tier: Tier, weights: Sequence[int], draw: float) -> Tier:
    """`tier` with one of its weighted members first, chosen by `draw` in [0, 1) in
    proportion to the weights; the rest keep their order. No weights: `tier` unchanged."""
    total = sum(w for w in weights if w > 0)
    if total <= 0 or len(tier) < 2:
        return tier
    point = draw * total
    for name, weight in zip(tier, weights):
        if weight <= 0:
            continue
        if point < weight:
            return (name,) + tuple(n for n in tier if n != name)
        point -= weight
    last = [n for n, w in zip(tier, weights) if w > 0][-1]  # draw at the top edge
    return (last,) + tuple(n for n in tier if n != last)
