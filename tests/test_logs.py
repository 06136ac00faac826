"""Structured logs (SPEC §8): `sms-bridge serve` at info writes one line per event of a message
(accepted by SMTP or SOAP, submitted, receipt) with the message id on each, from both of its
processes, and never the message text or a password."""

from __future__ import annotations

import asyncio
import base64
import io
import logging
import re
import signal
import smtplib
import time
import urllib.request
from pathlib import Path

import pytest

from bridge.logs import Episode
from tests.conftest import serve_command, write_serve_config

PASSWORD = "log-test-Pa55word"
SMTP_TEXT = "smtp body that must stay out of the log"
SOAP_TEXT = "soap text that must stay out of the log"
LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (debug|info|warning|error|critical) "
                  r"[\w.]+ ")


def _config(tmp_path: Path) -> Path:
    return write_serve_config(tmp_path, "logs.db", f"""
[simulator]
enabled = true
port = 0
receipt_delay_s = 0.01
id_format = "hex"
receipt_id_format = "dec"
[log]
level = "info"
[[account]]
name = "logs"
password = "{PASSWORD}"
senders = ["LOGS"]
default_sender = "LOGS"
relay_networks = ["127.0.0.1/32"]
""")


def _soap_send(port: int) -> str:
    body = (f'<?xml version="1.0"?><e:Envelope xmlns:e="http://schemas.xmlsoap.org/soap/envelope/"'
            f' xmlns:t="urn:sms-bridge:v1"><e:Body><t:SendSms>'
            f"<t:recipients>+447400123002</t:recipients><t:text>{SOAP_TEXT}</t:text>"
            f"</t:SendSms></e:Body></e:Envelope>").encode()
    auth = base64.b64encode(f"logs:{PASSWORD}".encode()).decode()
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/soap", data=body,
        headers={"Content-Type": "text/xml; charset=utf-8", "Authorization": f"Basic {auth}"})
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - loopback
        found = re.search(rb"<[\w:]*message_id>([^<]+)<", response.read())
    assert found, "SendSms returned no message id"
    return found.group(1).decode()


async def _wait_for(path: Path, needles: list[str], timeout: float = 20.0) -> str:
    deadline = time.monotonic() + timeout
    while True:
        text = path.read_text()
        if all(n in text for n in needles) or time.monotonic() > deadline:
            return text
        await asyncio.sleep(0.05)


async def test_serve_logs_every_event_with_the_message_id(tmp_path: Path) -> None:
    log_path = tmp_path / "stderr.log"
    with log_path.open("wb") as stderr:
        proc, smtp_port, soap_port = await serve_command(_config(tmp_path), stderr=stderr)
    try:
        with smtplib.SMTP("127.0.0.1", smtp_port, timeout=10) as smtp:
            smtp.sendmail("ops@example.com", ["+447400123001@sms.localhost"],
                          f"Subject: logs\r\n\r\n{SMTP_TEXT}\r\n")
        soap_id = await asyncio.to_thread(_soap_send, soap_port)
        text = await _wait_for(log_path, [f"ids={soap_id}", "smtp accepted"])
        found = re.search(r"smtp accepted ip=127\.0\.0\.1 account=logs ids=(\w+) refused=0", text)
        assert found, text
        smtp_id = found.group(1)
        text = await _wait_for(log_path, [f"receipt id={i} " for i in (smtp_id, soap_id)])
    finally:
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 30) == 0
    text = log_path.read_text()
    assert f"soap accepted account=logs ids={soap_id} refused=0" in text
    for message_id in (smtp_id, soap_id):
        submitted = re.search(rf"info bridge\.dispatcher submitted id={message_id} part=1/1 "
                              rf"smsc=simulator smsc_id=(\w+)", text)
        assert submitted, text
        # The SMSC acks in hex and reports in decimal: the receipt line names the SMSC id as
        # the submit line did, and the receipt's own form beside it.
        smsc_id = submitted[1]
        assert re.search(rf"info bridge\.dispatcher receipt id={message_id} smsc=simulator "
                         rf"smsc_id={smsc_id} receipt_id={int(smsc_id, 16)} stat=DELIVRD "
                         rf"part=delivered message=delivered", text), text
    lines = text.splitlines()
    assert lines and all(LINE.match(line) for line in lines), text
    for secret in (SMTP_TEXT, SOAP_TEXT, PASSWORD):
        assert secret not in text


# ------------------------------------------------------------------ episodes

def test_an_episode_logs_its_start_summaries_and_end_not_each_failure(
        caplog: pytest.LogCaptureFixture) -> None:
    """Thousands of failures a minute make one line to start, one summary a minute, one to
    end; a success inside `settle_s` of a failure does not end it (a flapping disk)."""
    caplog.set_level(logging.INFO, logger="test.episode")
    now = [100.0]
    episode = Episode(logging.getLogger("test.episode"), "store writes", summary_s=60,
                      settle_s=5, clock=lambda: now[0])
    episode.succeeded()  # nothing to end
    for step in range(3000):  # 0.05 s apart: 150 s of trouble
        now[0] = 100.0 + step * 0.05
        episode.failed(f"disk full {step}")
        if step % 10 == 0:
            episode.succeeded()  # flapping: a write gets through now and then
    assert episode.active and episode.failures == 3000
    now[0] += 1
    episode.succeeded()  # 1 s after the last failure: still the same episode
    assert episode.active
    now[0] += 5
    episode.succeeded()
    assert not episode.active and episode.failures == 0
    messages = [r.getMessage() for r in caplog.records]
    assert messages[0] == "store writes failing: disk full 0"
    assert [m.split(":")[0] for m in messages[1:3]] == [
        "store writes still failing"] * 2
    assert "1200 failures in 60 s (last: disk full 1200)" in messages[1]
    assert messages[-1].startswith("store writes succeed again after 3000 failure(s) over "
                                   "156.0 s (last: disk full 2999)")
    assert len(messages) == 4
    assert [r.levelname for r in caplog.records] == ["ERROR", "ERROR", "ERROR", "WARNING"]


class CountingStream(io.StringIO):
    writes = 0

    def write(self, text: str) -> int:
        self.writes += 1
        return super().write(text)


def test_log_lines_are_written_off_the_caller_in_order_and_in_few_writes() -> None:
    """The caller only queues a record; the writer thread writes what queued up together
    (one write for many lines under load), in order, and everything by close()."""
    from bridge.logs import KeyValueFormatter, LineWriter

    stream = CountingStream()
    writer = LineWriter(stream, KeyValueFormatter())
    log = logging.getLogger("test.linewriter")
    log.propagate = False
    log.addHandler(writer)
    log.setLevel(logging.INFO)
    try:
        for i in range(5000):
            log.info("line %d of %s", i, "many")
        log.info("bad %d", "not a number")  # a record that cannot be formatted is skipped
        log.info("last")
    finally:
        log.removeHandler(writer)
        writer.close()
    lines = stream.getvalue().splitlines()
    assert [line.split(" ", 3)[3] for line in lines] == \
        [f"line {i} of many" for i in range(5000)] + ["last"]
    assert all(line.split(" ")[1:3] == ["info", "test.linewriter"] for line in lines)
    assert stream.writes < len(lines) / 10, stream.writes
