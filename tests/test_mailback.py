"""Mail back to email senders end to end: smtplib sends to the real bridge, the simulator
delivers (or fails) the SMS, and a real aiosmtpd smarthost on loopback receives the delivery
status notification or the SMS reply; smarthosts that refuse, stall or are not there."""

from __future__ import annotations

import asyncio
import email
import json
import re
import sqlite3
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.policy import default as default_policy
from pathlib import Path
from typing import Any, cast

import aiohttp
import pytest
from aiosmtpd.smtp import SMTP, Envelope, Session

from bridge.runtime.app import Bridge
from bridge.outbound.notify.mailback import DELAY_FETCH, Batch, MailBack, batches
from bridge.outbound.notify.mailback import Envelope as MailEnvelope
from bridge.metrics import OutboundMetrics
from bridge.store.base import DueMailback, Store
from bridge.config import Config, SmtpConfig
from tests.conftest import at_least, closed_port, make_config, running_bridge, timeline_until
from tests.soap import call, client
from tests.smtp.test_server import (NUMBER, RCPT, RCPT2, in_thread, mail, message_id_of, send,
                                    smtp)

FAST = {"mail_retry_base_s": 0.05, "mail_retry_max_s": 0.2, "smarthost_timeout_s": 2.0}
SENDER = "ops@acme.example"


@dataclass
class Smarthost:
    """An SMTP server on 127.0.0.1:0 that answers DATA with `script`, in turn ("451 …",
    "550 …"), then 250, and keeps what it took."""

    script: list[str] = field(default_factory=list)
    mails: list[tuple[str, list[str], EmailMessage]] = field(default_factory=list)
    port: int = 0

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.script:
            return self.script.pop(0)
        content = envelope.original_content or b""
        parsed = email.message_from_bytes(content, policy=default_policy)
        assert isinstance(parsed, EmailMessage)
        self.mails.append((str(envelope.mail_from), list(envelope.rcpt_tos), parsed))
        return "250 2.0.0 queued"


@asynccontextmanager
async def smarthost(script: list[str] | None = None, port: int = 0) -> AsyncIterator[Smarthost]:
    host = Smarthost(list(script or []))
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(host, hostname="smarthost.test", enable_SMTPUTF8=True), "127.0.0.1", port)
    host.port = server.sockets[0].getsockname()[1]
    try:
        yield host
    finally:
        server.close()
        await server.wait_closed()


def mail_config(tmp_path: Path, port: int, simulator: dict[str, Any] | None = None,
                **smtp: Any) -> Config:
    return make_config(
        tmp_path, smtp={"smarthost": f"127.0.0.1:{port}", **FAST, **smtp},
        simulator={"enabled": True, "port": 0, "receipt_delay_s": 0.01, **(simulator or {})})


async def send_mail(bridge: Bridge, *, subject: str = "Disk full", message_id: str = "<m1@acme>",
                    sender: str = SENDER, mail_options: list[str] | None = None,
                    rcpt_options: list[str] | None = None) -> str:
    # The text names the Message-ID: the same text again would be a duplicate, not sent.
    data = mail(f"check server 7 ({message_id})", subject=subject, message_id=message_id)

    def go() -> tuple[int, bytes]:
        with smtp(bridge.smtp_port) as client:
            code, text = client.mail(sender, mail_options or [])
            assert code == 250, text
            code, text = client.rcpt(RCPT, rcpt_options or [])
            assert code == 250, text
            return client.data(data)

    code, reply = await in_thread(go)
    assert code == 250, reply
    return message_id_of(reply)



def status_fields(report: EmailMessage) -> tuple[dict[str, str], dict[str, str]]:
    parts = list(report.iter_parts())
    assert [p.get_content_type() for p in parts] == [
        "text/plain", "message/delivery-status", "text/rfc822-headers"]
    per_message, per_recipient = parts[1].get_payload()  # type: ignore[misc]
    return dict(per_message.items()), dict(per_recipient.items())


async def test_success_is_reported_as_notify_asks(tmp_path: Path) -> None:
    async with smarthost() as host, running_bridge(mail_config(tmp_path, host.port)) as bridge:
        message_id = await send_mail(
            bridge, mail_options=["RET=HDRS", "ENVID=batch+2D7"],
            rcpt_options=["NOTIFY=SUCCESS,FAILURE", "ORCPT=rfc822;pager+40acme.example"])
        await at_least(host.mails, 1)
        envelope_from, rcpts, report = host.mails[0]
        assert (envelope_from, rcpts) == ("<>", [SENDER])  # the null reverse path
        assert report.get_content_type() == "multipart/report"
        assert report.get_param("report-type") == "delivery-status"
        assert report["Subject"] == "Delivery Status Notification (Success)"
        assert report["From"] == "Mail Delivery System <MAILER-DAEMON@sms.localhost>"
        assert (report["To"], report["In-Reply-To"], report["X-SMS-Message-Id"]) == (
            SENDER, "<m1@acme>", message_id)
        per_message, per_recipient = status_fields(report)
        assert per_message["Reporting-MTA"] == "dns; sms-bridge.localhost"
        assert per_message["Original-Envelope-Id"] == "batch-7"
        assert {k: per_recipient[k] for k in ("Original-Recipient", "Final-Recipient",
                                              "Action", "Status")} == {
            "Original-Recipient": "rfc822; pager@acme.example",
            "Final-Recipient": f"rfc822; {RCPT}", "Action": "delivered", "Status": "2.0.0"}
        assert "Diagnostic-Code" not in per_recipient
        headers = list(report.iter_parts())[2].get_content()
        assert "Message-ID: <m1@acme>" in headers and "Subject: Disk full" in headers
        events = await timeline_until(bridge, message_id, "dsn")
        assert [e[0] for e in events][-2:] == ["delivered", "dsn"]
        assert events[-1][1] == (f"to {SENDER} via 127.0.0.1:{host.port}: accepted "
                                 f"(attempt 1 of 10)")
        async with aiohttp.ClientSession() as session:
            async with session.get(f"http://127.0.0.1:{bridge.soap_port}/metrics") as r:
                text = await r.text()
        assert 'sms_bridge_mailbacks_total{kind="dsn",outcome="delivered"} 1.0' in text


async def test_a_delay_is_reported_once_to_those_who_asked_then_the_outcome(
        tmp_path: Path) -> None:
    """No receipt comes for a while: the recipient that asked for NOTIFY=DELAY hears once
    that its SMS is still on its way, the one that did not hears nothing; when the receipt
    comes, each gets the outcome it asked for."""
    assert SmtpConfig().dsn_delay_after_s == 3600  # by default: after an hour
    async with smarthost() as host, running_bridge(mail_config(
            tmp_path, host.port, simulator={"receipts": False},
            dsn_delay_after_s=0.3)) as bridge:

        def go() -> tuple[int, bytes]:
            with smtp(bridge.smtp_port) as client:
                client.mail(SENDER)
                client.rcpt(RCPT, ["NOTIFY=SUCCESS,DELAY"])
                client.rcpt(RCPT2, ["NOTIFY=SUCCESS"])
                return client.data(mail("pump 3 stopped", subject="Pump 3",
                                        message_id="<slow@acme>"))

        code, reply = await in_thread(go)
        assert code == 250
        first, second = reply.decode().split()[2].split(",")
        await at_least(host.mails, 1)
        _, _, notice = host.mails[0]
        assert notice["Subject"] == "Delivery Status Notification (Delay)"
        _, block = status_fields(notice)
        assert (block["Final-Recipient"], block["Action"], block["Status"]) == (
            f"rfc822; {RCPT}", "delayed", "4.0.0")
        assert notice["X-SMS-Message-Id"] == first
        events = await timeline_until(bridge, first, "dsn")
        assert [e[0] for e in events][-2:] == ["submitted", "dsn"]
        assert events[-1][1].startswith(f"delay notice to {SENDER} via ")
        await asyncio.sleep(0.8)  # several looks later: still the one notice
        assert len(host.mails) == 1
        assert bridge.simulator is not None
        for submit in list(bridge.simulator.submits):
            await bridge.simulator.send_receipt(submit.message_id)
        # Both asked for SUCCESS: one report or two (as their receipts' commits fall).
        def reported_ids() -> list[str]:
            return [i for _, _, m in host.mails[1:] for i in m.get_all("X-SMS-Message-Id") or []]

        for _ in range(200):
            if len(reported_ids()) >= 2:
                break
            await asyncio.sleep(0.05)
        reported = reported_ids()
        for _, _, outcome in host.mails[1:]:
            assert outcome["Subject"] == "Delivery Status Notification (Success)"
            _, *blocks = list(outcome.iter_parts())[1].get_payload()  # type: ignore[misc]
            assert {b["Action"] for b in blocks} == {"delivered"}
        assert sorted(reported) == sorted([first, second])


async def test_without_delay_notices_notify_delay_is_only_stored(tmp_path: Path) -> None:
    async with smarthost() as host, running_bridge(mail_config(
            tmp_path, host.port, simulator={"receipts": False},
            dsn_delay_after_s=0)) as bridge:
        message_id = await send_mail(bridge, rcpt_options=["NOTIFY=DELAY"])
        with sqlite3.connect(tmp_path / "bridge.db") as conn:
            row = conn.execute("SELECT dsn_notify, dsn_delay_owed, meta_json FROM messages "
                               "WHERE id = ?", (message_id,)).fetchone()
        assert row[:2] == (None, None) and json.loads(row[2])["notify"] == "DELAY"
        assert host.mails == []


async def test_failure_is_reported_unasked_like_any_bounce(tmp_path: Path) -> None:
    async with smarthost() as host, running_bridge(mail_config(
            tmp_path, host.port, simulator={"fail_receipt_every": 1})) as bridge:
        message_id = await send_mail(bridge)  # no NOTIFY: notify_default is FAILURE
        await at_least(host.mails, 1)
        _, rcpts, report = host.mails[0]
        assert rcpts == [SENDER]
        assert report["Subject"] == "Delivery Status Notification (Failure)"
        _, per_recipient = status_fields(report)
        assert (per_recipient["Action"], per_recipient["Status"]) == ("failed", "5.0.0")
        assert per_recipient["Diagnostic-Code"].startswith("X-SMS-Bridge; ")
        body = list(report.iter_parts())[0].get_content()
        assert f"could not be delivered as an SMS to {NUMBER} (undeliverable" in body
        assert message_id in body
        await timeline_until(bridge, message_id, "dsn")


async def test_a_sender_with_a_non_ascii_address_gets_its_report_over_smtputf8(
        tmp_path: Path) -> None:
    sender = "opérations@acme.example"
    async with smarthost() as host, running_bridge(mail_config(tmp_path, host.port)) as bridge:
        message_id = await send_mail(bridge, sender=sender, mail_options=["SMTPUTF8"],
                                     rcpt_options=["NOTIFY=SUCCESS"], subject="Grüße")
        await at_least(host.mails, 1)
        _, rcpts, report = host.mails[0]
        assert (rcpts, report["To"], report["X-SMS-Message-Id"]) == ([sender], sender,
                                                                     message_id)
        assert '("Grüße")' in list(report.iter_parts())[0].get_content()


async def test_hostile_dsn_parameters_cannot_add_headers_to_the_report(tmp_path: Path) -> None:
    async with smarthost() as host, running_bridge(mail_config(tmp_path, host.port)) as bridge:
        await send_mail(bridge, mail_options=["ENVID=e1+0D+0AX-Injected:+20envid"],
                        rcpt_options=["NOTIFY=SUCCESS",
                                      "ORCPT=rfc822;a@b+0D+0A+0D+0AX-Injected:+20orcpt"])
        await at_least(host.mails, 1)
        report = host.mails[0][2]
        per_message, per_recipient = status_fields(report)
        assert per_message["Original-Envelope-Id"] == "e1 X-Injected: envid"
        assert per_recipient["Original-Recipient"] == "rfc822; a@b X-Injected: orcpt"
        blocks = [report, *report.iter_parts(), *list(report.iter_parts())[1].get_payload()]
        assert not [b for b in blocks if "X-Injected" in b]


async def test_nothing_is_mailed_unless_asked_and_never_to_the_null_sender(
        tmp_path: Path) -> None:
    async with smarthost() as host, running_bridge(mail_config(tmp_path, host.port)) as bridge:
        quiet = [
            await send_mail(bridge, message_id="<a@acme>"),  # delivered; default FAILURE only
            await send_mail(bridge, message_id="<b@acme>", rcpt_options=["NOTIFY=NEVER"]),
            await send_mail(bridge, message_id="<c@acme>", sender="",
                            rcpt_options=["NOTIFY=SUCCESS"]),
            await send_mail(bridge, message_id="<d@acme>", rcpt_options=["NOTIFY=DELAY"]),
        ]
        for message_id in quiet:
            await timeline_until(bridge, message_id, "delivered")
        # One that asks, after them: when it arrives, theirs would have come first.
        asked = await send_mail(bridge, message_id="<e@acme>", rcpt_options=["NOTIFY=SUCCESS"])
        await at_least(host.mails, 1)
        await asyncio.sleep(0.3)
        assert [m[2]["X-SMS-Message-Id"] for m in host.mails] == [asked]
        for message_id in quiet:
            events = [e.state for e in await bridge.store.timeline(message_id)]
            assert not [e for e in events if e.startswith("dsn")], events


async def test_an_sms_reply_goes_back_to_the_sender_as_a_threaded_mail(tmp_path: Path) -> None:
    async with smarthost() as host, running_bridge(mail_config(tmp_path, host.port)) as bridge:
        message_id = await send_mail(bridge, subject="Server 7 down", message_id="<alert@acme>")
        await timeline_until(bridge, message_id, "delivered")
        assert bridge.simulator is not None
        await bridge.simulator.send_mo(NUMBER, "ACME", "On it, 5 min ✓", encoding="ucs2")
        await at_least(host.mails, 1)
        envelope_from, rcpts, reply = host.mails[0]
        assert (envelope_from, rcpts) == ("MAILER-DAEMON@sms.localhost", [SENDER])
        [author] = reply["From"].addresses
        assert (author.display_name, author.addr_spec) == (NUMBER, f"{NUMBER}@sms.localhost")
        assert (reply["To"], reply["Subject"]) == (SENDER, "Re: Server 7 down")
        assert (reply["In-Reply-To"], reply["References"]) == ("<alert@acme>", "<alert@acme>")
        assert reply.get_content() == "On it, 5 min ✓\r\n"  # lines as on the wire
        events = await timeline_until(bridge, message_id, "reply_mailed")
        assert events[-1][0] == "reply_mailed"


async def test_a_simulated_handset_answers_and_its_reply_is_mailed_back(tmp_path: Path) -> None:
    """`[simulator] reply_every`: the whole loop with nothing driving the SMSC by hand."""
    handset = {"reply_every": 1, "reply_text": "On my way"}
    async with smarthost() as host, running_bridge(
            mail_config(tmp_path, host.port, simulator=handset)) as bridge:
        message_id = await send_mail(bridge, subject="Pump 3", message_id="<pump@acme>")
        await at_least(host.mails, 1)
        _, rcpts, reply = host.mails[0]
        assert rcpts == [SENDER]
        assert (reply["Subject"], reply["In-Reply-To"]) == ("Re: Pump 3", "<pump@acme>")
        assert reply.get_content() == "On my way\r\n"
        await timeline_until(bridge, message_id, "reply_mailed")
        # Answering the reply mail continues the conversation: the phone gets only the body,
        # not "Re: Pump 3" again. A mail answering someone else's mail keeps its subject.
        assert bridge.simulator is not None
        before = len(bridge.simulator.submits)
        for in_reply_to, text in ((reply["Message-ID"], "Thanks, see you there"),
                                  ("<other@acme>", "Re: Pump 3\nStill down?")):
            answer = mail(text.splitlines()[-1], subject="Re: Pump 3",
                          extra=f"In-Reply-To: {in_reply_to}\r\n")
            code, _ = await in_thread(send, bridge.smtp_port, answer, [RCPT])
            assert code == 250
        await bridge.simulator.wait_for_submits(before + 2)
        assert [s.text for s in bridge.simulator.submits[before:]] == [
            "Thanks, see you there", "Re: Pump 3\nStill down?"]


@pytest.mark.parametrize("case", ["replies off", "null sender", "sent by soap"])
async def test_replies_that_have_nobody_to_mail_stay_in_the_store(tmp_path: Path,
                                                                   case: str) -> None:
    async with smarthost() as host, running_bridge(mail_config(
            tmp_path, host.port, mo_replies=case != "replies off")) as bridge:
        if case == "sent by soap":
            [sub] = await call(await client(bridge.soap_port, "1.1"), "SendSms",
                               recipients=[NUMBER], text="by soap")
            message_id = str(sub.message_id)
        else:
            message_id = await send_mail(bridge, sender="" if case == "null sender" else SENDER)
        await timeline_until(bridge, message_id, "delivered")
        assert bridge.simulator is not None
        await bridge.simulator.send_mo(NUMBER, "ACME", "thanks")
        deadline = time.monotonic() + 5
        db = sqlite3.connect(tmp_path / "bridge.db")
        try:
            while time.monotonic() < deadline:
                rows = db.execute("SELECT reply_to_message_id, text FROM inbound").fetchall()
                if rows:
                    break
                await asyncio.sleep(0.05)
            assert rows == [(message_id, "thanks")]
            await asyncio.sleep(0.3)  # a queued reply would have been tried by now
            assert db.execute("SELECT count(*) FROM mailbacks").fetchone() == (0,)
        finally:
            db.close()
        assert host.mails == []
        events = [e.state for e in await bridge.store.timeline(message_id)]
        assert not [e for e in events if e.startswith("reply")], events


async def test_a_refusing_smarthost_is_retried_and_a_permanent_no_is_final(
        tmp_path: Path) -> None:
    async with smarthost(["451 4.3.0 busy", "550 5.7.1 not from you"]) as host, \
            running_bridge(mail_config(tmp_path, host.port)) as bridge:
        first = await send_mail(bridge, message_id="<r1@acme>", rcpt_options=["NOTIFY=SUCCESS"])
        events = await timeline_until(bridge, first, "dsn_failed")
        # 451 → retried; the retry meets 550 → given up at once, attempts left or not.
        assert [e[0] for e in events][-2:] == ["dsn_retry", "dsn_failed"]
        assert "451 4.3.0 busy (attempt 1 of 10), next in 0.05 s" in events[-2][1]
        assert "550 5.7.1 not from you (attempt 2 of 10)" in events[-1][1]
        second = await send_mail(bridge, message_id="<r2@acme>", rcpt_options=["NOTIFY=SUCCESS"])
        await at_least(host.mails, 1)
        assert host.mails[0][2]["X-SMS-Message-Id"] == second


async def test_an_absent_smarthost_gives_up_after_max_attempts(tmp_path: Path) -> None:
    config = mail_config(tmp_path, closed_port(), mail_max_attempts=3)
    async with running_bridge(config) as bridge:
        message_id = await send_mail(bridge, rcpt_options=["NOTIFY=SUCCESS"])
        events = await timeline_until(bridge, message_id, "dsn_failed")
        assert [e[0] for e in events][-3:] == ["dsn_retry", "dsn_retry", "dsn_failed"]
        assert "(attempt 3 of 3)" in events[-1][1]


async def test_dsns_queued_before_a_restart_go_after_it_one_report_per_mail(
        tmp_path: Path) -> None:
    numbers = ["+447400123456", "+447400123457", "+447400123458"]
    port = closed_port()
    config = mail_config(tmp_path, port, mail_retry_base_s=0.05, mail_retry_max_s=0.1)
    async with running_bridge(config) as bridge:
        code, reply = await asyncio.to_thread(
            send, bridge.smtp_port, mail("to three", message_id="<three@acme>"),
            [f"{n}@sms.localhost" for n in numbers], rcpt_options=["NOTIFY=SUCCESS"])
        assert code == 250, reply
        ids = reply.decode().split()[2].split(",")
        assert len(ids) == 3, reply
        for message_id in ids:
            await timeline_until(bridge, message_id, "dsn_retry")
    async with smarthost(port=port) as host, running_bridge(config) as bridge:
        for message_id in ids:
            events = await timeline_until(bridge, message_id, "dsn")
            # Attempts so far differ by how often each was tried before the restart.
            assert re.search(r"accepted, one report for 3 recipients \(attempt \d+ of 10\)$",
                             events[-1][1]), events
        [(_, _, report)] = host.mails  # one DSN for the mail, a block per recipient
        assert report.get_all("X-SMS-Message-Id") == ids
        _, *blocks = list(report.iter_parts())[1].get_payload()  # type: ignore[misc]
        assert [(b["Final-Recipient"], b["Action"]) for b in blocks] == [
            (f"rfc822; {n}@sms.localhost", "delivered") for n in numbers]


def test_batches_group_one_mails_dsns_and_nothing_else() -> None:
    def row(id_: int, kind: str = "dsn", **meta: str) -> DueMailback:
        return DueMailback(id=id_, kind=kind, message_id=f"m{id_}", state="delivered", at=1.0,
                           attempts=0, recipient=NUMBER, meta_json=json.dumps(meta),
                           created_at=0.0, parts=1, parts_delivered=1, error=None,
                           error_detail=None, inbound_id=f"i{id_}" if kind == "reply" else None,
                           inbound_source=None, inbound_text=None)
    a = {"mail_from": SENDER, "message_id": "<a@acme>"}
    rows = [row(1, **a), row(2, "reply", **a), row(3, **{**a, "envid": "x"}), row(4, **a),
            row(5, mail_from=SENDER), row(6, mail_from=SENDER),
            row(7, **{**a, "mail_from": "other@acme.example"})]
    assert [[r.id for r in b.rows] for b in batches(rows)] == [[1, 4], [2], [3], [5], [6], [7]]


def test_a_delay_notice_overtaken_by_the_outcome_is_not_mailed(tmp_path: Path) -> None:
    def row(id_: int, state: str, message_state: str) -> DueMailback:
        return DueMailback(id=id_, kind="dsn", message_id=f"m{id_}", state=state, at=1.0,
                           attempts=0, recipient=NUMBER,
                           meta_json=json.dumps({"mail_from": SENDER, "message_id": "<a@b>"}),
                           created_at=0.0, parts=1, parts_delivered=1, error=None,
                           error_detail=None, inbound_id=None, inbound_source=None,
                           inbound_text=None, message_state=message_state)
    config = mail_config(tmp_path, 25)
    back = MailBack(config.smtp, cast(Store, None), cast(OutboundMetrics, None), owner="test")
    stale = row(1, "delayed", "delivered")
    assert back.envelope(Batch((stale,))) == "it is delivered now: no longer delayed"
    envelope = back.envelope(Batch((stale, row(2, "delayed", "submitted"))))
    assert isinstance(envelope, MailEnvelope)
    report = email.message_from_bytes(envelope.content, policy=default_policy)
    assert report["X-SMS-Message-Id"] == "m2" and len(report.get_all("X-SMS-Message-Id")) == 1


async def test_delay_looks_go_on_while_each_comes_back_full(tmp_path: Path) -> None:
    """Mails asking for DELAY can come faster than one look a few seconds reads: looks follow
    each other while they come back full, then wait their turn."""
    looks: list[int] = []

    class Looks:
        async def queue_delay_dsns(self, *, accepted_before: float, now: float,
                                   limit: int) -> tuple[int, int]:
            assert (accepted_before, now) == (940.0, 1000.0)
            looks.append(limit)
            return (limit, 3) if len(looks) < 3 else (7, 1)

        async def claim_mailbacks(self, owner: str, *, now: float, hold_until: float,
                                  limit: int) -> list[DueMailback]:
            return []

    config = mail_config(tmp_path, 25, dsn_delay_after_s=60)
    back = MailBack(config.smtp, cast(Store, Looks()), cast(OutboundMetrics, None), owner="test",
                    clock=lambda: 1000.0)
    assert await back._due(4) == []
    assert looks == [DELAY_FETCH] * 3
    assert await back._due(4) == []  # the next look waits its turn
    assert len(looks) == 3


@pytest.mark.parametrize("smtp", [{}, {"smarthost": "127.0.0.1:25", "dsn": False}],
                         ids=["no smarthost", "dsn off"])
async def test_without_a_smarthost_or_with_dsn_off_no_dsn_is_queued(
        tmp_path: Path, smtp: dict[str, Any]) -> None:
    async with running_bridge(make_config(tmp_path, smtp=smtp)) as bridge:
        message_id = await send_mail(bridge, rcpt_options=["NOTIFY=SUCCESS"])
        await timeline_until(bridge, message_id, "delivered")
    db = sqlite3.connect(tmp_path / "bridge.db")
    try:
        assert db.execute("SELECT dsn_notify, json_extract(meta_json, '$.notify') "
                          "FROM messages").fetchall() == [(None, "SUCCESS")]
        assert db.execute("SELECT count(*) FROM mailbacks").fetchone() == (0,)
    finally:
        db.close()
