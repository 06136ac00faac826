"""The console's login sessions, in this process's memory: a random token in an HttpOnly,
SameSite=Strict cookie, and with it a second random token the page sends back in a header
(or the logout form) for anything that changes state, so another site can make the browser
send the cookie but never that token. A session ends at logout, after `IDLE_S` unused or
`MAX_S` in all; a restart ends them all (and each instance has its own: log in to each).
"""

from __future__ import annotations

import hmac
import secrets
from collections import OrderedDict
from dataclasses import dataclass, replace

#: A session unused this long ends; none lasts longer than MAX_S.
IDLE_S = 1800.0
MAX_S = 12 * 3600.0
#: Sessions kept at most (the oldest ends first): a cap, not a limit anyone should reach.
MAX_SESSIONS = 1000
COOKIE = "sms_bridge_admin"


@dataclass(frozen=True)
class Session:
    token: str
    csrf: str
    user: str
    started: float
    seen: float


class Sessions:
    def __init__(self) -> None:
        self._live: OrderedDict[str, Session] = OrderedDict()

    def start(self, user: str, now: float) -> Session:
        session = Session(secrets.token_urlsafe(32), secrets.token_urlsafe(32), user, now, now)
        self._live[session.token] = session
        while len(self._live) > MAX_SESSIONS:
            self._live.popitem(last=False)
        return session

    def find(self, token: str | None, now: float) -> Session | None:
        """The live session of a cookie's token (its use counts as activity), else None."""
        if not token:
            return None
        session = self._live.get(token)
        if session is None:
            return None
        if now - session.seen > IDLE_S or now - session.started > MAX_S:
            del self._live[token]
            return None
        session = self._live[token] = replace(session, seen=now)
        return session

    def end(self, token: str | None) -> None:
        if token:
            self._live.pop(token, None)

    def __len__(self) -> int:
        return len(self._live)


def csrf_matches(session: Session, given: str | None) -> bool:
    return given is not None and hmac.compare_digest(session.csrf.encode(),
                                                     given.encode("utf-8", "replace"))
