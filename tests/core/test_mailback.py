"""Mail back, the pure part: NOTIFY, which outcomes are reported, status codes, smarthost
verdicts, and the DSN and reply mails as a mail reader parses them back."""

from __future__ import annotations

import dataclasses
import email
import email.policy
from email.message import EmailMessage, Message
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge.core.callbacks import RetrySchedule, Verdict
from bridge.core.mailback import (
    DELAYED,
    REPLY_ID_PREFIX,
    DsnFacts,
    ReplyFacts,
    answers_an_sms,
    dsn_conditions,
    dsn_mail,
    dsn_status,
    parse_notify,
    reply_mail,
    smtp_verdict,
)

NUMBER = "+447400123456"
RCPT = f"{NUMBER}@sms.localhost"
AT, ARRIVAL = 1_700_000_100.0, 1_700_000_000.0  # Tue, 14 Nov 2023 22:15:00 / 22:13:20 UTC
FAILED = DsnFacts(
    reporting_mta="bridge.example", report_from="postmaster@bridge.example",
    to="alice@example.com", final_recipient=RCPT, original_recipient=f"rfc822;{RCPT}",
    envid="ENV-1", original_message_id="<orig-1@example.com>", subject="Hi there",
    message_id="m-1", number=NUMBER, state="failed", at=AT, arrival=ARRIVAL, parts=2,
    parts_delivered=1, error="INVALID_DESTINATION", error_detail="no such number",
    report_id="r-1")
DELIVERED = dataclasses.replace(
    FAILED, state="delivered", original_recipient=None, envid=None,
    original_message_id=None, subject=None, parts_delivered=2, error=None, error_detail=None)
REPLY = ReplyFacts(domain="sms.localhost", to="alice@example.com", number=NUMBER,
                   text="yes please", received_at=AT, original_message_id="<orig-1@example.com>",
                   subject="Hello", reply_id="rep-1")
SCHEDULE = RetrySchedule(max_attempts=3, base_s=30, max_s=3600)


def parse(raw: bytes) -> EmailMessage:
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed


def dsn(**changes: Any) -> EmailMessage:
    return parse(dsn_mail(dataclasses.replace(FAILED, **changes)))


def parts(report: EmailMessage) -> list[EmailMessage]:
    found = list(report.iter_parts())
    assert all(isinstance(p, EmailMessage) for p in found)
    return found  # type: ignore[return-value]


def status_blocks(report: EmailMessage) -> list[dict[str, str]]:
    part = parts(report)[1]
    assert part.get_content_type() == "message/delivery-status"
    blocks = part.get_payload()
    assert isinstance(blocks, list)
    out = []
    for block in blocks:
        assert isinstance(block, Message)
        out.append({k: str(v) for k, v in block.items()})
    return out


# ------------------------------------------------------------------ NOTIFY and conditions

@pytest.mark.parametrize(("raw", "words"), [
    ("NEVER", set()), ("never", set()), (" Never ", set()),
    ("success,FAILURE", {"SUCCESS", "FAILURE"}), ("FAILURE", {"FAILURE"}),
    ("SUCCESS, FAILURE, DELAY", {"SUCCESS", "FAILURE", "DELAY"}), ("delay", {"DELAY"}),
])
def test_parse_notify_accepts(raw: str, words: set[str]) -> None:
    assert parse_notify(raw) == frozenset(words)


@pytest.mark.parametrize("raw", ["", ",", "SUCCESS,", "SUCCESS,SUCCESS", "success,SUCCESS",
                                 "NEVER,SUCCESS", "NEVER,NEVER", "SUCCESS;FAILURE", "WARN"])
def test_parse_notify_refuses(raw: str) -> None:
    with pytest.raises(ValueError, match="NOTIFY"):
        parse_notify(raw)


@pytest.mark.parametrize(("notify", "default", "reverse_path", "delays", "expected"), [
    (None, "FAILURE", "alice@example.com", True, "FAILURE"),  # unasked: the default
    (None, "SUCCESS,FAILURE", "alice@example.com", True, "SUCCESS,FAILURE"),
    ("SUCCESS", "FAILURE", "alice@example.com", True, "SUCCESS"),  # the default is ignored
    ("FAILURE,SUCCESS", "NEVER", "alice@example.com", True, "SUCCESS,FAILURE"),  # fixed order
    ("delay,failure,success", "NEVER", "a@b", True, "SUCCESS,FAILURE,DELAY"),
    ("delay,failure,success", "NEVER", "a@b", False, "SUCCESS,FAILURE"),  # no delay notices
    ("NEVER", "SUCCESS,FAILURE", "alice@example.com", True, None),
    (None, "NEVER", "alice@example.com", True, None),
    ("DELAY", "FAILURE", "alice@example.com", True, "DELAY"),  # a delay notice, no outcome
    ("DELAY", "FAILURE", "alice@example.com", False, None),
    (None, "FAILURE,DELAY", "alice@example.com", True, "FAILURE,DELAY"),
    ("SUCCESS,FAILURE,DELAY", "FAILURE", "", True, None),  # null reverse path: never
    (None, "FAILURE", "", True, None),
])
def test_dsn_conditions(notify: str | None, default: str, reverse_path: str, delays: bool,
                        expected: str | None) -> None:
    words = parse_notify(notify) if notify is not None else None
    assert dsn_conditions(words, parse_notify(default), reverse_path,
                          delays=delays) == expected


# ------------------------------------------------------------------ status codes and verdicts

@pytest.mark.parametrize(("state", "error", "status"), [
    ("delivered", None, "2.0.0"),
    ("delivered", "INTERNAL_ERROR", "2.0.0"),
    ("expired", None, "5.4.7"),
    ("expired", "INVALID_DESTINATION", "5.4.7"),
    ("failed", "INVALID_DESTINATION", "5.1.1"),
    ("failed", "INTERNAL_ERROR", "5.3.0"),  # 4.3.0 made permanent
    ("failed", "OVER_LIMIT", "5.7.1"),  # 4.7.1 made permanent
    ("undeliverable", None, "5.0.0"),
    ("undeliverable", "", "5.0.0"),
    ("failed", "NO_SUCH_ERROR", "5.0.0"),
])
def test_dsn_status(state: str, error: str | None, status: str) -> None:
    assert dsn_status(state, error) == status


@pytest.mark.parametrize(("waiting", "status"), [("queued", "4.4.1"), ("submitted", "4.0.0")])
def test_a_delay_is_transient(waiting: str, status: str) -> None:
    assert dsn_status(DELAYED, None, waiting) == status


@pytest.mark.parametrize(("code", "attempts", "expected"), [
    (250, 1, Verdict.DELIVERED), (251, 3, Verdict.DELIVERED),
    (550, 1, Verdict.GAVE_UP), (554, 1, Verdict.GAVE_UP),
    (451, 1, Verdict.RETRY), (451, 2, Verdict.RETRY), (451, 3, Verdict.GAVE_UP),
    (None, 1, Verdict.RETRY), (None, 2, Verdict.RETRY), (None, 3, Verdict.GAVE_UP),
    (354, 1, Verdict.RETRY), (600, 1, Verdict.RETRY),
])
def test_smtp_verdict(code: int | None, attempts: int, expected: Verdict) -> None:
    assert smtp_verdict(code, attempts, SCHEDULE) is expected


# ------------------------------------------------------------------ the DSN

def test_failure_dsn_structure_and_fields() -> None:
    raw = dsn_mail(FAILED)
    assert raw.isascii()
    assert b"\n" not in raw.replace(b"\r\n", b"") and b"\r" not in raw.replace(b"\r\n", b"")
    report = parse(raw)
    assert report.get_content_type() == "multipart/report"
    assert report.get_param("report-type") == "delivery-status"
    assert [p.get_content_type() for p in parts(report)] == [
        "text/plain", "message/delivery-status", "text/rfc822-headers"]
    assert (report["From"], report["To"], report["Subject"], report["Auto-Submitted"]) == (
        "Mail Delivery System <postmaster@bridge.example>", "alice@example.com",
        "Delivery Status Notification (Failure)", "auto-replied")
    assert (report["Message-ID"], report["In-Reply-To"], report["References"]) == (
        "<r-1@bridge.example>", "<orig-1@example.com>", "<orig-1@example.com>")
    assert report["X-SMS-Message-Id"] == "m-1"
    assert report["Date"] == "Tue, 14 Nov 2023 22:15:00 +0000"
    assert status_blocks(report) == [
        {"Reporting-MTA": "dns; bridge.example", "Original-Envelope-Id": "ENV-1",
         "Arrival-Date": "Tue, 14 Nov 2023 22:13:20 +0000"},
        {"Original-Recipient": f"rfc822; {RCPT}", "Final-Recipient": f"rfc822; {RCPT}",
         "Action": "failed", "Status": "5.1.1",
         "Diagnostic-Code": "X-SMS-Bridge; INVALID_DESTINATION: no such number",
         "Last-Attempt-Date": "Tue, 14 Nov 2023 22:15:00 +0000"}]
    text = parts(report)[0].get_content()
    assert "could not be delivered as an SMS to +447400123456" in text
    assert "Parts delivered: 1 of 2" in text and "Status: 5.1.1" in text
    headers = parts(report)[2].get_content().replace("\r\n", "\n")
    assert headers == (f"From: alice@example.com\nTo: {RCPT}\n"
                       "Message-ID: <orig-1@example.com>\nSubject: Hi there\n")


def test_one_report_for_several_recipients_of_a_mail() -> None:
    other = dataclasses.replace(
        DELIVERED, final_recipient="+447400123457@sms.localhost", number="+447400123457",
        message_id="m-2", at=AT + 60, report_id="ignored")
    report = parse(dsn_mail(FAILED, other))
    assert report["Subject"] == "Delivery Status Notification (Failure)"  # one failed
    assert report["Message-ID"] == "<r-1@bridge.example>"  # the first's
    assert report.get_all("X-SMS-Message-Id") == ["m-1", "m-2"]
    assert report["Date"] == "Tue, 14 Nov 2023 22:16:00 +0000"  # the latest outcome
    per_message, *blocks = status_blocks(report)
    assert per_message["Original-Envelope-Id"] == "ENV-1"
    assert [(b["Final-Recipient"], b["Action"], b["Status"]) for b in blocks] == [
        (f"rfc822; {RCPT}", "failed", "5.1.1"),
        ("rfc822; +447400123457@sms.localhost", "delivered", "2.0.0")]
    text = parts(report)[0].get_content()
    assert "could not be delivered as an SMS to +447400123456" in text
    assert "was delivered as an SMS to +447400123457" in text
    assert f"To: {RCPT}, +447400123457@sms.localhost" in parts(report)[2].get_content()
    assert parse(dsn_mail(DELIVERED, other))["Subject"] == (
        "Delivery Status Notification (Success)")


def test_a_delay_notice_says_it_is_still_on_its_way() -> None:
    late = dataclasses.replace(FAILED, state=DELAYED, waiting="submitted", parts_delivered=0,
                               error=None, error_detail=None, report_id="m-1.delayed")
    report = parse(dsn_mail(late))
    assert report["Subject"] == "Delivery Status Notification (Delay)"
    _, block = status_blocks(report)
    assert (block["Action"], block["Status"]) == ("delayed", "4.0.0")
    assert block["Diagnostic-Code"] == "X-SMS-Bridge; submitted: awaiting the receipt"
    text = parts(report)[0].get_content()
    assert "has not been delivered as an SMS to +447400123456 yet" in text
    assert "no action is needed" in text and "Status: 4.0.0" in text
    queued = parse(dsn_mail(dataclasses.replace(late, waiting="queued")))
    assert status_blocks(queued)[1]["Status"] == "4.4.1"
    assert "no SMSC has taken it yet" in parts(queued)[0].get_content()
    # With a final outcome in the same report: the worst decides the subject.
    assert parse(dsn_mail(late, DELIVERED))["Subject"] == "Delivery Status Notification (Delay)"
    assert parse(dsn_mail(late, FAILED))["Subject"] == "Delivery Status Notification (Failure)"


def test_success_dsn_leaves_out_what_was_not_given() -> None:
    report = parse(dsn_mail(DELIVERED))
    assert report["Subject"] == "Delivery Status Notification (Success)"
    assert report["In-Reply-To"] is None and report["References"] is None
    assert status_blocks(report) == [
        {"Reporting-MTA": "dns; bridge.example",
         "Arrival-Date": "Tue, 14 Nov 2023 22:13:20 +0000"},
        {"Final-Recipient": f"rfc822; {RCPT}", "Action": "delivered", "Status": "2.0.0",
         "Last-Attempt-Date": "Tue, 14 Nov 2023 22:15:00 +0000"}]
    assert "was delivered as an SMS to +447400123456." in parts(report)[0].get_content()
    assert parts(report)[2].get_content().replace("\r\n", "\n") == f"From: alice@example.com\nTo: {RCPT}\n"


@pytest.mark.parametrize(("changes", "status", "diagnostic"), [
    ({"state": "expired", "error": None, "error_detail": None}, "5.4.7", "X-SMS-Bridge; expired"),
    ({"state": "undeliverable", "error": None, "error_detail": "UNDELIV"}, "5.0.0",
     "X-SMS-Bridge; undeliverable: UNDELIV"),
    ({"error": "INTERNAL_ERROR", "error_detail": None}, "5.3.0",
     "X-SMS-Bridge; INTERNAL_ERROR"),
])
def test_failure_kinds_in_the_status_block(changes: dict[str, Any], status: str,
                                           diagnostic: str) -> None:
    recipient = status_blocks(dsn(**changes))[1]
    assert (recipient["Action"], recipient["Status"], recipient["Diagnostic-Code"]) == (
        "failed", status, diagnostic)


def test_multiline_subject_and_detail_stay_on_one_header_line() -> None:
    report = dsn(subject="Hi\r\nBcc: evil@example.com", error_detail="a\nb\r\nX-Evil: 1",
                 original_message_id="<o@x>\r\nBcc: evil@example.com")
    assert report["Bcc"] is None and report["X-Evil"] is None
    assert report["In-Reply-To"] == "<o@x> Bcc: evil@example.com"
    assert status_blocks(report)[1]["Diagnostic-Code"] == (
        "X-SMS-Bridge; INVALID_DESTINATION: a b X-Evil: 1")
    assert "Subject: Hi Bcc: evil@example.com\r\n" in parts(report)[2].get_content()


PLAIN_NAMES = [k for k in parse(dsn_mail(FAILED)).keys()]


@given(st.text(), st.text())
def test_any_subject_and_detail_make_an_ascii_report_with_the_same_headers(
        subject: str, detail: str) -> None:
    raw = dsn_mail(dataclasses.replace(FAILED, subject=subject, error_detail=detail))
    assert raw.isascii()
    assert all(b"\r" not in line and b"\n" not in line for line in raw.split(b"\r\n"))
    report = parse(raw)
    assert list(report.keys()) == PLAIN_NAMES
    assert [p.get_content_type() for p in parts(report)] == [
        "text/plain", "message/delivery-status", "text/rfc822-headers"]
    blocks = status_blocks(report)
    assert list(blocks[1]) == ["Original-Recipient", "Final-Recipient", "Action", "Status",
                               "Diagnostic-Code", "Last-Attempt-Date"]
    assert "\n" not in blocks[1]["Diagnostic-Code"] and "\r" not in blocks[1]["Diagnostic-Code"]


# ------------------------------------------------------------------ the reply

def reply(**changes: Any) -> EmailMessage:
    return parse(reply_mail(dataclasses.replace(REPLY, **changes)))


def test_reply_headers_and_body() -> None:
    raw = reply_mail(REPLY)
    assert b'\r\nFrom: "+447400123456" <+447400123456@sms.localhost>\r\n' in b"\r\n" + raw
    mail = parse(raw)
    [sender] = mail["From"].addresses
    assert (sender.display_name, sender.addr_spec) == (NUMBER, RCPT)
    assert (mail["To"], mail["Subject"], mail["Message-ID"]) == (
        "alice@example.com", "Re: Hello", "<rep-1@sms.localhost>")
    assert (mail["In-Reply-To"], mail["References"]) == (
        "<orig-1@example.com>", "<orig-1@example.com>")
    assert mail["Date"] == "Tue, 14 Nov 2023 22:15:00 +0000"
    assert mail.get_content_type() == "text/plain"
    assert mail.get_content() == "yes please\r\n"


def test_reply_without_an_original_message_id_is_not_threaded() -> None:
    mail = reply(original_message_id=None)
    assert mail["In-Reply-To"] is None and mail["References"] is None


@pytest.mark.parametrize(("subject", "expected"), [
    (None, "SMS from +447400123456"), ("", "SMS from +447400123456"),
    ("  \r\n ", "SMS from +447400123456"), ("Hello", "Re: Hello"), ("RE: x", "RE: x"),
    ("re:x", "re:x"), ("Fwd: x", "Re: Fwd: x"), ("Hi\r\nBcc: e@x", "Re: Hi Bcc: e@x"),
    ("Grüße", "Re: Grüße"),
])
def test_reply_subject(subject: str | None, expected: str) -> None:
    mail = reply(subject=subject)
    assert mail["Subject"] == expected and mail["Bcc"] is None


@pytest.mark.parametrize(("in_reply_to", "answers"), [
    (None, False), ("", False),
    ("<reply.01ab@sms.localhost>", True),
    ("<reply.01ab@SMS.Localhost>", True),
    ("<orig-1@example.com>\r\n <reply.01ab@sms.localhost>", True),
    ("<reply.01ab@other.example>", False),  # another gateway's reply
    ("<dsn.01ab.delivered@sms.localhost>", False),  # a report is no conversation
    ("<xreply.01ab@sms.localhost>", False),
    ("reply.01ab@sms.localhost", False),  # not a msg-id
    ("<reply.01ab@sms.localhost.evil>", False),
])
def test_answers_an_sms(in_reply_to: str | None, answers: bool) -> None:
    assert answers_an_sms(in_reply_to, ("sms.localhost", "sms2.localhost")) is answers


@given(st.text(alphabet="0123456789abcdef", min_size=1, max_size=40))
def test_an_answer_to_any_reply_mail_is_recognised(inbound_id: str) -> None:
    mail = parse(reply_mail(dataclasses.replace(REPLY, reply_id=REPLY_ID_PREFIX + inbound_id)))
    assert answers_an_sms(mail["Message-ID"], ["sms.localhost"])
    assert not answers_an_sms(mail["Message-ID"], ["other.example"])


def _lines(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


@given(st.text())
def test_any_reply_text_comes_back(text: str) -> None:
    """Line endings become CRLF on the wire (a lone CR too): the text is what comes back once
    line endings are compared as such, with a final newline added when it had none."""
    raw = reply_mail(dataclasses.replace(REPLY, text=text))
    assert raw.isascii()
    expected = _lines(text)
    assert _lines(parse(raw).get_content()) == (
        expected if expected.endswith("\n") else expected + "\n")


@pytest.mark.parametrize("text", ["a" * 1200, "ü" * 700, "a" * 998 + "\n" + "b" * 998])
def test_long_reply_lines_fit_smtp(text: str) -> None:
    raw = reply_mail(dataclasses.replace(REPLY, text=text))
    assert max(len(line) for line in raw.split(b"\r\n")) <= 998
    assert _lines(parse(raw).get_content()) == text + "\n"


def test_long_reply_line_with_a_form_feed_fits_smtp() -> None:
    raw = reply_mail(dataclasses.replace(REPLY, text="a" * 600 + "\x0c" + "b" * 600))
    assert max(len(line) for line in raw.split(b"\r\n")) <= 998
