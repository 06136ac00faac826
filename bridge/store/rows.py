"""Plain-tuple forms of interface values, for the writer and for the pipe to the store process:
tuples pickle and unpickle several times faster than the frozen dataclasses they stand for."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bridge.store.base import NewMessage

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
