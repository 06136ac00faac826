"""One worker's hold on one message (`Delivery`), and the parts it goes again with.

An attempt is one pass of a message's parts over one bind. Its first acknowledged part pins
the message to that bind: the others must follow there within `part_deadline_s` (SPEC §6).
When they cannot, the attempt is abandoned and the message goes again whole, on the route
chosen then, with a new concatenation reference (`rereferenced`), or planned anew when that
route takes another form or encoding (`replanned`). A message that has no part with the SMSC
yet is free to take any route.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from bridge.core.encoding import Encoding, class_of, encoding_of
from bridge.core.model import Address
from bridge.core.segmentation import (
    ConcatMode,
    SegmentPlan,
    concat_of,
    decode_tlvs,
    encode_tlvs,
    is_wap_push,
    reference_max,
    reference_of,
    with_reference,
)
from bridge.core.states import PartState
from bridge.outbound.smpp.client import SmppBind
from bridge.store.base import NewPart, OutboundMessage, OutboundPart


class Delivery:
    """The message being sent, the route chosen for it, what this attempt has with the SMSC
    and the records of it not yet known durable."""

    __slots__ = ("message", "source", "destination", "bind", "routes", "avoided", "unfit",
                 "records", "first_at", "acked", "sent_ids", "restarts", "restart_reason",
                 "fenced", "_shape")

    def __init__(self, message: OutboundMessage) -> None:
        self.message = message
        self.source = Address(message.source_addr or "", message.source_ton, message.source_npi)
        self.destination = Address(message.recipient.lstrip("+"), message.dest_ton,
                                   message.dest_npi)
        self.bind: SmppBind | None = None  # the route chosen (pinned once a part is acked)
        self.routes: list[SmppBind] | None = None  # in fail-over order, drawn once
        self.avoided: set[str] = set()  # routes it just failed on: others first
        self.unfit: set[str] = set()  # routes that cannot carry it at all
        self.records: list[tuple[asyncio.Future[Any], Callable[[], Awaitable[object]]]] = []
        self.first_at: float | None = None  # when this attempt's first part went (wall clock)
        self.acked: set[int] = set()  # parts of this attempt the SMSC took
        self.sent_ids: list[str] = []  # their SMSC ids, for the timeline of a restart
        self.restarts = 0
        self.restart_reason: str | None = None  # set: the next route gets fresh parts
        #: An operator's cancel cannot take it: the store's fence is ours (Store.begin_submit),
        #: or an SMSC has a part already.
        self.fenced = any(part.smsc_id is not None for part in message.parts)
        self._shape: Shape | None = None

    @property
    def shape(self) -> Shape:
        """What its stored parts were planned as (read once per set of parts)."""
        if self._shape is None:
            self._shape = shape_of(self.message)
        return self._shape

    @property
    def pinned(self) -> bool:
        """A part of this attempt is with the SMSC: the rest must follow on `bind`."""
        return self.first_at is not None

    def next_part(self) -> OutboundPart | None:
        return next((p for p in self.message.parts
                     if p.smsc_id is None and p.seq not in self.acked), None)

    def avoid(self, bind: SmppBind) -> None:
        """Its outcome on `bind` is unknown or the link failed it: prefer another route."""
        self.avoided.add(bind.config.name)
        self.bind = None

    def acknowledged(self, bind: SmppBind, seq: int, smsc_id: str, sent_at: float) -> None:
        if self.first_at is None:
            self.first_at = sent_at
        self.bind = bind
        self.acked.add(seq)
        self.sent_ids.append(smsc_id)

    def resume(self, binds: Mapping[str, SmppBind], now: float) -> None:
        """A message claimed half sent (a previous run acknowledged some parts): pinned to
        their SMSC, its deadline counted from their first submit; sent again whole when
        that SMSC is gone from the config (or they went to several)."""
        acked = [p for p in self.message.parts if p.smsc_id is not None]
        if not acked or len(acked) == len(self.message.parts):
            return
        smscs = {p.smsc for p in acked}
        bind = binds.get(acked[0].smsc or "") if len(smscs) == 1 else None
        if bind is None:
            self.restart_reason = f"its parts went to {', '.join(sorted(map(str, smscs)))}, " \
                                  f"not one configured SMSC"
            return
        self.bind = bind
        self.first_at = min((p.submitted_at for p in acked if p.submitted_at is not None),
                            default=now)
        self.sent_ids = [p.smsc_id for p in acked if p.smsc_id is not None]

    def abandon(self, reason: str) -> None:
        """This attempt is given up: the next route chosen gets fresh parts (the timeline
        will say why, and which SMSC ids were left behind)."""
        left = ",".join(self.sent_ids)
        if self.bind is not None:
            self.avoid(self.bind)
        self.first_at = None
        self.acked = set()
        self.sent_ids = []
        self.restarts += 1
        self.restart_reason = f"{reason}; abandoned smsc ids {left}" if left else reason

    def take_parts(self, parts: Sequence[NewPart], *, data_coding: int, esm_class: int) -> None:
        """The store holds these parts now: the message's attempt starts afresh with them."""
        self.message = replace(self.message, data_coding=data_coding, esm_class=esm_class,
                               parts=tuple(OutboundPart(p.seq, p.total, p.short_message,
                                                        p.tlvs_json, PartState.QUEUED, None,
                                                        None) for p in parts))
        self.acked = set()
        self.restart_reason = None
        self._shape = None


@dataclass(frozen=True)
class Shape:
    """What the stored parts of a message were planned as."""

    concat: ConcatMode | None  # None: a lone part in short_message
    encoding: Encoding
    wap: bool  # a WAP Push: never planned again (its PDU is not kept)
    reference: int | None
    flash: bool  # Latin-1 flash (dest_addr_subunit), else in the data_coding's class
    message_class: int | None


def shape_of(message: OutboundMessage) -> Shape:
    first = message.parts[0]
    tlvs = decode_tlvs(first.tlvs_json)
    return Shape(concat_of(first.short_message, message.esm_class, tlvs),
                 encoding_of(message.data_coding),
                 is_wap_push(first.short_message, message.esm_class),
                 reference_of(first.short_message, message.esm_class, tlvs),
                 ("dest_addr_subunit", 1) in tlvs, class_of(message.data_coding))


def new_reference(old: int | None, concat: ConcatMode | None) -> int:
    """A random reference in the form's range, never the one it replaces (the handset must
    not join the new parts with the abandoned ones)."""
    top = reference_max(concat or ConcatMode.UDH8)
    draw = random.randrange(top)  # noqa: S311 - a label, not a secret
    return draw + 1 if old is not None and draw >= old else draw


def rereferenced(message: OutboundMessage, reference: int) -> tuple[NewPart, ...]:
    """The stored parts with another concatenation reference, nothing else changed."""
    out = []
    for part in message.parts:
        short_message, tlvs = with_reference(part.short_message, message.esm_class,
                                             decode_tlvs(part.tlvs_json), reference)
        out.append(NewPart(part.seq, part.total, short_message, encode_tlvs(tlvs)))
    return tuple(out)


def replanned(plan: SegmentPlan) -> tuple[NewPart, ...]:
    return tuple(NewPart(seg.seq, seg.total, seg.short_message, encode_tlvs(plan.tlvs(seg)))
                 for seg in plan.segments)
