"""The one credential check (bridge.intake.credentials): passwords plain or hashed, API tokens
as hashes, successes remembered, a wrong token remembered as wrong, and pbkdf2 off the loop."""

from __future__ import annotations

import pytest

from bridge.config import AccountConfig
from bridge.intake import credentials as module
from bridge.intake.credentials import Credentials, hash_matches, hash_password, verify_password


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every pbkdf2 check made, by the hash it was checked against."""
    calls: list[str] = []
    real = module.hash_matches

    def counting(stored: str, secret: str) -> bool:
        calls.append(stored)
        return real(stored, secret)

    monkeypatch.setattr(module, "hash_matches", counting)
    return calls


def test_hashes_round_trip_and_refuse_what_is_not_one() -> None:
    stored = hash_password("s3cret", iterations=1000)
    assert stored.startswith("pbkdf2_sha256$1000$")
    assert hash_matches(stored, "s3cret") and not hash_matches(stored, "s3cret ")
    for bad in ("", "plain", "md5$1$00$00", "pbkdf2_sha256$x$00$00", "pbkdf2_sha256$1$zz$00"):
        assert not hash_matches(bad, "s3cret")
    assert verify_password(AccountConfig("a", password="pw"), "pw")
    assert not verify_password(AccountConfig("a"), "")


async def test_a_hashed_password_is_hashed_once_per_ttl(counted: list[str]) -> None:
    clock = Clock()
    account = AccountConfig("a", password_hash=hash_password("pw", iterations=1000))
    creds = Credentials([account], clock=clock, ttl_s=60)
    assert await creds.password("a", "pw") is account
    assert await creds.password("a", "pw") is account
    assert len(counted) == 1
    assert await creds.password("a", "wrong") is None  # failures are not remembered
    assert await creds.password("a", "wrong") is None
    assert len(counted) == 3
    clock.now += 61
    assert await creds.password("a", "pw") is account
    assert len(counted) == 4
    assert await creds.password("nobody", "pw") is None


async def test_a_token_finds_its_account_and_a_wrong_one_is_remembered(
        counted: list[str]) -> None:
    clock = Clock()
    a = AccountConfig("a", api_tokens=(hash_password("tok-a1", iterations=1000),
                                       hash_password("tok-a2", iterations=1000)))
    b = AccountConfig("b", api_tokens=(hash_password("tok-b", iterations=1000),))
    creds = Credentials([a, b], clock=clock, ttl_s=60, wrong_token_ttl_s=10)
    assert await creds.token("tok-b") is b
    assert len(counted) == 3  # every stored hash, wherever the match was
    assert await creds.token("tok-a2") is a
    assert await creds.token("tok-b") is b  # remembered
    assert len(counted) == 6
    assert await creds.token("guess") is None
    assert await creds.token("guess") is None  # remembered as wrong
    assert len(counted) == 9
    clock.now += 11
    assert await creds.token("guess") is None
    assert len(counted) == 12
    assert await creds.token("") is None
    assert await Credentials([AccountConfig("c")]).token("tok-b") is None


def test_passwd_prints_a_hash_and_makes_tokens(monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    import io

    from bridge.cli import main

    monkeypatch.setattr("sys.stdin", io.StringIO("s3cret\n"))
    assert main(["passwd"]) == 0
    assert hash_matches(capsys.readouterr().out.strip(), "s3cret")
    assert main(["passwd", "--token"]) == 0
    token_line, hashed = capsys.readouterr().out.strip().splitlines()
    token = token_line.removeprefix("token: ")
    assert len(token) >= 32 and hash_matches(hashed, token)
    monkeypatch.setattr("sys.stdin", io.StringIO("\n"))
    assert main(["passwd"]) == 1


# ---------------------------------------------------------------- the throttled guard


async def test_the_guard_holds_failures_refuses_and_logs_one_line_each(
        caplog: pytest.LogCaptureFixture) -> None:
    """Failures held by the rule's delays, then refused unchecked; one line each with the
    address and the quoted user, never the password; a success answered at once."""
    from bridge.core.floods import AuthRule
    from bridge.intake.credentials import AuthGuard

    clock = Clock()
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    guard = AuthGuard(Credentials([AccountConfig("demo", password="pw")]),
                      AuthRule(window_s=60, free_failures=1, delay_s=1, delay_max_s=4,
                               max_failures=4), "smtp", clock=clock, sleep=sleep)
    caplog.set_level("INFO", logger="bridge.auth")
    name = 'demo" ip=203.0.113.9 x="\n'  # a user name that tries to forge a field
    for _ in range(5):
        outcome = await guard.password(name, "secret-guess", "192.0.2.1")
        assert outcome.account is None
    assert outcome.refused and outcome.retry_after_s == 60
    assert slept == [1, 2, 4, 4]  # the first failure free; the refusal held the longest
    assert (await guard.password("demo", "pw", "192.0.2.2")).account is not None
    assert slept == [1, 2, 4, 4]
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 5 and all("secret-guess" not in line for line in lines)
    assert lines[0] == ('auth failed ingress=smtp ip=192.0.2.1 user="demo\\" ip=203.0.113.9 '
                        'x=\\"\\n" failures=1 delay_s=0.00 reason="bad password"')
    assert lines[-1].startswith("auth refused ingress=smtp ip=192.0.2.1 user=")
    clock.now += 61
    assert (await guard.password("demo", "pw", "192.0.2.1")).account is not None
