"""Reassembly of concatenated mobile-originated SMS (UDH IE 0x00 / 0x08, or SAR TLVs). Pure.

The pending state is an immutable mapping owned by the caller:

    pending = EMPTY
    pending, text = add(pending, fragment, now)      # text is the whole message once complete
    pending, stale = expire(pending, now, timeout)   # incomplete sets older than timeout

Fragments are keyed by (source, destination, ref, total), so two senders using the same
8-bit reference do not mix. A fragment received twice (SMSC redelivery) replaces the first.
The caller acknowledges each fragment to the SMSC as it arrives, so incomplete sets live only
in memory: a restart loses them, which is how Kannel and most gateways behave too.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Mapping

FragmentKey = tuple[str, str, "int | None", int]
Pending = Mapping[FragmentKey, tuple["MoFragment", ...]]

EMPTY: Pending = MappingProxyType({})

GAP_MARKER = " […] "


@dataclass(frozen=True)
class MoFragment:
    source: str
    destination: str
    ref: int | None   # concatenation reference; None for a single (non-concatenated) message
    total: int        # number of parts, 1 for a single message
    seq: int          # 1-based part number
    text: str
    received_at: float

    @property
    def key(self) -> FragmentKey:
        return (self.source, self.destination, self.ref, self.total)

    @property
    def standalone(self) -> bool:
        """A message by itself: not concatenated, or with impossible numbering."""
        return self.ref is None or self.total <= 1 or not 1 <= self.seq <= self.total


def add(pending: Pending, frag: MoFragment, now: float) -> tuple[Pending, str | None]:
    """Add one fragment; returns the new pending state and the full text once complete.

    `now` is accepted for symmetry with `expire` (the fragment carries its own received_at).
    """
    del now
    if frag.standalone:
        return pending, frag.text
    key = frag.key
    parts = {f.seq: f for f in pending.get(key, ())}
    parts[frag.seq] = frag
    if len(parts) == frag.total:
        rest = {k: v for k, v in pending.items() if k != key}
        return MappingProxyType(rest), "".join(parts[i].text for i in range(1, frag.total + 1))
    ordered = tuple(sorted(parts.values(), key=lambda f: f.seq))
    return MappingProxyType({**pending, key: ordered}), None


def started_at(frags: tuple[MoFragment, ...]) -> float:
    return min(f.received_at for f in frags)


def expire(pending: Pending, now: float,
           timeout: float) -> tuple[Pending, tuple[tuple[MoFragment, ...], ...]]:
    """Drop incomplete sets whose first fragment is older than `timeout` seconds; they are
    returned (oldest first) so the caller can deliver them as partial messages or log them."""
    keep: dict[FragmentKey, tuple[MoFragment, ...]] = {}
    stale: list[tuple[MoFragment, ...]] = []
    for key, frags in pending.items():
        if now - started_at(frags) >= timeout:
            stale.append(frags)
        else:
            keep[key] = frags
    if not stale:
        return pending, ()
    stale.sort(key=started_at)
    return MappingProxyType(keep), tuple(stale)


def evict_oldest(pending: Pending,
                 limit: int) -> tuple[Pending, tuple[tuple[MoFragment, ...], ...]]:
    """Keep at most `limit` incomplete sets (a bound against a flood of first fragments)."""
    if len(pending) <= limit:
        return pending, ()
    ordered = sorted(pending.items(), key=lambda item: started_at(item[1]))
    cut = len(ordered) - limit
    return MappingProxyType(dict(ordered[cut:])), tuple(frags for _, frags in ordered[:cut])


def join_partial(frags: tuple[MoFragment, ...]) -> str:
    """The text of an incomplete set, with GAP_MARKER where parts are missing."""
    if not frags:
        return ""
    total = frags[0].total
    by_seq = {f.seq: f.text for f in frags}
    out: list[str] = []
    for seq in range(1, total + 1):
        if seq in by_seq:
            out.append(by_seq[seq])
        elif not out or out[-1] is not GAP_MARKER:
            out.append(GAP_MARKER)
    return "".join(out).strip(" ")


# ------------------------------------------------------------------ UDH parsing


def split_udh(short_message: bytes) -> tuple[bytes, bytes]:
    """(udh including its length octet, payload) of a short_message sent with UDHI set.
    A header longer than the message is malformed: (b"", short_message) is returned."""
    if not short_message:
        return b"", short_message
    udhl = short_message[0]
    if udhl == 0 or udhl + 1 > len(short_message):
        return b"", short_message
    return short_message[: udhl + 1], short_message[udhl + 1:]


def concat_info(udh: bytes) -> tuple[int, int, int] | None:
    """(ref, total, seq) from a UDH's concatenation IE (0x00 8-bit or 0x08 16-bit ref)."""
    if not udh:
        return None
    end = min(len(udh), udh[0] + 1)
    pos = 1
    found: tuple[int, int, int] | None = None
    while pos + 2 <= end:
        iei, length = udh[pos], udh[pos + 1]
        data = udh[pos + 2: pos + 2 + length]
        if len(data) < length:
            return found  # truncated IE
        if iei == 0x00 and length == 3:
            found = (data[0], data[1], data[2])
        elif iei == 0x08 and length == 4:
            found = ((data[0] << 8) | data[1], data[2], data[3])
        pos += 2 + length
    return found
