"""The one credential check every listener uses: an account's name and password (SMTP AUTH,
SOAP Basic and UsernameToken, the HTTP dialects' username/password) and its API tokens (the
JSON API's bearer token), with one cache.

Passwords are `password` (plain, for WS-Security digests) or `password_hash`; API tokens are
kept only as hashes, in the same form (`hash_password`). A pbkdf2 check costs real CPU time, so
it runs in a worker thread and a success is remembered for a while (the SHA-256 of what
passed, never the secret itself): a client that authenticates on every request pays for the
hash once per `ttl_s`. A bearer token names no account, so finding its account means trying
every account's token hashes: those checks run one at a time, and a token that matched none
is remembered as wrong for a short while, so a client repeating a bad token cannot make the
bridge hash for every request.

`AuthGuard` is how a listener checks: the same checks, slowed and refused per client address
and per user by bridge.core.floods's rule, each failure logged on one line of a fixed form
that fail2ban can match (conf/README.md has the filter).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import os
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass

from bridge.config import AccountConfig
from bridge.core.floods import USER_KEPT, AuthRule, AuthThrottle

HASH_SCHEME = "pbkdf2_sha256"


def hash_password(password: str, *, iterations: int = 200_000) -> str:
    """`pbkdf2_sha256$iterations$salt_hex$hash_hex`, the form of `password_hash` and of each
    `api_tokens` entry."""
    salt = os.urandom(16)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    return f"{HASH_SCHEME}${iterations}${salt.hex()}${digest.hex()}"


def hash_matches(stored: str, secret: str) -> bool:
    """Constant-time check of `secret` against a `hash_password` string; False for anything
    that is not one."""
    try:
        scheme, iterations, salt, digest = stored.split("$")
        if scheme != HASH_SCHEME:
            return False
        computed = hashlib.pbkdf2_hmac("sha256", secret.encode(), bytes.fromhex(salt),
                                       int(iterations))
    except ValueError:
        return False
    return hmac.compare_digest(computed.hex(), digest)


def verify_password(account: AccountConfig, password: str) -> bool:
    """Constant-time; `password` or `password_hash`, whichever the account has."""
    if account.password is not None:
        return hmac.compare_digest(account.password.encode(), password.encode())
    if account.password_hash is None:
        return False
    return hash_matches(account.password_hash, password)


class _Remembered:
    """Digests of secrets that were checked recently, with what they gave, for `ttl_s`.
    Bounded: when full of live entries it starts again empty (a cache, not a record)."""

    def __init__(self, ttl_s: float, max_entries: int = 10_000) -> None:
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._entries: dict[bytes, tuple[float, str | None]] = {}

    def get(self, key: bytes, now: float) -> tuple[bool, str | None]:
        """(known, account name or None for a known failure)."""
        entry = self._entries.get(key)
        if entry is None or entry[0] <= now:
            return False, None
        return True, entry[1]

    def put(self, key: bytes, value: str | None, now: float) -> None:
        if len(self._entries) >= self.max_entries:
            self._entries = {k: v for k, v in self._entries.items() if v[0] > now}
            if len(self._entries) >= self.max_entries:
                self._entries.clear()
        self._entries[key] = (now + self.ttl_s, value)


def _digest(*parts: str) -> bytes:
    return hashlib.sha256("\x00".join(parts).encode("utf-8", "surrogatepass")).digest()


class Credentials:
    """Who a password or a token belongs to. `ttl_s`: how long a success is remembered;
    `wrong_token_ttl_s`: how long a token that matched no account is."""

    def __init__(self, accounts: Iterable[AccountConfig], *,
                 clock: Callable[[], float] = time.time, ttl_s: float = 300.0,
                 wrong_token_ttl_s: float = 60.0) -> None:
        self._accounts = {a.name: a for a in accounts}
        self._tokens = tuple((a.name, stored) for a in self._accounts.values()
                             for stored in a.api_tokens)
        self.clock = clock
        self._passwords = _Remembered(ttl_s)
        self._good_tokens = _Remembered(ttl_s)
        self._wrong_tokens = _Remembered(wrong_token_ttl_s)
        self._hashing = asyncio.Lock()  # token checks one at a time

    def account(self, name: str) -> AccountConfig | None:
        return self._accounts.get(name)

    async def password(self, name: str, password: str) -> AccountConfig | None:
        """The account `name` when `password` is its password, else None."""
        account = self._accounts.get(name)
        if account is None:
            # Spend the time of a real comparison so names cannot be probed by timing.
            hmac.compare_digest(password.encode(), b"\0" * len(password.encode()))
            return None
        if account.password is not None:  # plain: cheaper than any cache
            return account if verify_password(account, password) else None
        key = _digest(name, password)
        now = self.clock()
        known, _ = self._passwords.get(key, now)
        if known:
            return account
        if not await asyncio.to_thread(verify_password, account, password):
            return None
        self._passwords.put(key, name, now)
        return account

    async def token(self, token: str) -> AccountConfig | None:
        """The account one of whose `api_tokens` is `token`, else None."""
        if not token or not self._tokens:
            return None
        key = _digest(token)
        now = self.clock()
        for cache in (self._good_tokens, self._wrong_tokens):
            known, name = cache.get(key, now)
            if known:
                return self._accounts.get(name) if name is not None else None
        async with self._hashing:
            name = await asyncio.to_thread(self._token_owner, token)
        (self._good_tokens if name is not None else self._wrong_tokens).put(key, name, now)
        return self._accounts.get(name) if name is not None else None

    def _token_owner(self, token: str) -> str | None:
        """Every stored hash is tried, matched or not, so the time says nothing about where
        a token was found."""
        owner = None
        for name, stored in self._tokens:
            if hash_matches(stored, token) and owner is None:
                owner = name
        return owner


# ---------------------------------------------------------------- throttled checks

auth_log = logging.getLogger("bridge.auth")

#: What a check gives: the account (True: a person who is not an account, an admin user), or
#: why it failed ("bad password").
Check = Callable[[], Awaitable["AccountConfig | bool | str"]]


@dataclass(frozen=True)
class AuthOutcome:
    account: AccountConfig | None
    #: Not checked: too many failures from this address (or for this user) lately.
    refused: bool = False
    retry_after_s: float = 0.0
    #: The credentials matched (an account's, or an admin user's: account None).
    passed: bool = False


def quoted_user(user: str | None) -> str:
    """A user name as the log shows it: JSON-quoted, ASCII, so no name can end the field or
    forge another one; "-" when there is none (a bearer token)."""
    return "-" if user is None else json.dumps(user[:USER_KEPT], ensure_ascii=True)


class AuthGuard:
    """The credential checks of one listener (`ingress` names it in the log), throttled:
    a failure's answer is held by the rule's delay, an address or user over its limit is
    refused without a check (its answer held by the longest delay, so that knocking on a
    lock costs a connection's time too), a success is answered at once.

    One line per failure and per refusal, at warning, in this form (fail2ban's filter in
    conf/README.md matches it; the address comes before anything the client chose):

        auth failed ingress=smtp ip=192.0.2.7 user="demo" failures=4 delay_s=0.50 reason=...
        auth refused ingress=smtp ip=192.0.2.7 user="demo" retry_after_s=42 why=address
    """

    def __init__(self, credentials: Credentials, rule: AuthRule, ingress: str, *,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        self.credentials = credentials
        self.rule = rule
        self.ingress = ingress
        self.throttle = AuthThrottle(rule)
        self.clock = clock
        self.sleep = sleep
        #: One check at a time per address, each failure counted before the next verdict:
        #: concurrent guesses (a hashed password is checked in a thread) cannot overrun
        #: the limit. With the number of attempts using it, to drop it after the last.
        self._turns: dict[str, tuple[asyncio.Lock, int]] = {}

    async def password(self, name: str, password: str, peer: str) -> AuthOutcome:
        async def check() -> AccountConfig | str:
            return await self.credentials.password(name, password) or "bad password"
        return await self.attempt(peer, name, check)

    async def token(self, token: str, peer: str) -> AuthOutcome:
        async def check() -> AccountConfig | str:
            return await self.credentials.token(token) or "bad token"
        return await self.attempt(peer, None, check)

    async def attempt(self, peer: str, user: str | None, check: Check) -> AuthOutcome:
        """`check` unless `peer` or `user` is refused; a failure's answer held as the rule
        says. `user` None: the credential names nobody (a bearer token)."""
        lock, users = self._turns.get(peer) or (asyncio.Lock(), 0)
        self._turns[peer] = (lock, users + 1)
        try:
            async with lock:
                outcome, hold = await self._checked(peer, user, check)
        finally:
            lock, users = self._turns[peer]
            if users > 1:
                self._turns[peer] = (lock, users - 1)
            else:
                del self._turns[peer]
        if hold > 0:
            await self.sleep(hold)
        return outcome

    async def _checked(self, peer: str, user: str | None, check: Check
                       ) -> tuple[AuthOutcome, float]:
        """The outcome, and how long its answer is held."""
        verdict = self.throttle.verdict(peer, user, self.clock())
        if verdict.refused:
            auth_log.warning("auth refused ingress=%s ip=%s user=%s retry_after_s=%.0f why=%s",
                             self.ingress, peer, quoted_user(user),
                             max(1.0, verdict.retry_after_s), verdict.why)
            return (AuthOutcome(None, refused=True, retry_after_s=verdict.retry_after_s),
                    self.rule.delay_max_s)
        result = await check()
        if not isinstance(result, str):
            self.throttle.succeeded(peer, user, self.clock())
            return AuthOutcome(result if isinstance(result, AccountConfig) else None,
                               passed=True), 0.0
        failures, delay = self.throttle.failed(peer, user, self.clock())
        auth_log.warning("auth failed ingress=%s ip=%s user=%s failures=%d delay_s=%.2f "
                         "reason=%s", self.ingress, peer, quoted_user(user), failures, delay,
                         json.dumps(result))
        return AuthOutcome(None), delay


class PasswordBook:
    """Names with their `password_hash`es and nothing else (the console's `[admin] users`):
    `Credentials.password`'s check, with its cache of successes and its equal time for an
    unknown name, for people who are not accounts."""

    def __init__(self, hashes: Mapping[str, str], *, clock: Callable[[], float] = time.time,
                 ttl_s: float = 300.0) -> None:
        self._hashes = dict(hashes)
        self.clock = clock
        self._passwords = _Remembered(ttl_s)

    def __bool__(self) -> bool:
        return bool(self._hashes)

    async def check(self, name: str, password: str, peer: str = "") -> bool:
        """Whether `password` is `name`'s (`peer`, the client's address, is for a guard that
        wraps this check; the check itself does not need it)."""
        stored = self._hashes.get(name)
        if stored is None:
            # As long as a real check, so that names cannot be told apart by timing.
            for decoy in list(self._hashes.values())[:1]:
                await asyncio.to_thread(hash_matches, decoy, password)
            return False
        key = _digest(name, password, stored)
        now = self.clock()
        if self._passwords.get(key, now)[0]:
            return True
        if not await asyncio.to_thread(hash_matches, stored, password):
            return False
        self._passwords.put(key, name, now)
        return True
