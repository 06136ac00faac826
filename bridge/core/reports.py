"""Delivery report events: which ones a message asks for and which one a queued report is.

A message with a callback URL keeps a mask of the events it wants reported (`report_mask`);
the store queues one report row per event in the transaction that records it (a state change
by trigger, an interim receipt where receipts are applied), and the report sender formats each
row for the dialect that took the message (bridge.core.dialect_reports). The bits are Kannel's
dlr-mask bits on purpose, so a Kannel client's mask is kept as it was given; the other dialects
map their own settings onto them.
"""

from __future__ import annotations

from enum import IntFlag
from types import MappingProxyType
from typing import Mapping

from bridge.core.states import MessageState


class ReportEvent(IntFlag):
    DELIVERED = 1  # final: every part delivered
    UNDELIVERED = 2  # final: undeliverable or expired (a receipt said so, or validity ran out)
    BUFFERED = 4  # an interim receipt (ACCEPTD, ENROUTE…): the SMSC holds it for the handset
    SUBMITTED = 8  # every part accepted by the SMSC (submit_sm_resp OK)
    FAILED = 16  # final: the SMSC refused it, the bridge could not send it, or an operator
    #              cancelled it before it went (Kannel's "SMSC reject": it never left)


#: What a callback without a mask reports (a SOAP callback_url): the final states.
FINAL_EVENTS = ReportEvent.DELIVERED | ReportEvent.UNDELIVERED | ReportEvent.FAILED
ALL_EVENTS = FINAL_EVENTS | ReportEvent.BUFFERED | ReportEvent.SUBMITTED

#: The name a queued report row carries for a buffered event (the others carry the state).
BUFFERED = "buffered"

#: Each queued row's name → its event; the SQLite store's trigger (bridge.store.schema,
#: migration 10) spells the same table in SQL, and a test holds the two together; the
#: PostgreSQL store's trigger is built from it.
EVENT_OF: Mapping[str, ReportEvent] = MappingProxyType({
    MessageState.DELIVERED.value: ReportEvent.DELIVERED,
    MessageState.UNDELIVERABLE.value: ReportEvent.UNDELIVERED,
    MessageState.EXPIRED.value: ReportEvent.UNDELIVERED,
    MessageState.FAILED.value: ReportEvent.FAILED,
    MessageState.CANCELLED.value: ReportEvent.FAILED,
    MessageState.SUBMITTED.value: ReportEvent.SUBMITTED,
    BUFFERED: ReportEvent.BUFFERED,
})

#: Receipt stats that say "held by the SMSC, not final" (Kannel reads the same set as its
#: DLR type 4).
BUFFERED_STATS = frozenset({"ACCEPTD", "ENROUTE", "BUFFRED", "BUFFERD", "ACKED"})


def is_buffered(stat: str | None) -> bool:
    return stat is not None and stat.strip().upper() in BUFFERED_STATS


def wants(mask: int | None, event: ReportEvent) -> bool:
    """Whether a message whose mask is `mask` (None: the final events) hears of `event`."""
    return bool((FINAL_EVENTS if mask is None else mask) & event)
