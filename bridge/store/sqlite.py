"""The SQLite (WAL) store: one writer with group commit, a small pool of readers.

`_Writer` owns the only writing connection and runs a batch of operations in one transaction;
what drives it is separate. `open()` gives it a writer thread, described here, for a process
that does other work. `open_on_loop()` runs it on the event loop's own thread between
iterations (`_LoopWriter`): the store process (bridge.runtime.child), where the pipe's requests
and the outbound side's records share its batches.

Writes: every write method puts one operation on a queue and returns an asyncio future at once.
A single writer thread owns the only writing connection; it takes everything queued (up to
`commit_max_batch`), runs it in ONE transaction, commits (synchronous=FULL: the commit is on
disk when COMMIT returns), then resolves the futures of the whole batch with one
`call_soon_threadsafe` on the loop that opened the store (all calls come from that loop). One
queue and one writer keep the order in which writes were issued.
If the batch transaction fails, it is rolled back and each operation is run again in its own
transaction, so one bad operation fails alone; what still fails gets `StoreUnavailable`.

Reads run on their own connections in worker threads (`asyncio.to_thread`); WAL lets them
proceed beside the writer, and every read starts a fresh snapshot, so it sees every write whose
future has completed.

Nothing SQLite-specific crosses the module boundary: callers see the dataclasses of `base.py`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import queue
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from bridge.core.mailback import DELAYED
from bridge.core.policy import (
    AcceptFacts,
    AcceptLimits,
    Bucket,
    FloodLedger,
    FloodRun,
    accept_verdict,
    credit_after,
    limits_verdict,
)
from bridge.core.model import Ingress
from bridge.core.reassembly import assemble, join_partial
from bridge.core.reports import BUFFERED, FINAL_EVENTS, ReportEvent
from bridge.core.states import (
    FINAL_MESSAGE_STATES,
    MESSAGE_TRANSITIONS,
    MessageState,
    PartState,
    aggregate,
    can_move,
)
from bridge.store.base import (
    AcceptOutcome,
    AccountUsage,
    ActionOutcome,
    CreditChange,
    DueCallback,
    DueMailback,
    DuePush,
    Event,
    InboundMessage,
    InstanceRow,
    MessageView,
    MoPart,
    MoSet,
    OutboundMessage,
    OutboundPart,
    ReceiptOutcome,
    StoreRefused,
    StoreUnavailable,
)
from bridge.logs import Episode
from bridge.store.common import (
    CALLBACK_EVENTS,
    DELAYED_STATES,
    FINAL_VALUES,
    MAIL_EVENTS,
    NOT_FINAL_PARTS,
    PENDING_STATES,
    RESTARTABLE,
    RESTARTED,
    Op,
    Result,
    accepted_detail,
    best_match,
    by_key,
    cancel_verdict,
    delay_owed,
    interim,
    plural,
    receipt_change,
    receipt_detail,
    receipts_after_submits,
    resolve,
    resolve_later,
    retry_verdict,
    sendable,
    submit_details,
)
from bridge.store.rows import AcceptRow, CallsByName
from bridge.store.schema import migrate

log = logging.getLogger("bridge.store")

T = TypeVar("T")

#: Reader threads of the store process (reads go beside the writer under WAL).
READ_THREADS = 4
_CHUNK = 500  # ids per IN (...) list, well under SQLite's bound-parameter limit
_PURGE_SCAN = ("SELECT rowid, id, state, created_at, updated_at FROM messages WHERE rowid > ? "
               "ORDER BY rowid LIMIT ?")
_PURGE_SCAN_ROWS = 1000


# ---------------------------------------------------------------------------------- SQL

_INSERT_MESSAGE = """
INSERT INTO messages (id, account, ingress, recipient, raw_recipient, source_addr, source_ton,
    source_npi, dest_ton, dest_npi, text, encoding, data_coding, esm_class, registered_delivery,
    state, parts, created_at, updated_at, send_at, expires_at, idempotency_key, dup_digest,
    dup_at, callback_url, meta_json, dsn_notify, dsn_delay_owed, lease_owner, routes,
    report_mask)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
"""
#: A message to this number with a part still to send that the owner does not hold: a new one
#: must wait behind it (order per number). One already handed to the SMSC does not block.
_UNSENT = "EXISTS (SELECT 1 FROM parts p WHERE p.message_id = {m}.id AND p.smsc_id IS NULL)"
_NOT_MINE_BEFORE = f"""
SELECT 1 FROM messages m WHERE recipient = ? AND state IN ({", ".join("?" * len(PENDING_STATES))})
AND (lease_owner IS NULL OR lease_owner <> ?) AND {_UNSENT.format(m="m")} LIMIT 1
"""
_LIVE = "SELECT id FROM instances WHERE heartbeat_at >= ?"
#: What `claim` may take (see Store.claim); routes are matched in Python afterwards.
_CLAIMABLE = f"""
SELECT {{columns}}, routes FROM messages m
WHERE state IN ({", ".join("?" * len(PENDING_STATES))})
  AND (send_at IS NULL OR send_at < ?)
  AND (lease_owner IS NULL OR (lease_owner <> ? AND lease_owner NOT IN ({_LIVE})))
  AND EXISTS (SELECT 1 FROM parts p WHERE p.message_id = m.id AND p.smsc_id IS NULL)
  AND NOT EXISTS (
      SELECT 1 FROM messages o WHERE o.recipient = m.recipient
      AND o.state IN ({", ".join("?" * len(PENDING_STATES))}) AND o.created_at < m.created_at
      AND o.lease_owner IS NOT NULL AND o.lease_owner <> ? AND o.lease_owner IN ({_LIVE})
      AND {_UNSENT.format(m="o")})
ORDER BY created_at, rowid LIMIT ?
"""
_INSERT_PART = """
INSERT INTO parts (message_id, seq, total, short_message, tlvs_json, state)
VALUES (?, ?, ?, ?, ?, 'queued')
"""
_INSERT_EVENT = "INSERT INTO events (message_id, at, state, detail) VALUES (?, ?, ?, ?)"
_ADD_USAGE = """
INSERT INTO account_usage (account, parts_used) VALUES (?, ?)
ON CONFLICT (account) DO UPDATE SET parts_used = parts_used + excluded.parts_used
"""
_GET_USAGE = "SELECT parts_used, credit FROM account_usage WHERE account = ?"
_FIND_IDEMPOTENT = "SELECT id FROM messages WHERE account = ? AND idempotency_key = ?"
_FIND_DUPLICATE = """
SELECT id, dup_at FROM messages
WHERE account = ? AND dup_digest = ? AND dup_digest IS NOT NULL
ORDER BY dup_at DESC LIMIT 1
"""
_PRUNE_DIGESTS = """
UPDATE messages SET dup_digest = NULL, dup_at = NULL
WHERE dup_digest IS NOT NULL AND dup_at < ?
"""
_SUBMIT_PARTS = """
UPDATE parts SET state = CASE WHEN state = 'queued' THEN 'submitted' ELSE state END,
    smsc = ?, smsc_id = ?, submitted_at = ?, attempts = attempts + 1
WHERE message_id = ? AND seq = ?
"""
_SUBMIT_PART = _SUBMIT_PARTS + "RETURNING total, state"
_RECEIPT_PART = """
UPDATE parts SET state = ?, receipt_stat = ?, receipt_err = ?,
    delivered_at = CASE WHEN ? = 'delivered' THEN coalesce(delivered_at, ?) ELSE delivered_at END
WHERE message_id = ? AND seq = ?
"""
_INSERT_KEY = "INSERT INTO smsc_keys (smsc, key, message_id, seq) VALUES (?, ?, ?, ?)"
_INSERT_ORPHAN = """
INSERT INTO orphan_receipts (receipt, smsc, key, part_state, stat, err, at)
VALUES (?, ?, ?, ?, ?, ?, ?)
"""
_PART_AND_MESSAGE = """
SELECT p.state, p.total, p.receipt_stat, p.receipt_err, m.state
FROM parts p JOIN messages m ON m.id = p.message_id
WHERE p.message_id = ? AND p.seq = ?
"""
_RECEIPT_SELECT = """
SELECT k.key, k.message_id, k.seq, k.id, p.state, p.total, p.receipt_stat, p.receipt_err, m.state,
    p.submitted_at, p.smsc_id
FROM smsc_keys k
JOIN parts p ON p.message_id = k.message_id AND p.seq = k.seq
JOIN messages m ON m.id = k.message_id
"""
_RECEIPT_STRONGEST = _RECEIPT_SELECT + "WHERE k.smsc = ? AND k.key = ? ORDER BY k.id DESC LIMIT 1"


def _receipt_matches(n: int) -> str:
    return _RECEIPT_SELECT + f"WHERE k.smsc = ? AND k.key IN ({_in(n)})"


def _parts_and_messages(n: int) -> str:
    return (f"SELECT p.message_id, p.seq, p.total, p.state, m.state FROM parts p "
            f"JOIN messages m ON m.id = p.message_id WHERE p.message_id IN ({_in(n)})")


def _orphans_for(n: int) -> str:
    return f"SELECT 1 FROM orphan_receipts WHERE smsc = ? AND key IN ({_in(n)}) LIMIT 1"


_MESSAGE_STATE = "SELECT state FROM messages WHERE id = ?"
#: A buffered report, for a message whose mask asks for it (bridge.core.reports): queued where
#: an interim receipt is applied, in its transaction, since no state changes then.
_QUEUE_BUFFERED = f"""
INSERT INTO callbacks (message_id, url, state, at, next_at, detail)
SELECT id, callback_url, '{BUFFERED}', ?, ?, ? FROM messages
WHERE id = ? AND callback_url IS NOT NULL
    AND (coalesce(report_mask, {int(FINAL_EVENTS)}) & {int(ReportEvent.BUFFERED)}) != 0
"""
#: Messages that owe a delay notice, accepted before a time: read from a partial index only.
DELAY_DUE = ("SELECT id, state FROM messages WHERE dsn_delay_owed IS NOT NULL "
             "AND created_at < ? ORDER BY created_at LIMIT ?")
_ORPHANS_EXIST = "SELECT EXISTS (SELECT 1 FROM orphan_receipts)"
_KEEP_MO_PART = """
INSERT OR REPLACE INTO mo_parts (source, destination, ref, total, seq, smsc, text, received_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?)
"""
_MO_SET = "source = ? AND destination = ? AND ref = ? AND total = ?"
_MO_SET_TEXTS = f"SELECT seq, text FROM mo_parts WHERE {_MO_SET}"
_FORGET_MO_SET = f"DELETE FROM mo_parts WHERE {_MO_SET}"
_HEARTBEAT = """
INSERT INTO instances (id, heartbeat_at, info_json) VALUES (?, ?, ?)
ON CONFLICT (id) DO UPDATE SET heartbeat_at = excluded.heartbeat_at, info_json = excluded.info_json
"""


#: Store.begin_submit / end_submit: who is handing the message to an SMSC (cancel refuses it).
#: `state` as a filter on rows found by a key: the unary + keeps SQLite from walking the index
#: on state instead (it keeps no statistics, so `state IN (…)` looks selective to it; a run of
#: fences by id walked every pending message).
_BY_KEY_STATE = "+state"
_BEGIN_SUBMIT = (f"UPDATE messages SET sending_by = ? WHERE id = ? "
                 f"AND {_BY_KEY_STATE} IN ({', '.join('?' * len(PENDING_STATES))})")
_END_SUBMIT = ("UPDATE messages SET sending_by = NULL WHERE id = ? AND sending_by = ? "
               "AND NOT EXISTS (SELECT 1 FROM parts WHERE message_id = ? "
               "AND smsc_id IS NOT NULL)")
#: What cancel's rule needs: the state, whether a submit has begun or a part is acknowledged.
_CANCEL_FACTS = ("SELECT state, sending_by, EXISTS (SELECT 1 FROM parts p WHERE "
                 "p.message_id = m.id AND p.smsc_id IS NOT NULL) FROM messages m WHERE id = ?")
_CANCEL = ("UPDATE messages SET state = ?, updated_at = ?, error_detail = ?, "
           "lease_owner = NULL, dsn_delay_owed = NULL WHERE id = ?")
_RETRY_FACTS = "SELECT state, created_at, send_at, expires_at FROM messages WHERE id = ?"
_RETRY = ("UPDATE messages SET state = 'queued', updated_at = ?, expires_at = ?, error = NULL, "
          "error_detail = NULL, lease_owner = NULL, sending_by = NULL WHERE id = ?")
_RETRY_PARTS = ("UPDATE parts SET state = 'queued', smsc = NULL, smsc_id = NULL, "
                "submitted_at = NULL, delivered_at = NULL, receipt_stat = NULL, "
                "receipt_err = NULL WHERE message_id = ?")
_SET_CREDIT = """
INSERT INTO account_usage (account, parts_used, credit) VALUES (?, 0, ?)
ON CONFLICT (account) DO UPDATE SET credit = excluded.credit
"""


def _move_message_sql(target: MessageState) -> str:
    """One conditional UPDATE that moves a message to `target` only from a state the transition
    table allows (rowcount 0: it stays where it is)."""
    if target is MessageState.DELIVERED:
        columns = "state = ?, updated_at = ?, error = NULL, error_detail = NULL"
    elif target in FINAL_MESSAGE_STATES:
        columns = "state = ?, updated_at = ?, error_detail = ?"
    else:
        columns = "state = ?, updated_at = ?"
    sources = [s.value for s, moves in MESSAGE_TRANSITIONS.items() if target in moves]
    allowed = ", ".join(f"'{v}'" for v in sources) or "NULL"
    return f"UPDATE messages SET {columns} WHERE id = ? AND state IN ({allowed})"


_MOVE_MESSAGE = {target: _move_message_sql(target) for target in MessageState}


def _move_params(target: MessageState, at: float, detail: str,
                 message_id: str) -> tuple[Any, ...]:
    """`_MOVE_MESSAGE[target]`'s parameters: a final verdict other than delivered keeps why."""
    if target is MessageState.DELIVERED or target not in FINAL_MESSAGE_STATES:
        return (target.value, at, message_id)
    return (target.value, at, detail, message_id)


_PART_STATES = "SELECT state FROM parts WHERE message_id = ? ORDER BY seq"
_VIEW_COLUMNS = """id, account, ingress, recipient, source_addr, state, encoding, parts,
    created_at, updated_at, error, error_detail, meta_json"""
_OUTBOUND_COLUMNS = """id, account, recipient, source_addr, source_ton, source_npi, dest_ton,
    dest_npi, data_coding, esm_class, registered_delivery, state, created_at, send_at,
    expires_at"""


def _float_or_none(value: Any) -> float | None:
    return None if value is None else float(value)


def _in(n: int) -> str:
    return ",".join("?" * n)


def _chunks(items: Sequence[T], size: int = _CHUNK) -> list[Sequence[T]]:
    return [items[i:i + size] for i in range(0, len(items), size)]


# ---------------------------------------------------------------------------------- writer

class _Tx:
    """What one write transaction accumulates: accepted rows not yet inserted (so a batch of
    accepts becomes a few executemany calls), SMSC id keys, events, and per-account usage
    deltas. Rows are written by `flush()` (messages) and `flush_smsc_keys()` before an operation
    reads those tables, and by `finish()`."""

    __slots__ = ("conn", "messages", "parts", "smsc_keys", "events", "keys", "digests", "usage",
                 "delta", "floods", "buckets", "now")

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.messages: list[tuple[Any, ...]] = []
        self.parts: list[tuple[Any, ...]] = []
        self.smsc_keys: list[tuple[str, str, str, int]] = []
        self.events: list[tuple[str, float, str, str]] = []
        self.keys: dict[tuple[str, str], str] = {}  # (account, idempotency key) → id, unflushed
        self.digests: dict[tuple[str, str], tuple[str, float]] = {}  # → (id, accepted at)
        self.usage: dict[str, tuple[int, int]] = {}  # committed (parts_used, credit), lazily
        self.delta: dict[str, int] = {}
        # Limits consumed by this transaction's accepts: kept only once it commits.
        self.floods: dict[str, tuple[FloodRun, float]] = {}  # → (run, its gap)
        self.buckets: dict[str, Bucket] = {}
        self.now = 0.0  # the latest accept's clock, for the flood ledger's expiry

    def _usage(self, account: str) -> tuple[int, int]:
        kept = self.usage.get(account)
        if kept is None:
            row = self.conn.execute(_GET_USAGE, (account,)).fetchone()
            kept = self.usage[account] = (int(row[0]), int(row[1])) if row is not None \
                else (0, 0)
        return kept

    def used(self, account: str) -> int:
        return self._usage(account)[0] + self.delta.get(account, 0)

    def credit(self, account: str) -> int:
        return self._usage(account)[1]

    def event(self, message_id: str, at: float, state: str, detail: str) -> None:
        self.events.append((message_id, at, state, detail))

    def flush(self) -> None:
        if self.messages:
            self.conn.executemany(_INSERT_MESSAGE, self.messages)
            self.conn.executemany(_INSERT_PART, self.parts)
            self.messages.clear()
            self.parts.clear()
            self.keys.clear()
            self.digests.clear()

    def flush_smsc_keys(self) -> None:
        if self.smsc_keys:
            self.conn.executemany(_INSERT_KEY, self.smsc_keys)
            self.smsc_keys.clear()

    def finish(self) -> None:
        self.flush()
        self.flush_smsc_keys()
        if self.events:
            self.conn.executemany(_INSERT_EVENT, self.events)
        if self.delta:
            self.conn.executemany(_ADD_USAGE, list(self.delta.items()))


#: SQLite's primary result codes that say the database, not one operation, failed: full,
#: I/O error, cannot open, read-only, out of memory, busy or locked past the timeout.
_DATABASE_CODES = frozenset({sqlite3.SQLITE_FULL, sqlite3.SQLITE_IOERR, sqlite3.SQLITE_CANTOPEN,
                             sqlite3.SQLITE_READONLY, sqlite3.SQLITE_NOMEM, sqlite3.SQLITE_BUSY,
                             sqlite3.SQLITE_LOCKED})


def _database_failure(exc: BaseException) -> bool:
    """True when `exc` is the database failing as a whole: running the batch's operations one
    by one would only fail each of them slower."""
    code = getattr(exc, "sqlite_errorcode", None)
    return isinstance(code, int) and (code & 0xFF) in _DATABASE_CODES


class _TxFailed(Exception):
    """BEGIN or COMMIT failed (database locked by another process, disk full, I/O error): no
    single operation is to blame, so retrying them one by one would only fail slower."""


class _Writer:
    """The only writing connection and the write operations. `run` applies one batch in one
    transaction and says what became of each operation; who calls it decides how answers
    travel: `_WriterThread` (in-process store) or the store process's main thread
    (bridge.runtime.child), which has nothing else to do."""

    def __init__(self, conn: sqlite3.Connection, *, max_batch: int, orphan_ttl_s: float) -> None:
        self.conn = conn
        self.max_batch = max(1, max_batch)
        self.orphan_ttl_s = orphan_ttl_s
        self.commits = 0
        self.ops = 0
        self.failed_batches = 0
        self.failed_ops = 0
        self.largest_batch = 0
        self._dup_window = 0.0  # the widest duplicate window seen, for pruning
        self._digest_pruned_at = float("-inf")
        self._orphans_pruned_at = float("-inf")
        # False only while orphan_receipts is known empty: then a submit need not look there.
        # Set on every orphan insert; a rolled-back batch sets it again (see run).
        self.orphans_maybe = bool(conn.execute(_ORPHANS_EXIST).fetchone()[0])
        #: The flood and rate limits' state (core.policy); see `_flood`.
        self.floods = FloodLedger()
        self.buckets: dict[str, Bucket] = {}
        #: Told (operations, seconds from BEGIN to the end of COMMIT) after every commit.
        self.on_commit: Callable[[int, float], None] | None = None
        #: Failed writes as one log episode: a full disk fails every write, logged once.
        self.episode = Episode(log, "store writes")

    def close(self) -> None:
        self.conn.close()

    # -------------------------------------------------------------- batches

    def run(self, batch: list[Op]) -> list[Result]:
        """One transaction for the batch; (token, value, error) per operation, in order."""
        try:
            return self._run_batch(batch)
        except Exception as exc:  # a bug here must not leave callers waiting forever
            log.exception("store writer failed on a batch of %d", len(batch))
            return [self._failure(op, exc) for op in batch]

    def _run_batch(self, batch: list[Op]) -> list[Result]:
        # in the order applied: receipts after the submits beside them
        batch = receipts_after_submits(batch, _Writer.submitted, _Writer.receipt)
        try:
            values = self._transaction(batch)
            results: list[Result] = [(op.token, value, None)
                                      for op, value in zip(batch, values)]
        except Exception as exc:
            self.failed_batches += 1
            self.orphans_maybe = True  # the rollback may have restored rows it thought gone
            whole = isinstance(exc, _TxFailed) or _database_failure(exc)
            if len(batch) == 1:
                results = [self._failure(batch[0], exc)]
            else:
                results = []
                if not whole:
                    log.warning("store batch of %d failed (%s); retrying one by one",
                                len(batch), exc)
                for op in batch:
                    if whole:  # the database itself refuses: fail them all
                        results.append(self._failure(op, exc))
                        continue
                    try:
                        value = self._transaction([op])[0]
                    except Exception as single_exc:
                        exc = single_exc
                        results.append(self._failure(op, single_exc))
                    else:
                        results.append((op.token, value, None))
        self.ops += len(batch)
        self.largest_batch = max(self.largest_batch, len(batch))
        return results

    def _failure(self, op: Op, exc: Exception) -> Result:
        self.failed_ops += 1
        name = getattr(op.fn, "__name__", "write").lstrip("_")
        self.episode.failed(f"{name}: {exc}")
        cause: BaseException = exc.__cause__ if isinstance(exc, _TxFailed) and exc.__cause__ \
            else exc
        kind = StoreRefused if isinstance(exc, (LookupError, ValueError)) else StoreUnavailable
        error = kind(f"store write {name} failed: {exc}")
        error.__cause__ = cause
        return (op.token, None, error)

    def _transaction(self, batch: list[Op]) -> list[Any]:
        conn = self.conn
        started = time.perf_counter()
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise _TxFailed(f"cannot start a write transaction: {exc}") from exc
        try:
            tx = _Tx(conn)
            values = self._apply(tx, batch)
            tx.finish()
            try:
                conn.execute("COMMIT")
            except sqlite3.Error as exc:
                raise _TxFailed(f"commit failed: {exc}") from exc
        except BaseException:
            try:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
            except sqlite3.Error:
                log.exception("store rollback failed")
            raise
        self.commits += 1
        self.keep_limits(tx, tx.now)
        self.episode.succeeded()
        if self.on_commit is not None:
            try:
                self.on_commit(len(batch), time.perf_counter() - started)
            except Exception:  # committed: a failing observer must not make it look failed
                log.exception("store commit observer failed")
        return values

    def _apply(self, tx: _Tx, batch: list[Op]) -> list[Any]:
        """The operations in order; a run of consecutive submits, receipts or fences (the
        SMSC's answers come in bursts: 40 to 50 in a row while a batch drains, measured; the
        workers they free take their next messages together) goes to its `_TOGETHER` form
        first, which writes the whole run with a few statements."""
        values: list[Any] = []
        i, n = 0, len(batch)
        while i < n:
            fn = batch[i].fn
            j = i + 1
            together = _TOGETHER.get(fn)
            if together is not None:
                while j < n and batch[j].fn is fn:
                    j += 1
                if j - i > 1:
                    run = [op.args for op in batch[i:j]]
                    done = together(self, tx, run)
                    values.extend(done if done is not None else [fn(self, tx, *args)
                                                                 for args in run])
                    i = j
                    continue
            values.append(fn(self, tx, *batch[i].args))
            i = j
        return values

    # -------------------------------------------------------------- operations

    def noop(self, tx: _Tx) -> None:
        return None

    def accept(self, tx: _Tx, messages: tuple[AcceptRow, ...], now: float,
               owner: str | None = None,
               able: tuple[str, ...] | None = None) -> list[AcceptOutcome]:
        conn = tx.conn
        tx.now = max(tx.now, now)
        out: list[AcceptOutcome] = []
        waiting: set[str] = set()  # numbers whose messages of this call wait to be claimed
        for (mid, account, ingress, recipient, raw_recipient, source_addr, source_ton, source_npi,
             dest_ton, dest_npi, text, encoding, data_coding, esm_class, registered_delivery,
             state, parts, created_at, send_at, expires_at, key, dup_digest, dup_window_s, quota,
             flood_max, flood_gap_s, rate_per_s, callback_url, meta_json, dsn_notify,
             report_mask, routes) in messages:
            digest = dup_digest if dup_window_s > 0 else None
            n = len(parts)
            limits = AcceptLimits(window_s=dup_window_s, quota=quota, parts=n,
                                  flood_max=flood_max, flood_gap_s=flood_gap_s, rate=rate_per_s)
            verdict = accept_verdict(
                AcceptFacts(keyed=self._keyed(tx, account, key),
                            seen=self._seen(tx, account, digest),
                            used=tx.used(account) if quota > 0 else 0,
                            credit=tx.credit(account) if quota > 0 else 0,
                            flood=self._flood(tx, recipient) if flood_max > 0 else None,
                            bucket=self._bucket(tx, account) if rate_per_s > 0 else None),
                now=now, limits=limits)
            if verdict.status != "accepted":
                out.append(AcceptOutcome(verdict.earlier or mid, verdict.status))
                continue
            if verdict.flood is not None and flood_max > 0:
                tx.floods[recipient] = (verdict.flood, flood_gap_s)
            if verdict.bucket is not None and rate_per_s > 0:
                tx.buckets[account] = verdict.bucket
            if digest is not None and dup_window_s > self._dup_window:
                self._dup_window = dup_window_s
            held = owner is not None and sendable(routes, able) and \
                self._may_hold(tx, recipient, owner, waiting)
            tx.messages.append((
                mid, account, ingress, recipient, raw_recipient, source_addr, source_ton,
                source_npi, dest_ton, dest_npi, text, encoding, data_coding, esm_class,
                registered_delivery, state, n, created_at, now, send_at, expires_at, key, digest,
                now if digest is not None else None, callback_url, meta_json, dsn_notify,
                delay_owed(dsn_notify), owner if held else None, ",".join(routes),
                report_mask))
            tx.parts.extend((mid, *part) for part in parts)
            if key is not None:
                tx.keys[(account, key)] = mid
            if digest is not None:
                tx.digests[(account, digest)] = (mid, now)
            tx.delta[account] = tx.delta.get(account, 0) + n
            tx.event(mid, now, state, accepted_detail(ingress, n, encoding))
            out.append(AcceptOutcome(mid, "accepted", held))
        if self._dup_window > 0 and now - self._digest_pruned_at >= min(self._dup_window, 10.0):
            self._digest_pruned_at = now
            tx.flush()
            conn.execute(_PRUNE_DIGESTS, (now - self._dup_window,))
        return out

    @staticmethod
    def _may_hold(tx: _Tx, recipient: str, owner: str, waiting: set[str]) -> bool:
        """A new message to `recipient` may be held by `owner` unless a pending message to
        that number is not its own (order per number); then the call's later messages to it
        wait too."""
        if recipient in waiting:
            return False
        if tx.conn.execute(_NOT_MINE_BEFORE, (recipient, *PENDING_STATES, owner)).fetchone():
            waiting.add(recipient)
            return False
        return True

    def claim(self, tx: _Tx, owner: str, now: float, live_after: float, smscs: tuple[str, ...],
              due_before: float, limit: int) -> list[OutboundMessage]:
        """See Store.claim. Routes are matched here: an empty one (older messages) is any."""
        tx.flush()
        conn = tx.conn
        rows = conn.execute(_CLAIMABLE.format(columns=_OUTBOUND_COLUMNS), (
            *PENDING_STATES, due_before, owner, live_after, *PENDING_STATES, owner, live_after,
            max(0, limit))).fetchall()
        wanted = set(smscs)
        mine = [r for r in rows if not r[-1] or wanted.intersection(r[-1].split(","))]
        for chunk in _chunks([r[0] for r in mine]):
            conn.execute(f"UPDATE messages SET lease_owner = ? WHERE id IN ({_in(len(chunk))})",
                         (owner, *chunk))
        return _outbound(conn, mine)

    def release(self, tx: _Tx, owner: str, at: float) -> int:
        tx.flush()
        conn = tx.conn
        let_go = conn.execute(
            f"UPDATE messages SET lease_owner = NULL WHERE lease_owner = ? "
            f"AND state IN ({_in(len(PENDING_STATES))})", (owner, *PENDING_STATES)).rowcount
        conn.execute("UPDATE messages SET lease_owner = NULL WHERE lease_owner = ?", (owner,))
        conn.execute("UPDATE instances SET heartbeat_at = 0 WHERE id = ?", (owner,))
        return int(let_go)

    def retire(self, tx: _Tx, instances: tuple[str, ...]) -> None:
        for chunk in _chunks(list(instances)):
            tx.conn.execute(f"UPDATE instances SET heartbeat_at = 0 WHERE id IN "
                            f"({_in(len(chunk))})", tuple(chunk))

    def _flood(self, tx: _Tx, recipient: str) -> FloodRun | None:
        """The subscriber's run: this transaction's, else kept (in memory: one process writes
        this file, so its memory is every instance's; state made again after a restart)."""
        staged = tx.floods.get(recipient)
        return staged[0] if staged is not None else self.floods.get(recipient)

    def _bucket(self, tx: _Tx, account: str) -> Bucket | None:
        return tx.buckets.get(account) or self.buckets.get(account)

    def keep_limits(self, tx: _Tx, now: float) -> None:
        """After the commit: the limits the transaction consumed become the kept state (a
        transaction that failed consumed nothing)."""
        for recipient, (run, gap_s) in tx.floods.items():
            self.floods.put(recipient, run, now=now, gap_s=gap_s)
        self.buckets.update(tx.buckets)

    def limits_peek(self, account: str, recipients: tuple[str, ...], now: float, flood_max: int,
                    flood_gap_s: float, rate_per_s: float) -> list[str | None]:
        """See Store.limits_peek: read from the writer's memory, consuming nothing."""
        limits = AcceptLimits(window_s=0, quota=0, parts=1, flood_max=flood_max,
                              flood_gap_s=flood_gap_s, rate=rate_per_s)
        bucket = self.buckets.get(account)
        return [limits_verdict(self.floods.get(r), bucket, now=now, limits=limits)
                for r in recipients]

    @staticmethod
    def _keyed(tx: _Tx, account: str, key: str | None) -> str | None:
        """The message an idempotency key already names: this transaction's, else stored."""
        if key is None:
            return None
        existing = tx.keys.get((account, key))
        if existing is None:
            row = tx.conn.execute(_FIND_IDEMPOTENT, (account, key)).fetchone()
            existing = row[0] if row is not None else None
        return existing

    @staticmethod
    def _seen(tx: _Tx, account: str, digest: str | None) -> tuple[str, float] | None:
        """The newest message with this duplicate digest and when it came: this
        transaction's, else stored (core.policy decides whether it is inside the window)."""
        if digest is None:
            return None
        seen = tx.digests.get((account, digest))
        if seen is None:
            row = tx.conn.execute(_FIND_DUPLICATE, (account, digest)).fetchone()
            seen = (row[0], float(row[1])) if row is not None else None
        return seen

    def submitted(self, tx: _Tx, message_id: str, seq: int, smsc: str, smsc_id: str,
                  id_keys: tuple[str, ...], at: float) -> ReceiptOutcome | None:
        tx.flush()
        conn = tx.conn
        rows = conn.execute(_SUBMIT_PART, (smsc, smsc_id, at, message_id, seq)).fetchall()
        if len(rows) != 1:
            raise LookupError(f"message {message_id} has no part {seq}")
        total, part_state = int(rows[0][0]), PartState(rows[0][1])
        keys = tuple(dict.fromkeys(id_keys))
        tx.smsc_keys.extend([(smsc, key, message_id, seq) for key in keys])  # the part exists
        part_detail, detail, all_submitted = submit_details(seq, total, smsc, smsc_id)
        tx.event(message_id, at, "part_submitted", part_detail)
        self._reaggregate(tx, message_id, at, detail, submitted=all_submitted,
                          only_part=part_state if total == 1 else None)
        if not keys or not self.orphans_maybe:
            return None
        orphans = conn.execute(
            f"SELECT receipt, part_state, stat, err, at FROM orphan_receipts "
            f"WHERE smsc = ? AND key IN ({_in(len(keys))}) ORDER BY id", (smsc, *keys)).fetchall()
        outcome: ReceiptOutcome | None = None
        applied: set[str] = set()
        for receipt, part_state, stat, err, receipt_at in orphans:
            if receipt in applied:
                continue
            applied.add(receipt)
            # Applied now: the timeline shows it after the submit, not before.
            state = self._apply_receipt(tx, message_id, seq,
                                        PartState(part_state) if part_state else None,
                                        stat, err, max(at, float(receipt_at)), orphan=True)
            conn.execute("DELETE FROM orphan_receipts WHERE receipt = ?", (receipt,))
            outcome = ReceiptOutcome(True, message_id, state, at, smsc_id)
        if applied:
            self.orphans_maybe = bool(conn.execute(_ORPHANS_EXIST).fetchone()[0])
        return outcome

    def receipt(self, tx: _Tx, smsc: str, id_keys: tuple[str, ...], part_state: PartState | None,
                stat: str | None, err: str | None, at: float) -> ReceiptOutcome:
        tx.flush()
        tx.flush_smsc_keys()
        conn = tx.conn
        keys = tuple(dict.fromkeys(id_keys))
        if not keys:
            return ReceiptOutcome(False, None, None)
        # The strongest key alone first (it matches almost always, and the most recent of its
        # matches wins); the weaker ones only when it does not. With the match, what
        # _apply_receipt needs of its part: one statement, not two.
        best = conn.execute(_RECEIPT_STRONGEST, (smsc, keys[0])).fetchone()
        if best is None and len(keys) > 1:
            best = best_match(keys[1:], by_key(
                conn.execute(_receipt_matches(len(keys) - 1), (smsc, *keys[1:]))))
        if best is None:
            receipt = uuid.uuid4().hex
            state_value = part_state.value if part_state is not None else None
            conn.executemany(_INSERT_ORPHAN, [(receipt, smsc, key, state_value, stat, err, at)
                                              for key in keys])
            self.orphans_maybe = True
            if at - self._orphans_pruned_at >= 60.0:
                self._orphans_pruned_at = at
                conn.execute("DELETE FROM orphan_receipts WHERE at < ?", (at - self.orphan_ttl_s,))
            return ReceiptOutcome(False, None, None)
        message_id, seq = best[1], best[2]
        state = self._apply_receipt(tx, message_id, seq, part_state, stat, err, at, orphan=False,
                                    row=best[4:])
        return ReceiptOutcome(True, message_id, state, _float_or_none(best[9]), best[10])

    def _submitted_together(self, tx: _Tx, run: list[tuple[Any, ...]]) -> list[None] | None:
        """`submitted` for a run, when every op submits the only part of a different message
        and no orphan receipt waits for its keys (what a draining batch is made of): the
        same rows and events, in the same order, from a few executemany calls. None, with
        nothing written, for any other run: then the ops go one by one."""
        tx.flush()
        conn = tx.conn
        ids = [args[0] for args in run]
        if len(set(ids)) != len(ids):
            return None
        found: dict[str, tuple[Any, ...]] = {}
        for chunk in _chunks(ids):
            for row in conn.execute(_parts_and_messages(len(chunk)), tuple(chunk)):
                if row[0] in found or row[2] != 1:
                    return None
                found[row[0]] = row
        if any((f := found.get(mid)) is None or f[1] != seq for mid, seq, *_ in run):
            return None
        keyed = [(args, tuple(dict.fromkeys(args[4]))) for args in run]
        if self.orphans_maybe and self._orphans_wait(
                (smsc, key) for (_, _, smsc, *_), keys in keyed for key in keys):
            return None
        conn.executemany(_SUBMIT_PARTS, [(smsc, smsc_id, at, mid, seq)
                                         for mid, seq, smsc, smsc_id, _, at in run])
        moves: dict[MessageState, list[tuple[Any, ...]]] = {}
        for (mid, seq, smsc, smsc_id, _, at), keys in keyed:
            part_state = PartState(found[mid][3])
            target = aggregate((PartState.SUBMITTED if part_state is PartState.QUEUED
                                else part_state,))
            tx.smsc_keys.extend([(smsc, key, mid, seq) for key in keys])
            part_detail, detail, all_submitted = submit_details(seq, 1, smsc, smsc_id)
            tx.event(mid, at, "part_submitted", part_detail)
            if target not in MESSAGE_TRANSITIONS[MessageState(found[mid][4])]:
                continue
            moves.setdefault(target, []).append(_move_params(target, at, detail, mid))
            tx.event(mid, at, target.value,
                     all_submitted if target is MessageState.SUBMITTED else detail)
        for target, params in moves.items():
            conn.executemany(_MOVE_MESSAGE[target], params)
        return [None] * len(run)

    def _orphans_wait(self, keys: Iterable[tuple[str, str]]) -> bool:
        by_smsc: dict[str, list[str]] = {}
        for smsc, key in keys:
            by_smsc.setdefault(smsc, []).append(key)
        return any(self.conn.execute(_orphans_for(len(chunk)), (smsc, *chunk)).fetchone()
                   for smsc, smsc_keys in by_smsc.items() for chunk in _chunks(smsc_keys))

    def _receipts_together(self, tx: _Tx,
                           run: list[tuple[Any, ...]]) -> list[ReceiptOutcome] | None:
        """`receipt` for a run, when every receipt matches a submit (by the same ranking as
        `receipt`: the strongest key, else the earliest weaker key, then the most recent
        submit) of the only part of a different message, as when a batch drains: the same
        rows, events and outcomes from one lookup and a few executemany calls. None, with
        nothing written, for any other run: then the receipts go one by one."""
        tx.flush()
        tx.flush_smsc_keys()
        smsc = run[0][0]
        keyed: list[tuple[str, ...]] = []
        for args in run:
            keys = tuple(dict.fromkeys(args[1]))
            if args[0] != smsc or not keys:
                return None
            keyed.append(keys)
        matches: dict[str, list[tuple[Any, ...]]] = {}
        for chunk in _chunks(list(dict.fromkeys(k for keys in keyed for k in keys)), _CHUNK - 1):
            for key, rows in by_key(tx.conn.execute(_receipt_matches(len(chunk)),
                                                     (smsc, *chunk))).items():
                matches.setdefault(key, []).extend(rows)
        found: list[tuple[Any, ...]] = []
        parts: set[tuple[str, int]] = set()
        for keys in keyed:
            best = best_match(keys, matches)
            if best is None or best[5] != 1 or (best[1], best[2]) in parts:
                return None  # an orphan, a multi-part message or a part twice: one by one
            parts.add((best[1], best[2]))
            found.append(best)
        out: list[ReceiptOutcome] = []
        updates: list[tuple[Any, ...]] = []
        buffered: list[tuple[Any, ...]] = []
        moves: dict[MessageState, list[tuple[Any, ...]]] = {}
        for (_, _, part_state, stat, err, at), row in zip(run, found):
            _, mid, seq, _, current_value, total, old_stat, old_err, message_value, sent, \
                sent_id = row
            current = PartState(current_value)
            message = MessageState(message_value)
            new = receipt_change(current, old_stat, old_err, part_state, stat, err)
            if new is None:
                out.append(ReceiptOutcome(True, mid, message, _float_or_none(sent), sent_id))
                continue
            updates.append((new.value, stat or "", err, new.value, at, mid, seq))
            if interim(current, new, stat):
                buffered.append((at, at, stat, mid))
            detail = receipt_detail(seq, total, stat, err)
            tx.event(mid, at, "receipt", detail)
            target = aggregate((new,))
            if new is not current and target in MESSAGE_TRANSITIONS[message]:
                moves.setdefault(target, []).append(_move_params(target, at, detail, mid))
                tx.event(mid, at, target.value, detail)
                message = target
            out.append(ReceiptOutcome(True, mid, message, _float_or_none(sent), sent_id))
        tx.conn.executemany(_RECEIPT_PART, updates)
        if buffered:
            tx.conn.executemany(_QUEUE_BUFFERED, buffered)
        for target, params in moves.items():
            tx.conn.executemany(_MOVE_MESSAGE[target], params)
        return out

    def restart(self, tx: _Tx, message_id: str, parts: tuple[tuple[int, int, bytes, str], ...],
                data_coding: int, esm_class: int, encoding: str, at: float,
                detail: str) -> bool:
        """See Store.restart_message: the old parts, their keys and receipts go; the new
        parts come in queued, in the same transaction."""
        tx.flush()
        tx.flush_smsc_keys()
        conn = tx.conn
        row = conn.execute(_MESSAGE_STATE, (message_id,)).fetchone()
        if row is None or row[0] not in RESTARTABLE:
            return False
        conn.execute("DELETE FROM smsc_keys WHERE message_id = ?", (message_id,))
        conn.execute("DELETE FROM parts WHERE message_id = ?", (message_id,))
        conn.executemany(
            "INSERT INTO parts (message_id, seq, total, short_message, tlvs_json, state) "
            "VALUES (?, ?, ?, ?, ?, ?)", [(message_id, seq, total, short_message, tlvs,
                                           PartState.QUEUED.value)
                                          for seq, total, short_message, tlvs in parts])
        conn.execute("UPDATE messages SET state = ?, updated_at = ?, parts = ?, data_coding = ?, "
                     "esm_class = ?, encoding = ? WHERE id = ?",
                     (MessageState.QUEUED.value, at, len(parts), data_coding, esm_class,
                      encoding, message_id))
        tx.event(message_id, at, RESTARTED, detail)
        return True

    def state(self, tx: _Tx, message_id: str, state: MessageState, at: float,
              error: str | None, detail: str) -> None:
        tx.flush()
        conn = tx.conn
        row = conn.execute(_MESSAGE_STATE, (message_id,)).fetchone()
        if row is None:
            raise LookupError(f"no message {message_id}")
        current = MessageState(row[0])
        if not can_move(current, state):
            tx.event(message_id, at, "state_ignored",
                     f"{state.value} ignored: message is {current.value}"
                     + (f" ({error}: {detail})" if error else f" ({detail})" if detail else ""))
            return
        if error is not None or state in (MessageState.FAILED, MessageState.EXPIRED,
                                          MessageState.UNDELIVERABLE):
            conn.execute("UPDATE messages SET state = ?, updated_at = ?, "
                         "error = coalesce(?, error), error_detail = coalesce(?, error_detail) "
                         "WHERE id = ?", (state.value, at, error, detail or None, message_id))
        elif state is MessageState.DELIVERED:
            conn.execute("UPDATE messages SET state = ?, updated_at = ?, error = NULL, "
                         "error_detail = NULL WHERE id = ?", (state.value, at, message_id))
        else:
            conn.execute("UPDATE messages SET state = ?, updated_at = ? WHERE id = ?",
                         (state.value, at, message_id))
        if state in FINAL_MESSAGE_STATES:
            done_at = at if state is MessageState.DELIVERED else None
            conn.execute(
                f"UPDATE parts SET state = ?, delivered_at = coalesce(delivered_at, ?) "
                f"WHERE message_id = ? AND state IN ({_in(len(NOT_FINAL_PARTS))})",
                (state.value, done_at, message_id, *NOT_FINAL_PARTS))
        tx.event(message_id, at, state.value,
                 detail if error is None else f"{error}: {detail}" if detail else error)

    def event(self, tx: _Tx, message_id: str, name: str, at: float, detail: str) -> None:
        tx.flush()
        tx.event(message_id, at, name, detail)

    def begin_submit(self, tx: _Tx, message_id: str, owner: str) -> bool:
        """See Store.begin_submit: one conditional UPDATE, which `cancel`'s transaction
        either precedes (then the message is no longer pending) or follows (then it sees
        `sending_by`)."""
        tx.flush()
        return tx.conn.execute(_BEGIN_SUBMIT, (owner, message_id, *PENDING_STATES)).rowcount == 1

    def _begin_submits_together(self, tx: _Tx, run: list[tuple[Any, ...]]) -> list[bool]:
        """`begin_submit` for a run (workers taking their next messages in one loop turn):
        one UPDATE per owner, the same rows and answers."""
        tx.flush()
        taken: set[tuple[str, str]] = set()
        by_owner: dict[str, list[str]] = {}
        for message_id, owner in run:
            by_owner.setdefault(owner, []).append(message_id)
        for owner, ids in by_owner.items():
            for chunk in _chunks(ids, _CHUNK - len(PENDING_STATES) - 1):
                taken.update((row[0], owner) for row in tx.conn.execute(
                    f"UPDATE messages SET sending_by = ? WHERE id IN ({_in(len(chunk))}) "
                    f"AND {_BY_KEY_STATE} IN ({_in(len(PENDING_STATES))}) RETURNING id",
                    (owner, *chunk, *PENDING_STATES)))
        return [(message_id, owner) in taken for message_id, owner in run]

    def end_submit(self, tx: _Tx, message_id: str, owner: str) -> None:
        tx.conn.execute(_END_SUBMIT, (message_id, owner, message_id))

    def cancel(self, tx: _Tx, ids: tuple[str, ...], at: float,
               actor: str) -> list[ActionOutcome]:
        tx.flush()
        conn = tx.conn
        out = []
        for message_id in ids:
            row = conn.execute(_CANCEL_FACTS, (message_id,)).fetchone()
            outcome = cancel_verdict(message_id, row[0] if row is not None else None,
                                     sending=row is not None and bool(row[1] or row[2]),
                                     actor=actor)
            out.append(outcome)
            if not outcome.done:
                continue
            assert outcome.state is not None
            conn.execute(_CANCEL, (outcome.state.value, at, outcome.detail, message_id))
            conn.execute(f"UPDATE parts SET state = ? WHERE message_id = ? "
                         f"AND state IN ({_in(len(NOT_FINAL_PARTS))})",
                         (outcome.state.value, message_id, *NOT_FINAL_PARTS))
            tx.event(message_id, at, outcome.state.value, outcome.detail)
        return out

    def retry(self, tx: _Tx, ids: tuple[str, ...], at: float,
              actor: str) -> list[ActionOutcome]:
        tx.flush()
        conn = tx.conn
        out = []
        for message_id in ids:
            row = conn.execute(_RETRY_FACTS, (message_id,)).fetchone()
            outcome, expires_at = retry_verdict(message_id, row, at=at, actor=actor)
            out.append(outcome)
            if not outcome.done:
                continue
            conn.execute(_RETRY, (at, expires_at, message_id))
            conn.execute(_RETRY_PARTS, (message_id,))
            conn.execute("DELETE FROM smsc_keys WHERE message_id = ?", (message_id,))
            tx.event(message_id, at, MessageState.QUEUED.value, outcome.detail)
        return out

    def add_credit(self, tx: _Tx, account: str, change: int, quota: int, at: float,
                   actor: str) -> tuple[int, str | None]:
        """See Store.add_credit; in the writer's transaction, as accepts decide."""
        tx.flush()
        credit = tx.credit(account)
        try:
            after = credit_after(quota, credit, change)
        except ValueError as exc:
            return credit, str(exc)
        tx.conn.execute(_SET_CREDIT, (account, after))
        tx.conn.execute("INSERT INTO credits (account, change, credit, at, actor) "
                        "VALUES (?, ?, ?, ?, ?)", (account, change, after, at, actor))
        tx.usage.pop(account, None)  # read again by the transaction's later accepts
        return after, None

    def claim_callbacks(self, tx: _Tx, owner: str, now: float, hold_until: float,
                        limit: int) -> list[DueCallback]:
        tx.flush()
        due = _callbacks_due(tx.conn, now, limit)
        _hold(tx.conn, "callbacks", [c.id for c in due], owner, hold_until)
        return due

    def claim_pushes(self, tx: _Tx, owner: str, now: float, hold_until: float,
                     limit: int) -> list[DuePush]:
        tx.flush()
        due = _pushes_due(tx.conn, now, limit)
        _hold(tx.conn, "pushes", [p.id for p in due], owner, hold_until)
        return due

    def claim_mailbacks(self, tx: _Tx, owner: str, now: float, hold_until: float,
                        limit: int) -> list[DueMailback]:
        tx.flush()
        due = _mailbacks_due(tx.conn, now, limit)
        _hold(tx.conn, "mailbacks", [b.id for b in due], owner, hold_until)
        return due

    def callback(self, tx: _Tx, callback_id: int, message_id: str, outcome: str, attempts: int,
                 next_at: float, at: float, detail: str) -> None:
        _attempted(tx, "callbacks", CALLBACK_EVENTS, callback_id, message_id, outcome,
                   attempts, next_at, at, detail)

    def push(self, tx: _Tx, push_id: int, outcome: str, attempts: int, next_at: float,
             detail: str) -> None:
        """After an attempt at a push: as `_attempted`, without a timeline (an inbound SMS
        has none)."""
        if outcome == "retry":
            tx.conn.execute("UPDATE pushes SET attempts = ?, next_at = ?, last_error = ?, "
                            "claimed_by = NULL, claimed_until = NULL WHERE id = ?",
                            (attempts, next_at, detail, push_id))
        elif outcome in ("delivered", "gave_up"):
            tx.conn.execute("DELETE FROM pushes WHERE id = ?", (push_id,))
        else:
            raise ValueError(f"unknown attempt outcome {outcome!r}")

    def mailback(self, tx: _Tx, mailback_id: int, message_id: str, kind: str, outcome: str,
                 attempts: int, next_at: float, at: float, detail: str) -> None:
        events = MAIL_EVENTS.get(kind)
        if events is None:
            raise ValueError(f"unknown mail kind {kind!r}")
        _attempted(tx, "mailbacks", events, mailback_id, message_id, outcome, attempts,
                   next_at, at, detail)

    def queue_delay_dsns(self, tx: _Tx, accepted_before: float, now: float,
                         limit: int) -> tuple[int, int]:
        """Queue a delay DSN for each message accepted before `accepted_before` whose
        recipient asked for NOTIFY=DELAY and that is still on its way (queued or submitted:
        a scheduled one waits by design, a final one has its own report); each message is
        looked at once, up to `limit` of them. Returns (looked at, queued)."""
        tx.flush()
        conn = tx.conn
        rows = conn.execute(DELAY_DUE, (accepted_before, max(0, limit))).fetchall()
        if not rows:
            return 0, 0
        late = [(message_id, DELAYED, now, now) for message_id, state in rows
                if state in DELAYED_STATES]
        conn.executemany("INSERT INTO mailbacks (kind, message_id, state, at, next_at) "
                         "VALUES ('dsn', ?, ?, ?, ?)", late)
        conn.executemany("UPDATE messages SET dsn_delay_owed = NULL WHERE id = ?",
                         [(message_id,) for message_id, _ in rows])
        return len(rows), len(late)

    def purge(self, tx: _Tx, before: float, limit: int) -> int:
        """Delete up to `limit` final messages that have not changed since `before`, oldest
        first, with everything that refers to them; returns how many went. Walks the table in
        insertion order and stops at the first message created at or after `before`, so a
        sweep reads only what is old."""
        tx.flush()
        tx.flush_smsc_keys()
        conn = tx.conn
        doomed: list[str] = []
        last = 0
        while len(doomed) < limit:
            rows = conn.execute(_PURGE_SCAN, (last, _PURGE_SCAN_ROWS)).fetchall()
            for rowid, message_id, state, created_at, updated_at in rows:
                last = rowid
                if created_at >= before:
                    rows = []  # everything after it is newer still
                    break
                if state in FINAL_VALUES and updated_at < before:
                    doomed.append(message_id)
                    if len(doomed) == limit:
                        break
            if len(rows) < _PURGE_SCAN_ROWS:
                break
        for chunk in _chunks(doomed):
            marks = _in(len(chunk))
            # Replies stored after `before` may answer a message that goes: they stay.
            conn.execute(f"UPDATE inbound SET reply_to_message_id = NULL "
                         f"WHERE reply_to_message_id IN ({marks})", tuple(chunk))
            for table in ("events", "smsc_keys", "callbacks", "mailbacks", "parts", "messages"):
                column = "id" if table == "messages" else "message_id"
                conn.execute(f"DELETE FROM {table} WHERE {column} IN ({marks})", tuple(chunk))
        if doomed:  # replies as old as the messages go with them
            for table in ("mailbacks", "pushes"):
                conn.execute(f"DELETE FROM {table} WHERE inbound_id IN "
                             "(SELECT id FROM inbound WHERE received_at < ?)", (before,))
            conn.execute("DELETE FROM inbound WHERE received_at < ?", (before,))
        return len(doomed)

    def heartbeat(self, tx: _Tx, instance: str, at: float, info_json: str) -> float | None:
        row = tx.conn.execute("SELECT heartbeat_at FROM instances WHERE id = ?",
                              (instance,)).fetchone()
        tx.conn.execute(_HEARTBEAT, (instance, at, info_json))
        return float(row[0]) if row is not None else None

    def mo_part(self, tx: _Tx, part: MoPart, inbound: InboundMessage) -> bool:
        conn = tx.conn
        conn.execute(_KEEP_MO_PART, (part.source, part.destination, part.ref, part.total,
                                     part.seq, part.smsc, part.text, part.received_at))
        key = (part.source, part.destination, part.ref, part.total)
        text = assemble(part.total, dict(conn.execute(_MO_SET_TEXTS, key).fetchall()))
        if text is None:
            return False
        self.inbound(tx, dataclasses.replace(inbound, text=text))
        conn.execute(_FORGET_MO_SET, key)
        return True

    def mo_partial(self, tx: _Tx, mo_set: MoSet, inbound: InboundMessage) -> bool:
        conn = tx.conn
        key = (mo_set.source, mo_set.destination, mo_set.ref, mo_set.total)
        texts = dict(conn.execute(_MO_SET_TEXTS, key).fetchall())
        if not texts:
            return False
        self.inbound(tx, dataclasses.replace(inbound, text=join_partial(mo_set.total, texts)))
        conn.execute(_FORGET_MO_SET, key)
        return True

    def inbound(self, tx: _Tx, m: InboundMessage) -> None:
        tx.conn.execute(
            "INSERT INTO inbound (id, smsc, source, destination, text, received_at, "
            "reply_to_message_id) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (m.id, m.smsc, m.source, m.destination, m.text, m.received_at, m.reply_to_message_id))
        if m.account is not None and m.push_url is not None:
            tx.conn.execute("INSERT INTO pushes (inbound_id, account, url, next_at) "
                            "VALUES (?, ?, ?, ?)", (m.id, m.account, m.push_url, m.received_at))
        if m.mail_reply and m.reply_to_message_id is not None:
            tx.conn.execute(
                "INSERT INTO mailbacks (kind, message_id, inbound_id, at, next_at) "
                "VALUES ('reply', ?, ?, ?, ?)",
                (m.reply_to_message_id, m.id, m.received_at, m.received_at))

    # -------------------------------------------------------------- shared steps

    def _apply_receipt(self, tx: _Tx, message_id: str, seq: int, part_state: PartState | None,
                       stat: str | None, err: str | None, at: float, *,
                       orphan: bool, row: tuple[Any, ...] | None = None) -> MessageState:
        """Part state (`_receipt_change`), then the message aggregate."""
        conn = tx.conn
        if row is None:  # else read with the match: (part state, total, stat, err, message state)
            row = conn.execute(_PART_AND_MESSAGE, (message_id, seq)).fetchone()
        current = PartState(row[0])
        total = int(row[1])
        new = receipt_change(current, row[2], row[3], part_state, stat, err)
        if new is None:
            return MessageState(row[4])
        conn.execute(_RECEIPT_PART, (new.value, stat or "", err, new.value, at, message_id, seq))
        if interim(current, new, stat):
            conn.execute(_QUEUE_BUFFERED, (at, at, stat, message_id))
        detail = receipt_detail(seq, total, stat, err)
        tx.event(message_id, at, "receipt", detail + (" (arrived before submit_sm_resp)"
                                                     if orphan else ""))
        if new is current:
            return MessageState(row[4])
        return self._reaggregate(tx, message_id, at, detail,
                                 only_part=new if total == 1 else None)

    def _reaggregate(self, tx: _Tx, message_id: str, at: float, detail: str,
                     submitted: str | None = None, *,
                     only_part: PartState | None = None) -> MessageState:
        """Move the message to the aggregate of its parts, in one conditional UPDATE that the
        transition table guards (`_MOVE_MESSAGE`). `only_part`: the state of a single-part
        message's only part, already known, which saves reading the parts."""
        conn = tx.conn
        if only_part is not None:
            target = aggregate((only_part,))
        else:
            target = aggregate(PartState(r[0]) for r in conn.execute(_PART_STATES, (message_id,)))
        if conn.execute(_MOVE_MESSAGE[target],
                        _move_params(target, at, detail, message_id)).rowcount != 1:
            return MessageState(conn.execute(_MESSAGE_STATE, (message_id,)).fetchone()[0])
        tx.event(message_id, at, target.value,
                 submitted if target is MessageState.SUBMITTED and submitted else detail)
        return target


def _hold(conn: sqlite3.Connection, table: str, ids: list[int], owner: str,
          until: float) -> None:
    for chunk in _chunks(ids):
        conn.execute(f"UPDATE {table} SET claimed_by = ?, claimed_until = ? "
                     f"WHERE id IN ({_in(len(chunk))})", (owner, until, *chunk))


def _attempted(tx: _Tx, table: str, events: dict[str, str], row_id: int, message_id: str,
               outcome: str, attempts: int, next_at: float, at: float, detail: str) -> None:
    """After an attempt at a queued callback or mail: "retry" keeps the row until `next_at`,
    "delivered" and "gave_up" remove it; each leaves its timeline event."""
    event = events.get(outcome)
    if event is None:
        raise ValueError(f"unknown attempt outcome {outcome!r}")
    if outcome == "retry":
        tx.conn.execute(f"UPDATE {table} SET attempts = ?, next_at = ?, last_error = ?, "
                        "claimed_by = NULL, claimed_until = NULL WHERE id = ?",
                        (attempts, next_at, detail, row_id))
    else:
        tx.conn.execute(f"DELETE FROM {table} WHERE id = ?", (row_id,))
    tx.event(message_id, at, event, detail)

#: Operations whose runs have a form that writes the run together (`_Writer._apply`).
_TOGETHER: dict[Callable[..., Any], Callable[..., list[Any] | None]] = {
    _Writer.submitted: _Writer._submitted_together,
    _Writer.receipt: _Writer._receipts_together,
    _Writer.begin_submit: _Writer._begin_submits_together,
}


class _WriterThread:
    """The in-process store's writer: a thread that takes what is queued (up to `max_batch`),
    runs it with `_Writer.run`, then resolves the batch's futures with one
    `call_soon_threadsafe` on the loop that opened the store."""

    def __init__(self, writer: _Writer, loop: asyncio.AbstractEventLoop) -> None:
        self.writer = writer
        self.loop = loop  # the one loop whose callers wait on the futures
        self.queue: queue.SimpleQueue[Op | None] = queue.SimpleQueue()  # None: stop
        self.alive = True
        self.thread = threading.Thread(target=self._main, name="bridge-store-writer", daemon=True)

    def put(self, op: Op) -> None:
        self.queue.put(op)

    def _main(self) -> None:
        try:
            stop = False
            while not stop:
                first = self.queue.get()
                if first is None:
                    break
                batch = [first]
                stop = self._collect(batch)
                self._deliver(self.writer.run(batch))
        finally:
            self.alive = False
            self.writer.close()

    def _collect(self, batch: list[Op]) -> bool:
        """Add what is queued to `batch` until it weighs `max_batch` (messages for accepts, one
        for other writes); True when the stop marker was reached. It never waits: companions
        gather on their own while the previous commit syncs."""
        get = self.queue.get_nowait
        weight = batch[0].weight
        while weight < self.writer.max_batch:
            try:
                op = get()
            except queue.Empty:
                return False
            if op is None:
                return True
            batch.append(op)
            weight += op.weight
        return False

    def _deliver(self, results: list[Result]) -> None:
        if results:
            resolve_later(self.loop, results)


class _LoopWriter:
    """The store process's writer: on its event loop's own thread, between iterations. The
    writes that arrive during one iteration (the bridge's requests and the outbound side's
    records) run as one transaction at the start of the next, synchronously: no thread to wake
    and no GIL to hand over (bridge.runtime.child says why). A result whose token is a future
    completes it; the others (the pipe's request ids) go to `answer`."""

    def __init__(self, writer: _Writer, loop: asyncio.AbstractEventLoop,
                 answer: Callable[[list[Result]], None]) -> None:
        self.writer = writer
        self.loop = loop
        self.answer = answer
        self.alive = True
        self._batch: list[Op] = []
        self._weight = 0

    def put(self, op: Op) -> None:
        if not self._batch:
            self.loop.call_soon(self.run)
        self._batch.append(op)

    def run(self) -> None:
        """Everything queued so far, in order, in transactions of up to `max_batch` weight.
        Never from inside `put`: a caller that queues a write is not re-entered by another
        caller's completion."""
        queued, self._batch = self._batch, []
        start, limit = 0, self.writer.max_batch
        while start < len(queued):
            end, weight = start, 0
            while end < len(queued) and (end == start or weight < limit):
                weight += queued[end].weight
                end += 1
            self._deliver(self.writer.run(queued[start:end]))
            start = end

    def _deliver(self, results: list[Result]) -> None:
        awaited: list[Result] = []
        answered: list[Result] = []
        for result in results:
            (awaited if isinstance(result[0], asyncio.Future) else answered).append(result)
        try:
            if answered:
                self.answer(answered)
        finally:
            if awaited:
                resolve(awaited)

    def close(self) -> None:
        self.run()
        self.alive = False
        self.writer.close()


# ---------------------------------------------------------------------------------- calls by name

#: The Store's write calls as writer operations, by interface method name. A call's positional
#: arguments are the operation's, as `CallsByName` builds them for both SqliteStore and
#: StoreProcess (which sends them to the store process: bridge.runtime.child).
WRITES: dict[str, Callable[..., Any]] = {
    "flush": _Writer.noop, "accept": _Writer.accept, "record_submitted": _Writer.submitted,
    "record_state": _Writer.state, "record_event": _Writer.event,
    "record_receipt": _Writer.receipt, "record_inbound": _Writer.inbound,
    "record_callback": _Writer.callback, "record_mailback": _Writer.mailback,
    "record_push": _Writer.push,
    "purge": _Writer.purge, "queue_delay_dsns": _Writer.queue_delay_dsns,
    "heartbeat": _Writer.heartbeat, "claim": _Writer.claim, "release": _Writer.release,
    "retire": _Writer.retire, "claim_callbacks": _Writer.claim_callbacks,
    "claim_mailbacks": _Writer.claim_mailbacks, "claim_pushes": _Writer.claim_pushes,
    "record_mo_part": _Writer.mo_part, "record_mo_partial": _Writer.mo_partial,
    "restart_message": _Writer.restart,
    "begin_submit": _Writer.begin_submit, "end_submit": _Writer.end_submit,
    "cancel": _Writer.cancel, "retry": _Writer.retry, "add_credit": _Writer.add_credit,
}


def write_weight(fn: Callable[..., Any], args: tuple[Any, ...]) -> int:
    """Rows an operation writes, roughly, for the batch bound: an accept counts its messages."""
    return len(args[0]) if fn is _Writer.accept else 1


# ---------------------------------------------------------------------------------- readers

def _views(conn: sqlite3.Connection, rows: list[Any]) -> list[MessageView]:
    """MessageViews for message rows selected with _VIEW_COLUMNS, in the same order."""
    parts: dict[str, list[tuple[str, str | None]]] = {}
    ids = [r[0] for r in rows]
    for chunk in _chunks(ids):
        for message_id, state, smsc_id in conn.execute(
                f"SELECT message_id, state, smsc_id FROM parts WHERE message_id IN "
                f"({_in(len(chunk))}) ORDER BY message_id, seq", tuple(chunk)):
            parts.setdefault(message_id, []).append((state, smsc_id))
    out = []
    for r in rows:
        own = parts.get(r[0], [])
        out.append(MessageView(
            id=r[0], account=r[1], ingress=Ingress(r[2]), recipient=r[3], source_addr=r[4],
            state=MessageState(r[5]), encoding=r[6], parts=int(r[7]),
            parts_delivered=sum(1 for s, _ in own if s == PartState.DELIVERED.value),
            smsc_ids=tuple(i for _, i in own if i is not None),
            created_at=float(r[8]), updated_at=float(r[9]), error=r[10], error_detail=r[11],
            meta_json=r[12]))
    return out


class SqliteStore(CallsByName):
    def __init__(self, path: Path | str, *, commit_max_batch: int = 2000,
                 orphan_ttl_s: float = 2 * 86400.0, busy_timeout_s: float = 10.0) -> None:
        self.path = Path(path)
        self.commit_max_batch = commit_max_batch
        self.orphan_ttl_s = orphan_ttl_s
        self.busy_timeout_s = busy_timeout_s
        self._writer: _Writer | None = None
        self._driver: _WriterThread | _LoopWriter | None = None
        self._closing = False
        self._answer: Callable[[list[Result]], None] | None = None
        self._serving: ThreadPoolExecutor | None = None  # the store process's reader threads
        self._readers: queue.SimpleQueue[sqlite3.Connection] = queue.SimpleQueue()
        self._all_readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()

    # -------------------------------------------------------------- lifecycle

    def _connect(self, *, write: bool) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=self.busy_timeout_s, isolation_level=None,
                               check_same_thread=False, cached_statements=256)
        if write:
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = FULL")
            conn.execute("PRAGMA foreign_keys = ON")
        else:
            conn.execute("PRAGMA query_only = ON")
        conn.execute("PRAGMA temp_store = MEMORY")
        return conn

    def _open_writer(self) -> _Writer:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = self._connect(write=True)
        except (sqlite3.Error, OSError) as exc:
            raise StoreUnavailable(f"cannot open store {self.path}: {exc}") from exc
        try:
            mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
            if str(mode).lower() != "wal":
                raise StoreUnavailable(f"{self.path}: cannot use WAL journal mode (got {mode})")
            before, after = migrate(conn)
            if before != after:
                log.info("store %s: schema migrated from version %d to %d",
                         self.path, before, after)
            return _Writer(conn, max_batch=self.commit_max_batch,
                           orphan_ttl_s=self.orphan_ttl_s)
        except (sqlite3.Error, OSError) as exc:
            conn.close()
            raise StoreUnavailable(f"cannot open store {self.path}: {exc}") from exc
        except BaseException:
            conn.close()
            raise

    async def open(self) -> None:
        """Open with a writer thread: the store inside a process that does other work."""
        if self._writer is not None:
            return
        writer = await asyncio.to_thread(self._open_writer)
        self._writer = writer
        thread = _WriterThread(writer, asyncio.get_running_loop())
        self._driver = thread
        self._closing = False
        thread.thread.start()

    def open_on_loop(self, answer: Callable[[list[Result]], None]) -> None:
        """Open with the writer on the running loop's thread (the store process,
        bridge.runtime.child): the async methods work as usual, `write_request` adds the pipe's
        requests to the same batches, and their results go to `answer`."""
        if self._writer is not None:
            raise RuntimeError("the store is already open")
        writer = self._writer = self._open_writer()
        self._driver = _LoopWriter(writer, asyncio.get_running_loop(), answer)
        self._closing = False

    async def open_serving(self, answer: Callable[[list[Result]], None]) -> None:
        """Open for the store process: the writer on this loop's thread (`open_on_loop`) and
        reader threads; the results of `write_request` and `read_request` go to `answer`."""
        self.open_on_loop(answer)
        self._answer = answer
        self._serving = ThreadPoolExecutor(READ_THREADS, thread_name_prefix="bridge-store-reader")

    def read_request(self, method: str, args: tuple[Any, ...], request_id: int) -> bool:
        """Run the pipe's read `method` on a reader thread (WAL lets it go beside the writer);
        its result goes to `answer` on the loop. False when `method` is not a read. The limits
        live in the writer's memory, on this loop: answered at once."""
        if method == "limits_peek" and self._writer is not None and self._answer is not None:
            self._answer([(request_id, self._writer.limits_peek(*args), None)])
            return True
        read = READS.get(method)
        if read is None:
            return False
        if self._serving is None or self._driver is None:
            raise StoreUnavailable("the store is not open")
        self._serving.submit(self._read_for, read, args, request_id, self._driver.loop)
        return True

    def _read_for(self, read: Callable[..., Any], args: tuple[Any, ...], request_id: int,
                  loop: asyncio.AbstractEventLoop) -> None:
        """On a reader thread; the answer goes out from the loop."""
        result: Result
        try:
            result = (request_id, self.read_sync(read, args), None)
        except Exception as exc:
            result = (request_id, None, exc)
        answer = self._answer
        if answer is not None:
            results: list[Result] = [result]
            with contextlib.suppress(RuntimeError):  # the loop has closed: nobody waits
                loop.call_soon_threadsafe(answer, results)

    def observe_commits(self, callback: Callable[[int, float], None]) -> None:
        """`callback(operations, seconds)` after every commit, seconds from BEGIN to the end of
        COMMIT: how long durability takes on this disk (the store process's metrics)."""
        if self._writer is None:
            raise RuntimeError("the store is not open")
        self._writer.on_commit = callback

    def write_request(self, method: str, args: tuple[Any, ...], request_id: int) -> bool:
        """Queue the pipe's write call `method` (a WRITES name) behind the writes before it;
        its result goes to `open_on_loop`'s `answer`. False when `method` is not a write."""
        fn = WRITES.get(method)
        if fn is None:
            return False
        driver = self._driver
        if driver is None or self._closing or not driver.alive:
            raise StoreUnavailable("the store is not open")
        driver.put(Op(fn, args, request_id, write_weight(fn, args)))
        return True

    async def close(self) -> None:
        driver = self._driver
        if driver is None or self._closing:
            return
        if self._serving is not None:  # reads already handed over still answer
            self._serving.shutdown(wait=True)
            self._serving = None
            await asyncio.sleep(0)  # ... through the loop
        self._closing = True
        if isinstance(driver, _WriterThread):
            driver.queue.put(None)
            await asyncio.to_thread(driver.thread.join)  # the thread closes the writer
        else:
            driver.close()
        self._driver = None
        self._writer = None
        self._close_readers()

    def _close_readers(self) -> None:
        with self._readers_lock:
            for conn in self._all_readers:
                conn.close()
            self._all_readers.clear()
            self._readers = queue.SimpleQueue()


    def stats(self) -> dict[str, int]:
        """Writer counters: commits, operations, failures, the largest batch."""
        w = self._writer
        if w is None:
            return {}
        return {"commits": w.commits, "ops": w.ops, "failed_batches": w.failed_batches,
                "failed_ops": w.failed_ops, "largest_batch": w.largest_batch}

    # -------------------------------------------------------------- write plumbing

    def _write(self, method: str, args: tuple[Any, ...]) -> asyncio.Future[Any]:
        return self._submit(WRITES[method], args)

    def _submit(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> asyncio.Future[Any]:
        driver = self._driver
        if driver is None or self._closing or not driver.alive:
            future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            future.set_exception(StoreUnavailable("the store is not open"))
            return future
        future = driver.loop.create_future()
        driver.put(Op(fn, args, future, write_weight(fn, args)))
        return future

    # -------------------------------------------------------------- read plumbing

    def _read_snapshot(self, fn: Callable[..., T], args: tuple[Any, ...]) -> T:
        try:
            conn = self._readers.get_nowait()
        except queue.Empty:
            conn = self._connect(write=False)
            with self._readers_lock:
                self._all_readers.append(conn)
        try:
            conn.execute("BEGIN")  # one snapshot for every query of this read
            try:
                return fn(conn, *args)
            finally:
                conn.execute("COMMIT")
        finally:
            if self._closing or self._writer is None:
                conn.close()
            else:
                self._readers.put(conn)

    def read_sync(self, fn: Callable[..., T], args: tuple[Any, ...]) -> T:
        """Run a read (a `READS` function) on a reader connection, in the calling thread."""
        if self._writer is None or self._closing:
            raise StoreUnavailable("the store is not open")
        try:
            return self._read_snapshot(fn, args)
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"store read failed: {exc}") from exc

    async def _read(self, method: str, args: tuple[Any, ...]) -> Any:
        if method == "limits_peek":
            if self._writer is None or self._closing:
                raise StoreUnavailable("the store is not open")
            return self._writer.limits_peek(*args)
        return await asyncio.to_thread(self.read_sync, READS[method], args)

# ---------------------------------------------------------------------------------- reads
# Each runs on a reader connection inside one snapshot (SqliteStore._read_sync).

def _usage(conn: sqlite3.Connection, accounts: tuple[str, ...]) -> list[AccountUsage]:
    out = []
    for account in accounts:
        row = conn.execute(_GET_USAGE, (account,)).fetchone()
        out.append(AccountUsage(account, *((int(row[0]), int(row[1])) if row is not None
                                           else (0, 0))))
    return out


def _credit_changes(conn: sqlite3.Connection, account: str, limit: int) -> list[CreditChange]:
    return [CreditChange(r[0], int(r[1]), int(r[2]), float(r[3]), r[4]) for r in conn.execute(
        "SELECT account, change, credit, at, actor FROM credits WHERE account = ? "
        "ORDER BY at DESC, id DESC LIMIT ?", (account, max(0, limit)))]


def _load_pending(conn: sqlite3.Connection, limit: int) -> list[OutboundMessage]:
    rows = conn.execute(
        f"SELECT {_OUTBOUND_COLUMNS}, routes FROM messages m "
        f"WHERE state IN ({_in(len(PENDING_STATES))}) AND EXISTS ("
        f"  SELECT 1 FROM parts p WHERE p.message_id = m.id AND p.smsc_id IS NULL) "
        f"ORDER BY created_at, rowid LIMIT ?", (*PENDING_STATES, limit)).fetchall()
    return _outbound(conn, rows)


def _outbound(conn: sqlite3.Connection, rows: Sequence[Any]) -> list[OutboundMessage]:
    """OutboundMessages for rows selected with _OUTBOUND_COLUMNS and routes, with parts."""
    parts: dict[str, list[OutboundPart]] = {}
    for chunk in _chunks([r[0] for r in rows]):
        for p in conn.execute(
                f"SELECT message_id, seq, total, short_message, tlvs_json, state, smsc, "
                f"smsc_id, submitted_at FROM parts WHERE message_id IN ({_in(len(chunk))}) "
                f"ORDER BY message_id, seq", tuple(chunk)):
            parts.setdefault(p[0], []).append(OutboundPart(
                seq=int(p[1]), total=int(p[2]), short_message=bytes(p[3]),
                tlvs_json=p[4], state=PartState(p[5]), smsc=p[6], smsc_id=p[7],
                submitted_at=None if p[8] is None else float(p[8])))
    return [OutboundMessage(
        id=r[0], account=r[1], recipient=r[2], source_addr=r[3], source_ton=int(r[4]),
        source_npi=int(r[5]), dest_ton=int(r[6]), dest_npi=int(r[7]),
        data_coding=int(r[8]), esm_class=int(r[9]), registered_delivery=int(r[10]),
        state=MessageState(r[11]), created_at=float(r[12]),
        send_at=None if r[13] is None else float(r[13]), expires_at=float(r[14]),
        parts=tuple(parts.get(r[0], ())), routes=tuple(r[15].split(",")) if r[15] else ())
        for r in rows]


def _stale_mo_sets(conn: sqlite3.Connection, before: float, limit: int) -> list[MoSet]:
    sets = conn.execute(
        "SELECT source, destination, ref, total, min(received_at), min(smsc) FROM mo_parts "
        "GROUP BY source, destination, ref, total HAVING min(received_at) < ? "
        "ORDER BY 5 LIMIT ?", (before, max(0, limit))).fetchall()
    return [MoSet(smsc=smsc, source=source, destination=destination, ref=int(ref),
                  total=int(total), first_at=float(first),
                  texts=tuple(conn.execute(_MO_SET_TEXTS + " ORDER BY seq",
                                           (source, destination, ref, total)).fetchall()))
            for source, destination, ref, total, first, smsc in sets]
def _message_text(conn: sqlite3.Connection, message_id: str) -> str | None:
    row = conn.execute("SELECT text FROM messages WHERE id = ?", (message_id,)).fetchone()
    return None if row is None else str(row[0])


def _instances(conn: sqlite3.Connection) -> list[InstanceRow]:
    return [InstanceRow(r[0], float(r[1]), r[2]) for r in conn.execute(
        "SELECT id, heartbeat_at, info_json FROM instances ORDER BY heartbeat_at DESC, id")]


def _get_messages(conn: sqlite3.Connection, wanted: tuple[str, ...]) -> list[MessageView]:
    rows: list[Any] = []
    for chunk in _chunks(list(dict.fromkeys(wanted))):
        rows.extend(conn.execute(
            f"SELECT {_VIEW_COLUMNS} FROM messages WHERE id IN ({_in(len(chunk))})",
            tuple(chunk)).fetchall())
    by_id = {v.id: v for v in _views(conn, rows)}
    return [by_id[i] for i in wanted if i in by_id]


def _list_messages(conn: sqlite3.Connection, account: str | None, offset: int, limit: int,
                   state: MessageState | None,
                   since: float | None) -> tuple[int, list[MessageView]]:
    where = "1 = 1"
    params: list[Any] = []
    if account is not None:
        where += " AND account = ?"
        params.append(account)
    if state is not None:
        where += " AND state = ?"
        params.append(MessageState(state).value)
    if since is not None:
        where += " AND created_at >= ?"
        params.append(since)
    total = int(conn.execute(f"SELECT count(*) FROM messages WHERE {where}",
                             params).fetchone()[0])
    rows = conn.execute(
        f"SELECT {_VIEW_COLUMNS} FROM messages WHERE {where} "
        f"ORDER BY created_at DESC, rowid DESC LIMIT ? OFFSET ?",
        (*params, max(0, limit), max(0, offset))).fetchall()
    return total, _views(conn, rows)


def _timeline(conn: sqlite3.Connection, message_id: str) -> list[Event]:
    return [Event(r[0], float(r[1]), r[2], r[3]) for r in conn.execute(
        "SELECT message_id, at, state, detail FROM events WHERE message_id = ? "
        "ORDER BY at, id", (message_id,))]


def _counts_by_state(conn: sqlite3.Connection) -> dict[str, int]:
    counts = {s.value: 0 for s in MessageState}
    for state, n in conn.execute("SELECT state, count(*) FROM messages GROUP BY state"):
        counts[state] = int(n)
    return counts


def _last_message_to(conn: sqlite3.Connection, recipient: str,
                     since: float) -> MessageView | None:
    rows = conn.execute(
        f"SELECT {_VIEW_COLUMNS} FROM messages WHERE recipient = ? AND created_at >= ? "
        f"ORDER BY created_at DESC, rowid DESC LIMIT 1", (recipient, since)).fetchall()
    views = _views(conn, rows)
    return views[0] if views else None


_FIRST_PART = "(SELECT p.{} FROM parts p WHERE p.message_id = c.message_id ORDER BY p.seq LIMIT 1)"
_LAST_RECEIPT = ("(SELECT p.{} FROM parts p WHERE p.message_id = c.message_id "
                 "AND coalesce(p.receipt_stat, '') != '' ORDER BY p.seq DESC LIMIT 1)")
_CALLBACKS_DUE = (
    "SELECT c.id, c.message_id, c.url, c.state, c.at, c.attempts, m.recipient, m.meta_json, "
    "m.parts, (SELECT count(*) FROM parts p WHERE p.message_id = c.message_id "
    "AND p.state = 'delivered'), m.error, m.error_detail, m.account, m.raw_recipient, "
    "m.source_addr, m.text, m.created_at, m.report_mask, c.detail, "
    + ", ".join(_FIRST_PART.format(col) for col in ("smsc", "smsc_id", "submitted_at")) + ", "
    + ", ".join(_LAST_RECEIPT.format(col) for col in ("receipt_stat", "receipt_err"))
    + " FROM callbacks c JOIN messages m ON m.id = c.message_id "
    "WHERE c.next_at <= ? AND (c.claimed_until IS NULL OR c.claimed_until <= ?) "
    "ORDER BY c.next_at, c.id LIMIT ?")


def _callbacks_due(conn: sqlite3.Connection, now: float, limit: int) -> list[DueCallback]:
    rows = conn.execute(_CALLBACKS_DUE, (now, now, max(0, limit)))
    return [DueCallback(id=int(r[0]), message_id=r[1], account=r[12], url=r[2], state=r[3],
                        at=float(r[4]), attempts=int(r[5]), recipient=r[6], meta_json=r[7],
                        parts=int(r[8]), parts_delivered=int(r[9]), error=r[10],
                        error_detail=r[11], raw_recipient=r[13], source_addr=r[14], text=r[15],
                        created_at=float(r[16]), report_mask=r[17], event_detail=r[18],
                        smsc=r[19], smsc_id=r[20],
                        submitted_at=None if r[21] is None else float(r[21]),
                        receipt_stat=r[22], receipt_err=r[23])
            for r in rows]


def _pushes_due(conn: sqlite3.Connection, now: float, limit: int) -> list[DuePush]:
    rows = conn.execute(
        "SELECT p.id, p.inbound_id, p.account, p.url, p.attempts, i.smsc, i.source, "
        "i.destination, i.text, i.received_at FROM pushes p JOIN inbound i ON i.id = p.inbound_id "
        "WHERE p.next_at <= ? AND (p.claimed_until IS NULL OR p.claimed_until <= ?) "
        "ORDER BY p.next_at, p.id LIMIT ?", (now, now, max(0, limit)))
    return [DuePush(id=int(r[0]), inbound_id=r[1], account=r[2], url=r[3], attempts=int(r[4]),
                    smsc=r[5], source=r[6], destination=r[7], text=r[8],
                    received_at=float(r[9])) for r in rows]


def _mailbacks_due(conn: sqlite3.Connection, now: float, limit: int) -> list[DueMailback]:
    rows = conn.execute(
        "SELECT b.id, b.kind, b.message_id, b.state, b.at, b.attempts, m.recipient, m.meta_json, "
        "m.created_at, m.parts, (SELECT count(*) FROM parts p WHERE p.message_id = b.message_id "
        "AND p.state = 'delivered'), m.error, m.error_detail, b.inbound_id, i.source, i.text, "
        "m.state FROM mailbacks b JOIN messages m ON m.id = b.message_id "
        "LEFT JOIN inbound i ON i.id = b.inbound_id "
        "WHERE b.next_at <= ? AND (b.claimed_until IS NULL OR b.claimed_until <= ?) "
        "ORDER BY b.next_at, b.id LIMIT ?", (now, now, max(0, limit)))
    return [DueMailback(id=int(r[0]), kind=r[1], message_id=r[2], state=r[3], at=float(r[4]),
                        attempts=int(r[5]), recipient=r[6], meta_json=r[7],
                        created_at=float(r[8]), parts=int(r[9]), parts_delivered=int(r[10]),
                        error=r[11], error_detail=r[12], inbound_id=r[13], inbound_source=r[14],
                        inbound_text=r[15], message_state=r[16])
            for r in rows]


#: The Store's read calls by interface method name; positional arguments as SqliteStore passes
#: them (after the connection).
READS: dict[str, Callable[..., Any]] = {
    "usage": _usage, "credit_changes": _credit_changes, "load_pending": _load_pending,
    "get_messages": _get_messages,
    "list_messages": _list_messages, "timeline": _timeline, "counts_by_state": _counts_by_state,
    "last_message_to": _last_message_to, "callbacks_due": _callbacks_due,
    "mailbacks_due": _mailbacks_due, "instances": _instances, "pushes_due": _pushes_due,
    "stale_mo_sets": _stale_mo_sets,
    "message_text": _message_text,
}
