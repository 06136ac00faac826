"""Message and part states as tables (like h11's state machine), and the upstream mappings.

Everything that turns an SMPP fact (command_status, receipt `stat:`, `message_state` TLV) into a
bridge fact lives here, so the SMPP adapter, the dispatcher and the store agree by construction.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from types import MappingProxyType
from typing import Iterable, Mapping

from bridge.core.errors import ErrorName


class MessageState(str, Enum):
    SCHEDULED = "scheduled"
    QUEUED = "queued"
    SUBMITTED = "submitted"
    DELIVERED = "delivered"
    UNDELIVERABLE = "undeliverable"
    EXPIRED = "expired"
    FAILED = "failed"
    CANCELLED = "cancelled"  # by an operator, before any part went to an SMSC


class PartState(str, Enum):
    QUEUED = "queued"
    SUBMITTED = "submitted"  # submit_sm_resp OK, no final receipt yet
    DELIVERED = "delivered"
    UNDELIVERABLE = "undeliverable"
    EXPIRED = "expired"
    FAILED = "failed"
    CANCELLED = "cancelled"


FINAL_MESSAGE_STATES = frozenset(
    {MessageState.DELIVERED, MessageState.UNDELIVERABLE, MessageState.EXPIRED, MessageState.FAILED,
     MessageState.CANCELLED}
)

_S = MessageState
# Allowed transitions. A final state is left only towards a more precise final verdict that a
# late receipt can bring (e.g. an SMSC that reports EXPIRED then DELIVRD for a retried part).
# An operator's moves (cancel, retry) are not here: bridge.core.operator has them, so that no
# receipt or dispatcher record can ever make them.
MESSAGE_TRANSITIONS: Mapping[MessageState, frozenset[MessageState]] = MappingProxyType({
    _S.SCHEDULED: frozenset({_S.QUEUED, _S.EXPIRED, _S.FAILED}),
    _S.QUEUED: frozenset({_S.SUBMITTED, _S.DELIVERED, _S.UNDELIVERABLE, _S.EXPIRED, _S.FAILED}),
    _S.SUBMITTED: frozenset({_S.QUEUED, _S.DELIVERED, _S.UNDELIVERABLE, _S.EXPIRED, _S.FAILED}),
    _S.DELIVERED: frozenset(),
    _S.UNDELIVERABLE: frozenset({_S.DELIVERED}),
    _S.EXPIRED: frozenset({_S.DELIVERED, _S.UNDELIVERABLE}),
    _S.FAILED: frozenset(),
    _S.CANCELLED: frozenset(),
})


def can_move(current: MessageState, new: MessageState) -> bool:
    return new == current or new in MESSAGE_TRANSITIONS[current]


# Receipt `stat:` values (SMPP 3.4 Appendix B) → part state; None = not final (keep waiting).
RECEIPT_STAT: Mapping[str, PartState | None] = MappingProxyType({
    "DELIVRD": PartState.DELIVERED,
    "EXPIRED": PartState.EXPIRED,
    "DELETED": PartState.UNDELIVERABLE,
    "UNDELIV": PartState.UNDELIVERABLE,
    "REJECTD": PartState.UNDELIVERABLE,
    "ACCEPTD": None,
    "ENROUTE": None,
    "UNKNOWN": None,
})

# message_state TLV 0x0427 (SMPP 3.4 §5.2.28) → its Appendix B `stat:` name, and through
# RECEIPT_STAT → part state: one table for both forms of a receipt.
MESSAGE_STATE_STAT: Mapping[int, str] = MappingProxyType({
    1: "ENROUTE", 2: "DELIVRD", 3: "EXPIRED", 4: "DELETED", 5: "UNDELIV", 6: "ACCEPTD",
    7: "UNKNOWN", 8: "REJECTD",
})
MESSAGE_STATE_TLV: Mapping[int, PartState | None] = MappingProxyType(
    {state: RECEIPT_STAT[stat] for state, stat in MESSAGE_STATE_STAT.items()})


def receipt_part_state(stat: str | None, message_state: int | None) -> PartState | None:
    """The TLV wins when present: it is structured, the text is free-form and varies."""
    if message_state is not None and message_state in MESSAGE_STATE_TLV:
        return MESSAGE_STATE_TLV[message_state]
    if stat is not None:
        return RECEIPT_STAT.get(stat.strip().upper()[:7])
    return None


def aggregate(parts: Iterable[PartState]) -> MessageState:
    """A message's state from its parts: delivered only when every part is (SPEC §4)."""
    states = list(parts)
    if len(states) == 1:  # most messages: the store asks twice per message
        return _ONE_PART[states[0]]
    return _aggregate(states)


def _aggregate(states: list[PartState]) -> MessageState:
    if not states:
        return MessageState.QUEUED
    if all(s is PartState.DELIVERED for s in states):
        return MessageState.DELIVERED
    if any(s is PartState.FAILED for s in states):
        return MessageState.FAILED
    if any(s is PartState.UNDELIVERABLE for s in states):
        return MessageState.UNDELIVERABLE
    if any(s is PartState.EXPIRED for s in states):
        return MessageState.EXPIRED
    if any(s is PartState.CANCELLED for s in states):
        return MessageState.CANCELLED
    if any(s is PartState.QUEUED for s in states):
        return MessageState.QUEUED
    return MessageState.SUBMITTED


_ONE_PART: Mapping[PartState, MessageState] = MappingProxyType(
    {state: _aggregate([state]) for state in PartState})


class Retry(str, Enum):
    NO = "no"  # permanent: fail the message with the mapped error
    BACKOFF = "backoff"  # throttling / queue full / transient: retry later, keep order


@dataclass(frozen=True)
class UpstreamVerdict:
    error: ErrorName
    retry: Retry


_PERMANENT_DEFAULT = UpstreamVerdict(ErrorName.INTERNAL_ERROR, Retry.NO)
_TRANSIENT = UpstreamVerdict(ErrorName.INTERNAL_ERROR, Retry.BACKOFF)

# SMPP command_status of a submit_sm_resp → what the dispatcher does (SPEC §5, REFERENCES).
COMMAND_STATUS: Mapping[int, UpstreamVerdict] = MappingProxyType({
    0x01: UpstreamVerdict(ErrorName.INVALID_MESSAGE, Retry.NO),  # RINVMSGLEN
    0x08: _TRANSIENT,  # RSYSERR: the SMSC's own trouble
    0x0A: UpstreamVerdict(ErrorName.INVALID_SOURCE, Retry.NO),  # RINVSRCADR
    0x0B: UpstreamVerdict(ErrorName.INVALID_DESTINATION, Retry.NO),  # RINVDSTADR
    0x14: _TRANSIENT,  # RMSGQFUL: treat like throttling
    0x45: UpstreamVerdict(ErrorName.INTERNAL_ERROR, Retry.NO),  # RSUBMITFAIL
    0x48: UpstreamVerdict(ErrorName.INVALID_SOURCE, Retry.NO),  # RINVSRCTON
    0x49: UpstreamVerdict(ErrorName.INVALID_SOURCE, Retry.NO),  # RINVSRCNPI
    0x50: UpstreamVerdict(ErrorName.INVALID_DESTINATION, Retry.NO),  # RINVDSTTON
    0x51: UpstreamVerdict(ErrorName.INVALID_DESTINATION, Retry.NO),  # RINVDSTNPI
    0x58: _TRANSIENT,  # RTHROTTLED
    0x61: UpstreamVerdict(ErrorName.INVALID_PARAMETER, Retry.NO),  # RINVSCHED
    0x62: UpstreamVerdict(ErrorName.INVALID_PARAMETER, Retry.NO),  # RINVEXPIRY
    0xFE: UpstreamVerdict(ErrorName.INTERNAL_ERROR, Retry.NO),  # RDELIVERYFAILURE
    0xFF: _TRANSIENT,  # RUNKNOWNERR
})


def upstream_verdict(command_status: int) -> UpstreamVerdict:
    """Unknown non-zero statuses fail the message rather than loop forever."""
    return COMMAND_STATUS.get(command_status, _PERMANENT_DEFAULT)
