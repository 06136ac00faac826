"""MAIL and RCPT paths (bridge.ingress.smtp.paths), HELP for every command, refused RCPTs in
the log, and the aiosmtpd internals the listener still touches."""

from __future__ import annotations

import ast
import inspect
import logging
import re
from pathlib import Path

import aiosmtpd.smtp
import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge.ingress.smtp.paths import split_path, strip_keyword
from tests.conftest import ROOT, make_config, running_bridge
from tests.smtp.test_server import in_thread, smtp


@pytest.mark.parametrize(("arg", "expected"), [
    ("<a@b.example>", ("a@b.example", "")),
    ("  <a@b.example> NOTIFY=SUCCESS ORCPT=rfc822;x@y", ("a@b.example",
                                                         "NOTIFY=SUCCESS ORCPT=rfc822;x@y")),
    ("<447400123456@sms.localhost>", ("447400123456@sms.localhost", "")),
    ('<"john doe"@example.org>', ('"john doe"@example.org', "")),
    (r'<"a\"b"@example.org>', (r'"a\"b"@example.org', "")),
    ("<@relay.example,@hop.example:user@example.org>", ("user@example.org", "")),
    ("<user@[192.0.2.1]>", ("user@[192.0.2.1]", "")),
    ("<user@[IPv6:2001:db8::1]>", ("user@[IPv6:2001:db8::1]", "")),
    ("<jöran@bücher.example>", ("jöran@bücher.example", "")),  # SMTPUTF8
    ("<postmaster>", ("postmaster", "")),  # a local part alone: the caller answers it
    ("a@b.example SIZE=10", ("a@b.example", "SIZE=10")),  # bare, as lenient clients send
    ("<", None), ("<@", None), ("<a@>", None), ("<@b>", None), ("<a b@c>", None),
    ("<a@b.example>junk", None), ("<a@b..example>", None), ("<a@-b.example>", None),
    ("<a@b.example", None), ("a@b.example>", None), ("<<a@b.example>>", None),
    ("<a@b.example\r\n>", None), ('<"unterminated@b.example>', None), ("<.a@b.example>", None),
])
def test_paths(arg: str, expected: tuple[str, str] | None) -> None:
    assert split_path(arg) == expected


_ATOM = st.text("abcXYZ019!#$%&'*+/=?^_`{|}~-", min_size=1, max_size=8)
_LABEL = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,6}[a-z0-9])?", fullmatch=True)


@given(local=st.lists(_ATOM, min_size=1, max_size=3).map(".".join),
       domain=st.lists(_LABEL, min_size=1, max_size=4).map(".".join),
       params=st.sampled_from(["", " SIZE=100", " NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;a@b"]))
def test_dot_atom_paths_read_as_aiosmtpd_reads_them(local: str, domain: str,
                                                    params: str) -> None:
    """For the addresses nearly every client sends, the same answer as aiosmtpd's own parser
    (which we no longer call)."""
    server = aiosmtpd.smtp.SMTP(handler=None, loop=None)  # type: ignore[arg-type]
    arg = f"<{local}@{domain}>{params}"
    assert split_path(arg) == server._getaddr(arg)


def test_keywords() -> None:
    assert strip_keyword("FROM:", "from: <a@b>") == "<a@b>"
    assert strip_keyword("TO:", "To:<a@b> X=1") == "<a@b> X=1"
    assert strip_keyword("TO:", "FROM:<a@b>") is None


async def test_help_answers_for_every_command(tmp_path: Path) -> None:
    async with running_bridge(make_config(tmp_path)) as bridge:
        def ask() -> dict[str, tuple[int, bytes]]:
            with smtp(bridge.smtp_port) as client:
                return {c: client.docmd("HELP", c) for c in
                        ("MAIL", "RCPT", "DATA", "AUTH", "VRFY", "NOOP", "RSET", "QUIT")}
        answers = await in_thread(ask)
    assert answers["MAIL"] == (250, b"2.0.0 Syntax: MAIL FROM: <address> [SP <mail-parameters>]")
    assert answers["RCPT"] == (250, b"2.0.0 Syntax: RCPT TO: <address> [SP <mail-parameters>]")
    assert all(code == 250 for code, _ in answers.values()), answers


async def test_recipients_refused_at_rcpt_are_logged(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    config = make_config(tmp_path, smtp={"max_recipients": 1})
    async with running_bridge(config) as bridge:
        def session() -> list[int]:
            with smtp(bridge.smtp_port) as client:
                client.mail("ops@acme.example")
                return [client.rcpt("12@sms.localhost")[0],
                        client.rcpt("+447400123456@sms.localhost")[0],
                        client.rcpt("+447400123457@sms.localhost")[0]]
        with caplog.at_level(logging.INFO, logger="bridge.smtp"):
            codes = await in_thread(session)
    assert codes[0] == 550 and codes[1] == 250 and codes[2] == 452
    lines = [r.getMessage() for r in caplog.records if "recipient refused" in r.getMessage()]
    assert len(lines) == 2, lines
    assert re.match(r"smtp recipient refused ip=127\.0\.0\.1 account=demo rcpt=12: ", lines[0])
    assert lines[1] == ("smtp recipient refused ip=127.0.0.1 account=demo "
                        "rcpt=+447400123457: more than 1 in one mail")


#: aiosmtpd's internals with no public hook that the listener still needs, and why: its
#: stream reader and writer (DATA read in bulk, pipelined replies sent together) and its
#: idle timer (reset while DATA is read without its command loop).
ALLOWED_PRIVATE = {"_reader", "_writer", "_reset_timeout"}


def test_the_listener_touches_only_the_aiosmtpd_internals_it_must() -> None:
    private = {name for name in dir(aiosmtpd.smtp.SMTP) if name.startswith("_")
               and not name.startswith("__")}
    source = inspect.getsource(aiosmtpd.smtp.SMTP)
    private |= set(re.findall(r"self\.(_[a-z]\w*)", source))
    ours = ast.parse((ROOT / "bridge" / "ingress" / "smtp" / "server.py").read_text())
    used = {node.attr for node in ast.walk(ours) if isinstance(node, ast.Attribute)
            and isinstance(node.value, (ast.Name, ast.Call))
            and (getattr(node.value, "id", "") == "self"
                 or isinstance(node.value, ast.Call))}
    assert used & private <= ALLOWED_PRIVATE, sorted(used & private - ALLOWED_PRIVATE)
