"""The store interface: everything the service and the dispatcher persist, and nothing SQL.

Contract for every implementation (SQLite now, PostgreSQL later):
- A write method returns an awaitable that completes only once the write is durable; writes
  issued from one task are applied in the order they were issued. Callers on a hot path may
  drop the awaitable (the write still happens, in order) and await `flush()` when they need to.
- `accept` is atomic per message: idempotency keys, the duplicate window and the quota are
  checked and the message inserted in one transaction, so two instances (or two concurrent
  requests) can never both accept the same key.
- Timestamps are float seconds since the epoch, supplied by the caller (injected clock).
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Awaitable, Callable, Sequence

from bridge.core.model import Ingress
from bridge.core.states import MessageState, PartState


@dataclass(frozen=True)
class NewPart:
    seq: int
    total: int
    short_message: bytes
    tlvs_json: str  # JSON list of [name, value]; bytes values as {"hex": "..."}


@dataclass(frozen=True)
class NewMessage:
    id: str
    account: str
    ingress: Ingress
    recipient: str  # E.164 with '+'
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
    parts: tuple[NewPart, ...]
    state: MessageState  # QUEUED or SCHEDULED
    created_at: float
    send_at: float | None
    expires_at: float
    idempotency_key: str | None  # unique per account; a repeat returns the first id
    dup_digest: str | None  # with dup_window_s: a repeat inside the window returns the first id
    dup_window_s: float
    quota: int  # 0 = unlimited; counted in parts
    callback_url: str | None = None
    #: The subscriber's flood limit (0 = off) and the account's rate (0 = unlimited): held for
    #: every instance alike (bridge.core.policy.accept_verdict decides, the store keeps state).
    flood_max: int = 0
    flood_gap_s: float = 0.0
    rate_per_s: float = 0.0
    meta_json: str = "{}"  # ingress details (SMTP envelope, DSN parameters, Message-ID…)
    #: The final outcomes mailed back to the email sender as a DSN: "SUCCESS", "FAILURE",
    #: "SUCCESS,FAILURE" or None (bridge.core.mailback.dsn_conditions).
    dsn_notify: str | None = None
    #: The report events the callback_url hears of (bridge.core.reports.ReportEvent bits);
    #: None: the final states (what a SOAP callback reports).
    report_mask: int | None = None
    #: The SMSCs that may send it, in fail-over order (an instance takes only what it can send).
    routes: tuple[str, ...] = ()


@dataclass(frozen=True)
class AcceptOutcome:
    message_id: str  # the new id, or the existing one for a repeat
    #: "accepted" | "idempotent" (same key again) | "duplicate" | "flood" | "over_limit" |
    #: "over_quota" (bridge.core.policy.accept_verdict)
    status: str
    #: Accepted and held by the instance that asked (`accept(owner=…)`): its dispatcher sends
    #: it. False: it waits to be claimed (another instance holds an earlier message to the
    #: same number, or no owner was given).
    held: bool = False


@dataclass(frozen=True)
class OutboundPart:
    seq: int
    total: int
    short_message: bytes
    tlvs_json: str
    state: PartState
    smsc: str | None
    smsc_id: str | None
    #: When its submit_sm_resp OK was recorded (None: not yet): the dispatcher resuming a
    #: message half sent keeps its parts within the deadline of the first.
    submitted_at: float | None = None


@dataclass(frozen=True)
class OutboundMessage:
    """What the dispatcher needs to (re)submit a message."""

    id: str
    account: str
    recipient: str
    source_addr: str | None
    source_ton: int
    source_npi: int
    dest_ton: int
    dest_npi: int
    data_coding: int
    esm_class: int
    registered_delivery: int
    state: MessageState
    created_at: float
    send_at: float | None
    expires_at: float
    parts: tuple[OutboundPart, ...]
    routes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Event:
    message_id: str
    at: float
    state: str  # a MessageState value, or a part-level event name ("part_submitted", "receipt"…)
    detail: str  # human-readable, no message text


@dataclass(frozen=True)
class MessageView:
    id: str
    account: str
    ingress: Ingress
    recipient: str
    source_addr: str | None
    state: MessageState
    encoding: str
    parts: int
    parts_delivered: int
    smsc_ids: tuple[str, ...]
    created_at: float
    updated_at: float
    error: str | None  # ErrorName value when failed
    error_detail: str | None
    meta_json: str


@dataclass(frozen=True)
class ReceiptOutcome:
    """Result of applying one receipt."""

    matched: bool  # False: stored as an orphan, applied when the submit_sm_resp is recorded
    message_id: str | None
    message_state: MessageState | None  # the message's aggregate state after the receipt
    #: When the matched part was submitted (the console's submit-to-receipt latency).
    submitted_at: float | None = None
    #: The matched part's SMSC id as its submit_sm_resp gave it: the log names a message's
    #: SMSC id in one form at submit and at receipt (a receipt may write it in another).
    smsc_id: str | None = None


@dataclass(frozen=True)
class ActionOutcome:
    """What an operator's cancel or retry (bridge.core.operator) did to one message."""

    message_id: str
    done: bool
    state: MessageState | None  # the message's state afterwards; None: no such message
    detail: str  # what was done, or why not


@dataclass(frozen=True)
class AccountUsage:
    """An account's parts accepted so far and the credit topped up beside its quota."""

    account: str
    used: int
    credit: int


@dataclass(frozen=True)
class CreditChange:
    """One top-up (or correction) of an account's credit, as the store keeps them."""

    account: str
    change: int
    credit: int  # the credit after it
    at: float
    actor: str


@dataclass(frozen=True)
class InboundMessage:
    id: str
    smsc: str
    source: str
    destination: str
    text: str
    received_at: float
    reply_to_message_id: str | None  # the outbound message this answers, when known
    #: Queue it as mail to the sender of `reply_to_message_id` (bridge.outbound.notify.mailback), in the
    #: transaction that stores it.
    mail_reply: bool = False
    #: The account whose number `destination` is, and its mo_url: queue a push of it there
    #: (bridge.outbound.notify.callbacks) in the transaction that stores it.
    account: str | None = None
    push_url: str | None = None


@dataclass(frozen=True)
class MoPart:
    """One part of a concatenated inbound SMS, as an SMSC delivered it (numbers in E.164)."""

    smsc: str
    source: str
    destination: str
    ref: int
    total: int
    seq: int
    text: str
    received_at: float


@dataclass(frozen=True)
class MoSet:
    """The parts of a concatenated inbound SMS received so far (`Store.stale_mo_sets`)."""

    smsc: str
    source: str
    destination: str
    ref: int
    total: int
    texts: tuple[tuple[int, str], ...]  # (part number, text)
    first_at: float


@dataclass(frozen=True)
class DueCallback:
    """A delivery report whose time has come (`Store.callbacks_due`): the event that queued
    it, and what each dialect's report format needs of the message (bridge.core.reports)."""

    id: int
    message_id: str
    account: str
    url: str
    state: str  # the event: the MessageState value that queued it, or "buffered"
    at: float  # when it happened
    attempts: int  # made so far
    recipient: str
    meta_json: str  # the message's ingress details (the SOAP reference among them)
    parts: int
    parts_delivered: int
    error: str | None
    error_detail: str | None
    raw_recipient: str = ""  # as the client wrote it
    source_addr: str | None = None
    text: str = ""
    created_at: float = 0.0
    report_mask: int | None = None  # the events asked for (NULL: the final ones)
    smsc: str | None = None  # the first part's SMSC name, SMSC id and submit time
    smsc_id: str | None = None
    submitted_at: float | None = None
    receipt_stat: str | None = None  # the last part with a receipt: its stat and err
    receipt_err: str | None = None
    event_detail: str | None = None  # a buffered event: the receipt's stat


@dataclass(frozen=True)
class DuePush:
    """An inbound SMS to push to an account's mo_url (`Store.pushes_due`)."""

    id: int
    inbound_id: str
    account: str
    url: str
    attempts: int  # made so far
    smsc: str
    source: str
    destination: str
    text: str
    received_at: float


@dataclass(frozen=True)
class DueMailback:
    """A mail back to an email sender whose time has come (`Store.mailbacks_due`): a DSN
    about `message_id`, or an SMS reply (`inbound_*`) to it."""

    id: int
    kind: str  # "dsn" | "reply"
    message_id: str
    state: str | None  # dsn: the final MessageState value that queued it, or "delayed"
    at: float  # dsn: when the message reached that state; reply: when the MO came
    attempts: int  # made so far
    recipient: str
    meta_json: str  # the message's SMTP envelope, Message-ID, subject, DSN parameters
    created_at: float
    parts: int
    parts_delivered: int
    error: str | None
    error_detail: str | None
    inbound_id: str | None
    inbound_source: str | None
    inbound_text: str | None
    message_state: str = ""  # the message's state now (what a delay notice waits in)


@dataclass(frozen=True)
class InstanceRow:
    """An instance's last heartbeat and what it said then (JSON: name, host, pid, binds…)."""

    id: str
    heartbeat_at: float
    info_json: str


class StoreUnavailable(Exception):
    """The store could not persist (or read) something; nothing of that operation happened.
    The service maps it to STORE_UNAVAILABLE. The original error is the `__cause__`.
    Trying again later may succeed (the disk, the database, the connection come back)."""


class StoreRefused(StoreUnavailable):
    """The store will never do this operation as asked (no such message or part, an unknown
    outcome): nothing happened, and trying again cannot help. A StoreUnavailable, so callers
    that only tell success from failure need not know it; one that retries until a write is
    durable (bridge.outbound.gate) must not retry this."""


class Store(abc.ABC):
    @abc.abstractmethod
    async def open(self) -> None:
        """Create or migrate the schema; start the writer."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Finish every issued write, then release resources."""

    #: Called (on the event loop) when the store is lost for good while open; the bridge stops
    #: then, so that a supervisor restarts it rather than it refusing everything forever.
    on_lost: Callable[[], None] | None = None

    def healthy(self) -> bool:
        """False once the store can no longer take writes (for /healthz)."""
        return True

    def watch_due(self, callback: Callable[[], None]) -> None:
        """Call `callback()` when another instance's commit left messages to claim. A store
        only one outbound side uses (SQLite) has nothing to say: claims poll besides."""

    @abc.abstractmethod
    async def flush(self) -> None:
        """Return once every write issued so far is durable."""

    # ---- ingress
    @abc.abstractmethod
    def accept(self, messages: Sequence[NewMessage], *, now: float, owner: str | None = None,
               able: Sequence[str] | None = None) -> Awaitable[list[AcceptOutcome]]:
        """Persist messages (one outcome per input, same order) in one durable transaction.
        With `owner` (an instance), each message accepted is held by it (`held`: its
        dispatcher sends it), unless its number has an earlier message with a part not yet
        acknowledged that `owner` does not hold (then it waits to be claimed, so that order
        per number holds), or none of its routes is among `able`, the SMSCs `owner` binds
        (None: any)."""

    @abc.abstractmethod
    async def usage(self, accounts: Sequence[str]) -> list[AccountUsage]:
        """Each account's parts accepted so far and its credit, in the order asked (an
        account that never sent: zeros)."""

    @abc.abstractmethod
    async def limits_peek(self, account: str, recipients: Sequence[str], *, now: float,
                          flood_max: int, flood_gap_s: float,
                          rate_per_s: float) -> list[str | None]:
        """What `accept` would refuse each recipient for now on the flood and rate limits
        ("flood", "over_limit") or None, consuming nothing (SMTP asks at RCPT time)."""

    # ---- dispatcher
    @abc.abstractmethod
    async def load_pending(self, *, limit: int = 1_000_000) -> list[OutboundMessage]:
        """Messages in QUEUED, SCHEDULED or SUBMITTED with parts not yet acknowledged, oldest
        first, whoever holds them (for status and tests; dispatchers `claim`)."""

    @abc.abstractmethod
    def claim(self, owner: str, *, now: float, live_after: float, smscs: Sequence[str],
              due_before: float, limit: int) -> Awaitable[list[OutboundMessage]]:
        """Take up to `limit` messages for `owner`'s dispatcher, oldest first: pending, with a
        part not yet acknowledged, due (`send_at` before `due_before`), routed to one of
        `smscs`, held by no live instance (none, or one whose last heartbeat is older than
        `live_after`), and whose number has no earlier message with a part not yet
        acknowledged that another live instance holds. They are held by `owner` from now on. Messages `owner` already holds
        are not taken again (its dispatcher has them)."""

    @abc.abstractmethod
    def release(self, owner: str, *, at: float) -> Awaitable[int]:
        """`owner` stops (or finds it was taken for dead): every pending message it holds is
        let go, claimable at once, and its heartbeat ends. How many were let go."""

    @abc.abstractmethod
    def record_submitted(self, message_id: str, seq: int, *, smsc: str, smsc_id: str,
                         id_keys: Sequence[str], at: float) -> Awaitable[ReceiptOutcome | None]:
        """A part got submit_sm_resp OK. Applies any orphan receipt with a matching key and
        returns its outcome (None when there was none)."""

    @abc.abstractmethod
    def restart_message(self, message_id: str, parts: Sequence[NewPart], *, data_coding: int,
                        esm_class: int, encoding: str, at: float,
                        detail: str) -> Awaitable[bool]:
        """The message goes again whole (its parts could not all go within the deadline on
        one bind) or is planned again for another route: its parts are replaced by `parts`
        (none submitted), its plan's fields set, and it is queued again with a "restarted"
        event saying why (`detail`). The SMSC id keys of the parts it replaces are deleted,
        so a receipt that still comes for them matches nothing of the new attempt: it is
        kept as an orphan like any receipt nobody knows, and can only ever match a later
        submit the same SMSC gives the very same id. False, with nothing changed, when the
        message is no longer queued or submitted (a receipt made it final): then it is not
        sent again."""

    @abc.abstractmethod
    async def message_text(self, message_id: str) -> str | None:
        """The text a message was planned from (None: no such message), read only when the
        dispatcher plans it again for another route, and by `sms-bridge status --text`; never
        on the way of every message."""

    @abc.abstractmethod
    def record_state(self, message_id: str, state: MessageState, *, at: float,
                     error: str | None = None, detail: str = "") -> Awaitable[None]:
        """Move a message (and its unfinished parts) to a state, with an event."""

    @abc.abstractmethod
    def record_event(self, message_id: str, name: str, *, at: float, detail: str = "") -> Awaitable[None]:
        """A timeline entry that is not a state change (retry, throttled, resubmitted…)."""

    @abc.abstractmethod
    def record_receipt(self, *, smsc: str, id_keys: Sequence[str], part_state: PartState | None,
                       stat: str | None, err: str | None, at: float) -> Awaitable[ReceiptOutcome]:
        """Apply a delivery receipt to the part whose SMSC id shares a key, aggregate the
        message (bridge.core.states.aggregate), or keep it as an orphan when no part matches."""

    # ---- operators (bridge.core.operator's rules, decided in the store's transaction)
    @abc.abstractmethod
    def begin_submit(self, message_id: str, owner: str) -> Awaitable[bool]:
        """`owner`'s dispatcher is about to hand a part of the message to an SMSC: from this
        commit on `cancel` refuses it, until `end_submit`. False when the message is no longer
        pending (cancelled, or final): then nothing of it may be sent. With `cancel`, one
        transaction or the other comes first, so a message is never cancelled yet sent."""

    @abc.abstractmethod
    def end_submit(self, message_id: str, owner: str) -> Awaitable[None]:
        """The submit `owner` began did not reach the SMSC (refused, throttled, no bind up)
        and no part of the message is acknowledged: it may be cancelled again."""

    @abc.abstractmethod
    def cancel(self, ids: Sequence[str], *, at: float,
               actor: str) -> Awaitable[list[ActionOutcome]]:
        """Cancel each message the rule allows (queued or scheduled, no submit begun, no part
        acknowledged): state `cancelled`, a final state, so its callback and DSN are queued as
        for any; the others are left as they are. One outcome per id, in order."""

    @abc.abstractmethod
    def retry(self, ids: Sequence[str], *, at: float,
              actor: str) -> Awaitable[list[ActionOutcome]]:
        """Queue each failed or expired message again, whole (every part sent anew, its old
        SMSC ids forgotten), valid again from `at` for as long as it was at first, held by no
        instance (the first that can send it claims it)."""

    @abc.abstractmethod
    def add_credit(self, account: str, change: int, *, quota: int, at: float,
                   actor: str) -> Awaitable[tuple[int, str | None]]:
        """Top up (or with a negative `change`, take back) the account's credit beside its
        `quota`, as core.policy.credit_after allows, in the transaction that accepts decide
        in; kept in the account's history. (credit after, None) or (credit unchanged, why
        not)."""

    @abc.abstractmethod
    async def credit_changes(self, account: str, *, limit: int) -> list[CreditChange]:
        """The account's latest credit changes, newest first."""

    # ---- delivery reports (queued by the store itself, in the same transaction, when a
    #      message with a callback_url reaches a state its report_mask asks for, or gets an
    #      interim receipt and the mask asks for "buffered")
    @abc.abstractmethod
    async def callbacks_due(self, *, now: float, limit: int) -> list[DueCallback]:
        """Callbacks whose next attempt is due and that no instance holds, the longest
        waiting first."""

    @abc.abstractmethod
    def claim_callbacks(self, owner: str, *, now: float, hold_until: float,
                        limit: int) -> Awaitable[list[DueCallback]]:
        """`callbacks_due`, taken by `owner` until `hold_until` (or its outcome is recorded):
        no other instance attempts them meanwhile, so each attempt is made once."""

    @abc.abstractmethod
    def record_callback(self, callback_id: int, message_id: str, *, outcome: str, attempts: int,
                        next_at: float, at: float, detail: str) -> Awaitable[None]:
        """After an attempt: `outcome` "delivered" or "gave_up" removes the callback, "retry"
        keeps it until `next_at`; each adds a timeline event with `detail`."""

    # ---- inbound SMS pushed to an account's mo_url (queued by `record_inbound`)
    @abc.abstractmethod
    async def pushes_due(self, *, now: float, limit: int) -> list[DuePush]:
        """Pushes whose next attempt is due and that no instance holds, the longest waiting
        first."""

    @abc.abstractmethod
    def claim_pushes(self, owner: str, *, now: float, hold_until: float,
                     limit: int) -> Awaitable[list[DuePush]]:
        """`pushes_due`, taken by `owner` as `claim_callbacks` takes callbacks."""

    @abc.abstractmethod
    def record_push(self, push_id: int, *, outcome: str, attempts: int, next_at: float,
                    detail: str) -> Awaitable[None]:
        """After an attempt: "delivered" or "gave_up" removes the push, "retry" keeps it until
        `next_at` with `detail` as its last error."""

    # ---- mail back (DSNs queued by the store when a message with dsn_notify becomes final,
    #      SMS replies by `record_inbound`)
    @abc.abstractmethod
    async def mailbacks_due(self, *, now: float, limit: int) -> list[DueMailback]:
        """Mails whose next attempt is due and that no instance holds, the longest waiting
        first."""

    @abc.abstractmethod
    def claim_mailbacks(self, owner: str, *, now: float, hold_until: float,
                        limit: int) -> Awaitable[list[DueMailback]]:
        """`mailbacks_due`, taken by `owner` as `claim_callbacks` takes callbacks."""

    @abc.abstractmethod
    def record_mailback(self, mailback_id: int, message_id: str, *, kind: str, outcome: str,
                        attempts: int, next_at: float, at: float,
                        detail: str) -> Awaitable[None]:
        """As `record_callback`, for a mail: the timeline event names its kind."""

    @abc.abstractmethod
    def queue_delay_dsns(self, *, accepted_before: float, now: float,
                         limit: int) -> Awaitable[tuple[int, int]]:
        """Queue one delay notice (a "dsn" mail in state "delayed") for each message accepted
        before `accepted_before` whose recipient asked for NOTIFY=DELAY and that is still
        queued or submitted; each such message is looked at once, up to `limit` of them.
        (How many were looked at, how many notices were queued.)"""

    # ---- liveness
    @abc.abstractmethod
    def heartbeat(self, instance: str, *, at: float,
                  info_json: str = "{}") -> Awaitable[float | None]:
        """This instance's outbound side is alive (with what it holds, for status). A small
        real write: it is also how the outbound side learns that the store takes writes again
        after they failed (a full disk), so it must not be answered without writing. Returns
        the previous heartbeat's time (None for the first): after a gap longer than the
        lease, the others may have taken what the instance held."""

    @abc.abstractmethod
    def retire(self, instances: Sequence[str]) -> Awaitable[None]:
        """These instances are known dead (a SQLite file's only outbound side starting, or a
        crashed process of the same name on this host): what they held is claimable now."""

    @abc.abstractmethod
    async def instances(self) -> list[InstanceRow]:
        """Every instance that ever heartbeat here, the latest first."""

    # ---- retention
    @abc.abstractmethod
    def purge(self, *, before: float, limit: int) -> Awaitable[int]:
        """Delete up to `limit` final messages unchanged since `before`, oldest first, with
        their parts, events, keys, queued callbacks and mails, and replies older than
        `before` with their queued pushes; the number deleted."""

    # ---- queries
    @abc.abstractmethod
    async def get_messages(self, ids: Sequence[str]) -> list[MessageView]:
        """Views in the order asked; unknown ids are left out."""

    @abc.abstractmethod
    async def list_messages(self, account: str | None, *, offset: int, limit: int,
                            state: MessageState | None = None,
                            since: float | None = None) -> tuple[int, list[MessageView]]:
        """(total matching, one page) newest first; `account` None: every account's."""

    @abc.abstractmethod
    async def timeline(self, message_id: str) -> list[Event]:
        """Every event of a message in time order."""

    @abc.abstractmethod
    async def counts_by_state(self) -> dict[str, int]:
        """For /metrics: messages per state."""

    # ---- MO
    @abc.abstractmethod
    def record_inbound(self, message: InboundMessage) -> Awaitable[None]:
        """Store an MO message durably (the deliver_sm_resp waits for this), with its mail
        back and its push to mo_url when it asks for them."""

    @abc.abstractmethod
    def record_mo_part(self, part: MoPart, inbound: InboundMessage) -> Awaitable[bool]:
        """Keep one part of a concatenated SMS (the same part again replaces it). When it
        completes its set, store `inbound` with the whole text (core.reassembly.assemble) as
        `record_inbound` would and forget the parts, in the same transaction: the parts may
        come through any instance, in any order. True when it completed."""

    @abc.abstractmethod
    async def stale_mo_sets(self, *, before: float, limit: int) -> list[MoSet]:
        """Sets whose first part came before `before` and never completed, oldest first."""

    @abc.abstractmethod
    def record_mo_partial(self, mo_set: MoSet, inbound: InboundMessage) -> Awaitable[bool]:
        """Stop waiting for a set: store `inbound` with the parts that arrived
        (core.reassembly.join_partial) and forget them, in one transaction. False, storing
        nothing, when the set is gone already (completed, or given up by another instance)."""

    @abc.abstractmethod
    async def last_message_to(self, recipient: str, *, since: float) -> MessageView | None:
        """The most recent outbound message to a number, to route its reply."""
