"""Plain-tuple forms of interface values, for the writer and for the pipe to the store process:
tuples pickle and unpickle several times faster than the frozen dataclasses they stand for."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bridge.core.states import MessageState, PartState
from bridge.store.base import NewMessage, OutboundMessage, OutboundPart

#: A NewMessage as the writer takes it: its fields in declaration order, the state as its value
#: and the parts as (seq, total, short_message, tlvs_json).
AcceptRow = tuple[Any, ...]


def accept_rows(messages: Sequence[NewMessage]) -> tuple[AcceptRow, ...]:
    return tuple([(
        m.id, m.account, m.ingress, m.recipient, m.raw_recipient, m.source_addr, m.source_ton,
        m.source_npi, m.dest_ton, m.dest_npi, m.text, m.encoding, m.data_coding, m.esm_class,
        m.registered_delivery, m.state.value,
        tuple([(p.seq, p.total, p.short_message, p.tlvs_json) for p in m.parts]),
        m.created_at, m.send_at, m.expires_at, m.idempotency_key, m.dup_digest, m.dup_window_s,
        m.quota, m.callback_url, m.meta_json) for m in messages])


def outbound_message(row: AcceptRow) -> OutboundMessage:
    """The dispatcher's view of a message just accepted from `row`, without reading it back
    (the store process hands it over when the accept commits)."""
    (id_, account, _ingress, recipient, _raw, source_addr, source_ton, source_npi, dest_ton,
     dest_npi, _text, _encoding, data_coding, esm_class, registered_delivery, state, parts,
     created_at, send_at, expires_at, *_rest) = row
    return OutboundMessage(
        id=id_, account=account, recipient=recipient, source_addr=source_addr,
        source_ton=source_ton, source_npi=source_npi, dest_ton=dest_ton, dest_npi=dest_npi,
        data_coding=data_coding, esm_class=esm_class, registered_delivery=registered_delivery,
        state=MessageState(state), created_at=created_at, send_at=send_at,
        expires_at=expires_at,
        parts=tuple([OutboundPart(seq, total, short_message, tlvs_json, PartState.QUEUED,
                                  None, None)
                     for seq, total, short_message, tlvs_json in parts]))
