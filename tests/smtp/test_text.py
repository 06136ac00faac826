"""bridge.ingress.smtp.text: email bytes → SMS text (pure), on a corpus shaped like real clients' mail."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bridge.core.errors import BridgeError, ErrorName
from bridge.ingress.smtp.text import (
    clean_text,
    decode_bytes,
    html_to_text,
    mail_to_text,
    parse_mail,
    unflow,
)

CORPUS = Path(__file__).parent / "corpus"
CASES = sorted(p.stem for p in CORPUS.glob("*.eml"))


def expected(name: str) -> str:
    return (CORPUS / f"{name}.txt").read_text(encoding="utf-8")


def test_corpus_is_complete() -> None:
    assert len(CASES) >= 15
    for name in CASES:
        assert (CORPUS / f"{name}.txt").exists(), name


@pytest.mark.parametrize("name", CASES)
def test_corpus_text(name: str) -> None:
    """Each mail gives exactly the SMS text stored next to it ([smtp] subject = "prepend")."""
    assert mail_to_text((CORPUS / f"{name}.eml").read_bytes()) == expected(name)


@pytest.mark.parametrize("name, kind", [
    ("01_outlook_html_only", "html"),
    ("02_apple_mail_alternative_qp", "plain"),
    ("11_calendar_invite", "plain"),
    ("12_smime_signed", "plain"),
    ("15_subject_only", "none"),
    ("18_thunderbird_html_reply", "html"),
])
def test_corpus_body_kind(name: str, kind: str) -> None:
    assert parse_mail((CORPUS / f"{name}.eml").read_bytes()).body_kind == kind


def test_message_id_and_subject() -> None:
    mail = parse_mail((CORPUS / "05_base64_utf8_emoji.eml").read_bytes())
    assert mail.message_id == "<grafana-alert-1704715200-web03@grafana.acme.example>"
    assert mail.subject == "[FIRING:1] \U0001F525 HighCPU web-03"


def test_body_and_in_reply_to_are_kept_apart_from_the_text() -> None:
    mail = parse_mail(b"Subject: Re: Pump 3\r\nIn-Reply-To:\r\n <reply.01ab@sms.localhost>\r\n"
                      b"\r\nOn my way\r\n")
    assert (mail.text, mail.body) == ("Re: Pump 3\nOn my way", "On my way")
    assert mail.in_reply_to == "<reply.01ab@sms.localhost>"
    assert parse_mail(PLAIN).in_reply_to is None


# ---------------------------------------------------------------- subject modes

PLAIN = (b"Subject: Disk full\r\nMessage-ID: <a@b>\r\nContent-Type: text/plain\r\n\r\n"
         b"db1 /var at 95%\r\n")
SUBJECT_ONLY = b"Subject: Disk full\r\n\r\n\r\n"


@pytest.mark.parametrize("mode, raw, text", [
    ("prepend", PLAIN, "Disk full\ndb1 /var at 95%"),
    ("ignore", PLAIN, "db1 /var at 95%"),
    ("only-if-body-empty", PLAIN, "db1 /var at 95%"),
    ("prepend", SUBJECT_ONLY, "Disk full"),
    ("only-if-body-empty", SUBJECT_ONLY, "Disk full"),
])
def test_subject_modes(mode: str, raw: bytes, text: str) -> None:
    assert mail_to_text(raw, subject=mode) == text


def test_subject_ignored_and_body_empty_is_invalid_message() -> None:
    with pytest.raises(BridgeError) as info:
        mail_to_text(SUBJECT_ONLY, subject="ignore")
    assert info.value.name is ErrorName.INVALID_MESSAGE
    assert info.value.smtp_reply.startswith("554 5.6.0")


@pytest.mark.parametrize("raw", [
    b"",
    b"\r\n\r\n",
    b"Subject: \r\n\r\n   \r\n\t\r\n",
    b"Content-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\n\r\nJVBERi0=\r\n",
    b"Content-Type: application/pkcs7-mime; smime-type=enveloped-data\r\n\r\nMIAGCSqG\r\n",
    b"Subject: \r\n\r\n> only a quote\r\n> here\r\n",
])
def test_no_text_is_invalid_message(raw: bytes) -> None:
    with pytest.raises(BridgeError) as info:
        mail_to_text(raw)
    assert info.value.name is ErrorName.INVALID_MESSAGE


# ---------------------------------------------------------------- pieces


def test_unflow_joins_soft_breaks_and_unstuffs() -> None:
    text = "one \r\ntwo \r\nthree\r\n >x\r\n> quoted \r\n> more\r\n-- \r\nsig"
    assert unflow(text) == "one two three\n>x\n> quoted more\n-- \nsig"
    assert unflow("a \r\nb", delsp=True) == "ab"


@pytest.mark.parametrize("data, label, text", [
    ("Café".encode("utf-8"), None, "Café"),
    ("Café".encode("cp1252"), None, "Café"),
    ("“q”".encode("cp1252"), "iso-8859-1", "“q”"),  # the label lies, as Outlook's do
    ("Café".encode("utf-8"), "iso-8859-1", "CafÃ©"),  # a valid label is believed
    ("Ω".encode("utf-8"), "x-unknown-charset", "Ω"),
    ("Привет".encode("koi8-r"), "KOI8-R", "Привет"),
    ("你好".encode("gb18030"), "gb2312", "你好"),
    ("ｶﾀｶﾅ".encode("iso2022_jp_ext"), "iso-2022-jp", "ｶﾀｶﾅ"),
    ("abc".encode("utf-16"), "utf-16", "abc"),
    (b"caf\xe9", "utf-8", "café"),  # declared UTF-8, actually windows-1252
])
def test_decode_bytes(data: bytes, label: str | None, text: str) -> None:
    assert decode_bytes(data, label) == text


def test_html_blocks_breaks_lists_tables_and_hidden() -> None:
    html = ("<html><head><title>t</title><style>p{}</style></head><body>"
            "<div>Hi,<div><br></div><div>Server <b>down</b>   now.</div></div>"
            "<p>&nbsp;</p><ol><li>one</li><li>two</li></ol><ul><li>x</li></ul>"
            "<table><tr><td>CPU</td><td>95%</td></tr><tr><td>RAM</td><td>40%</td></tr></table>"
            "<span style='display:none'>preheader</span><script>x()</script>"
            "<pre>a  b\n c</pre><blockquote>quoted</blockquote>end</body></html>")
    assert html_to_text(html) == ("Hi,\n\nServer down now.\n\xa0\n1. one\n2. two\n- x\n"
                                  "CPU 95%\nRAM 40%\na  b\n c\nend")


@pytest.mark.parametrize("html", ["", "   ", "<html></html>", "<?xml version='1.0'?>",
                                  "<<<>>>", "\x00\x00"])
def test_html_degenerate(html: str) -> None:
    assert clean_text(html_to_text(html)) in ("", "<<<>>>")


def test_clean_text_quotes_and_signatures() -> None:
    text = ("Top answer\n\nOn Mon, 8 Jan 2024 at 10:00, A B <a@b.example>\nwrote:\n> q1\n> q2\n"
            "\nbottom answer\n\n-- \nsig")
    assert clean_text(text) == "Top answer\n\nbottom answer"
    assert clean_text("Hi\n\n-----Original Message-----\nFrom: x\nold") == "Hi"
    assert clean_text("Hi\n________________________________\nFrom: A\nSent: Monday\nTo: B\n"
                      "Subject: s\n\nold") == "Hi"
    # a From: line in an alert is not a reply header
    assert clean_text("From: backup-01\nStatus: failed") == "From: backup-01\nStatus: failed"
    assert clean_text("Train late\n\nSent from my iPhone") == "Train late"
    assert clean_text("a\u200bb\tc\xa0d\n\n\n\ne") == "ab c d\n\ne"


def test_malformed_boundary_and_missing_boundary() -> None:
    raw = (b"Subject: s\r\nContent-Type: multipart/alternative\r\n\r\n"
           b"--zz\r\nContent-Type: text/plain\r\n\r\nhello\r\n--zz--\r\n")
    assert mail_to_text(raw, subject="ignore") == "hello"


@pytest.mark.parametrize("raw", [
    b'Content-Type: text/plain; charset="utf\x00-8"\r\n\r\nGr\xc3\xbc\xc3\x9fe\r\n',
    b'Content-Type: multipart/mixed; boundary="zz"\r\n\r\n--zz\r\n'
    b'Content-Type: text/plain; charset="utf\x00-8"\r\n\r\nGr\xc3\xbc\xc3\x9fe\r\n--zz--\r\n',
    # a boundary that does not match, under a charset label with a NUL: salvaged all the same
    b'Content-Type: multipart/mixed; charset="x\x00"; boundary="yy"\r\n\r\n--zz\r\n'
    b'Content-Type: text/plain\r\n\r\nGr\xc3\xbc\xc3\x9fe\r\n--zz--\r\n',
], ids=["leaf", "in a multipart", "salvaged"])
def test_a_charset_label_with_a_nul_in_it_reads_as_no_label(raw: bytes) -> None:
    """Found by fuzzing: Python's codec lookup raises ValueError (not LookupError) for a
    name with a NUL, and compat32's get_payload() passes the label to it."""
    assert mail_to_text(raw) == "Grüße"


def test_deep_nesting_is_bounded() -> None:
    depth = 200
    head = b"".join(b"Content-Type: multipart/mixed; boundary=\"b%d\"\r\n\r\n--b%d\r\n" % (i, i)
                    for i in range(depth))
    raw = b"Subject: deep\r\n" + head + b"Content-Type: text/plain\r\n\r\nbottom\r\n"
    assert mail_to_text(raw) in ("deep", "deep\nbottom")


CORPUS_BYTES = [(CORPUS / f"{name}.eml").read_bytes() for name in CASES]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(CORPUS_BYTES), st.integers(0, 10_000), st.integers(0, 400),
       st.binary(max_size=40))
def test_mutated_mail_never_crashes(base: bytes, pos: int, cut: int, junk: bytes) -> None:
    """Any bytes: a text or INVALID_MESSAGE, never another exception."""
    pos = pos % (len(base) + 1)
    raw = base[:pos] + junk + base[pos + cut:]
    try:
        text = mail_to_text(raw)
    except BridgeError as exc:
        assert exc.name is ErrorName.INVALID_MESSAGE
    else:
        assert text and text == text.strip()
