"""SMTP / LMTP ingress end to end: smtplib (or a raw socket) → bridge → simulator."""

from __future__ import annotations

import asyncio
import logging
import json
import smtplib
import socket
import ssl
from pathlib import Path
from typing import Any, Callable

import pytest
import trustme

from bridge.runtime.app import Bridge
from bridge.core.states import MessageState
from tests.conftest import DEMO_PASSWORD, make_config, running_bridge

CORPUS = Path(__file__).parent / "corpus"
NUMBER = "+447400123456"
NUMBER2 = "+447400123457"
RCPT = f"{NUMBER}@sms.localhost"
RCPT2 = f"{NUMBER2}@sms.localhost"
BAD_RCPT = "+447700900123@sms.localhost"  # a reserved fictional range: not a valid number


def mail(body: str, *, subject: str = "", message_id: str | None = None,
         extra: str = "") -> bytes:
    head = f"From: ops@acme.example\r\nTo: {RCPT}\r\n"
    if subject:
        head += f"Subject: {subject}\r\n"
    if message_id:
        head += f"Message-ID: {message_id}\r\n"
    head += extra
    return (head + "Content-Type: text/plain; charset=utf-8\r\n\r\n" + body + "\r\n").encode()


async def in_thread(fn: Callable[..., Any], *args: Any) -> Any:
    return await asyncio.to_thread(fn, *args)


def smtp(port: int) -> smtplib.SMTP:
    client = smtplib.SMTP("127.0.0.1", port, timeout=10)
    client.ehlo("client.example")
    return client


def send(port: int, data: bytes, rcpts: list[str], **kw: Any) -> tuple[int, bytes]:
    """MAIL/RCPT…/DATA; returns the DATA reply (smtplib raises on refusals)."""
    with smtp(port) as client:
        code, text = client.mail("ops@acme.example", kw.get("mail_options", []))
        assert code == 250, text
        for rcpt in rcpts:
            code, text = client.rcpt(rcpt, kw.get("rcpt_options", []))
            assert code == 250, text
        return client.data(data)


def message_id_of(reply: bytes) -> str:
    text = reply.decode()
    assert text.startswith("2.0.0 Accepted "), text
    return text.split()[2]


async def texts_to(bridge: Bridge, number: str, n: int = 1) -> list[str]:
    sim = bridge.simulator
    assert sim is not None
    digits = number.lstrip("+")
    await sim.wait_until(lambda: len(sim.texts_to(digits)) >= n, timeout=10)
    return sim.texts_to(digits)


class Raw:
    """A line-level SMTP client for LMTP and pipelining: every reply line is visible."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.buf = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def line(self) -> str:
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line.decode()

    def reply(self) -> str:
        """One (possibly multi-line) reply; continuation lines are joined with '|'."""
        lines = [self.line()]
        while lines[-1][3:4] == "-":
            lines.append(self.line())
        return "|".join(lines)

    def close(self) -> None:
        self.sock.close()


# ---------------------------------------------------------------- who may send


async def test_relay_network_mail_becomes_the_exact_sms(tmp_path: Path) -> None:
    async with running_bridge(make_config(tmp_path)) as bridge:
        code, reply = await in_thread(send, bridge.smtp_port,
                                      mail("Disk /var at 95% on db1.", subject="ALERT db1"), [RCPT])
        assert code == 250
        message_id = message_id_of(reply)
        assert await texts_to(bridge, NUMBER) == ["ALERT db1\nDisk /var at 95% on db1."]
        sim = bridge.simulator
        assert sim is not None
        assert sim.submits[0].destination == "447400123456"
        views = await bridge.store.get_messages([message_id])
        assert views[0].recipient == NUMBER and views[0].ingress == "smtp"


async def test_ehlo_advertises_what_is_supported(tmp_path: Path) -> None:
    async with running_bridge(make_config(tmp_path, smtp={"max_message_bytes": 50_000})) as bridge:
        def ehlo() -> dict[str, str]:
            with smtp(bridge.smtp_port) as client:
                return dict(client.esmtp_features)
        features = await in_thread(ehlo)
    assert features["size"] == "50000"
    assert features["auth"].split() == ["LOGIN", "PLAIN"]
    for name in ("pipelining", "8bitmime", "smtputf8", "dsn", "enhancedstatuscodes"):
        assert name in features, name
    assert "starttls" not in features  # no certificate configured


def tls_config(tmp_path: Path, **smtp_extra: Any) -> tuple[Any, ssl.SSLContext]:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    cert.private_key_and_cert_chain_pem.write_to_path(str(tmp_path / "smtp.pem"))
    cert.private_key_pem.write_to_path(str(tmp_path / "smtp.key"))
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))  # for clients that take a CA file
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)
    config = make_config(
        tmp_path,
        smtp={"tls_cert": str(tmp_path / "smtp.pem"), "tls_key": str(tmp_path / "smtp.key"),
              "auth_without_tls_on_loopback": False, **smtp_extra},
        account=[{"name": "demo", "password": DEMO_PASSWORD, "senders": ["ACME"],
                  "default_sender": "ACME", "rate_per_s": 10_000,
                  "relay_networks": ["10.0.0.0/8"]}])
    return config, client_ctx


async def test_starttls_then_auth_plain_and_login(tmp_path: Path) -> None:
    config, client_ctx = tls_config(tmp_path)
    async with running_bridge(config) as bridge:
        port = bridge.smtp_port

        def session(mechanism: str, text: str) -> tuple[Any, ...]:
            with smtp(port) as client:
                before = dict(client.esmtp_features)
                # no AUTH in clear text on this listener, and nobody may send without it
                refused_auth = client.docmd("AUTH", "PLAIN AGRlbW8AZGVtby1wYXNzd29yZA==")
                refused_mail = client.mail("ops@acme.example")
                client.rset()
                client.starttls(context=client_ctx)
                client.ehlo("client.example")
                after = dict(client.esmtp_features)
                assert isinstance(client.sock, ssl.SSLSocket)
                client.user, client.password = "demo", DEMO_PASSWORD
                auth = client.auth(mechanism, getattr(client, f"auth_{mechanism.lower()}"))
                refused = client.sendmail("ops@acme.example", [RCPT], mail(text))
                return before, refused_auth, refused_mail, after, auth, refused

        before, refused_auth, refused_mail, after, auth, refused = \
            await in_thread(session, "PLAIN", "via plain")
        assert "starttls" in before and "auth" not in before
        assert refused_auth[0] == 538 and refused_auth[1].startswith(b"5.7.11")
        assert refused_mail == (530, b"5.7.0 Authentication required")
        assert "starttls" not in after and after["auth"].split() == ["LOGIN", "PLAIN"]
        assert auth == (235, b"2.7.0 Authentication successful")
        assert refused == {}
        *_, auth2, refused2 = await in_thread(session, "LOGIN", "via login")
        assert auth2[0] == 235 and refused2 == {}
        assert sorted(await texts_to(bridge, NUMBER, 2)) == ["via login", "via plain"]


async def test_auth_by_challenge_and_bad_base64(tmp_path: Path) -> None:
    """AUTH without an initial response gets a 334 challenge; undecodable base64 gets 501."""
    import base64

    async with running_bridge(make_config(tmp_path)) as bridge:
        def session() -> list[tuple[int, bytes]]:
            with smtp(bridge.smtp_port) as client:
                replies = [client.docmd("AUTH", "PLAIN")]
                replies.append(client.docmd(
                    base64.b64encode(f"\0demo\0{DEMO_PASSWORD}".encode()).decode()))
                with smtp(bridge.smtp_port) as other:
                    replies.append(other.docmd("AUTH", "LOGIN"))
                    replies.append(other.docmd(base64.b64encode(b"demo").decode()))
                    replies.append(other.docmd(base64.b64encode(DEMO_PASSWORD.encode()).decode()))
                with smtp(bridge.smtp_port) as third:
                    replies.append(third.docmd("AUTH", "PLAIN not*base64"))
                    replies.append(third.docmd("AUTH", "LOGIN not*base64"))
                return replies

        got = await in_thread(session)
    assert got[0] == (334, b"")
    assert got[1][0] == 235
    assert got[2] == (334, base64.b64encode(b"Username:"))
    assert got[3] == (334, base64.b64encode(b"Password:"))
    assert got[4][0] == 235
    assert got[5][0] == 501 and got[6][0] == 501


async def test_wrong_password_is_535_and_three_failures_close(tmp_path: Path) -> None:
    async with running_bridge(make_config(tmp_path)) as bridge:
        def attempt() -> tuple[Any, ...]:
            with smtp(bridge.smtp_port) as client:
                client.user, client.password = "demo", "wrong"
                results = []
                for _ in range(2):
                    try:
                        client.auth("PLAIN", client.auth_plain)
                    except smtplib.SMTPAuthenticationError as exc:
                        results.append((exc.smtp_code, exc.smtp_error))
                third = client.docmd("AUTH", "PLAIN AGRlbW8Ad3Jvbmc=")
                return results[0], results[1], third
        first, second, third = await in_thread(attempt)
    assert first == (535, b"5.7.8 Authentication failed") == second
    assert third[0] == 421


async def test_never_an_open_relay(tmp_path: Path) -> None:
    # The only account relays for 10.0.0.0/8: 127.0.0.1 must authenticate.
    config = make_config(tmp_path, account=[{
        "name": "demo", "password": DEMO_PASSWORD, "senders": ["ACME"], "default_sender": "ACME",
        "rate_per_s": 10_000, "relay_networks": ["10.0.0.0/8"]}])
    async with running_bridge(config) as bridge:
        def unauthenticated() -> tuple[Any, ...]:
            with smtp(bridge.smtp_port) as client:
                mail_reply = client.mail("ops@acme.example")
                rcpt_reply = client.rcpt(RCPT)
                data_reply = client.docmd("DATA")
                return mail_reply, rcpt_reply, data_reply

        def authenticated_foreign_domain() -> tuple[Any, ...]:
            with smtp(bridge.smtp_port) as client:  # loopback listener: AUTH allowed in clear
                client.login("demo", DEMO_PASSWORD)
                client.mail("ops@acme.example")
                foreign = client.rcpt("victim@gmail.com")
                no_domain = client.rcpt("postmaster")
                ours = client.rcpt(RCPT)
                return foreign, no_domain, ours

        mail_reply, rcpt_reply, data_reply = await in_thread(unauthenticated)
        assert mail_reply == (530, b"5.7.0 Authentication required")
        assert rcpt_reply[0] == 530 and data_reply[0] == 530
        foreign, no_domain, ours = await in_thread(authenticated_foreign_domain)
        assert foreign[0] == 550 and foreign[1].startswith(b"5.7.1 Relay access denied")
        assert no_domain[0] == 550 and no_domain[1].startswith(b"5.1.1")
        assert ours[0] == 250


async def test_relay_network_cannot_relay_to_foreign_domains(tmp_path: Path) -> None:
    async with running_bridge(make_config(tmp_path)) as bridge:
        def attempt() -> tuple[int, bytes]:
            with smtp(bridge.smtp_port) as client:
                client.mail("ops@acme.example")
                return client.rcpt("someone@example.org")
        code, text = await in_thread(attempt)
    assert code == 550 and text.startswith(b"5.7.1")


async def test_mail_from_must_match_smtp_from(tmp_path: Path) -> None:
    config = make_config(tmp_path, account=[{
        "name": "demo", "password": DEMO_PASSWORD, "senders": ["ACME"], "default_sender": "ACME",
        "rate_per_s": 10_000, "relay_networks": ["127.0.0.1/32"], "smtp_from": ["*@acme.example"]}])
    async with running_bridge(config) as bridge:
        def attempt() -> tuple[Any, Any]:
            with smtp(bridge.smtp_port) as client:
                bad = client.mail("intruder@evil.example")
                good = client.mail("Ops@ACME.example")
                return bad, good
        bad, good = await in_thread(attempt)
    assert bad[0] == 553 and bad[1].startswith(b"5.1.7")
    assert good[0] == 250


async def test_require_tls_refuses_mail_before_starttls(tmp_path: Path) -> None:
    config, client_ctx = tls_config(tmp_path, require_tls=True)
    async with running_bridge(config) as bridge:
        def attempt() -> tuple[Any, Any]:
            with smtp(bridge.smtp_port) as client:
                before = client.mail("ops@acme.example")
                client.starttls(context=client_ctx)
                client.ehlo("client.example")
                client.login("demo", DEMO_PASSWORD)
                return before, client.mail("ops@acme.example")
        before, after = await in_thread(attempt)
    assert before[0] == 530 and after[0] == 250


async def test_connections_per_client_are_limited(tmp_path: Path) -> None:
    config = make_config(tmp_path, smtp={"max_connections_per_client": 2})
    async with running_bridge(config) as bridge:
        def attempt() -> tuple[int, str]:
            a, b = smtp(bridge.smtp_port), smtp(bridge.smtp_port)
            try:
                raw = Raw(bridge.smtp_port)
                third = raw.reply()
                raw.close()
            finally:
                a.quit()
                b.quit()
            return 0, third
        _, third = await in_thread(attempt)
        assert third.startswith("421 4.7.0")
        # closing one frees its slot
        code, _ = await in_thread(send, bridge.smtp_port, mail("after"), [RCPT])
        assert code == 250


# ---------------------------------------------------------------- recipients


async def test_rcpt_rejections_are_per_recipient(tmp_path: Path) -> None:
    config = make_config(tmp_path, smtp={"max_recipients": 2})
    async with running_bridge(config) as bridge:
        def attempt() -> tuple[Any, ...]:
            with smtp(bridge.smtp_port) as client:
                client.mail("ops@acme.example")
                bad = client.rcpt(BAD_RCPT)
                not_a_number = client.rcpt("hello@sms.localhost")
                one = client.rcpt(RCPT)
                two = client.rcpt("07400123457@sms.localhost")  # national form, default region
                three = client.rcpt("+447400123458@sms.localhost")
                data = client.data(mail("only the good ones"))
                return bad, not_a_number, one, two, three, data
        bad, not_a_number, one, two, three, data = await in_thread(attempt)
        assert bad[0] == 550 and bad[1].startswith(b"5.1.1")
        assert not_a_number[0] == 550 and not_a_number[1].startswith(b"5.1.1")
        assert one[0] == two[0] == 250
        assert three[0] == 452 and three[1].startswith(b"4.5.3")
        assert data[0] == 250 and len(data[1].decode().split()[2].split(",")) == 2
        assert await texts_to(bridge, NUMBER) == ["only the good ones"]
        assert await texts_to(bridge, NUMBER2) == ["only the good ones"]


async def test_flood_and_rate_limit_at_rcpt(tmp_path: Path) -> None:
    config = make_config(tmp_path, policy={"flood_max": 1, "flood_gap_s": 60})
    async with running_bridge(config) as bridge:
        assert (await in_thread(send, bridge.smtp_port, mail("first"), [RCPT]))[0] == 250

        def again() -> tuple[int, bytes]:
            with smtp(bridge.smtp_port) as client:
                client.mail("ops@acme.example")
                return client.rcpt(RCPT)
        code, text = await in_thread(again)
    assert code == 450 and text.startswith(b"4.7.1")

    slow = make_config(tmp_path / "rate", account=[{
        "name": "demo", "password": DEMO_PASSWORD, "senders": ["ACME"], "default_sender": "ACME",
        "rate_per_s": 0.001, "relay_networks": ["127.0.0.1/32"]}])
    (tmp_path / "rate").mkdir(exist_ok=True)
    async with running_bridge(slow) as bridge:
        assert (await in_thread(send, bridge.smtp_port, mail("first"), [RCPT]))[0] == 250

        def next_one() -> tuple[int, bytes]:
            with smtp(bridge.smtp_port) as client:
                client.mail("ops@acme.example")
                return client.rcpt(RCPT2)
        code, text = await in_thread(next_one)
    assert code == 451 and text.startswith(b"4.7.1")


# ---------------------------------------------------------------- DSN


async def test_dsn_parameters_are_kept_with_their_case(tmp_path: Path) -> None:
    async with running_bridge(make_config(tmp_path)) as bridge:
        code, reply = await in_thread(
            lambda: send(bridge.smtp_port, mail("dsn please", message_id="<Dsn.1@Acme.Example>"),
                         [RCPT], mail_options=["RET=HDRS", "ENVID=Env+2BId.QWERTY"],
                         rcpt_options=["NOTIFY=success,Failure",
                                       "ORCPT=rfc822;Ops.Team+2BSMS@Acme.Example"]))
        assert code == 250
        [view] = await bridge.store.get_messages([message_id_of(reply)])
        meta = json.loads(view.meta_json)
        assert meta["ret"] == "HDRS"
        assert meta["envid"] == "Env+Id.QWERTY"
        assert meta["notify"] == "SUCCESS,FAILURE"
        assert meta["orcpt"] == "rfc822;Ops.Team+SMS@Acme.Example"
        assert meta["mail_from"] == "ops@acme.example"
        assert meta["message_id"] == "<Dsn.1@Acme.Example>"
        assert meta["rcpt_to"] == RCPT
        assert meta["client_ip"] == "127.0.0.1" and meta["helo"] == "client.example"


@pytest.mark.parametrize("command, code", [
    ("MAIL FROM:<a@acme.example> RET=ALL", 501),
    ("MAIL FROM:<a@acme.example> ENVID=bad=xtext", 501),
    ("MAIL FROM:<a@acme.example> ENVID=a+zz", 501),
    ("MAIL FROM:<a@acme.example> RET=FULL RET=HDRS", 501),
    ("MAIL FROM:<a@acme.example> FOO=1", 555),
    ("MAIL FROM:<a@acme.example> BODY=BINARYMIME", 501),
    ("MAIL FROM:<a@acme.example> SMTPUTF8=yes", 501),
    ("MAIL FROM:<a@acme.example> RET=full ENVID=x BODY=8bitmime SIZE=100 SMTPUTF8 AUTH=<>", 250),
])
async def test_mail_parameters(tmp_path: Path, command: str, code: int) -> None:
    async with running_bridge(make_config(tmp_path)) as bridge:
        def attempt() -> tuple[int, bytes]:
            with smtp(bridge.smtp_port) as client:
                return client.docmd(command)
        assert (await in_thread(attempt))[0] == code


@pytest.mark.parametrize("params, code", [
    ("NOTIFY=NEVER", 250),
    ("NOTIFY=DELAY,SUCCESS,FAILURE", 250),
    ("NOTIFY=NEVER,SUCCESS", 501),
    ("NOTIFY=SUCCESS,SUCCESS", 501),
    ("NOTIFY=SOMETIMES", 501),
    ("ORCPT=rfc822", 501),
    ("ORCPT=rfc822;a+4", 501),
    ("ORCPT=rfc822;A+40B", 250),
    ("XFOO=1", 555),
])
async def test_rcpt_parameters(tmp_path: Path, params: str, code: int) -> None:
    async with running_bridge(make_config(tmp_path)) as bridge:
        def attempt() -> tuple[int, bytes]:
            with smtp(bridge.smtp_port) as client:
                client.mail("ops@acme.example")
                return client.docmd(f"RCPT TO:<{RCPT}> {params}")
        assert (await in_thread(attempt))[0] == code


# ---------------------------------------------------------------- LMTP


async def test_lmtp_answers_once_per_recipient(tmp_path: Path) -> None:
    # quota 2 parts: of three good recipients the third is refused at DATA time (552 5.2.2)
    config = make_config(tmp_path, smtp={"lmtp": True}, account=[{
        "name": "demo", "password": DEMO_PASSWORD, "senders": ["ACME"], "default_sender": "ACME",
        "rate_per_s": 10_000, "relay_networks": ["127.0.0.1/32"], "quota": 2}])
    async with running_bridge(config) as bridge:
        def session() -> list[str]:
            raw = Raw(bridge.smtp_port)
            out = [raw.reply()]
            for command in ("EHLO x", "LHLO client.example", "MAIL FROM:<ops@acme.example>",
                            f"RCPT TO:<{RCPT}>", f"RCPT TO:<{BAD_RCPT}>", f"RCPT TO:<{RCPT2}>",
                            "RCPT TO:<+447400123458@sms.localhost>", "DATA"):
                raw.send(command.encode() + b"\r\n")
                out.append(raw.reply())
            raw.send(mail("lmtp text") + b".\r\n")
            out += [raw.reply() for _ in range(3)]
            raw.send(b"QUIT\r\n")
            out.append(raw.reply())
            raw.close()
            return out
        greeting, ehlo, lhlo, mail_reply, r1, r_bad, r2, r3, data, d1, d2, d3, quit_ = \
            await in_thread(session)
        assert greeting.startswith("220 ") and "LMTP" in greeting
        assert ehlo.startswith("500")
        assert "PIPELINING" in lhlo and "ENHANCEDSTATUSCODES" in lhlo
        assert mail_reply.startswith("250") and r1.startswith("250") and r2.startswith("250")
        assert r_bad.startswith("550 5.1.1") and r3.startswith("250")
        assert data.startswith("354")
        # one line per accepted RCPT, in RCPT order
        assert d1.startswith("250 2.0.0 Accepted ") and d1.endswith(f"<{RCPT}>")
        assert d2.startswith("250 2.0.0 Accepted ") and d2.endswith(f"<{RCPT2}>")
        assert d3.startswith("552 5.2.2")
        assert d1.split()[3] != d2.split()[3]
        assert quit_.startswith("221")
        assert await texts_to(bridge, NUMBER) == ["lmtp text"]
        assert await texts_to(bridge, NUMBER2) == ["lmtp text"]


async def test_smtp_partial_data_time_refusal_still_250(tmp_path: Path) -> None:
    config = make_config(tmp_path, account=[{
        "name": "demo", "password": DEMO_PASSWORD, "senders": ["ACME"], "default_sender": "ACME",
        "rate_per_s": 10_000, "relay_networks": ["127.0.0.1/32"], "quota": 1}])
    async with running_bridge(config) as bridge:
        code, reply = await in_thread(send, bridge.smtp_port, mail("quota"), [RCPT, RCPT2])
        assert code == 250 and "," not in reply.decode()  # one accepted, one logged
        code2, reply2 = await in_thread(lambda: _send_expect_error(bridge.smtp_port, mail("x")))
        assert code2 == 552 and reply2.startswith(b"5.2.2")  # nothing left: the first error


def _send_expect_error(port: int, data: bytes) -> tuple[int, bytes]:
    with smtp(port) as client:
        client.mail("ops@acme.example")
        client.rcpt("+447400123458@sms.localhost")
        return client.data(data)


# ---------------------------------------------------------------- data


async def test_same_message_id_resent_gives_same_id_and_one_sms(tmp_path: Path) -> None:
    async with running_bridge(make_config(tmp_path)) as bridge:
        data = mail("relay retry", message_id="<retry-1@acme.example>")
        _, first = await in_thread(send, bridge.smtp_port, data, [RCPT])
        # the relay retries, e.g. after losing the 250; a later Received line changes nothing
        _, second = await in_thread(send, bridge.smtp_port, b"Received: from relay2\r\n" + data,
                                    [RCPT])
        assert message_id_of(first) == message_id_of(second)
        await texts_to(bridge, NUMBER)
        await asyncio.sleep(0.3)
        sim = bridge.simulator
        assert sim is not None
        assert sim.texts_to(NUMBER.lstrip("+")) == ["relay retry"]


async def test_duplicate_gets_the_first_id_and_counts_like_soap(tmp_path: Path) -> None:
    """The same text to the same number inside the duplicate window under another Message-ID:
    250 with the first id, no second SMS, and the metrics count it as SOAP does."""
    async with running_bridge(make_config(tmp_path)) as bridge:
        _, first = await in_thread(send, bridge.smtp_port,
                                   mail("disk full", message_id="<a@acme.example>"), [RCPT])
        code, second = await in_thread(send, bridge.smtp_port,
                                       mail("disk full", message_id="<b@acme.example>"), [RCPT])
        assert code == 250 and message_id_of(first) == message_id_of(second)
        assert await texts_to(bridge, NUMBER) == ["disk full"]
        text = bridge.metrics.render()[0].decode()
        assert 'sms_bridge_accepted_total{ingress="smtp"} 1.0' in text
        assert 'sms_bridge_rejected_total{error="DUPLICATE",ingress="smtp"} 1.0' in text


async def test_size_limit_in_mail_and_in_data(tmp_path: Path) -> None:
    config = make_config(tmp_path, smtp={"max_message_bytes": 2048})
    async with running_bridge(config) as bridge:
        def session() -> tuple[Any, ...]:
            with smtp(bridge.smtp_port) as client:
                declared = client.docmd("MAIL FROM:<ops@acme.example> SIZE=4096")
                client.mail("ops@acme.example")
                client.rcpt(RCPT)
                too_big = client.data(mail("x" * 3000))
                # the session goes on
                client.mail("ops@acme.example")
                client.rcpt(RCPT)
                ok = client.data(mail("small"))
                return declared, too_big, ok
        declared, too_big, ok = await in_thread(session)
        assert declared[0] == 552 and declared[1].startswith(b"5.3.4")
        assert too_big[0] == 552 and too_big[1].startswith(b"5.3.4")
        assert ok[0] == 250
        assert await texts_to(bridge, NUMBER) == ["small"]


LONG = "Backup of db1 failed: " + "checksum mismatch on volume 7; " * 8  # 270 GSM chars


async def test_too_long_reject(tmp_path: Path) -> None:
    config = make_config(tmp_path, policy={"max_parts": 1}, smtp={"subject": "ignore"})
    async with running_bridge(config) as bridge:
        def attempt() -> tuple[int, bytes]:
            with smtp(bridge.smtp_port) as client:
                client.mail("ops@acme.example")
                client.rcpt(RCPT)
                return client.data(mail(LONG))
        code, text = await in_thread(attempt)
    assert code == 552 and text.startswith(b"5.3.4")


async def test_too_long_truncate(tmp_path: Path) -> None:
    config = make_config(tmp_path, policy={"max_parts": 1},
                         smtp={"subject": "ignore", "too_long": "truncate"})
    async with running_bridge(config) as bridge:
        code, _ = await in_thread(send, bridge.smtp_port, mail(LONG.strip()), [RCPT])
        assert code == 250
        code, _ = await in_thread(send, bridge.smtp_port, mail("Ж" * 100), [RCPT2])
        assert code == 250
        assert await texts_to(bridge, NUMBER) == [LONG[:157].rstrip() + "..."]
        assert await texts_to(bridge, NUMBER2) == ["Ж" * 69 + "…"]


@pytest.mark.parametrize("name", ["01_outlook_html_only", "06_iso2022jp",
                                  "09_windows1252_smart_quotes", "12_smime_signed",
                                  "15_subject_only"])
async def test_corpus_end_to_end(tmp_path: Path, name: str) -> None:
    expected = (CORPUS / f"{name}.txt").read_text(encoding="utf-8")
    async with running_bridge(make_config(tmp_path)) as bridge:
        raw = (CORPUS / f"{name}.eml").read_bytes()

        def relay() -> dict[str, Any]:
            with smtp(bridge.smtp_port) as client:
                return client.sendmail("ops@acme.example", [RCPT], raw)
        assert await in_thread(relay) == {}
        assert await texts_to(bridge, NUMBER) == [expected]


async def test_malformed_mail_keeps_the_session(tmp_path: Path) -> None:
    async with running_bridge(make_config(tmp_path)) as bridge:
        def session() -> list[tuple[int, bytes]]:
            out = []
            with smtp(bridge.smtp_port) as client:
                for data in (
                    b"Content-Type: multipart/mixed; boundary=\"\"\r\n\r\n--\r\n--\r\n",
                    b"Content-Type: text/plain; charset=\"\xff\xfe\"\r\n"
                    b"Content-Transfer-Encoding: base64\r\n\r\n!!!!\r\n",
                    b"\x00\x01\x02\r\n\r\n\x00",
                    b"Content-Type: text/html\r\n\r\n<html><body><blockquote>only quoted",
                    mail("still working"),
                ):
                    client.mail("ops@acme.example")
                    client.rcpt(RCPT)
                    out.append(client.data(data))
            return out
        replies = await in_thread(session)
        for code, text in replies[:-1]:
            assert code in (250, 554), (code, text)
        assert replies[3][0] == 554 and replies[3][1].startswith(b"5.6.0")
        assert replies[-1][0] == 250


async def test_hostile_commands_get_a_syntax_reply_not_a_session_error(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Found by fuzzing: a bare "<" broke the address parser (IndexError), and a parameter
    with bytes that are not UTF-8 broke the reply echoing it (UnicodeEncodeError); both were
    logged as session errors with a traceback and answered 451."""
    async with running_bridge(make_config(tmp_path)) as bridge:
        def session() -> list[str]:
            raw = Raw(bridge.smtp_port)
            raw.reply()
            out = []
            for line in (b"EHLO client.example", b"MAIL FROM:<", b"VRFY <@",
                         b"MAIL FROM:<ops@acme.example> \xffSIZE=10",
                         b"MAIL FROM:<ops@acme.example> BODY=8BIT\xd3MIME", b"NOOP"):
                raw.send(line + b"\r\n")
                out.append(raw.reply())
            raw.close()
            return out
        with caplog.at_level(logging.ERROR):
            ehlo, bare, vrfy, size, body, noop = await in_thread(session)
        assert ehlo.startswith("250-")
        assert bare.startswith("501 ") or bare.startswith("553 "), bare
        assert vrfy[:1] in "25" and not vrfy.startswith("451"), vrfy
        assert size == "501 5.5.4 Invalid ?SIZE parameter"  # the odd byte echoed as "?"
        assert body == "501 5.5.4 Invalid BODY parameter"
        assert noop.startswith("250")
        assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_pipelined_commands_and_dot_stuffing(tmp_path: Path) -> None:
    async with running_bridge(make_config(tmp_path)) as bridge:
        def session() -> list[str]:
            raw = Raw(bridge.smtp_port)
            out = [raw.reply()]
            raw.send(b"EHLO client.example\r\n")
            out.append(raw.reply())
            envelope = (b"MAIL FROM:<ops@acme.example>\r\nRCPT TO:<" + RCPT.encode() + b">\r\n"
                        b"RCPT TO:<" + BAD_RCPT.encode() + b">\r\nDATA\r\n")
            raw.send(envelope)
            out += [raw.reply() for _ in range(4)]
            # the message, then (pipelined after the final dot) the next transaction
            raw.send(b"Subject: dots\r\n\r\n..leading dot\r\n.\r\n"
                     b"MAIL FROM:<ops@acme.example>\r\nRCPT TO:<" + RCPT2.encode() + b">\r\n"
                     b"DATA\r\n")
            out += [raw.reply() for _ in range(4)]
            raw.send(b".\r\n")  # an empty mail: nothing to send
            out.append(raw.reply())
            raw.send(b"QUIT\r\n")
            out.append(raw.reply())
            raw.close()
            return out
        out = await in_thread(session)
        assert [line[:3] for line in out] == ["220", "250", "250", "250", "550", "354", "250",
                                              "250", "250", "354", "554", "221"]
        assert await texts_to(bridge, NUMBER) == ["dots\n.leading dot"]


async def test_smtputf8_address_and_8bit_body(tmp_path: Path) -> None:
    async with running_bridge(make_config(tmp_path)) as bridge:
        def attempt() -> tuple[int, bytes]:
            with smtp(bridge.smtp_port) as client:
                client.mail("opérations@acme.example", ["SMTPUTF8", "BODY=8BITMIME"])
                client.rcpt(RCPT)
                return client.data("Subject: Grüße\r\n\r\nTschüß\r\n".encode())
        code, _ = await in_thread(attempt)
        assert code == 250
        assert await texts_to(bridge, NUMBER) == ["Grüße\nTschüß"]


async def test_accepted_message_is_durably_queued_before_250(tmp_path: Path) -> None:
    async with running_bridge(make_config(tmp_path)) as bridge:
        code, reply = await in_thread(send, bridge.smtp_port, mail("durable"), [RCPT])
        [view] = await bridge.store.get_messages([message_id_of(reply)])
        assert view.state in (MessageState.QUEUED, MessageState.SUBMITTED, MessageState.DELIVERED)


async def test_data_in_tiny_pieces(tmp_path: Path) -> None:
    """The end-of-data marker and dot-stuffing are found across any split of the stream."""
    async with running_bridge(make_config(tmp_path)) as bridge:
        def session() -> list[str]:
            raw = Raw(bridge.smtp_port)
            out = [raw.reply()]
            for command in ("EHLO client.example", "MAIL FROM:<ops@acme.example>",
                            f"RCPT TO:<{RCPT}>", "DATA"):
                raw.send(command.encode() + b"\r\n")
                out.append(raw.reply())
            data = b"Subject: split\r\n\r\nline one\r\n..dot\r\n.\r\nQUIT\r\n"
            for i in range(0, len(data), 3):
                raw.send(data[i:i + 3])
            out += [raw.reply(), raw.reply()]
            raw.close()
            return out
        out = await in_thread(session)
        assert [line[:3] for line in out] == ["220", "250", "250", "250", "354", "250", "221"]
        assert await texts_to(bridge, NUMBER) == ["split\nline one\n.dot"]


async def test_idle_connection_times_out(tmp_path: Path) -> None:
    async with running_bridge(make_config(tmp_path, smtp={"command_timeout_s": 1})) as bridge:
        def idle() -> bytes:
            raw = Raw(bridge.smtp_port)
            raw.reply()
            raw.sock.settimeout(5)
            data = raw.sock.recv(100)  # b"" once the server closes
            raw.close()
            return data
        assert await in_thread(idle) == b""


async def test_store_down_is_452_and_the_session_goes_on(tmp_path: Path) -> None:
    async with running_bridge(make_config(tmp_path)) as bridge:
        def session() -> tuple[Any, ...]:
            with smtp(bridge.smtp_port) as client:
                client.mail("ops@acme.example")
                refused = client.rcpt(RCPT)  # the limits are the store's: it cannot say
                return refused, client.noop()
        await bridge.store.close()
        try:
            refused, noop = await in_thread(session)
        finally:
            await bridge.store.open()  # for a clean shutdown
    assert refused[0] == 452 and refused[1].startswith(b"4.3.1")
    assert noop[0] == 250


async def test_auth_plain_with_challenge_and_abort(tmp_path: Path) -> None:
    async with running_bridge(make_config(tmp_path)) as bridge:
        def session() -> list[str]:
            raw = Raw(bridge.smtp_port)
            out = [raw.reply()]
            for line in (b"EHLO client.example", b"AUTH PLAIN", b"*", b"AUTH PLAIN",
                         b"AGRlbW8AZGVtby1wYXNzd29yZA==", b"AUTH PLAIN", b"MAIL FROM:<a@b.example>",
                         b"AUTH LOGIN"):
                raw.send(line + b"\r\n")
                out.append(raw.reply())
            raw.close()
            return out
        out = await in_thread(session)
    assert [line[:3] for line in out] == ["220", "250", "334", "501", "334", "235", "503",
                                          "250", "503"]


async def test_lmtp_refusal_of_the_whole_mail_is_repeated_per_recipient(tmp_path: Path) -> None:
    async with running_bridge(make_config(tmp_path, smtp={"lmtp": True})) as bridge:
        def session() -> list[str]:
            raw = Raw(bridge.smtp_port)
            raw.reply()
            for command in ("LHLO client.example", "MAIL FROM:<ops@acme.example>",
                            f"RCPT TO:<{RCPT}>", f"RCPT TO:<{RCPT2}>", "DATA"):
                raw.send(command.encode() + b"\r\n")
                raw.reply()
            raw.send(b"\r\n.\r\nNOOP\r\n")  # an empty mail
            out = [raw.reply() for _ in range(3)]
            raw.close()
            return out
        first, second, noop = await in_thread(session)
    assert first.startswith("554 5.6.0") and second.startswith("554 5.6.0")
    assert noop.startswith("250")


async def test_every_reply_has_an_enhanced_status_code(tmp_path: Path) -> None:
    """ENHANCEDSTATUSCODES is advertised, so aiosmtpd's own replies get codes too (RFC 2034);
    the greeting and the EHLO lines stay as they are."""
    async with running_bridge(make_config(tmp_path)) as bridge:
        def session() -> list[str]:
            raw = Raw(bridge.smtp_port)
            out = [raw.reply()]
            for line in (b"MAIL FROM:<a@b.example>", b"EHLO client.example", b"NOOP", b"RSET",
                         b"VRFY x", b"BOGUS", b"DATA", b"QUIT"):
                raw.send(line + b"\r\n")
                out.append(raw.reply())
            raw.close()
            return out
        greeting, early_mail, ehlo, noop, rset, vrfy, bogus, data, quit_ = await in_thread(session)
    assert greeting.startswith("220 sms-bridge.localhost ")
    assert early_mail.startswith("503 5.5.1 ")
    assert ehlo.startswith("250-sms-bridge.localhost|250-PIPELINING|")
    assert ehlo.endswith("|250 ENHANCEDSTATUSCODES")
    assert noop == "250 2.0.0 OK" and rset == "250 2.0.0 OK"
    assert vrfy.startswith("252 2.0.0 ")
    assert bogus.startswith("500 5.5.2 ")
    assert data.startswith("503 5.5.1 ")
    assert quit_ == "221 2.0.0 Bye"


@pytest.mark.parametrize("too_long", ["reject", "truncate"])
async def test_huge_body_is_handled_quickly(tmp_path: Path, too_long: str) -> None:
    config = make_config(tmp_path, smtp={"too_long": too_long, "subject": "ignore"})
    body = "0123456789 abcdefghi\r\n" * 40_000  # 880 kB, parsed off the loop
    async with running_bridge(config) as bridge:
        def attempt() -> tuple[int, bytes]:
            with smtp(bridge.smtp_port) as client:
                client.mail("ops@acme.example")
                client.rcpt(RCPT)
                return client.data(mail(body))
        loop = asyncio.get_running_loop()
        start = loop.time()
        code, text = await in_thread(attempt)
        assert loop.time() - start < 5
        if too_long == "reject":
            assert code == 552 and text.startswith(b"5.3.4")
        else:
            assert code == 250
            [sms] = await texts_to(bridge, NUMBER)
            assert sms.endswith("...") and len(sms) == 10 * 153
            assert sms.startswith("0123456789 abcdefghi\n0123456789")
