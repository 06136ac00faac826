"""Plain-tuple forms of interface values and calls, for the writer and for the pipe to the store
process: tuples pickle and unpickle several times faster than the frozen dataclasses they stand
for, and one class (`CallsByName`) turns the Store interface into them for both stores."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Sequence
from typing import Any, NamedTuple

from bridge.core.states import MessageState, PartState
from bridge.store.base import (
    AcceptOutcome,
    AccountUsage,
    ActionOutcome,
    CreditChange,
    DueCallback,
    DueMailback,
    DuePush,
    Event,
    InboundMessage,
    InstanceRow,
    MessageView,
    MoPart,
    MoSet,
    NewMessage,
    NewPart,
    OutboundMessage,
    OutboundPart,
    ReceiptOutcome,
    Store,
)

class AcceptRow(NamedTuple):
    """A NewMessage as the writer takes it: its fields in declaration order, the state as its
    value and the parts as (seq, total, short_message, tlvs_json). A NamedTuple: typed by
    name for the stores, yet a tuple for the pipe (a dataclass pickles several times slower)."""

    id: str
    account: str
    ingress: str
    recipient: str
    raw_recipient: str
    source_addr: str | None
    source_ton: int
    source_npi: int
    dest_ton: int
    dest_npi: int
    text: str
    encoding: str
    data_coding: int
    esm_class: int
    registered_delivery: int
    state: str
    parts: tuple[tuple[int, int, bytes, str], ...]
    created_at: float
    send_at: float | None
    expires_at: float
    idempotency_key: str | None
    dup_digest: str | None
    dup_window_s: float
    quota: int
    flood_max: int
    flood_gap_s: float
    rate_per_s: float
    callback_url: str | None
    meta_json: str
    dsn_notify: str | None
    report_mask: int | None
    routes: tuple[str, ...]


def accept_rows(messages: Sequence[NewMessage]) -> tuple[AcceptRow, ...]:
    return tuple([AcceptRow(
        m.id, m.account, m.ingress.value, m.recipient, m.raw_recipient, m.source_addr,
        m.source_ton, m.source_npi, m.dest_ton, m.dest_npi, m.text, m.encoding, m.data_coding,
        m.esm_class, m.registered_delivery, m.state.value,
        tuple([(p.seq, p.total, p.short_message, p.tlvs_json) for p in m.parts]),
        m.created_at, m.send_at, m.expires_at, m.idempotency_key, m.dup_digest, m.dup_window_s,
        m.quota, m.flood_max, m.flood_gap_s, m.rate_per_s, m.callback_url, m.meta_json,
        m.dsn_notify,
        None if m.report_mask is None else int(m.report_mask), m.routes)
        for m in messages])


def outbound_message(row: AcceptRow) -> OutboundMessage:
    """The dispatcher's view of a message just accepted from `row`, without reading it back
    (the store process hands it over when the accept commits)."""
    return OutboundMessage(
        id=row.id, account=row.account, recipient=row.recipient, source_addr=row.source_addr,
        source_ton=row.source_ton, source_npi=row.source_npi, dest_ton=row.dest_ton,
        dest_npi=row.dest_npi, data_coding=row.data_coding, esm_class=row.esm_class,
        registered_delivery=row.registered_delivery, state=MessageState(row.state),
        created_at=row.created_at, send_at=row.send_at, expires_at=row.expires_at,
        parts=tuple([OutboundPart(seq, total, short_message, tlvs_json, PartState.QUEUED,
                                  None, None)
                     for seq, total, short_message, tlvs_json in row.parts]),
        routes=row.routes)


class CallsByName(Store):
    """The Store interface as calls by name with positional arguments, the form the SQLite
    writer and readers take (`bridge.store.sqlite.WRITES` / `READS`) and the pipe to the store
    process carries: each method builds its argument tuple here, once for both stores."""

    def _write(self, method: str, args: tuple[Any, ...]) -> asyncio.Future[Any]:
        """Queue write `method` behind the writes before it; the future completes on commit."""
        raise NotImplementedError

    async def _read(self, method: str, args: tuple[Any, ...]) -> Any:
        raise NotImplementedError

    async def flush(self) -> None:
        await self._write("flush", ())

    def accept(self, messages: Sequence[NewMessage], *, now: float, owner: str | None = None,
               able: Sequence[str] | None = None) -> Awaitable[list[AcceptOutcome]]:
        return self._write("accept", (accept_rows(messages), now, owner,
                                      None if able is None else tuple(able)))

    def claim(self, owner: str, *, now: float, live_after: float, smscs: Sequence[str],
              due_before: float, limit: int) -> Awaitable[list[OutboundMessage]]:
        return self._write("claim", (owner, now, live_after, tuple(smscs), due_before, limit))

    def release(self, owner: str, *, at: float) -> Awaitable[int]:
        return self._write("release", (owner, at))

    def retire(self, instances: Sequence[str]) -> Awaitable[None]:
        return self._write("retire", (tuple(instances),))

    async def instances(self) -> list[InstanceRow]:
        result: list[InstanceRow] = await self._read("instances", ())
        return result

    def record_submitted(self, message_id: str, seq: int, *, smsc: str, smsc_id: str,
                         id_keys: Sequence[str], at: float) -> Awaitable[ReceiptOutcome | None]:
        return self._write("record_submitted",
                           (message_id, seq, smsc, smsc_id, tuple(id_keys), at))

    def restart_message(self, message_id: str, parts: Sequence[NewPart], *, data_coding: int,
                        esm_class: int, encoding: str, at: float,
                        detail: str) -> Awaitable[bool]:
        return self._write("restart_message", (
            message_id, tuple((p.seq, p.total, p.short_message, p.tlvs_json) for p in parts),
            data_coding, esm_class, encoding, at, detail))

    async def message_text(self, message_id: str) -> str | None:
        result: str | None = await self._read("message_text", (message_id,))
        return result

    def record_state(self, message_id: str, state: MessageState, *, at: float,
                     error: str | None = None, detail: str = "") -> Awaitable[None]:
        return self._write("record_state", (message_id, MessageState(state), at, error, detail))

    def record_event(self, message_id: str, name: str, *, at: float,
                     detail: str = "") -> Awaitable[None]:
        return self._write("record_event", (message_id, name, at, detail))

    def record_receipt(self, *, smsc: str, id_keys: Sequence[str], part_state: PartState | None,
                       stat: str | None, err: str | None, at: float) -> Awaitable[ReceiptOutcome]:
        return self._write("record_receipt", (smsc, tuple(id_keys), part_state, stat, err, at))

    def record_inbound(self, message: InboundMessage) -> Awaitable[None]:
        return self._write("record_inbound", (message,))

    def record_mo_part(self, part: MoPart, inbound: InboundMessage) -> Awaitable[bool]:
        return self._write("record_mo_part", (part, inbound))

    def record_mo_partial(self, mo_set: MoSet, inbound: InboundMessage) -> Awaitable[bool]:
        return self._write("record_mo_partial", (mo_set, inbound))

    async def stale_mo_sets(self, *, before: float, limit: int) -> list[MoSet]:
        result: list[MoSet] = await self._read("stale_mo_sets", (before, limit))
        return result

    def record_callback(self, callback_id: int, message_id: str, *, outcome: str, attempts: int,
                        next_at: float, at: float, detail: str) -> Awaitable[None]:
        return self._write("record_callback",
                           (callback_id, message_id, outcome, attempts, next_at, at, detail))

    def claim_callbacks(self, owner: str, *, now: float, hold_until: float,
                        limit: int) -> Awaitable[list[DueCallback]]:
        return self._write("claim_callbacks", (owner, now, hold_until, limit))

    def claim_mailbacks(self, owner: str, *, now: float, hold_until: float,
                        limit: int) -> Awaitable[list[DueMailback]]:
        return self._write("claim_mailbacks", (owner, now, hold_until, limit))

    async def callbacks_due(self, *, now: float, limit: int) -> list[DueCallback]:
        result: list[DueCallback] = await self._read("callbacks_due", (now, limit))
        return result

    def record_mailback(self, mailback_id: int, message_id: str, *, kind: str, outcome: str,
                        attempts: int, next_at: float, at: float,
                        detail: str) -> Awaitable[None]:
        return self._write("record_mailback", (mailback_id, message_id, kind, outcome,
                                               attempts, next_at, at, detail))

    def queue_delay_dsns(self, *, accepted_before: float, now: float,
                         limit: int) -> Awaitable[tuple[int, int]]:
        return self._write("queue_delay_dsns", (accepted_before, now, limit))

    def heartbeat(self, instance: str, *, at: float,
                  info_json: str = "{}") -> Awaitable[float | None]:
        return self._write("heartbeat", (instance, at, info_json))

    def purge(self, *, before: float, limit: int) -> Awaitable[int]:
        return self._write("purge", (before, limit))

    def claim_pushes(self, owner: str, *, now: float, hold_until: float,
                     limit: int) -> Awaitable[list[DuePush]]:
        return self._write("claim_pushes", (owner, now, hold_until, limit))

    async def pushes_due(self, *, now: float, limit: int) -> list[DuePush]:
        result: list[DuePush] = await self._read("pushes_due", (now, limit))
        return result

    def record_push(self, push_id: int, *, outcome: str, attempts: int, next_at: float,
                    detail: str) -> Awaitable[None]:
        return self._write("record_push", (push_id, outcome, attempts, next_at, detail))

    async def mailbacks_due(self, *, now: float, limit: int) -> list[DueMailback]:
        result: list[DueMailback] = await self._read("mailbacks_due", (now, limit))
        return result

    async def limits_peek(self, account: str, recipients: Sequence[str], *, now: float,
                          flood_max: int, flood_gap_s: float,
                          rate_per_s: float) -> list[str | None]:
        result: list[str | None] = await self._read(
            "limits_peek", (account, tuple(recipients), now, flood_max, flood_gap_s, rate_per_s))
        return result

    async def usage(self, accounts: Sequence[str]) -> list[AccountUsage]:
        result: list[AccountUsage] = await self._read("usage", (tuple(accounts),))
        return result

    def begin_submit(self, message_id: str, owner: str) -> Awaitable[bool]:
        return self._write("begin_submit", (message_id, owner))

    def end_submit(self, message_id: str, owner: str) -> Awaitable[None]:
        return self._write("end_submit", (message_id, owner))

    def cancel(self, ids: Sequence[str], *, at: float,
               actor: str) -> Awaitable[list[ActionOutcome]]:
        return self._write("cancel", (tuple(ids), at, actor))

    def retry(self, ids: Sequence[str], *, at: float,
              actor: str) -> Awaitable[list[ActionOutcome]]:
        return self._write("retry", (tuple(ids), at, actor))

    def add_credit(self, account: str, change: int, *, quota: int, at: float,
                   actor: str) -> Awaitable[tuple[int, str | None]]:
        return self._write("add_credit", (account, change, quota, at, actor))

    async def credit_changes(self, account: str, *, limit: int) -> list[CreditChange]:
        result: list[CreditChange] = await self._read("credit_changes", (account, limit))
        return result

    async def load_pending(self, *, limit: int = 1_000_000) -> list[OutboundMessage]:
        result: list[OutboundMessage] = await self._read("load_pending", (limit,))
        return result

    async def get_messages(self, ids: Sequence[str]) -> list[MessageView]:
        result: list[MessageView] = await self._read("get_messages", (tuple(ids),))
        return result

    async def list_messages(self, account: str | None, *, offset: int, limit: int,
                            state: MessageState | None = None,
                            since: float | None = None) -> tuple[int, list[MessageView]]:
        result: tuple[int, list[MessageView]] = await self._read(
            "list_messages", (account, offset, limit, state, since))
        return result

    async def timeline(self, message_id: str) -> list[Event]:
        result: list[Event] = await self._read("timeline", (message_id,))
        return result

    async def counts_by_state(self) -> dict[str, int]:
        result: dict[str, int] = await self._read("counts_by_state", ())
        return result

    async def last_message_to(self, recipient: str, *, since: float) -> MessageView | None:
        result: MessageView | None = await self._read("last_message_to", (recipient, since))
        return result
