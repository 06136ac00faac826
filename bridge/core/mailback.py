"""Mail back to the people who sent by email (SPEC §6 SMTP): delivery status notifications
(RFC 3461/3464) when a message becomes final, and SMS replies (MO) threaded to the mail they
answer.

Pure: which outcomes a recipient asked to hear of, the mails themselves as bytes, and what a
smarthost's answer means. The store queues a mail in the transaction that makes the message
final (or stores the MO), `bridge.outbound.notify.mailback` hands it to the smarthost.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from email import policy
from email.message import EmailMessage
from email.utils import format_datetime

from bridge.core.callbacks import RetrySchedule, Verdict
from bridge.core.errors import ERROR_TABLE, ErrorName

NOTIFY_WORDS = frozenset({"SUCCESS", "FAILURE", "DELAY"})
#: The outcomes a DSN reports, in the order `dsn_conditions` writes them.
REPORTED = ("SUCCESS", "FAILURE", "DELAY")
#: A delay notice's state in place of a final one: the message is still on its way.
DELAYED = "delayed"


def parse_notify(raw: str) -> frozenset[str]:
    """RFC 3461 NOTIFY: "NEVER" (the empty set) or a list of SUCCESS, FAILURE, DELAY, each at
    most once, any case. ValueError otherwise."""
    words = [w.strip().upper() for w in raw.split(",")]
    if words == ["NEVER"]:
        return frozenset()
    if len(set(words)) != len(words) or not set(words) <= NOTIFY_WORDS:
        raise ValueError(f"NOTIFY must be NEVER or a list of SUCCESS, FAILURE, DELAY: {raw!r}")
    return frozenset(words)


def dsn_conditions(notify: frozenset[str] | None, default: frozenset[str],
                   reverse_path: str, *, delays: bool) -> str | None:
    """Which outcomes are mailed back for one recipient, e.g. "SUCCESS,FAILURE", or None:
    the final ones it asked for, and DELAY (one notice while it is still on its way) when it
    asked and `delays` are sent at all. The recipient's NOTIFY words when given
    (`parse_notify`), else `default` (an MTA bounces failures unasked). Never to the null
    reverse path (RFC 5321 §4.5.5: no reports about reports)."""
    if not reverse_path:
        return None
    wanted = notify if notify is not None else default
    words = [w for w in REPORTED if w in wanted and (delays or w != "DELAY")]
    return ",".join(words) or None


def smtp_verdict(code: int | None, attempts: int, schedule: RetrySchedule) -> Verdict:
    """After attempt number `attempts` (from 1) got SMTP reply `code` (None: no answer, a
    refused connection or a timeout). 2xx: the smarthost took it. 5xx: it never will, so
    no retry. Anything else is tried again while attempts remain."""
    if code is not None and 200 <= code < 300:
        return Verdict.DELIVERED
    if code is not None and 500 <= code < 600:
        return Verdict.GAVE_UP
    return Verdict.RETRY if attempts < schedule.max_attempts else Verdict.GAVE_UP


#: A delay notice by the state its message waits in: (RFC 3463 status, Diagnostic-Code text,
#: the explanation's words). Queued: no SMSC has taken it (4.4.1, as for a host that does not
#: answer); otherwise the SMSC has it and no receipt has come (4.0.0: nothing more is known).
_DELAYS = {"queued": ("4.4.1", "no SMSC has taken it yet", "no SMSC has taken it yet"),
           "submitted": ("4.0.0", "awaiting the receipt",
                         "the SMSC has it; the phone has not confirmed it yet")}


def _delay(waiting: str | None) -> tuple[str, str, str]:
    return _DELAYS.get(waiting or "", _DELAYS["submitted"])


def dsn_status(state: str, error: str | None, waiting: str | None = None) -> str:
    """The RFC 3463 status code of a final state: 2.0.0 delivered, 5.4.7 expired (delivery
    time expired), else the §5 error's own enhanced code made permanent (the message is
    final), 5.0.0 when there is none (a receipt that said UNDELIV, say). A delay notice
    (`DELAYED`, with the state the message `waiting` in) is transient: 4.4.1 while no SMSC has
    taken it, 4.0.0 while the SMSC has it and no receipt has come."""
    if state == DELAYED:
        return _delay(waiting)[0]
    if state == "delivered":
        return "2.0.0"
    if state == "expired":
        return "5.4.7"
    try:
        enhanced = ERROR_TABLE[ErrorName(error)].smtp.enhanced if error else "5.0.0"
    except ValueError:
        enhanced = "5.0.0"
    return "5" + enhanced[1:]


def _date(at: float) -> str:
    return format_datetime(datetime.fromtimestamp(at, tz=timezone.utc))


def one_line(text: str, limit: int = 900) -> str:
    """Header-safe: no line breaks or control characters can reach a header."""
    return " ".join("".join(c if c.isprintable() else " " for c in text).split())[:limit]


def _cte(text: str) -> str:
    """7bit when it can be, else quoted-printable: no smarthost needs 8BITMIME for us."""
    # bytes.splitlines: only CR and LF end a line on the wire (str.splitlines also breaks
    # at form feeds and other separators, which SMTP would not).
    return "7bit" if text.isascii() and all(len(line) <= 998
                                            for line in text.encode().splitlines()) \
        else "quoted-printable"


def _policy(*addresses: str) -> "policy.EmailPolicy[EmailMessage]":
    """CRLF lines; UTF-8 headers (SMTPUTF8) only when an address needs them."""
    utf8 = any(not a.isascii() for a in addresses)
    return policy.SMTP.clone(utf8=utf8)


@dataclass(frozen=True)
class DsnFacts:
    """One recipient's outcome as a DSN reports it."""

    reporting_mta: str  # our host name ([smtp] hostname)
    report_from: str  # the From address of reports ([smtp] report_from)
    to: str  # the envelope sender of the original mail
    final_recipient: str  # the RCPT TO address, e.g. +447400123456@sms.localhost
    original_recipient: str | None  # ORCPT as "type;address"
    envid: str | None  # ENVID (RET is not needed: headers are all the bridge keeps)
    original_message_id: str | None
    subject: str | None
    message_id: str  # the SMS message id
    number: str  # E.164
    state: str  # the final MessageState value, or DELAYED for a delay notice
    at: float  # when it became final (a delay notice: when it was found late)
    arrival: float  # when the bridge accepted the mail
    parts: int
    parts_delivered: int
    error: str | None  # an ErrorName value
    error_detail: str | None
    report_id: str  # unique per report: the local part of the report's Message-ID
    waiting: str | None = None  # a delay notice: the message's state then (queued, submitted)


def dsn_mail(facts: DsnFacts, *more: DsnFacts) -> bytes:
    """A multipart/report (RFC 3464): a human-readable explanation, the machine-readable
    message/delivery-status, and the headers of the original mail as far as the bridge keeps
    them (it stores the SMS text, not the mail, so RET=FULL gets headers too). `more`: other
    recipients of the same mail, reported in the same DSN (one block each); the envelope,
    the original mail and the report's id come from `facts`."""
    everyone = (facts, *more)
    statuses = [dsn_status(f.state, f.error, f.waiting) for f in everyone]
    outcome = "Success" if all(f.state == "delivered" for f in everyone) else \
        "Delay" if all(f.state in ("delivered", DELAYED) for f in everyone) else "Failure"
    mail_policy = _policy(facts.to, *(f.final_recipient for f in everyone))
    report = EmailMessage(policy=mail_policy)
    report["From"] = f"Mail Delivery System <{facts.report_from}>"
    report["To"] = facts.to
    report["Subject"] = f"Delivery Status Notification ({outcome})"
    report["Date"] = _date(max(f.at for f in everyone))
    report["Message-ID"] = f"<{facts.report_id}@{facts.reporting_mta}>"
    report["Auto-Submitted"] = "auto-replied"  # RFC 3834: no replies to this
    if facts.original_message_id:
        original_id = one_line(facts.original_message_id)
        report["In-Reply-To"] = original_id
        report["References"] = original_id
    for f in everyone:
        report["X-SMS-Message-Id"] = f.message_id
    explanation = "\n".join(_dsn_explanation(f, status) for f, status in zip(everyone, statuses))
    report.set_content(explanation, cte=_cte(explanation))
    report.make_mixed()  # becomes multipart/report below; make_mixed keeps the text part
    report.replace_header("Content-Type", "multipart/report")
    report.set_param("report-type", "delivery-status")

    per_message = EmailMessage(policy=mail_policy)
    per_message["Reporting-MTA"] = f"dns; {facts.reporting_mta}"
    if facts.envid:
        per_message["Original-Envelope-Id"] = one_line(facts.envid)
    per_message["Arrival-Date"] = _date(facts.arrival)
    status_part = EmailMessage(policy=mail_policy)
    status_part.set_type("message/delivery-status")
    status_part.set_payload([per_message, *(_per_recipient(f, status, mail_policy)
                                            for f, status in zip(everyone, statuses))])
    del status_part["MIME-Version"]
    report.attach(status_part)

    original = EmailMessage(policy=mail_policy)  # encodes non-ASCII subjects as RFC 2047
    original["From"] = facts.to
    original["To"] = ", ".join(dict.fromkeys(f.final_recipient for f in everyone))
    if facts.original_message_id:
        original["Message-ID"] = one_line(facts.original_message_id)
    if facts.subject:
        original["Subject"] = one_line(facts.subject)
    headers = EmailMessage(policy=mail_policy)
    text = original.as_string().partition("\r\n\r\n")[0].replace("\r\n", "\n") + "\n"
    headers.set_content(text, subtype="rfc822-headers", cte=_cte(text))
    del headers["MIME-Version"]
    report.attach(headers)
    return report.as_bytes()


def _per_recipient(facts: DsnFacts, status: str,
                   mail_policy: "policy.EmailPolicy[EmailMessage]") -> EmailMessage:
    """One recipient's block of the message/delivery-status part."""
    delivered = facts.state == "delivered"
    block = EmailMessage(policy=mail_policy)
    if facts.original_recipient:
        addr_type, _, address = facts.original_recipient.partition(";")
        block["Original-Recipient"] = one_line(f"{addr_type}; {address}")
    block["Final-Recipient"] = f"rfc822; {facts.final_recipient}"
    block["Action"] = "delivered" if delivered else "delayed" if facts.state == DELAYED \
        else "failed"
    block["Status"] = status
    if facts.state == DELAYED:
        block["Diagnostic-Code"] = f"X-SMS-Bridge; {facts.waiting}: {_delay(facts.waiting)[1]}"
    elif not delivered:
        why = facts.error or facts.state
        if facts.error_detail:
            why += f": {facts.error_detail}"
        block["Diagnostic-Code"] = one_line(f"X-SMS-Bridge; {why}")
    block["Last-Attempt-Date"] = _date(facts.at)
    return block


def _dsn_explanation(facts: DsnFacts, status: str) -> str:
    what = f"Your message to {facts.final_recipient}"
    if facts.subject:
        what += f' ("{one_line(facts.subject, 200)}")'
    if facts.state == DELAYED:
        return (f"{what} has not been delivered as an SMS to {facts.number} yet "
                f"({_delay(facts.waiting)[2]}). The bridge keeps trying; no action is needed. "
                f"You will hear again when it is delivered or fails, if you asked to.\n\n"
                f"SMS message id: {facts.message_id}\n"
                f"Parts delivered: {facts.parts_delivered} of {facts.parts}\n"
                f"Status: {status}\n"
                f"Still on its way at: {_date(facts.at)}\n")
    if facts.state == "delivered":
        head = f"{what} was delivered as an SMS to {facts.number}."
    else:
        why = ": ".join(x for x in (facts.error, facts.error_detail) if x)
        head = (f"{what} could not be delivered as an SMS to {facts.number} "
                f"({facts.state}{', ' + why if why else ''}).")
    return (f"{head}\n\n"
            f"SMS message id: {facts.message_id}\n"
            f"Parts delivered: {facts.parts_delivered} of {facts.parts}\n"
            f"Status: {status}\n"
            f"Final state at: {_date(facts.at)}\n")


@dataclass(frozen=True)
class ReplyFacts:
    """An SMS reply (MO) from a number the email sender wrote to."""

    domain: str  # the SMS domain: the reply comes from <number>@domain, so answering it
    # by mail sends an SMS back
    to: str  # the envelope sender of the mail it answers
    number: str  # E.164 of the phone that replied
    text: str
    received_at: float
    original_message_id: str | None  # threads the reply under the mail it answers
    subject: str | None
    reply_id: str  # unique per reply: the local part of its Message-ID


REPLY_ID_PREFIX = "reply."  # the local part of a reply mail's Message-ID: "reply.<inbound id>"
_MSG_IDS = re.compile(r"<([^<>@\s]+)@([^<>\s]+)>")


def answers_an_sms(in_reply_to: str | None, domains: Iterable[str]) -> bool:
    """Whether a mail answers a reply mail of this bridge (In-Reply-To names one): then it
    continues a conversation with a phone, and its subject ("Re: …") is no news to it."""
    if not in_reply_to:
        return False
    ours = {d.lower() for d in domains}
    return any(local.startswith(REPLY_ID_PREFIX) and domain.lower() in ours
               for local, domain in _MSG_IDS.findall(in_reply_to))


def reply_mail(facts: ReplyFacts) -> bytes:
    """A plain text mail From the number's address To the original sender, threaded with
    In-Reply-To and References, and a subject that keeps mail clients' threads together."""
    sender = f"{facts.number}@{facts.domain}"
    mail = EmailMessage(policy=_policy(facts.to, sender))
    mail["From"] = f'"{facts.number}" <{sender}>'
    mail["To"] = facts.to
    subject = one_line(facts.subject or "")
    if not subject:
        subject = f"SMS from {facts.number}"
    elif not subject.lower().startswith("re:"):
        subject = f"Re: {subject}"
    mail["Subject"] = subject
    mail["Date"] = _date(facts.received_at)
    mail["Message-ID"] = f"<{facts.reply_id}@{facts.domain}>"
    if facts.original_message_id:
        original_id = one_line(facts.original_message_id)
        mail["In-Reply-To"] = original_id
        mail["References"] = original_id
    mail.set_content(facts.text if facts.text.endswith("\n") else facts.text + "\n",
                     cte=_cte(facts.text))
    return mail.as_bytes()
