"""What both stores share below the contract: the write operations as queued items and their
results, and the rules and texts of the records (a receipt's effect on a part, which submit a
receipt belongs to, the timeline's wording). One definition each, so the SQLite and PostgreSQL
stores cannot drift apart; the contract suite (tests/store/test_contract.py) proves they agree."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from bridge.core.operator import OPERATOR_MOVES, Action, action_refusal, renewed_expiry
from bridge.core.reports import is_buffered
from bridge.core.states import (
    FINAL_MESSAGE_STATES,
    MESSAGE_TRANSITIONS,
    MessageState,
    PartState,
    can_move,
)
from bridge.store.base import ActionOutcome

PENDING_STATES = (MessageState.QUEUED.value, MessageState.SCHEDULED.value,
                  MessageState.SUBMITTED.value)
NOT_FINAL_PARTS = (PartState.QUEUED.value, PartState.SUBMITTED.value)
#: The states a message may be sent again whole from (Store.restart_message), and its event.
RESTARTABLE = (MessageState.QUEUED.value, MessageState.SUBMITTED.value)
RESTARTED = "restarted"
FINAL_VALUES = frozenset(s.value for s in FINAL_MESSAGE_STATES)
#: The states a delay notice waits in (a scheduled message waits by design).
DELAYED_STATES = (MessageState.QUEUED.value, MessageState.SUBMITTED.value)
#: An attempt's outcome (bridge.core.callbacks.Verdict values) → its timeline event, for a
#: callback and for each kind of mail back.
CALLBACK_EVENTS = {"delivered": "callback", "retry": "callback_retry", "gave_up": "callback_failed"}
MAIL_EVENTS = {
    "dsn": {"delivered": "dsn", "retry": "dsn_retry", "gave_up": "dsn_failed"},
    "reply": {"delivered": "reply_mailed", "retry": "reply_retry", "gave_up": "reply_failed"},
}


class Op:
    """One write queued for a store's writer."""

    __slots__ = ("fn", "args", "token", "weight", "order")

    def __init__(self, fn: Callable[..., Any], args: tuple[Any, ...], token: Any,
                 weight: int = 1, order: int = 0) -> None:
        self.fn = fn
        self.args = args
        self.token = token  # how the caller finds its answer: a future, or a request id
        self.weight = weight  # rows it writes, roughly: an accept counts its messages
        self.order = order  # when it was queued, among the writes of every writer lane


Result = tuple[Any, Any, BaseException | None]  # (token, value, error)


def receipts_after_submits(batch: Sequence[Op], submitted: Callable[..., Any],
                           receipt: Callable[..., Any]) -> list[Op]:
    """One batch (one transaction) in the order a writer applies it: as queued, except that in
    each stretch of consecutive submit records and receipts the receipts go after the
    submits. Why: the SMSC sends a receipt right behind the submit_sm_resp, and the receipt
    reaches the writer before the record of the submit (that waits for the worker that sent
    it). In queue order it is stored as an orphan that the submit then looks up, applies and
    deletes, one by one and statements more each: on PostgreSQL, round trips that made
    draining a queue several times slower. Applied after its submit it matches at once and
    leaves what it would have left (a receipt for an older submit of a reused SMSC id can
    match the newer one, as it can when it arrives a moment later). A receipt moved behind
    submits is timed no earlier than they are (`at`, the last argument of both, as an
    orphan applied by its submit is), so the timeline keeps submit before receipt. Taken
    before the transaction, so that a batch retried one by one goes in the same order."""
    out: list[Op] = []
    i, n = 0, len(batch)
    while i < n:
        j = i
        while j < n and batch[j].fn in (submitted, receipt):
            j += 1
        if j == i:
            out.append(batch[i])
            i += 1
            continue
        submits = [op for op in batch[i:j] if op.fn is submitted]
        out.extend(submits)
        later = float("-inf")  # the latest submit queued after each receipt, from the end
        moved: list[Op] = []
        for op in reversed(batch[i:j]):
            if op.fn is submitted:
                later = max(later, op.args[-1])
            elif op.args[-1] < later:
                moved.append(Op(op.fn, op.args[:-1] + (later,), op.token, op.weight, op.order))
            else:
                moved.append(op)
        out.extend(reversed(moved))
        i = j
    return out


def resolve(results: list[Result]) -> None:
    """Runs on the event loop: complete the futures of one committed batch."""
    for future, value, exc in results:
        if future.done():  # the caller cancelled its wait; the write happened anyway
            continue
        if exc is None:
            future.set_result(value)
        else:
            future.set_exception(exc)
            # The writer has logged the failure; a caller that dropped this future must not get
            # asyncio's "exception was never retrieved" again at garbage collection. Awaiting
            # the future still raises.
            future.exception()


def move_sources(target: MessageState) -> tuple[str, ...]:
    """The states a message may move to `target` from (the transition table)."""
    return tuple(s.value for s, moves in MESSAGE_TRANSITIONS.items() if target in moves)


def by_key(rows: Iterable[tuple[Any, ...]]) -> dict[str, list[tuple[Any, ...]]]:
    """Receipt match rows (key, message_id, seq, key row id, …) by the key they matched."""
    out: dict[str, list[tuple[Any, ...]]] = {}
    for row in rows:
        out.setdefault(row[0], []).append(row)
    return out


def best_match(keys: Sequence[str],
               matches: dict[str, list[tuple[Any, ...]]]) -> tuple[Any, ...] | None:
    """The submit a receipt belongs to: the earliest of its keys (strongest first) that matches
    wins, and among that key's matches the most recent submit (an SMSC may reuse ids)."""
    for key in keys:
        rows = matches.get(key)
        if rows:
            return max(rows, key=lambda r: r[3])
    return None


def receipt_change(current: PartState, old_stat: str | None, old_err: str | None,
                   part_state: PartState | None, stat: str | None,
                   err: str | None) -> PartState | None:
    """A part's state after a receipt (the transition table lets a final verdict be refined,
    never undone); None for the same receipt again, which changes nothing."""
    new = current
    if part_state is not None and can_move(MessageState(current.value),
                                           MessageState(part_state.value)):
        new = part_state
    if new is current and old_stat == (stat or "") and old_err == err:
        return None
    return new


def interim(current: PartState, new: PartState, stat: str | None) -> bool:
    """Whether a receipt that left a part from `current` at `new` is an interim one (the SMSC
    holds the message for the handset): a "buffered" report for who asked for one."""
    return new is current and current.value in NOT_FINAL_PARTS and is_buffered(stat)


def sendable(routes: Sequence[str], able: Sequence[str] | None) -> bool:
    """Whether an instance binding the SMSCs `able` (None: any) can send a message routed to
    `routes` (none kept: any SMSC)."""
    return able is None or not routes or not set(routes).isdisjoint(able)


def keeps_why(target: MessageState) -> bool:
    """A final verdict other than delivered keeps why (error_detail); delivered clears it."""
    return target in FINAL_MESSAGE_STATES and target is not MessageState.DELIVERED


def receipt_detail(seq: int, total: int, stat: str | None, err: str | None) -> str:
    return f"part {seq}/{total} stat={stat or '-'} err={err or '-'}"


def submit_details(seq: int, total: int, smsc: str, smsc_id: str) -> tuple[str, str, str]:
    """A submit's texts: the part's event, the message's move, and the message's event once
    every part is submitted."""
    return (f"part {seq}/{total} smsc={smsc} id={smsc_id}",
            f"after part {seq}/{total} was submitted", f"all {plural(total, 'part')} submitted")


def accepted_detail(ingress: str, parts: int, encoding: str) -> str:
    return f"accepted via {ingress}, {plural(parts, 'part')}, {encoding}"


def state_detail(error: str | None, detail: str) -> str:
    """The event text of a state recorded with an error and/or a detail."""
    return detail if error is None else f"{error}: {detail}" if detail else error


def ignored_detail(state: MessageState, current: MessageState, error: str | None,
                   detail: str) -> str:
    """The event of a state change the transition table does not allow."""
    return (f"{state.value} ignored: message is {current.value}"
            + (f" ({error}: {detail})" if error else f" ({detail})" if detail else ""))


def action_detail(action: Action, actor: str, expires_at: float | None = None) -> str:
    """The timeline's words for an operator's cancel or retry."""
    said = f"{OPERATOR_MOVES[action].done} by {actor}"
    if expires_at is None:
        return said
    return said + time.strftime(", valid until %Y-%m-%d %H:%M:%SZ", time.gmtime(expires_at))


def cancel_verdict(message_id: str, state: str | None, *, sending: bool,
                   actor: str) -> ActionOutcome:
    """An operator's cancel of one message, from what its store read under the row's lock:
    its state (None: no such message) and whether a submit began or a part is acknowledged.
    Refused with why, or done with the timeline's words; the store writes a done one."""
    current = MessageState(state) if state is not None else None
    refusal = action_refusal(Action.CANCEL, current, sending=sending)
    if refusal is not None:
        return ActionOutcome(message_id, False, current, refusal)
    return ActionOutcome(message_id, True, OPERATOR_MOVES[Action.CANCEL].target,
                         action_detail(Action.CANCEL, actor))


def retry_verdict(message_id: str, facts: Sequence[Any] | None, *, at: float,
                  actor: str) -> tuple[ActionOutcome, float]:
    """An operator's retry of one message, from (state, created_at, send_at, expires_at) as
    its store read them under the row's lock (None: no such message): the outcome and, when
    done, the message's renewed end of validity (0.0 when refused)."""
    current = MessageState(facts[0]) if facts is not None else None
    refusal = action_refusal(Action.RETRY, current, sending=False)
    if refusal is not None or facts is None:
        return ActionOutcome(message_id, False, current, refusal or ""), 0.0
    expires_at = renewed_expiry(created_at=float(facts[1]), send_at=facts[2],
                                expires_at=float(facts[3]), now=at)
    return (ActionOutcome(message_id, True, OPERATOR_MOVES[Action.RETRY].target,
                          action_detail(Action.RETRY, actor, expires_at)), expires_at)


def plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def delay_owed(dsn_notify: str | None) -> int | None:
    """1 when the recipient asked for NOTIFY=DELAY (a delay notice is owed), else None."""
    return 1 if dsn_notify is not None and "DELAY" in dsn_notify else None


def resolve_later(loop: asyncio.AbstractEventLoop, results: list[Result]) -> None:
    """`resolve` from another thread (the SQLite writer thread)."""
    try:
        loop.call_soon_threadsafe(resolve, results)
    except RuntimeError:  # the loop is closed: nobody is waiting any more
        pass
