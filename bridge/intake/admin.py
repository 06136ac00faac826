"""The operator's commands (SPEC §2 `messages list/cancel/retry`, `accounts [credit]`) on the
Store contract: the command line and the admin API (bridge.ingress.console) both call these,
so they read their input, decide and answer alike. What they answer is plain JSON data: the
API sends it, the command line prints it (as a table, or as JSON with --json).

Never a message's text, nor its ingress details (a mail's subject is text too); recipients are
masked unless `[admin] show_numbers` (bridge.core.console.mask_number). The decisions are the
store's, in its transaction, by bridge.core.operator's rules: a cancel that races a submit,
a top-up that races an accept, on any instance, cannot both win.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from bridge.config import Config
from bridge.core.console import mask_number
from bridge.core.operator import (
    parse_credit_change,
    parse_ids,
    parse_limit,
    parse_since,
    parse_state,
)
from bridge.core.policy import quota_left
from bridge.store.base import ActionOutcome, Event, MessageView, Store

Json = dict[str, Any]

#: Messages a list shows when it is not told how many.
DEFAULT_LIMIT = 50


class AdminInputError(ValueError):
    """What the operator gave cannot be read (an id, a state, a time, a number): nothing was
    done. The message says what is wrong, in words for the operator."""


class Admin:
    """The operator's commands over one store. `actor` names who acts in the timeline
    ("cli:alice", "admin:root")."""

    def __init__(self, config: Config, store: Store, *,
                 clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.store = store
        self.clock = clock
        self.show_numbers = config.admin.show_numbers

    # ------------------------------------------------------------------ messages

    async def messages(self, *, state: str | None = None, account: str | None = None,
                       since: str | None = None, limit: object = None) -> Json:
        """Every account's messages (or one account's), newest first: {"total", "messages"}."""
        now = self.clock()
        try:
            wanted = parse_state(state)
            after = parse_since(since, now=now)
            count = parse_limit(limit, default=DEFAULT_LIMIT)
        except ValueError as exc:
            raise AdminInputError(str(exc)) from None
        if account is not None and self.config.account(account) is None:
            raise AdminInputError(f"no account named {account[:64]!r}")
        total, views = await self.store.list_messages(account, offset=0, limit=count,
                                                      state=wanted, since=after)
        return {"total": total, "messages": [self.row(v, now) for v in views]}

    async def message(self, message_id: str) -> Json | None:
        """One message with its timeline, None when the store does not know it."""
        [wanted] = self._ids([message_id])
        views = await self.store.get_messages([wanted])
        if not views:
            return None
        events = await self.store.timeline(wanted)
        return {**self.row(views[0], self.clock()), "timeline": [_event(e) for e in events]}

    async def cancel(self, ids: Sequence[object], actor: str) -> list[Json]:
        outcomes = await self.store.cancel(self._ids(ids), at=self.clock(), actor=actor)
        return [_outcome(o) for o in outcomes]

    async def retry(self, ids: Sequence[object], actor: str) -> list[Json]:
        outcomes = await self.store.retry(self._ids(ids), at=self.clock(), actor=actor)
        return [_outcome(o) for o in outcomes]

    async def queue(self) -> dict[str, int]:
        """Messages by state, every state named."""
        return await self.store.counts_by_state()

    def row(self, view: MessageView, now: float) -> Json:
        return {"id": view.id, "account": view.account, "ingress": view.ingress.value,
                "recipient": mask_number(view.recipient, show=self.show_numbers),
                "state": view.state.value, "parts": view.parts,
                "parts_delivered": view.parts_delivered, "created_at": view.created_at,
                "updated_at": view.updated_at, "age_s": round(max(0.0, now - view.created_at), 1),
                "error": view.error}

    @staticmethod
    def _ids(ids: Sequence[object]) -> tuple[str, ...]:
        try:
            return parse_ids(ids)
        except ValueError as exc:
            raise AdminInputError(str(exc)) from None

    # ------------------------------------------------------------------ accounts

    async def accounts(self) -> list[Json]:
        """Every configured account: quota, credit, parts used and left, rate."""
        names = [a.name for a in self.config.accounts]
        usage = {u.account: u for u in await self.store.usage(names)}
        return [self._account_row(name, usage[name].used, usage[name].credit) for name in names]

    async def credit(self, name: str, change: object, actor: str) -> Json:
        """Top up (or take back) an account's credit: the account's row with `refused`, None
        when done, else why not (nothing changed)."""
        account = self.config.account(name) if isinstance(name, str) else None
        if account is None:
            raise AdminInputError(f"no account named {str(name)[:64]!r}")
        try:
            parts = parse_credit_change(change)
        except ValueError as exc:
            raise AdminInputError(str(exc)) from None
        credit, refused = await self.store.add_credit(account.name, parts, quota=account.quota,
                                                      at=self.clock(), actor=actor)
        [usage] = await self.store.usage([account.name])
        return {**self._account_row(account.name, usage.used, credit), "change": parts,
                "refused": refused}

    async def credit_history(self, name: str, limit: int = 20) -> list[Json]:
        if self.config.account(name) is None:
            raise AdminInputError(f"no account named {name[:64]!r}")
        return [{"change": c.change, "credit": c.credit, "at": c.at, "actor": c.actor}
                for c in await self.store.credit_changes(name, limit=limit)]

    def _account_row(self, name: str, used: int, credit: int) -> Json:
        account = self.config.account(name)
        assert account is not None
        return {"name": name, "quota": account.quota, "credit": credit, "used": used,
                "left": quota_left(used, account.quota, credit),
                "rate_per_s": account.rate_per_s}


def _event(event: Event) -> Json:
    return {"at": event.at, "event": event.state, "detail": event.detail}


def _outcome(outcome: ActionOutcome) -> Json:
    return {"id": outcome.message_id, "done": outcome.done,
            "state": outcome.state.value if outcome.state is not None else None,
            "detail": outcome.detail}
