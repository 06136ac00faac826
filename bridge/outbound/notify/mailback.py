"""Mail back to email senders: delivery status notifications and SMS replies, handed to the
smarthost (`[smtp] smarthost`).

The store queues each mail in the transaction that makes its message final (a trigger, for
DSNs) or that stores the reply (bridge.store.schema), so no crash can lose one: after a
restart it is simply still due. Delay notices (NOTIFY=DELAY) are queued by a look every few
seconds for messages accepted `dsn_delay_after_s` ago and still on their way; each message
is looked at once. The sender runs with the outbound side (bridge.runtime.outbound).
What goes in the mails is `bridge.core.mailback`; this module reads the stored facts, asks
for the bytes and talks SMTP (aiosmtplib).

Delivery is at least once: a mail whose 250 never arrived goes again, with the same
Message-ID (one per message and final state, or per reply), so a mailbox can tell the
repeat. DSNs go from the null reverse path (RFC 3461 §6.2), so no report is ever written
about a report. The recipients of one mail whose outcomes are due together share one DSN.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

import aiosmtplib

from bridge.config import SmtpConfig
from bridge.core.callbacks import RetrySchedule, Verdict, next_due
from bridge.core.mailback import (
    DELAYED,
    REPLY_ID_PREFIX,
    DsnFacts,
    ReplyFacts,
    dsn_mail,
    one_line,
    reply_mail,
    smtp_verdict,
)
from bridge.core.meta import MetaKey, read_meta
from bridge.core.states import FINAL_MESSAGE_STATES
from bridge.outbound.notify.duework import DueWork
from bridge.metrics import OutboundMetrics
from bridge.store.base import DueMailback, Store

log = logging.getLogger("bridge.mailback")

#: Mails in flight to the smarthost at once.
CONCURRENCY = 4
#: How long a stop waits for the mails in flight (one cut short goes again after a restart).
DRAIN_S = 5.0
#: The longest wait between two looks for due mails (shorter when mail_retry_base_s is).
POLL_S = 1.0
#: Rows read per look: enough for one mail's recipients to share their DSN.
FETCH = 200
#: How long taken mails stay this instance's beyond the smarthost's timeout.
HOLD_S = 120.0
#: The longest wait between two looks for messages that owe a delay notice.
DELAY_SCAN_S = 5.0
#: Messages one look reads, and looks at most per poll: enough to keep up with every mail
#: asking for DELAY at thousands a second (most are final by then and just leave the index).
DELAY_FETCH = 500
DELAY_LOOKS = 20
_FINAL = frozenset(s.value for s in FINAL_MESSAGE_STATES)


@dataclass(frozen=True)
class Envelope:
    sender: str  # "" = the null reverse path
    recipient: str
    content: bytes


class MailBack:
    def __init__(self, config: SmtpConfig, store: Store, metrics: OutboundMetrics, *,
                 owner: str, clock: Callable[[], float] = time.time) -> None:
        """`owner`: the instance that takes due mails (each is mailed by one instance:
        Store.claim_mailbacks)."""
        self.config = config
        self.store = store
        self.owner = owner
        self._backlog: list[Batch] = []  # taken, not yet begun
        self.metrics = metrics
        self.clock = clock
        self.schedule = RetrySchedule(config.mail_max_attempts, config.mail_retry_base_s,
                                      config.mail_retry_max_s)
        self._delay_scan_at = 0.0
        self._work = DueWork[Batch](
            "mailback", concurrency=CONCURRENCY, poll_s=min(POLL_S, config.mail_retry_base_s),
            due=self._due, work=self._mail, ids=lambda batch: [r.id for r in batch.rows])

    async def start(self) -> None:
        self._work.start()

    async def stop(self, timeout: float) -> None:
        """Stop looking; give the mails in flight `timeout` seconds."""
        await self._work.stop(timeout)

    async def _due(self, limit: int) -> list[Batch]:
        """Mails to begin: first those taken before, then newly taken ones (enough rows at once
        for one mail's recipients to share their DSN), held while attempted."""
        await self._find_delays()
        if not self._backlog:
            now = self.clock()
            rows = await self.store.claim_mailbacks(
                self.owner, now=now, hold_until=now + HOLD_S + self.config.smarthost_timeout_s,
                limit=FETCH)
            self._backlog = batches(rows)
        taken, self._backlog = self._backlog[:limit], self._backlog[limit:]
        return taken

    async def _find_delays(self) -> None:
        """Queue the delay notices that have come due (NOTIFY=DELAY, [smtp]
        dsn_delay_after_s): every few seconds, at once again while there are more."""
        after = self.config.dsn_delay_after_s
        now = self.clock()
        if not (after > 0 and self.config.dsn) or now < self._delay_scan_at:
            return
        looked_at = DELAY_FETCH
        for _ in range(DELAY_LOOKS):  # each look its own transaction: others go in between
            looked_at, _ = await self.store.queue_delay_dsns(
                accepted_before=now - after, now=now, limit=DELAY_FETCH)
            if looked_at < DELAY_FETCH:
                break
        self._delay_scan_at = now if looked_at == DELAY_FETCH \
            else now + min(DELAY_SCAN_S, after / 2)

    def envelope(self, batch: Batch) -> Envelope | str:
        """The mail for a batch, or why there can be none (then it is not tried)."""
        row = batch.rows[0]
        meta = read_meta(row.meta_json)
        to = meta.get(MetaKey.MAIL_FROM)
        if not to:
            return "the mail came from the null reverse path: nobody to tell"
        if row.kind == "dsn" and row.state is not None:
            # A delay notice for a message that has become final since says nothing true.
            facts = [self._dsn_facts(r, read_meta(r.meta_json), to) for r in batch.rows
                     if r.state != DELAYED or r.message_state not in _FINAL]
            if not facts:
                return f"it is {row.message_state} now: no longer delayed"
            return Envelope("", to, dsn_mail(*facts))
        if row.kind == "reply" and row.inbound_id is not None:
            # From the number at the domain the mail went to: answering it sends an SMS.
            domain = self._rcpt_to(row, meta).rpartition("@")[2] or self.config.domains[0]
            return Envelope(self.config.report_address, to, reply_mail(ReplyFacts(
                domain=domain, to=to, number=row.inbound_source or row.recipient,
                text=row.inbound_text or "", received_at=row.at,
                original_message_id=meta.get(MetaKey.MESSAGE_ID),
                subject=meta.get(MetaKey.SUBJECT), reply_id=f"{REPLY_ID_PREFIX}{row.inbound_id}")))
        return f"nothing to mail for a {row.kind!r} row"

    def _rcpt_to(self, row: DueMailback, meta: Mapping[MetaKey, str]) -> str:
        return meta.get(MetaKey.RCPT_TO) or f"{row.recipient}@{self.config.domains[0]}"

    def _dsn_facts(self, row: DueMailback, meta: Mapping[MetaKey, str], to: str) -> DsnFacts:
        return DsnFacts(
            reporting_mta=self.config.hostname, report_from=self.config.report_address, to=to,
            final_recipient=self._rcpt_to(row, meta), original_recipient=meta.get(MetaKey.ORCPT),
            envid=meta.get(MetaKey.ENVID), original_message_id=meta.get(MetaKey.MESSAGE_ID),
            subject=meta.get(MetaKey.SUBJECT), message_id=row.message_id,
            number=row.recipient, state=row.state or "", at=row.at, arrival=row.created_at,
            parts=row.parts, parts_delivered=row.parts_delivered, error=row.error,
            error_detail=row.error_detail, report_id=f"dsn.{row.message_id}.{row.state}",
            waiting=row.message_state if row.state == DELAYED else None)

    async def send(self, envelope: Envelope) -> tuple[int | None, str]:
        """Hand one mail to the smarthost: (SMTP reply code or None for no answer, what
        happened, for the timeline)."""
        c = self.config
        host, port = c.smarthost_address
        utf8 = not (envelope.sender.isascii() and envelope.recipient.isascii())
        try:
            # The client rather than aiosmtplib.send, which refuses the null reverse path.
            client = aiosmtplib.SMTP(
                hostname=host, port=port, local_hostname=c.hostname,
                username=c.smarthost_user, password=c.smarthost_password,
                use_tls=c.smarthost_tls == "tls", start_tls=c.smarthost_tls == "starttls",
                timeout=c.smarthost_timeout_s)
            async with client:
                await client.sendmail(envelope.sender, [envelope.recipient], envelope.content,
                                      mail_options=["SMTPUTF8"] if utf8 else None)
        except aiosmtplib.SMTPRecipientsRefused as exc:
            refused = exc.recipients[0] if exc.recipients else None
            if refused is None:
                return None, "recipient refused"
            return refused.code, f"{refused.code} {one_line(refused.message)}"
        except aiosmtplib.SMTPAuthenticationError as exc:
            # Our credentials, not the mail: worth trying again once someone fixes them.
            return None, f"authentication failed: {exc.code} {one_line(exc.message)}"
        except aiosmtplib.SMTPResponseException as exc:
            return exc.code, f"{exc.code} {one_line(exc.message)}"
        except (aiosmtplib.SMTPException, OSError, asyncio.TimeoutError) as exc:
            return None, one_line(str(exc)) or type(exc).__name__
        return 250, "accepted"

    async def _mail(self, batch: Batch) -> None:
        envelope = self.envelope(batch)
        code: int | None = None
        if isinstance(envelope, str):
            answer = f"not mailed: {envelope}"
        else:
            code, answer = await self.send(envelope)
            answer = f"to {envelope.recipient} via {self.config.smarthost}: {answer}"
            if len(batch.rows) > 1:
                answer += f", one report for {len(batch.rows)} recipients"
        now = self.clock()
        results: list[tuple[DueMailback, Verdict, str]] = []
        writes: list[Awaitable[None]] = []
        for row in batch.rows:
            attempt = row.attempts + 1
            if isinstance(envelope, str):
                outcome, detail = Verdict.GAVE_UP, answer
            else:
                outcome = smtp_verdict(code, attempt, self.schedule)
                detail = f"{answer} (attempt {attempt} of {self.schedule.max_attempts})"
            next_at, note = next_due(outcome, attempt, self.schedule, now)
            detail += note
            if row.kind == "dsn" and row.state == DELAYED:  # not the report of an outcome
                detail = f"delay notice {detail}"
            results.append((row, outcome, detail))
            writes.append(self.store.record_mailback(
                row.id, row.message_id, kind=row.kind, outcome=outcome.value,
                attempts=attempt, next_at=next_at, at=now, detail=detail))
        # Issued together, committed together. Not recorded (the store is in trouble): the
        # rows stay due and go again (DueWork).
        await asyncio.gather(*writes)
        for row, outcome, detail in results:
            self.metrics.mailback(row.kind, outcome.value)
            level = logging.WARNING if outcome is Verdict.GAVE_UP else logging.INFO
            about = f" ({row.state})" if row.kind == "dsn" else ""  # which outcome it tells
            log.log(level, "mail back %s%s %s id=%s: %s", row.kind, about, outcome.value,
                    row.message_id, detail)


@dataclass(frozen=True)
class Batch:
    """Queued mails that go as one: the DSNs of one mail's recipients that are due together
    (one report, a block each, as an MTA writes it), or a single row."""

    rows: tuple[DueMailback, ...]


def batches(rows: list[DueMailback]) -> list[Batch]:
    """Due rows into batches, in due order: DSN rows about the same mail (same sender,
    Message-ID and ENVID) together; replies, and mails without a Message-ID, alone."""
    groups: dict[tuple[str | int | None, ...], list[DueMailback]] = {}
    for row in rows:
        meta = read_meta(row.meta_json)
        key: tuple[str | int | None, ...] = (row.id,)
        if row.kind == "dsn" and meta.get(MetaKey.MESSAGE_ID):
            key = (meta.get(MetaKey.MAIL_FROM), meta[MetaKey.MESSAGE_ID],
                   meta.get(MetaKey.ENVID))
        groups.setdefault(key, []).append(row)
    return [Batch(tuple(group)) for group in groups.values()]
