"""Authentication: HTTP Basic, WS-Security UsernameToken (PasswordText and PasswordDigest with
replay protection), 401 without credentials; unit tests of bridge.ingress.soap.security."""

from __future__ import annotations

import base64
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import zeep
from lxml import etree
from zeep.wsse.username import UsernameToken as ZeepToken

from bridge.intake.credentials import hash_password
from bridge.ingress.soap.security import (
    PASSWORD_DIGEST,
    WSSE_NS,
    WSU_NS,
    AuthError,
    NonceCache,
    UsernameToken,
    check_freshness,
    digest_matches,
    find_username_token,
    parse_basic,
    password_digest,
)
from tests.conftest import DEMO_PASSWORD, make_config, running_bridge
from tests.soap import (
    ENV11,
    VERSIONS,
    basic,
    call,
    client,
    content_type,
    envelope,
    fault_info,
)



async def refused(c: Any) -> tuple[str, int]:
    """The fault name and code GetAccount gets with the credentials of client `c`."""
    with pytest.raises(zeep.exceptions.Fault) as info:
        await call(c, "GetAccount")
    return fault_info(info.value)

@pytest.mark.parametrize("version", VERSIONS)
async def test_basic_and_username_tokens(tmp_path: Path, version: str) -> None:
    async with running_bridge(make_config(tmp_path)) as bridge:
        port = bridge.soap_port
        for wsse in (ZeepToken("demo", DEMO_PASSWORD),
                     ZeepToken("demo", DEMO_PASSWORD, use_digest=True)):
            c = await client(port, version, auth=None, wsse=wsse)
            assert (await call(c, "GetAccount")).name == "demo"
            assert (await call(c, "GetAccount")).name == "demo"  # fresh nonce each call
        for wsse in (ZeepToken("demo", "wrong"), ZeepToken("demo", "wrong", use_digest=True),
                     ZeepToken("ghost", DEMO_PASSWORD, use_digest=True)):
            c = await client(port, version, auth=None, wsse=wsse)
            assert await refused(c) == ("AUTH_FAILED", 1703)


@pytest.mark.parametrize("version", VERSIONS)
async def test_replayed_nonce_and_stale_timestamp_refused(tmp_path: Path, version: str) -> None:
    async with running_bridge(make_config(tmp_path)) as bridge:
        now = datetime.now(timezone.utc)
        replayed = ZeepToken("demo", DEMO_PASSWORD, use_digest=True, nonce="fixed-nonce-1",
                             created=now)
        c = await client(bridge.soap_port, version, auth=None, wsse=replayed)
        assert (await call(c, "GetAccount")).name == "demo"
        assert await refused(c) == ("AUTH_FAILED", 1703)  # the very same token again
        for created in (now - timedelta(hours=1), now + timedelta(hours=1)):
            token = ZeepToken("demo", DEMO_PASSWORD, use_digest=True, created=created)
            c = await client(bridge.soap_port, version, auth=None, wsse=token)
            assert await refused(c) == ("AUTH_FAILED", 1703)


@pytest.mark.parametrize("version", VERSIONS)
async def test_http_401_challenge(tmp_path: Path, version: str) -> None:
    async with running_bridge(make_config(tmp_path)) as bridge:
        url = f"http://127.0.0.1:{bridge.soap_port}/soap"
        body = envelope("<t:GetAccount/>", version)
        async with aiohttp.ClientSession() as http:
            for headers in ({}, {"Authorization": basic("demo", "wrong")},
                            {"Authorization": "Basic !!!notbase64"},
                            {"Authorization": "Bearer abc"}):
                async with http.post(url, data=body, headers={
                        "Content-Type": content_type(version), **headers}) as response:
                    assert response.status == 401
                    assert response.headers["WWW-Authenticate"] == 'Basic realm="sms-bridge"'
                    text = await response.text()
                    assert "AUTH_FAILED" in text and "1703" in text
            async with http.post(url, data=body, headers={
                    "Content-Type": content_type(version), "Authorization": basic()}) as response:
                assert response.status == 200
                assert response.headers["Content-Type"].startswith(content_type(version)[:12])


async def test_hashed_password_account(tmp_path: Path) -> None:
    config = make_config(tmp_path, account=[{
        "name": "hashed", "password_hash": hash_password("s3cret", iterations=2000),
        "senders": ["ACME"], "default_sender": "ACME"}])
    async with running_bridge(config) as bridge:
        c = await client(bridge.soap_port, "1.1", auth=("hashed", "s3cret"))
        assert (await call(c, "GetAccount")).name == "hashed"
        assert (await call(c, "GetAccount")).name == "hashed"  # second time from the cache
        bad = await client(bridge.soap_port, "1.1", auth=("hashed", "wrong"))
        with pytest.raises(zeep.exceptions.Fault):
            await call(bad, "GetAccount")
        # a password hash cannot check a digest
        digest = await client(bridge.soap_port, "1.1", auth=None,
                              wsse=ZeepToken("hashed", "s3cret", use_digest=True))
        assert await refused(digest) == ("AUTH_FAILED", 1703)
        text = await client(bridge.soap_port, "1.1", auth=None,
                            wsse=ZeepToken("hashed", "s3cret"))
        assert (await call(text, "GetAccount")).name == "hashed"


# ------------------------------------------------------------------------------ units


def _token_doc(password: str, *, kind: str = PASSWORD_DIGEST, nonce: bytes | None = b"n" * 16,
               created: str | None = "2024-05-01T12:00:00Z") -> etree._Element:
    parts = ["<wsse:Username>demo</wsse:Username>",
             f'<wsse:Password Type="{kind}">{password}</wsse:Password>']
    if nonce is not None:
        parts.append(f"<wsse:Nonce>{base64.b64encode(nonce).decode()}</wsse:Nonce>")
    if created is not None:
        parts.append(f"<wsu:Created>{created}</wsu:Created>")
    header = (f'<wsse:Security xmlns:wsse="{WSSE_NS}" xmlns:wsu="{WSU_NS}"><wsse:UsernameToken>'
              f'{"".join(parts)}</wsse:UsernameToken></wsse:Security>')
    return etree.fromstring(envelope("<t:GetAccount/>", header=header))


def test_digest_matches_the_profile_formula() -> None:
    created = "2024-05-01T12:00:00Z"
    digest = password_digest(b"n" * 16, created, "pw")
    token = find_username_token(_token_doc(digest), ENV11)
    assert token is not None and token.digest and token.nonce == b"n" * 16
    assert digest_matches(token, "pw")
    assert not digest_matches(token, "other")
    # QName form of the Type attribute, as some toolkits write it
    qname = find_username_token(_token_doc(digest, kind="wsse:PasswordDigest"), ENV11)
    assert qname is not None and qname.digest


def test_freshness_window_with_injected_clock() -> None:
    token = UsernameToken("demo", "x", True, b"n", "2024-05-01T12:00:00Z", None)
    at = datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc).timestamp()
    check_freshness(token, now=at + 299, window_s=300, skew_s=60)
    with pytest.raises(AuthError, match="stale"):
        check_freshness(token, now=at + 301, window_s=300, skew_s=60)
    with pytest.raises(AuthError, match="future"):
        check_freshness(token, now=at - 61, window_s=300, skew_s=60)
    with pytest.raises(AuthError, match="requires Nonce"):
        check_freshness(UsernameToken("demo", "x", True, None, None, None), now=at,
                        window_s=300, skew_s=60)
    expired = UsernameToken("demo", "x", False, None, None, "2024-05-01T11:00:00Z")
    with pytest.raises(AuthError, match="expired"):
        check_freshness(expired, now=at, window_s=300, skew_s=60)
    with pytest.raises(AuthError, match="malformed"):
        check_freshness(UsernameToken("demo", "x", False, None, "yesterday", None), now=at,
                        window_s=300, skew_s=60)


def test_nonce_cache_replay_expiry_and_bound() -> None:
    cache = NonceCache(ttl_s=10, max_entries=3)
    assert cache.add("demo", b"a", now=0)
    assert not cache.add("demo", b"a", now=5)  # replay inside the window
    assert cache.add("other", b"a", now=5)  # per user
    assert cache.add("demo", b"b", now=6)
    assert not cache.add("demo", b"c", now=7)  # full of live entries: fail closed
    assert cache.add("demo", b"c", now=10.5)  # the first entry expired
    assert len(cache) == 3
    assert cache.add("demo", b"a", now=16.5)  # a nonce may come back once it is out of window
    assert len(cache) == 2


def test_parse_basic() -> None:
    assert parse_basic(None) is None
    assert parse_basic("Bearer x") is None
    creds = parse_basic(basic("demo", "p:w"))
    assert creds is not None and (creds.username, creds.password) == ("demo", "p:w")
    for bad in ("Basic !!!", "Basic " + base64.b64encode(b"nocolon").decode(),
                "Basic " + base64.b64encode(b":pw").decode()):
        with pytest.raises(AuthError):
            parse_basic(bad)


def test_malformed_tokens() -> None:
    with pytest.raises(AuthError):
        find_username_token(_token_doc("x", kind="urn:unknown#Type"), ENV11)
    doc = _token_doc("x")
    doc.find(f".//{{{WSSE_NS}}}Nonce").text = "%%%"
    with pytest.raises(AuthError):
        find_username_token(doc, ENV11)
    assert find_username_token(etree.fromstring(envelope("<t:GetAccount/>")), ENV11) is None
