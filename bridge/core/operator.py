"""What an operator may do to messages and accounts (SPEC §2 `messages`, `accounts`), as rules
without I/O: the command line and the admin API read their input here, and both stores ask
the same tables, so a message is cancelled or retried by one rule whichever way the order came.

- cancel: a queued or scheduled message none of whose parts an SMSC may have (no submit begun,
  none acknowledged) becomes `cancelled`, a final state;
- retry: a failed or expired message goes back to `queued`, with its validity renewed from now.

Nothing the dispatcher or a receipt records can make these moves: they are not in
`bridge.core.states.MESSAGE_TRANSITIONS`, only here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timezone
from enum import Enum
from types import MappingProxyType
from typing import Mapping, Sequence

from bridge.core.states import MessageState

__all__ = [
    "Action", "Move", "OPERATOR_MOVES", "action_refusal", "renewed_expiry",
    "parse_ids", "parse_state", "parse_since", "parse_limit", "parse_credit_change",
    "MAX_IDS", "MAX_LIMIT", "MIN_VALIDITY_S",
]

_S = MessageState


class Action(str, Enum):
    CANCEL = "cancel"
    RETRY = "retry"


@dataclass(frozen=True)
class Move:
    sources: frozenset[MessageState]
    target: MessageState
    done: str  # the past tense an operator reads ("cancelled")


OPERATOR_MOVES: Mapping[Action, Move] = MappingProxyType({
    Action.CANCEL: Move(frozenset({_S.QUEUED, _S.SCHEDULED}), _S.CANCELLED, "cancelled"),
    Action.RETRY: Move(frozenset({_S.FAILED, _S.EXPIRED}), _S.QUEUED, "retried"),
})

#: A renewed validity is never shorter than this (SMPP's relative validity counts minutes).
MIN_VALIDITY_S = 60.0
#: Ids one command or API call may name, and messages one list may show.
MAX_IDS = 1000
MAX_LIMIT = 1000


def action_refusal(action: Action, state: MessageState | None, *, sending: bool) -> str | None:
    """None when the operator may do `action` to a message in `state`; else why not, in
    words for the operator. `sending`: a submit of one of its parts has begun (or an SMSC
    acknowledged one), so the SMSC may have it and cancelling could not stop it."""
    if state is None:
        return "no such message"
    move = OPERATOR_MOVES[action]
    if state not in move.sources:
        allowed = " or ".join(sorted(s.value for s in move.sources))
        return f"it is {state.value}: only {allowed} messages can be {move.done}"
    if action is Action.CANCEL and sending:
        return "an SMSC may have it already (a submit has begun): too late to cancel"
    return None


def renewed_expiry(*, created_at: float, send_at: float | None, expires_at: float,
                   now: float) -> float:
    """A retried message's new end of validity: as long from now as it had from when it
    was first due (its acceptance, or its send_at)."""
    due = max(created_at, send_at or created_at)
    return now + max(MIN_VALIDITY_S, expires_at - due)


# ---------------------------------------------------------------------------------- input
# Each raises ValueError with a message for the operator (the CLI prints it, the API answers
# it with 400).

_ID = re.compile(r"[0-9A-Za-z_-]{1,64}")


def parse_ids(ids: Sequence[object]) -> tuple[str, ...]:
    """Message ids as an operator gave them: strings of letters, digits, '-' and '_', at most
    MAX_IDS, repeats dropped (order kept)."""
    if not ids:
        raise ValueError("no message id given")
    if len(ids) > MAX_IDS:
        raise ValueError(f"at most {MAX_IDS} ids at once")
    for item in ids:
        if not isinstance(item, str) or not _ID.fullmatch(item):
            shown = repr(item)[:40]
            raise ValueError(f"not a message id: {shown}")
    return tuple(dict.fromkeys(str(i) for i in ids))


def parse_state(text: str | None) -> MessageState | None:
    """A state name (None or "" for any)."""
    if not text:
        return None
    try:
        return MessageState(text.strip().lower())
    except ValueError:
        names = ", ".join(s.value for s in MessageState)
        raise ValueError(f"unknown state {text[:40]!r}: one of {names}") from None


_AGO = re.compile(r"(\d{1,9})\s*([smhd])")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_since(text: str | None, *, now: float) -> float | None:
    """A time as epoch seconds: "90s", "15m", "2h", "7d" ago, or an ISO 8601 date or time
    (UTC unless it says otherwise). None or "" for no bound."""
    if not text:
        return None
    text = text.strip()
    ago = _AGO.fullmatch(text.lower())
    if ago:
        return now - int(ago.group(1)) * _UNIT_S[ago.group(2)]
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00")[:40])
    except ValueError:
        raise ValueError(f"not a time: {text[:40]!r} (use 15m, 2h, 7d or "
                         f"2026-01-31T12:00:00Z)") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return when.timestamp()


def parse_limit(value: object, *, default: int) -> int:
    """How many messages to show: 1..MAX_LIMIT."""
    if value is None or value == "":
        return default
    try:
        limit = int(str(value)) if not isinstance(value, bool) else -1
    except ValueError:
        limit = -1
    if not 1 <= limit <= MAX_LIMIT:
        raise ValueError(f"limit must be 1..{MAX_LIMIT}")
    return limit


_CHANGE = re.compile(r"[+-]\d{1,13}")


def parse_credit_change(value: object) -> int:
    """A top-up as written: "+500" adds, "-20" takes back (a correction); never 0."""
    text = str(value).strip() if isinstance(value, (str, int)) and \
        not isinstance(value, bool) else ""
    if isinstance(value, int) and not isinstance(value, bool):
        text = f"{value:+d}"
    if not _CHANGE.fullmatch(text) or int(text) == 0:
        raise ValueError(f"a credit change is +N or -N parts (N 1..9999999999999), "
                         f"got {str(value)[:40]!r}")
    return int(text)
