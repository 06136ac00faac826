"""Delivery callbacks, the pure part: URLs taken or refused, the retry schedule, the document."""

from __future__ import annotations

import json
from urllib.parse import urlsplit

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge.core.callbacks import (
    MAX_URL_LENGTH,
    CallbackFacts,
    RetrySchedule,
    Verdict,
    callback_document,
    callback_host_allowed,
    callback_host_pattern_problem,
    callback_signature,
    callback_url_problem,
    redact_url,
    retry_delay,
    verdict,
)

GOOD_URLS = [
    "http://127.0.0.1:8081/dlr",
    "https://hooks.acme.example/sms/dlr?token=abc&x=1",
    "HTTPS://Hooks.Acme.Example/",
    "http://[::1]:9000/cb",
    "http://user:secret@cb.example/dlr",
    "http://xn--bcher-kva.example/cb",
]

BAD_URLS = [
    ("ftp://example.com/dlr", "http(s)"),
    ("javascript:alert(1)", "http(s)"),
    ("file:///etc/passwd", "http(s)"),
    ("example.com/dlr", "http(s)"),
    ("//example.com/dlr", "http(s)"),
    ("http://", "no host"),
    ("http:///dlr", "no host"),
    ("http://:80/dlr", "no host"),
    ("http://example.com:0/dlr", "port 0"),
    ("http://example.com:99999/dlr", "not a valid URL"),
    ("http://example.com:http/dlr", "not a valid URL"),
    ("http://[::1/dlr", "not a valid URL"),
    ("http://example.com/a b", "spaces"),
    ("http://example.com/a\r\nX-Injected: 1", "spaces"),
    ("http://example.com/\x00", "control"),
    ("http://example.com/\x7f", "control"),
    ("http://example.com/dlr#frag", "fragment"),
    ("http://example.com/" + "a" * MAX_URL_LENGTH, "longer than"),
]


@pytest.mark.parametrize("url", GOOD_URLS)
def test_urls_taken(url: str) -> None:
    assert callback_url_problem(url) is None


@pytest.mark.parametrize(("url", "why"), BAD_URLS)
def test_urls_refused_with_the_reason(url: str, why: str) -> None:
    problem = callback_url_problem(url)
    assert problem is not None and why in problem


@given(st.text(max_size=200))
def test_whatever_is_taken_is_an_http_url_with_a_host(url: str) -> None:
    if callback_url_problem(url) is None:
        parts = urlsplit(url)
        assert parts.scheme.lower() in ("http", "https")
        assert parts.hostname
        assert not any(c.isspace() for c in url)


@pytest.mark.parametrize(("url", "shown"), [
    ("http://user:secret@cb.example:8080/dlr?token=abc#x", "http://cb.example:8080/dlr"),
    ("https://cb.example/a/b", "https://cb.example/a/b"),
    ("http://[::1]:9000/cb?k=v", "http://[::1]:9000/cb"),
    ("http://example.com:http/x", "<invalid url>"),
])
def test_redacted_url_keeps_no_credentials_or_query(url: str, shown: str) -> None:
    assert redact_url(url) == shown


@given(st.text(min_size=1, max_size=20).filter(lambda s: s.isalnum()),
       st.text(min_size=1, max_size=20).filter(lambda s: s.isalnum()))
def test_redaction_never_shows_a_password_or_a_token(password: str, token: str) -> None:
    shown = redact_url(f"https://user:{password}@cb.example/path?token={token}")
    assert shown == "https://cb.example/path"


HOSTS = ("hooks.acme.example", "*.cb.acme.example", "10.1.2.*", "fd00::*")


@pytest.mark.parametrize(("url", "allowed"), [
    ("https://hooks.acme.example/dlr", True),
    ("https://HOOKS.Acme.Example:8443/dlr", True),  # hosts compare in lower case, any port
    ("https://a.cb.acme.example/x", True),
    ("https://a.b.cb.acme.example/x", True),
    ("https://cb.acme.example/x", False),  # the wildcard needs a label before the dot
    ("https://hooks.acme.example.evil.example/x", False),
    ("https://evil.example/?hooks.acme.example", False),
    ("https://hooks.acme.example@evil.example/x", False),  # user info is not the host
    ("http://10.1.2.3/x", True),
    ("http://10.1.20.3/x", False),
    ("http://127.0.0.1/x", False),
    ("http://[fd00::1]/x", True),
    ("http://[fe80::1]/x", False),
    ("http://[::1/x", False),  # unparsable: never allowed
])
def test_callback_hosts_table(url: str, allowed: bool) -> None:
    assert callback_host_allowed(url, HOSTS) is allowed


@given(st.sampled_from(GOOD_URLS + [u for u, _ in BAD_URLS]))
def test_no_callback_hosts_means_any_host(url: str) -> None:
    assert callback_host_allowed(url, ())


@pytest.mark.parametrize(("pattern", "ok"), [
    ("hooks.acme.example", True), ("*.acme.example", True), ("10.1.2.*", True),
    ("fd00::*", True), ("", False), ("https://hooks.acme.example", False),
    ("hooks.acme.example:443", False), ("hooks.acme.example/dlr", False),
    ("user@hooks.acme.example", False), ("[ab]c.example", False), ("a b", False),
])
def test_callback_host_patterns(pattern: str, ok: bool) -> None:
    assert (callback_host_pattern_problem(pattern) is None) is ok


SCHEDULE = RetrySchedule(max_attempts=4, base_s=5.0, max_s=30.0)


@pytest.mark.parametrize(("status", "attempts", "expected"), [
    (200, 1, Verdict.DELIVERED),
    (204, 4, Verdict.DELIVERED),
    (299, 2, Verdict.DELIVERED),
    (None, 1, Verdict.RETRY),  # no answer
    (500, 1, Verdict.RETRY),
    (404, 3, Verdict.RETRY),
    (301, 1, Verdict.RETRY),  # redirects are never followed
    (199, 1, Verdict.RETRY),
    (300, 1, Verdict.RETRY),
    (500, 4, Verdict.GAVE_UP),
    (None, 4, Verdict.GAVE_UP),
    (503, 9, Verdict.GAVE_UP),
])
def test_verdict_table(status: int | None, attempts: int, expected: Verdict) -> None:
    assert verdict(status, attempts, SCHEDULE) is expected


@pytest.mark.parametrize(("attempts", "delay"), [(0, 5.0), (1, 5.0), (2, 10.0), (3, 20.0),
                                                 (4, 30.0), (50, 30.0), (10_000, 30.0)])
def test_retry_delay_doubles_up_to_the_cap(attempts: int, delay: float) -> None:
    assert retry_delay(attempts, SCHEDULE) == delay


@given(st.integers(1, 10_000), st.floats(0.01, 3600), st.floats(0.01, 86400))
def test_retry_delay_grows_and_stays_in_bounds(attempts: int, base: float, cap: float) -> None:
    schedule = RetrySchedule(10, min(base, cap), cap)
    delay = retry_delay(attempts, schedule)
    assert schedule.base_s <= delay <= schedule.max_s
    assert retry_delay(attempts + 1, schedule) >= delay


def _facts(**changes: object) -> CallbackFacts:
    base = dict(message_id="m1", state="delivered", at=1_700_000_000.5, recipient="+447400123456",
                reference="order-7", parts=2, parts_delivered=2, error=None, error_detail=None,
                attempt=1)
    base.update(changes)
    return CallbackFacts(**base)  # type: ignore[arg-type]


def test_document_fields_and_order() -> None:
    body = callback_document(_facts())
    assert body == (b'{"message_id":"m1","reference":"order-7","recipient":"+447400123456",'
                    b'"state":"delivered","at":"2023-11-14T22:13:20.500Z","parts":2,'
                    b'"parts_delivered":2,"error":null,"code":null,"error_detail":null,'
                    b'"attempt":1}')


def test_document_of_a_failure_carries_the_error_code() -> None:
    document = json.loads(callback_document(_facts(
        state="failed", parts_delivered=0, error="INVALID_DESTINATION",
        error_detail="submit_sm_resp 0x0000000B", attempt=3, reference=None)))
    assert (document["state"], document["error"], document["code"]) == (
        "failed", "INVALID_DESTINATION", 1706)
    assert document["reference"] is None and document["attempt"] == 3


def test_document_with_an_unknown_error_name_has_no_code() -> None:
    assert json.loads(callback_document(_facts(error="SOMETHING_ELSE")))["code"] is None


@given(st.text(st.characters()), st.text(st.characters()), st.floats(0, 4_000_000_000))
def test_document_is_json_for_any_text(reference: str, detail: str, at: float) -> None:
    document = json.loads(callback_document(_facts(reference=reference, error_detail=detail,
                                                   at=at)))
    assert document["reference"] == reference and document["error_detail"] == detail
    assert document["at"].endswith("Z")


def test_callback_signature_matches_an_independent_hmac() -> None:
    # printf '1700000000.{"message_id":"m1"}' | openssl dgst -sha256 -hmac 'a-long-enough-secret'
    assert callback_signature("a-long-enough-secret", 1_700_000_000,
                              b'{"message_id":"m1"}') == (
        "v1=df3a639204fea5f55d5fc48eafad0c7f3e541b5e528b3e156cb2a61065bb392c")
