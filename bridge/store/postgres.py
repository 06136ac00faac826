"""The PostgreSQL store (asyncpg): the Store contract on a database several bridge instances
share.

Writes: as in the SQLite store, every write method queues one operation and returns a future;
a writer takes what is queued (up to `commit_max_batch`), runs it in ONE transaction and
completes the futures once it has committed, so writes keep the order they were issued in and
a commit's cost is shared by everything that arrived while the previous one synced. There are
four writers, each on a connection of its own (`_Lane`): accepts, fences, receipts and the
other records; order holds within each, which is the order that matters (`_Lane` says why).
Runs of consecutive accepts are decided and written together (a few statements with arrays,
whatever their number). A batch that fails because of one operation is run again one operation per
transaction, so that one fails alone; a batch that fails because the database is gone (the
connection, the server, a timeout) fails whole, and for a short, growing while after that new
writes fail at once instead of each waiting for a connection (`healthy()` is False then).

Several instances write at once, so what SQLite gets from its one writer comes from locks
here: the accept transaction takes an advisory lock per idempotency key and per duplicate digest
(sorted, so two instances never deadlock) and locks the quota rows it reads, so two instances
never both accept one key or one duplicate, nor overspend a quota. The decisions themselves are
core.policy's (`accept_verdict`) and the receipt rules bridge.store.common's, as in SQLite.

Reads run on pooled connections, each in one snapshot (REPEATABLE READ, read only).
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import functools
import hashlib
import itertools
import logging
import math
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import asyncpg

from bridge.core.mailback import DELAYED
from bridge.core.model import Ingress
from bridge.core.reassembly import assemble, join_partial
from bridge.core.policy import (
    AcceptFacts,
    AcceptLimits,
    Bucket,
    FloodRun,
    accept_verdict,
    credit_after,
    limits_verdict,
)
from bridge.core.reports import BUFFERED, FINAL_EVENTS, ReportEvent
from bridge.core.states import (
    FINAL_MESSAGE_STATES,
    MessageState,
    PartState,
    aggregate,
    can_move,
)
from bridge.logs import Episode
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
    ignored_detail,
    interim,
    keeps_why,
    move_sources,
    receipt_change,
    receipt_detail,
    receipts_after_submits,
    resolve,
    retry_verdict,
    sendable,
    state_detail,
    submit_details,
)
from bridge.store.pg_schema import LATEST_VERSION, migrate, schema_version
from bridge.store.rows import AcceptRow, CallsByName

log = logging.getLogger("bridge.store")

#: Errors that say the database as a whole is gone, not that one operation was wrong.
_DATABASE_ERRORS: tuple[type[BaseException], ...] = (
    OSError, asyncio.TimeoutError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError, asyncpg.TooManyConnectionsError,
    asyncpg.AdminShutdownError, asyncpg.CrashShutdownError, asyncpg.ReadOnlySQLTransactionError,
    asyncpg.DiskFullError, asyncpg.InsufficientResourcesError, asyncpg.OutOfMemoryError,
)
#: Errors worth the same batch again at once (two instances' transactions crossed).
_RETRY_ERRORS = (asyncpg.DeadlockDetectedError, asyncpg.SerializationError)
#: The NOTIFY channel of "messages wait to be claimed".
DUE_CHANNEL = "sms_bridge_due"
_DOWN_MIN_S = 0.1
_DOWN_MAX_S = 2.0
_DIGEST_PRUNE_S = 10.0
#: Accepted messages after which the tables are analyzed (`PostgresStore._grew`), then ten
#: times as many, and so on.
_ANALYZE_FIRST = 1000
_ANALYZED = "messages, parts, smsc_keys, events, orphan_receipts"
_ORPHAN_PRUNE_S = 60.0

_MESSAGE_COLUMNS = (
    "id", "account", "ingress", "recipient", "raw_recipient", "source_addr", "source_ton",
    "source_npi", "dest_ton", "dest_npi", "text", "encoding", "data_coding", "esm_class",
    "registered_delivery", "state", "parts", "created_at", "updated_at", "send_at", "expires_at",
    "idempotency_key", "dup_digest", "dup_at", "callback_url", "meta_json", "dsn_notify",
    "dsn_delay_owed", "report_mask", "lease_owner")
_MESSAGE_TYPES = (
    "text", "text", "text", "text", "text", "text", "int", "int", "int", "int", "text", "text",
    "int", "int", "int", "text", "int", "float8", "float8", "float8", "float8", "text", "text",
    "float8", "text", "text", "text", "int", "int", "text")


def _unnest_insert(table: str, columns: Sequence[str], types: Sequence[str]) -> str:
    """One INSERT of many rows: a column array per parameter, unnested together."""
    params = ", ".join(f"${i}::{kind}[]" for i, kind in enumerate(types, 1))
    return f"INSERT INTO {table} ({', '.join(columns)}) SELECT * FROM unnest({params})"


def _insert_messages() -> str:
    """`_unnest_insert` for messages, with their routes: unnest cannot take an array of
    arrays, so each message's routes come comma-joined ("" for none) and are split here,
    in the INSERT (an UPDATE after it wrote every routed row twice)."""
    names = [f"c{i}" for i in range(len(_MESSAGE_COLUMNS))]
    params = ", ".join(f"${i}::{kind}[]" for i, kind in enumerate(_MESSAGE_TYPES, 1))
    return (f"INSERT INTO messages ({', '.join(_MESSAGE_COLUMNS)}, routes) "
            f"SELECT {', '.join(names)}, CASE WHEN r = '' THEN '{{}}'::text[] "
            f"ELSE string_to_array(r, ',') END "
            f"FROM unnest({params}, ${len(_MESSAGE_TYPES) + 1}::text[]) "
            f"AS u({', '.join(names)}, r)")


_INSERT_MESSAGES = _insert_messages()
_PENDING_SQL = ", ".join(f"'{v}'" for v in PENDING_STATES)
#: `state` as a filter on rows found by their primary key: the expression keeps a plan (one a
#: prepared statement cached while few messages were queued) from finding the rows through
#: messages_state and filtering on id, reading the whole backlog each time.
_BY_KEY_STATE = "state || ''"
_LIVE = "SELECT id FROM instances WHERE heartbeat_at >= $2"
# Lookups of many keys at once go through unnest with a LATERAL subquery per key (its LIMIT
# or OFFSET 0 keeps it a subquery, probed with each key): the plan cached for `col =
# ANY($1)`, made while the tables were small (a new database), scanned the whole table on each
# call until autovacuum's next ANALYZE, a cost that grew with every row written.
#: Numbers with a pending message the owner ($1) does not hold.
_UNSENT = "EXISTS (SELECT 1 FROM parts p WHERE p.message_id = {m}.id AND p.smsc_id IS NULL)"
_NOT_MINE = f"""
SELECT u.recipient FROM unnest($2::text[]) AS u(recipient)
CROSS JOIN LATERAL (SELECT 1 FROM messages m WHERE m.recipient = u.recipient
    AND m.state IN ({_PENDING_SQL}) AND m.lease_owner IS DISTINCT FROM $1
    AND EXISTS (SELECT 1 FROM parts p WHERE p.message_id = m.id AND p.smsc_id IS NULL OFFSET 0)
    LIMIT 1) AS pending
"""
_CLAIM = f"""
WITH live AS ({_LIVE}),
taken AS (
  SELECT m.id FROM messages m
  WHERE m.state IN ({_PENDING_SQL}) AND (m.send_at IS NULL OR m.send_at < $3)
    AND (m.lease_owner IS NULL
         OR (m.lease_owner <> $1 AND m.lease_owner NOT IN (SELECT id FROM live)))
    AND (m.routes = '{{}}' OR m.routes && $4::text[])
    AND EXISTS (SELECT 1 FROM parts p WHERE p.message_id = m.id AND p.smsc_id IS NULL)
    AND NOT EXISTS (
        SELECT 1 FROM messages o WHERE o.recipient = m.recipient
        AND o.state IN ({_PENDING_SQL}) AND o.created_at < m.created_at
        AND o.lease_owner <> $1 AND o.lease_owner IN (SELECT id FROM live)
        AND {_UNSENT.format(m="o")})
  ORDER BY m.created_at, m.id LIMIT $5 FOR UPDATE OF m SKIP LOCKED)
UPDATE messages SET lease_owner = $1 FROM taken WHERE messages.id = taken.id
RETURNING messages.id
"""
_INSERT_PARTS = _unnest_insert("parts", ("message_id", "seq", "total", "short_message",
                                         "tlvs_json", "state"),
                               ("text", "int", "int", "bytea", "text", "text"))
_INSERT_EVENTS = _unnest_insert("events", ("message_id", "at", "state", "detail"),
                                ("text", "float8", "text", "text"))
_INSERT_KEYS = _unnest_insert("smsc_keys", ("smsc", "key", "message_id", "seq"),
                              ("text", "text", "text", "int"))
_INSERT_ORPHANS = _unnest_insert("orphan_receipts", ("receipt", "smsc", "key", "part_state",
                                                     "stat", "err", "at"),
                                 ("text", "text", "text", "text", "text", "text", "float8"))
_ADD_USAGE = """
INSERT INTO account_usage (account, parts_used) SELECT * FROM unnest($1::text[], $2::bigint[])
ON CONFLICT (account) DO UPDATE SET parts_used = account_usage.parts_used + excluded.parts_used
"""
#: (make missing rows, read them locked) for quota usage and for rate buckets.
_USAGE = ("INSERT INTO account_usage (account, parts_used) SELECT unnest($1::text[]), 0 "
          "ON CONFLICT (account) DO NOTHING",
          "SELECT account, parts_used, credit FROM account_usage WHERE account = ANY($1::text[]) "
          "ORDER BY account FOR UPDATE")
_BUCKETS = ("INSERT INTO buckets (account) SELECT unnest($1::text[]) "
            "ON CONFLICT (account) DO NOTHING",
            "SELECT account, tokens, updated FROM buckets WHERE account = ANY($1::text[]) "
            "ORDER BY account FOR UPDATE")
_SAVE_FLOODS = """
INSERT INTO floods (recipient, count, last)
SELECT * FROM unnest($1::text[], $2::int[], $3::float8[])
ON CONFLICT (recipient) DO UPDATE SET count = excluded.count, last = excluded.last
"""
_SAVE_BUCKETS = """
UPDATE buckets b SET tokens = s.tokens, updated = s.updated
FROM unnest($1::text[], $2::float8[], $3::float8[]) AS s(account, tokens, updated)
WHERE b.account = s.account
"""
_FIND_KEYS = """
SELECT u.account, u.key, m.id FROM unnest($1::text[], $2::text[]) AS u(account, key)
CROSS JOIN LATERAL (SELECT id FROM messages WHERE account = u.account
                    AND idempotency_key = u.key OFFSET 0) AS m
"""
#: The messages of each (account, digest) still carrying it (`_newest` keeps the newest: an
#: ORDER BY dup_at LIMIT 1 here let a cached plan walk messages_dup_at from the newest row
#: down, every row, for each digest not found).
_FIND_DIGESTS = """
SELECT u.account, u.digest, m.id, m.dup_at FROM unnest($1::text[], $2::text[]) AS u(account, digest)
CROSS JOIN LATERAL (SELECT id, dup_at FROM messages WHERE account = u.account
                    AND dup_digest = u.digest OFFSET 0) AS m
"""
_PRUNE_DIGESTS = """
UPDATE messages SET dup_digest = NULL, dup_at = NULL WHERE dup_digest IS NOT NULL AND dup_at < $1
"""
_SUBMIT_PART = """
UPDATE parts SET state = CASE WHEN state = 'queued' THEN 'submitted' ELSE state END,
    smsc = $1, smsc_id = $2, submitted_at = $3, attempts = attempts + 1
WHERE message_id = $4 AND seq = $5 RETURNING total, state
"""
#: For runs written together (`_submitted_together`, `_receipts_together`): the parts of
#: these messages with their message's state, locked as the one-by-one UPDATEs lock them, so
#: what is decided from them holds until the commit whatever other instances do.
_LOCK_PARTS = """
SELECT p.message_id, p.seq, p.total, p.state, p.receipt_stat, p.receipt_err, m.state,
    p.submitted_at, p.smsc_id
FROM unnest($1::text[]) AS u(id)
CROSS JOIN LATERAL (SELECT message_id, seq, total, state, receipt_stat, receipt_err,
                           submitted_at, smsc_id FROM parts
                    WHERE message_id = u.id FOR NO KEY UPDATE) AS p
CROSS JOIN LATERAL (SELECT state FROM messages WHERE id = u.id FOR NO KEY UPDATE) AS m
"""
#: The orphan receipts waiting for an SMSC's keys, locked, oldest first.
_ORPHANS_OF = """
SELECT o.receipt, o.part_state, o.stat, o.err, o.at FROM unnest($2::text[]) AS u(key)
CROSS JOIN LATERAL (SELECT id, receipt, part_state, stat, err, at FROM orphan_receipts
                    WHERE smsc = $1 AND key = u.key FOR UPDATE) AS o
ORDER BY o.id
"""
#: Which of these (smsc, key) pairs an orphan receipt waits for.
_ORPHAN_PAIRS = """
SELECT u.smsc, u.key FROM unnest($1::text[], $2::text[]) AS u(smsc, key)
WHERE EXISTS (SELECT 1 FROM orphan_receipts WHERE smsc = u.smsc AND key = u.key OFFSET 0)
"""
#: `_RECEIPT_MATCHES` for the keys of several SMSCs at once (the SMSC first).
_RUN_MATCHES = """
SELECT u.smsc, k.key, k.message_id, k.seq, k.id, p.state, p.total, p.receipt_stat,
    p.receipt_err, m.state
FROM unnest($1::text[], $2::text[]) AS u(smsc, key)
CROSS JOIN LATERAL (SELECT * FROM smsc_keys s WHERE s.smsc = u.smsc AND s.key = u.key
                    OFFSET 0) AS k
JOIN parts p ON p.message_id = k.message_id AND p.seq = k.seq
JOIN messages m ON m.id = k.message_id
"""
_RECEIPT_PART = """
UPDATE parts SET state = $1, receipt_stat = $2, receipt_err = $3,
    delivered_at = CASE WHEN $1 = 'delivered' THEN coalesce(delivered_at, $4) ELSE delivered_at END
WHERE message_id = $5 AND seq = $6
"""
#: `_SUBMIT_PART` and `_RECEIPT_PART` for a run of parts of different messages, one statement
#: (pipelined one by one, the server ran a statement per part).
_SUBMIT_PARTS = """
UPDATE parts p SET state = CASE WHEN p.state = 'queued' THEN 'submitted' ELSE p.state END,
    smsc = u.smsc, smsc_id = u.smsc_id, submitted_at = u.at, attempts = p.attempts + 1
FROM unnest($1::text[], $2::text[], $3::float8[], $4::text[], $5::int[])
    AS u(smsc, smsc_id, at, message_id, seq)
WHERE p.message_id = u.message_id AND p.seq = u.seq
"""
_RECEIPT_PARTS = """
UPDATE parts p SET state = u.state, receipt_stat = u.stat, receipt_err = u.err,
    delivered_at = CASE WHEN u.state = 'delivered' THEN coalesce(p.delivered_at, u.at)
                        ELSE p.delivered_at END
FROM unnest($1::text[], $2::text[], $3::text[], $4::float8[], $5::text[], $6::int[])
    AS u(state, stat, err, at, message_id, seq)
WHERE p.message_id = u.message_id AND p.seq = u.seq
"""
#: The submits a receipt's keys match, each key probed on both columns of smsc_keys_lookup
#: (the plan cached for `smsc = $1 AND key = ANY($2)` scanned every key of the SMSC).
_RECEIPT_MATCHES = """
SELECT k.key, k.message_id, k.seq, k.id, p.state, p.total, p.receipt_stat, p.receipt_err, m.state,
    p.submitted_at, p.smsc_id
FROM unnest($2::text[]) AS u(key)
JOIN LATERAL (SELECT * FROM smsc_keys s WHERE s.smsc = $1 AND s.key = u.key OFFSET 0) AS k ON true
JOIN parts p ON p.message_id = k.message_id AND p.seq = k.seq
JOIN messages m ON m.id = k.message_id
"""
_PART_AND_MESSAGE = """
SELECT p.state, p.total, p.receipt_stat, p.receipt_err, m.state
FROM parts p JOIN messages m ON m.id = p.message_id WHERE p.message_id = $1 AND p.seq = $2
"""
#: A buffered report, for a message whose mask asks for it (bridge.core.reports): queued where
#: an interim receipt is applied, in its transaction, since no state changes then.
_QUEUE_BUFFERED = f"""
INSERT INTO callbacks (message_id, url, state, at, next_at, detail)
SELECT id, callback_url, '{BUFFERED}', $1, $1, $2 FROM messages
WHERE id = $3 AND callback_url IS NOT NULL
    AND (coalesce(report_mask, {int(FINAL_EVENTS)}) & {int(ReportEvent.BUFFERED)}) != 0
"""
_HEARTBEAT = """
INSERT INTO instances (id, heartbeat_at, info_json) VALUES ($1, $2, $3)
ON CONFLICT (id) DO UPDATE SET heartbeat_at = excluded.heartbeat_at, info_json = excluded.info_json
"""
_VIEW_COLUMNS = """id, account, ingress, recipient, source_addr, state, encoding, parts,
    created_at, updated_at, error, error_detail, meta_json"""
_OUTBOUND_COLUMNS = """id, account, recipient, source_addr, source_ton, source_npi, dest_ton,
    dest_npi, data_coding, esm_class, registered_delivery, state, created_at, send_at,
    expires_at"""


def _move_clauses(target: MessageState, at: str, detail: str) -> tuple[str, str]:
    """What a move to `target` sets (its time and detail as the SQL expressions `at` and
    `detail`), and the states it moves from (the transition table's)."""
    columns = f"state = $1, updated_at = {at}"
    if target is MessageState.DELIVERED:
        columns += ", error = NULL, error_detail = NULL"
    elif keeps_why(target):
        columns += f", error_detail = {detail}"
    return columns, ", ".join(f"'{v}'" for v in move_sources(target)) or "NULL"


def _move_sql(target: MessageState) -> str:
    """The conditional UPDATE that moves a message to `target` only from a state the
    transition table allows (no row: it stays where it is)."""
    columns, sources = _move_clauses(target, "$2", "$4")
    return (f"UPDATE messages SET {columns} WHERE id = $3 AND {_BY_KEY_STATE} IN ({sources}) "
            f"RETURNING 1")


_MOVE = {target: _move_sql(target) for target in MessageState}


def _moves_sql(target: MessageState) -> str:
    """`_move_sql` for many messages in one statement: $2, $3, $4 are the ids, the times and
    the details."""
    columns, sources = _move_clauses(target, "u.at", "u.detail")
    return (f"UPDATE messages m SET {columns} FROM unnest($2::text[], $3::float8[], $4::text[]) "
            f"AS u(id, at, detail) WHERE m.id = u.id AND m.{_BY_KEY_STATE} IN ({sources})")


_MOVES = {target: _moves_sql(target) for target in MessageState}

#: The states `_MOVE[target]` moves a message from.
_SOURCES = {target: frozenset(move_sources(target)) for target in MessageState}

#: A statement and its parameters.
Write = tuple[str, tuple[Any, ...]]
_PARAM = re.compile(r"\$(\d+)")


@functools.lru_cache(maxsize=64)
def _joined_sql(statements: tuple[str, ...]) -> str:
    """Data-modifying statements as one: each a WITH query, its parameters renumbered after
    the previous ones'. PostgreSQL runs each once, to completion, on one snapshot, so they
    must not depend on each other's rows nor change a row twice; foreign keys are checked
    at the end of the whole statement."""
    queries, offset = [], 0
    for i, sql in enumerate(statements):
        count = max((int(n) for n in _PARAM.findall(sql)), default=0)
        renumbered = _PARAM.sub(lambda m: f"${int(m.group(1)) + offset}", sql)
        queries.append(f"w{i} AS ({renumbered})")
        offset += count
    return f"WITH {', '.join(queries)} SELECT 1"


async def _write_together(conn: Any, writes: Sequence[Write | None]) -> None:
    """`writes` in one round trip (`_joined_sql`): in a transaction every statement waits
    for the server and then for this process's loop to come back to it, and the records of
    a batch are a few statements whatever their number."""
    present = [w for w in writes if w is not None]
    if len(present) == 1:
        await conn.execute(present[0][0], *present[0][1])
    elif present:
        await conn.execute(_joined_sql(tuple(sql for sql, _ in present)),
                           *[arg for _, args in present for arg in args])


def lock_key(*parts: str) -> int:
    """A signed 64-bit advisory lock key for a name: the same on every instance."""
    digest = hashlib.blake2b("\x1f".join(parts).encode("utf-8", "surrogatepass"),
                             digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def _failure_kind(exc: BaseException) -> type[StoreUnavailable]:
    return StoreRefused if isinstance(exc, (LookupError, ValueError)) else StoreUnavailable


class _Tx:
    """What one write transaction accumulates until it ends: events, quota usage, and whether
    to wake the instances (one NOTIFY per commit at most: NOTIFY takes a lock at commit that
    every notifying transaction of the database waits for)."""

    __slots__ = ("conn", "events", "delta", "notify", "accepted")

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self.events: list[tuple[str, float, str, str]] = []
        self.delta: dict[str, int] = {}
        self.notify = False
        self.accepted = 0  # messages inserted: counted by PostgresStore._grew once committed

    def event(self, message_id: str, at: float, state: str, detail: str) -> None:
        self.events.append((message_id, at, state, detail))

    def events_written(self, more: Sequence[tuple[str, float, str, str]]) -> Write | None:
        """The events so far and `more` after them, as one write (for a statement that
        writes them with its own; `finish` writes what comes later), in the order they
        happened: their ids are the timeline's order."""
        events, self.events = self.events + list(more), []
        return (_INSERT_EVENTS, tuple(map(list, zip(*events)))) if events else None

    async def finish(self) -> None:
        if (events := self.events_written(())) is not None:
            await self.conn.execute(events[0], *events[1])
        if self.delta:
            await self.conn.execute(_ADD_USAGE, list(self.delta), list(self.delta.values()))
        if self.notify:
            await self.conn.execute(f"NOTIFY {DUE_CHANNEL}")


class _Lane:
    """One writer: its operations in order, each batch one transaction on a pooled connection.

    The store has four (`_LANE_OF`): the accepts; the fences a dispatcher's workers take
    before a message's first part (`begin_submit`, `end_submit`); the receipts; and
    everything else the outbound side and the operator record. On one connection the store
    process's work and PostgreSQL's alternated within every transaction, and each worker's
    fence waited behind a batch of submit and receipt records before its submit could go;
    with submits and receipts in one lane, that lane was the one every message waited for.
    Lanes may run side by side because instances of a cluster already do: every operation
    holds as its own transaction beside any other's (row locks, advisory locks on the keys
    it decides by, deadlocks retried), and a receipt may reach one instance while another
    records its submit (the SMSC-id key's lock orders the two; the first to come stores an
    orphan the other applies). Within one instance, what needs order shares a lane: a fence
    and its release; and what the outbound side records about a message comes after its
    accept committed and after its fence, both awaited."""

    __slots__ = ("queue", "wake", "task", "running")

    def __init__(self) -> None:
        self.queue: collections.deque[Op | None] = collections.deque()
        self.wake = asyncio.Event()
        self.task: asyncio.Task[None] | None = None
        self.running: list[Op] = []  # the batch in its transaction now


def _behind_submits(receipts: list[Op], records: _Lane) -> list[Op]:
    """The receipts (of the receipts lane's batch) that must come after a submit record the
    records lane has not committed yet join that lane's queue in their own places, by the
    order every write was queued in, timed no earlier than their submits; the others are
    returned to run now. A receipt waits when its submit was queued before it, or after it
    with only submits and receipts between (the SMSC sent the receipt right behind the
    submit_sm_resp): the records lane then applies it as one lane holding both would,
    behind its submit (`receipts_after_submits`)."""
    submits: dict[tuple[str, str], list[Op]] = {}
    barriers: list[float] = []  # when each other write was queued (a flush, a stop too)
    for op in [*records.running, *records.queue]:
        if op is None:
            barriers.append(math.inf)
        elif op.fn is _submitted:
            for key in op.args[4]:
                submits.setdefault((op.args[2], key), []).append(op)
        elif op.fn is not _receipt:
            barriers.append(op.order)
    now: list[Op] = []
    waiting: list[tuple[float, Op | None]] = []
    for receipt in receipts:
        bar = min((b for b in barriers if b > receipt.order), default=math.inf)
        ahead = [op.args[-1] for key in receipt.args[1]
                 for op in submits.get((receipt.args[0], key), ()) if op.order < bar]
        if not ahead:
            now.append(receipt)
            continue
        at = max(receipt.args[-1], *ahead)
        waiting.append((receipt.order, Op(receipt.fn, receipt.args[:-1] + (at,), receipt.token,
                                          receipt.weight, receipt.order)))
    if waiting:
        waiting.extend((math.inf if op is None else op.order, op) for op in records.queue)
        records.queue = collections.deque(op for _, op in sorted(waiting, key=lambda e: e[0]))
    return now


class PostgresStore(CallsByName):
    def __init__(self, url: str, *, password: str | None = None, commit_max_batch: int = 2000,
                 pool_size: int = 8, command_timeout_s: float = 30.0,
                 orphan_ttl_s: float = 2 * 86400.0) -> None:
        self.url = url
        self.password = password
        self.commit_max_batch = max(1, commit_max_batch)
        self.pool_size = max(_LANES + 1, pool_size)  # every writer lane, and a reader
        self.command_timeout_s = command_timeout_s
        self.orphan_ttl_s = orphan_ttl_s
        self.schema = (0, 0)  # (found, now) after open
        self._pool: Any = None
        self._lanes: tuple[_Lane, ...] = ()  # while open, by `_LANE_OF`'s indexes
        self._order = itertools.count(1)  # each write's place among every lane's (Op.order)
        self._answer: Callable[[list[Result]], None] | None = None
        #: The pipe's reads, and its flushes waiting for every lane: each answers, also at close.
        self._answering: set[asyncio.Future[Any]] = set()
        self._listener: asyncio.Task[None] | None = None
        self._closing = False
        self._down_until = 0.0
        self._down_s = 0.0
        self._down_error: BaseException | None = None
        self._dup_window = 0.0
        self._flood_gap = 0.0  # the widest flood gap seen, for pruning ended runs
        self._digests_pruned_at = float("-inf")
        self._orphans_pruned_at = float("-inf")
        self._accepted = 0
        self._analyze_at = _ANALYZE_FIRST
        self._analyzer: asyncio.Task[None] | None = None
        self.episode = Episode(log, "store writes")
        self.on_commit: Callable[[int, float], None] | None = None
        self.counters = {"commits": 0, "ops": 0, "failed_batches": 0, "failed_ops": 0,
                         "largest_batch": 0}

    # -------------------------------------------------------------- lifecycle

    async def open(self, answer: Callable[[list[Result]], None] | None = None) -> None:
        """Connect, migrate (under the advisory lock) and start the writer. `answer` takes
        the results of writes queued with `write_request` (the store process's pipe)."""
        if self._pool is not None:
            return
        try:
            self._pool = await asyncpg.create_pool(
                # No floor of idle connections: asyncpg would keep remaking it (and log a
                # traceback each time) while the server is away; connections come on demand.
                self.url, password=self.password, min_size=0, max_size=self.pool_size,
                command_timeout=self.command_timeout_s, timeout=10, reset=_keep_session)
            async with self._pool.acquire() as conn:
                self.schema = await migrate(conn)
        except (OSError, asyncio.TimeoutError, asyncpg.PostgresError,
                asyncpg.InterfaceError) as exc:
            if self._pool is not None:
                await self._pool.close()
                self._pool = None
            raise StoreUnavailable(f"cannot open store {safe_url(self.url)}: {exc}") from exc
        if self.schema[0] != self.schema[1]:
            log.info("store %s: schema migrated from version %d to %d", safe_url(self.url),
                     *self.schema)
        self._answer = answer
        self._closing = False
        self._lanes = tuple(_Lane() for _ in range(_LANES))
        for lane in self._lanes:
            lane.task = asyncio.get_running_loop().create_task(self._writer(lane))

    async def open_serving(self, answer: Callable[[list[Result]], None]) -> None:
        """Open for the store process: the results of `write_request` and `read_request` go
        to `answer`."""
        await self.open(answer)

    def read_request(self, method: str, args: tuple[Any, ...], request_id: int) -> bool:
        """Run the pipe's read `method` on a pooled connection; its result goes to `answer`.
        False when `method` is not a read."""
        if method not in READS:
            return False
        task = asyncio.ensure_future(self._read(method, args))
        self._answering.add(task)
        task.add_done_callback(functools.partial(self._read_done, request_id))
        return True

    def _read_done(self, request_id: int, task: asyncio.Future[Any]) -> None:
        self._answering.discard(task)
        if task.cancelled() or self._answer is None:
            return
        exc = task.exception()
        self._answer([(request_id, None if exc is not None else task.result(), exc)])

    def observe_commits(self, callback: Callable[[int, float], None]) -> None:
        self.on_commit = callback

    def watch_due(self, callback: Callable[[], None]) -> None:
        """`callback()` whenever another transaction left messages to be claimed (LISTEN on a
        connection of its own, made again whenever it is lost; claims poll besides, so a
        notification lost meanwhile only delays)."""
        if self._listener is None:
            self._listener = asyncio.get_running_loop().create_task(self._listen(callback))

    async def _listen(self, callback: Callable[[], None]) -> None:
        delay = _DOWN_MIN_S
        while True:
            lost = asyncio.Event()
            try:
                conn = await asyncpg.connect(self.url, password=self.password, timeout=10)
            except (OSError, asyncio.TimeoutError, asyncpg.PostgresError,
                    asyncpg.InterfaceError):
                await asyncio.sleep(delay)
                delay = min(_DOWN_MAX_S * 5, delay * 2)
                continue
            delay = _DOWN_MIN_S
            try:
                conn.add_termination_listener(lambda _conn: lost.set())
                await conn.add_listener(DUE_CHANNEL, lambda *_args: callback())
                callback()  # what was notified while no one listened
                await lost.wait()
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
                pass
            finally:
                if not conn.is_closed():
                    await conn.close()

    def stats(self) -> dict[str, int]:
        """Writer counters: commits, operations, failures, the largest batch."""
        return dict(self.counters)

    def healthy(self) -> bool:
        return self._pool is not None and time.monotonic() >= self._down_until

    async def close(self) -> None:
        """Finish every queued write, then close the pool."""
        if self._pool is None or self._closing:
            return
        if self._answering:  # reads and flushes already handed over still answer
            await asyncio.wait(set(self._answering))
        if self._listener is not None:
            self._listener.cancel()
            await asyncio.gather(self._listener, return_exceptions=True)
            self._listener = None
        if self._analyzer is not None:
            await asyncio.gather(self._analyzer, return_exceptions=True)
        self._closing = True
        for lane in self._lanes:
            lane.queue.append(None)
            lane.wake.set()
        await asyncio.gather(*(lane.task for lane in self._lanes if lane.task is not None))
        self._lanes = ()
        await self._pool.close()
        self._pool = None

    # -------------------------------------------------------------- write plumbing

    def _write(self, method: str, args: tuple[Any, ...]) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if not self._put(method, args, future):
            future.set_exception(StoreUnavailable("the store is not open"))
            future.exception()
        return future

    def write_request(self, method: str, args: tuple[Any, ...], request_id: int) -> bool:
        """Queue the pipe's write `method` behind the writes before it; its result goes to
        `open`'s `answer`. False when `method` is not a write."""
        if method not in WRITES:
            return False
        if not self._put(method, args, request_id):
            raise StoreUnavailable("the store is not open")
        return True

    def _put(self, method: str, args: tuple[Any, ...], token: Any) -> bool:
        if self._pool is None or self._closing or not self._lanes:
            return False
        fn = WRITES[method]
        if fn is _noop:  # a flush: once every lane has committed what came before it
            self._flush_lanes(token)
            return True
        lane = self._lanes[_LANE_OF.get(fn, _OUTBOUND)]
        lane.queue.append(Op(fn, args, token, len(args[0]) if fn is _accept else 1,
                             next(self._order)))
        lane.wake.set()
        return True

    def _flush_lanes(self, token: Any) -> None:
        loop = asyncio.get_running_loop()
        behind = [loop.create_future() for _ in self._lanes]
        order = next(self._order)
        for lane, future in zip(self._lanes, behind):
            lane.queue.append(Op(_noop, (), future, 1, order))
            lane.wake.set()

        async def joined() -> None:
            outcomes = await asyncio.gather(*behind, return_exceptions=True)
            error = next((o for o in outcomes if isinstance(o, BaseException)), None)
            self._deliver([(token, None, error)])

        task = asyncio.ensure_future(joined())
        self._answering.add(task)
        task.add_done_callback(self._answering.discard)

    async def _writer(self, lane: _Lane) -> None:
        while True:
            await lane.wake.wait()
            lane.wake.clear()
            while lane.queue:
                batch, stop = self._take(lane)
                if lane is self._lanes[_RECEIPTS]:
                    batch = self._not_waiting(batch)
                if batch:
                    lane.running = batch
                    try:
                        self._deliver(await self._run(batch))
                    finally:
                        lane.running = []
                if stop:
                    return

    def _not_waiting(self, batch: list[Op]) -> list[Op]:
        """The receipts lane's batch less the receipts whose submit the records lane has not
        committed yet: those join that lane's queue behind their submits (`_behind_submits`),
        so each matches at once instead of being stored as an orphan that its submit then
        looks up, applies and deletes, one by one."""
        records = self._lanes[_OUTBOUND]
        if self._closing or not (records.running or records.queue):
            return batch
        receipts = [op for op in batch if op.fn is _receipt]
        now = _behind_submits(receipts, records)
        if len(now) < len(receipts):
            records.wake.set()
            keep = {id(op) for op in now}
            return [op for op in batch if op.fn is not _receipt or id(op) in keep]
        return batch

    def _take(self, lane: _Lane) -> tuple[list[Op], bool]:
        """What is queued, up to `commit_max_batch` weight; True once the stop mark came."""
        batch: list[Op] = []
        weight = 0
        while lane.queue and (not batch or weight < self.commit_max_batch):
            op = lane.queue.popleft()
            if op is None:
                return batch, True
            batch.append(op)
            weight += op.weight
        return batch, False

    def _deliver(self, results: list[Result]) -> None:
        awaited = [r for r in results if isinstance(r[0], asyncio.Future)]
        answered = [r for r in results if not isinstance(r[0], asyncio.Future)]
        if answered and self._answer is not None:
            self._answer(answered)
        if awaited:
            resolve(awaited)

    async def _run(self, batch: list[Op]) -> list[Result]:
        """One transaction for the batch; (token, value, error) per operation, in the order
        applied (receipts after the submits beside them: `receipts_after_submits`)."""
        batch = receipts_after_submits(batch, _submitted, _receipt)
        counters = self.counters
        counters["ops"] += len(batch)
        counters["largest_batch"] = max(counters["largest_batch"], len(batch))
        now = time.monotonic()
        if now < self._down_until and self._down_error is not None:
            return [self._failed(op, self._down_error) for op in batch]
        for attempt in range(3):
            try:
                values = await self._transaction(batch)
            except _RETRY_ERRORS as exc:
                if attempt < 2:
                    continue
                counters["failed_batches"] += 1
                return await self._one_by_one(batch, exc)
            except _DATABASE_ERRORS as exc:
                counters["failed_batches"] += 1
                self._down_s = min(_DOWN_MAX_S, max(_DOWN_MIN_S, self._down_s * 2))
                self._down_until = time.monotonic() + self._down_s
                self._down_error = exc
                return [self._failed(op, exc) for op in batch]
            except Exception as exc:
                counters["failed_batches"] += 1
                return await self._one_by_one(batch, exc)
            self._down_s = 0.0
            self._down_error = None
            self.episode.succeeded()
            return [(op.token, value, None) for op, value in zip(batch, values)]
        raise AssertionError("unreachable")

    async def _one_by_one(self, batch: list[Op], exc: BaseException) -> list[Result]:
        if len(batch) == 1:
            return [self._failed(batch[0], exc)]
        log.warning("store batch of %d failed (%s); retrying one by one", len(batch), exc)
        results: list[Result] = []
        for op in batch:
            try:
                value = (await self._transaction([op]))[0]
            except Exception as single:
                results.append(self._failed(op, single))
            else:
                results.append((op.token, value, None))
        return results

    def _failed(self, op: Op, exc: BaseException) -> Result:
        self.counters["failed_ops"] += 1
        name = getattr(op.fn, "__name__", "write").lstrip("_")
        self.episode.failed(f"{name}: {exc}")
        error = _failure_kind(exc)(f"store write {name} failed: {exc}")
        error.__cause__ = exc
        return (op.token, None, error)

    async def _transaction(self, batch: list[Op]) -> list[Any]:
        started = time.perf_counter()
        async with self._pool.acquire() as conn:
            async with conn.transaction():
                tx = _Tx(conn)
                values = await self._apply(tx, batch)
                await tx.finish()
        self.counters["commits"] += 1
        self._grew(tx.accepted)
        if self.on_commit is not None:
            try:
                self.on_commit(len(batch), time.perf_counter() - started)
            except Exception:  # committed: a failing observer must not make it look failed
                log.exception("store commit observer failed")
        return values

    async def _apply(self, tx: _Tx, batch: list[Op]) -> list[Any]:
        """The operations in order; a run of consecutive accepts is decided and written
        together (`_accept_run`), and so is a run of submits or receipts when its form
        together applies (`_TOGETHER`; else its operations go one by one)."""
        values: list[Any] = []
        i = 0
        while i < len(batch):
            fn = batch[i].fn
            j = i + 1
            if fn is _accept or fn in _TOGETHER:
                while j < len(batch) and batch[j].fn is fn:
                    j += 1
            run = [op.args for op in batch[i:j]]
            if fn is _accept:
                values.extend(await _accept_run(self, tx, run))
            elif j - i > 1 and (together := await _TOGETHER[fn](self, tx, run)) is not None:
                values.extend(together)
            else:
                for args in run:
                    values.append(await fn(self, tx, *args))
            i = j
        return values

    def _grew(self, accepted: int) -> None:
        """Count accepted messages; at 1,000, 10,000, 100,000… since the store opened, ANALYZE
        the tables in the background. Why: a new database has no statistics until
        autovacuum's first ANALYZE of each table (a minute or more), and the plan a prepared
        statement settles on meanwhile (at its sixth execution, the tables nearly empty)
        stays cached until then: the digest and idempotency lookups went through
        messages_account_created, reading every message of the account for each digest.
        Statistics invalidate those plans and every connection plans again. Counted after
        the commit: an ANALYZE inside the first transaction's life saw an empty table, and
        plans made from "no rows" read every message for each digest until the next one."""
        self._accepted += accepted
        if self._accepted >= self._analyze_at and self._analyzer is None and not self._closing:
            while self._analyze_at <= self._accepted:
                self._analyze_at *= 10
            self._analyzer = asyncio.get_running_loop().create_task(self._analyze())

    async def _analyze(self) -> None:
        try:
            async with self._pool.acquire() as conn:
                await conn.execute(f"ANALYZE {_ANALYZED}")
        except (OSError, asyncio.TimeoutError, asyncpg.PostgresError,
                asyncpg.InterfaceError) as exc:
            log.info("store %s: ANALYZE skipped (%s)", safe_url(self.url), exc)
        finally:
            self._analyzer = None

    # -------------------------------------------------------------- reads

    async def _read(self, method: str, args: tuple[Any, ...]) -> Any:
        if self._pool is None or self._closing:
            raise StoreUnavailable("the store is not open")
        try:
            async with self._pool.acquire() as conn:
                async with conn.transaction(isolation="repeatable_read", readonly=True):
                    return await READS[method](conn, *args)
        except (OSError, asyncio.TimeoutError, asyncpg.PostgresError,
                asyncpg.InterfaceError) as exc:
            raise StoreUnavailable(f"store read {method} failed: {exc}") from exc


async def _keep_session(conn: Any) -> None:
    """The pool's reset of a connection it takes back: nothing to undo. By default asyncpg
    sends `pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL` each time, a round
    trip per transaction that waits for the server and for this process's busy loop; the
    store leaves no session state on a pooled connection (its locks and settings end with
    their transaction, the migration lock is released where it is taken, LISTEN has a
    connection of its own). asyncpg still rolls back a transaction left open."""


async def schema_of(url: str, password: str | None = None) -> tuple[int, int]:
    """(the database's schema version, this bridge's), without migrating: what
    `check-config` shows. StoreUnavailable when the server cannot be reached."""
    try:
        conn = await asyncpg.connect(url, password=password, timeout=10)
    except (OSError, asyncio.TimeoutError, asyncpg.PostgresError,
            asyncpg.InterfaceError) as exc:
        raise StoreUnavailable(f"cannot connect to {safe_url(url)}: {exc}") from exc
    try:
        return await schema_version(conn), LATEST_VERSION
    finally:
        await conn.close()


def safe_url(url: str) -> str:
    """The URL without its password, for logs and messages: neither the one after the user
    name nor a `password=` parameter (asyncpg takes either)."""
    scheme, sep, rest = url.partition("://")
    if "@" in rest:
        credentials, _, host = rest.rpartition("@")
        rest = f"{credentials.split(':', 1)[0]}@{host}"
    return re.sub(r"(?i)(?<=[?&])password=[^&]*(&|$)", "", f"{scheme}{sep}{rest}").rstrip("?&")


# ---------------------------------------------------------------------------------- writes
# Each takes the store, the transaction and the operation's arguments (as CallsByName builds
# them), in the writer's transaction.

async def _noop(store: PostgresStore, tx: _Tx) -> None:
    return None


async def _accept_run(store: PostgresStore, tx: _Tx,
                      calls: list[tuple[Any, ...]]) -> list[list[AcceptOutcome]]:
    """Consecutive accept calls decided and written together (`_AcceptRun`); one list of
    outcomes per call."""
    run = _AcceptRun(store, tx, calls)
    await run.gather()
    out = run.decide()
    await run.write()
    return out


class _AcceptRun:
    """A run of accepts: the facts of every message read at once, under advisory locks on its
    idempotency key, duplicate digest and subscriber, with the quota and rate rows locked (so
    instances deciding at once decide one after the other); the decisions taken in order by
    core.policy.accept_verdict; the accepted messages and the limits they consumed written
    with a statement per table."""

    def __init__(self, store: PostgresStore, tx: _Tx, calls: list[tuple[Any, ...]]) -> None:
        self.store = store
        self.tx = tx
        self.calls = calls
        self.rows: list[AcceptRow] = [row for messages, *_ in calls for row in messages]
        self.keyed: dict[tuple[str, str], str] = {}
        self.seen: dict[tuple[str, str], tuple[str, float]] = {}
        self.used: dict[str, int] = {}
        self.credit: dict[str, int] = {}
        self.floods: dict[str, FloodRun] = {}
        self.buckets: dict[str, Bucket] = {}
        self.changed_floods: set[str] = set()
        self.changed_buckets: set[str] = set()
        self.waiting: set[tuple[str, str]] = set()
        self.inserts: list[tuple[Any, ...]] = []
        self.parts: list[tuple[Any, ...]] = []
        self.routes: list[tuple[str, str]] = []

    async def gather(self) -> None:
        conn, rows = self.tx.conn, self.rows
        keys = sorted({(r.account, r.idempotency_key) for r in rows
                       if r.idempotency_key is not None})
        digests = sorted({(r.account, r.dup_digest) for r in rows
                          if r.dup_digest is not None and r.dup_window_s > 0})
        subscribers = sorted({r.recipient for r in rows if r.flood_max > 0})
        await _lock_all(conn, [lock_key("key", *k) for k in keys]
                        + [lock_key("dup", *d) for d in digests]
                        + [lock_key("flood", s) for s in subscribers])
        if keys:
            self.keyed = {(a, k): i for a, k, i in await conn.fetch(
                _FIND_KEYS, [a for a, _ in keys], [k for _, k in keys])}
        if digests:
            self.seen = _newest(await conn.fetch(
                _FIND_DIGESTS, [a for a, _ in digests], [d for _, d in digests]))
        quota_accounts = sorted({r.account for r in rows if r.quota > 0})
        if quota_accounts:
            for account, used, credit in await _locked_rows(conn, _USAGE, quota_accounts):
                self.used[account], self.credit[account] = int(used), int(credit)
        rate_accounts = sorted({r.account for r in rows if r.rate_per_s > 0})
        if rate_accounts:
            self.buckets = {a: Bucket(float(tokens), float(updated)) for a, tokens, updated
                            in await _locked_rows(conn, _BUCKETS, rate_accounts)
                            if tokens is not None}
        if subscribers:
            self.floods = {s: FloodRun(int(n), float(last)) for s, n, last in await conn.fetch(
                "SELECT recipient, count, last FROM floods WHERE recipient = ANY($1::text[])",
                subscribers)}
        self.waiting = await _waiting(conn, self.calls)

    def decide(self) -> list[list[AcceptOutcome]]:
        return [[self._one(row, now, owner, able) for row in messages]
                for messages, now, owner, able in self.calls]

    def _one(self, row: AcceptRow, now: float, owner: str | None,
             able: tuple[str, ...] | None) -> AcceptOutcome:
        """One message's verdict; an accepted one's rows and consumed limits are kept, so
        the run's later messages see it."""
        account, recipient, tx = row.account, row.recipient, self.tx
        digest = row.dup_digest if row.dup_window_s > 0 else None
        n = len(row.parts)
        verdict = accept_verdict(AcceptFacts(
            keyed=self.keyed.get((account, row.idempotency_key)) if row.idempotency_key else None,
            seen=self.seen.get((account, digest)) if digest is not None else None,
            used=self.used.get(account, 0) + tx.delta.get(account, 0),
            credit=self.credit.get(account, 0),
            flood=self.floods.get(recipient) if row.flood_max > 0 else None,
            bucket=self.buckets.get(account) if row.rate_per_s > 0 else None),
            now=now, limits=AcceptLimits(window_s=row.dup_window_s, quota=row.quota, parts=n,
                                         flood_max=row.flood_max,
                                         flood_gap_s=row.flood_gap_s, rate=row.rate_per_s))
        if verdict.status != "accepted":
            return AcceptOutcome(verdict.earlier or row.id, verdict.status)
        held = owner is not None and (owner, recipient) not in self.waiting and \
            sendable(row.routes, able)
        self._keep(row, now, digest, owner if held else None)
        if verdict.flood is not None and row.flood_max > 0:
            self.floods[recipient] = verdict.flood
            self.changed_floods.add(recipient)
            self.store._flood_gap = max(self.store._flood_gap, row.flood_gap_s)
        if verdict.bucket is not None and row.rate_per_s > 0:
            self.buckets[account] = verdict.bucket
            self.changed_buckets.add(account)
        tx.delta[account] = tx.delta.get(account, 0) + n
        tx.event(row.id, now, row.state, accepted_detail(row.ingress, n, row.encoding))
        return AcceptOutcome(row.id, "accepted", held)

    def _keep(self, row: AcceptRow, now: float, digest: str | None, owner: str | None) -> None:
        """An accepted message's rows, and what the run's later messages must see of it."""
        self.inserts.append((
            row.id, row.account, row.ingress, row.recipient, row.raw_recipient,
            row.source_addr, row.source_ton, row.source_npi, row.dest_ton, row.dest_npi,
            row.text, row.encoding, row.data_coding, row.esm_class, row.registered_delivery,
            row.state, len(row.parts), row.created_at, now, row.send_at, row.expires_at,
            row.idempotency_key, digest, now if digest is not None else None,
            row.callback_url, row.meta_json, row.dsn_notify, delay_owed(row.dsn_notify),
            row.report_mask, owner))
        self.parts.extend((row.id, seq, total, short_message, tlvs_json, PartState.QUEUED.value)
                          for seq, total, short_message, tlvs_json in row.parts)
        self.routes.append((row.id, ",".join(row.routes)))
        if row.idempotency_key is not None:
            self.keyed[(row.account, row.idempotency_key)] = row.id
        if digest is not None:
            self.seen[(row.account, digest)] = (row.id, now)
            self.store._dup_window = max(self.store._dup_window, row.dup_window_s)

    async def write(self) -> None:
        conn = self.tx.conn
        if self.inserts:
            await conn.execute(_INSERT_MESSAGES, *map(list, zip(*self.inserts)),
                               [names for _, names in self.routes])
            await conn.execute(_INSERT_PARTS, *map(list, zip(*self.parts)))
            if any(row[-1] is None for row in self.inserts):
                self.tx.notify = True  # some wait to be claimed: wake the instances
            self.tx.accepted += len(self.inserts)
        if self.changed_floods:
            runs = [(s, self.floods[s]) for s in sorted(self.changed_floods)]
            await conn.execute(_SAVE_FLOODS, [s for s, _ in runs], [r.count for _, r in runs],
                               [r.last for _, r in runs])
        if self.changed_buckets:
            kept = [(a, self.buckets[a]) for a in sorted(self.changed_buckets)]
            await conn.execute(_SAVE_BUCKETS, [a for a, _ in kept], [b.tokens for _, b in kept],
                               [b.updated for _, b in kept])
        await self._prune(max(now for _, now, *_ in self.calls))

    async def _prune(self, now: float) -> None:
        """Digests out of the window and flood runs that ended, every few seconds."""
        store, conn = self.store, self.tx.conn
        if now - store._digests_pruned_at < _DIGEST_PRUNE_S:
            return
        store._digests_pruned_at = now
        if store._dup_window > 0:
            await conn.execute(_PRUNE_DIGESTS, now - store._dup_window)
        if store._flood_gap > 0:
            await conn.execute("DELETE FROM floods WHERE last < $1", now - store._flood_gap)


def _newest(rows: Sequence[Any]) -> dict[tuple[str, str], tuple[str, float]]:
    """The newest message (id, dup_at) of each (account, digest) among `rows`."""
    out: dict[tuple[str, str], tuple[str, float]] = {}
    for account, digest, message_id, at in rows:
        kept = out.get((account, digest))
        if kept is None or float(at) > kept[1]:
            out[(account, digest)] = (message_id, float(at))
    return out


async def _waiting(conn: Any, calls: list[tuple[Any, ...]]) -> set[tuple[str, str]]:
    """(owner, number) whose new messages must wait to be claimed: a message to that number
    with a part not yet sent is not the owner's (order per number). Nothing is held without
    an owner. One query per owner (a store process has one) for the whole run."""
    recipients: dict[str, set[str]] = {}
    for messages, _, owner, *_ in calls:
        if owner is not None:
            recipients.setdefault(owner, set()).update(row.recipient for row in messages)
    waiting: set[tuple[str, str]] = set()
    for owner, numbers in recipients.items():
        waiting.update((owner, r[0]) for r in await conn.fetch(_NOT_MINE, owner, sorted(numbers)))
    return waiting


async def _lock_all(conn: Any, keys: list[int]) -> None:
    """Advisory transaction locks, taken in one order by every instance (no deadlock)."""
    if keys:
        await conn.execute("SELECT pg_advisory_xact_lock(k) FROM unnest($1::bigint[]) AS k "
                           "ORDER BY k", sorted(set(keys)))


async def _locked_rows(conn: Any, table: tuple[str, str], accounts: list[str]) -> list[Any]:
    """An account table's rows (made when missing), locked until the transaction ends. Two
    statements: a row another instance just made is seen by the second one."""
    insert, select = table
    await conn.execute(insert, accounts)
    return list(await conn.fetch(select, accounts))


async def _accept(store: PostgresStore, tx: _Tx, messages: tuple[AcceptRow, ...],
                  now: float, owner: str | None = None,
                  able: tuple[str, ...] | None = None) -> list[AcceptOutcome]:
    return (await _accept_run(store, tx, [(messages, now, owner, able)]))[0]


async def _claim(store: PostgresStore, tx: _Tx, owner: str, now: float, live_after: float,
                 smscs: tuple[str, ...], due_before: float,
                 limit: int) -> list[OutboundMessage]:
    ids = [r[0] for r in await tx.conn.fetch(_CLAIM, owner, live_after, due_before,
                                              list(smscs), max(0, limit))]
    if not ids:
        return []
    rows = await tx.conn.fetch(f"SELECT {_OUTBOUND_COLUMNS}, routes FROM messages "
                               f"WHERE id = ANY($1::text[]) ORDER BY created_at, id", ids)
    return await _outbound(tx.conn, rows)


async def _release(store: PostgresStore, tx: _Tx, owner: str, at: float) -> int:
    let_go = await tx.conn.fetch(
        f"UPDATE messages SET lease_owner = NULL WHERE lease_owner = $1 "
        f"AND state IN ({_PENDING_SQL}) RETURNING 1", owner)
    await tx.conn.execute("UPDATE messages SET lease_owner = NULL WHERE lease_owner = $1", owner)
    await tx.conn.execute("UPDATE instances SET heartbeat_at = 0 WHERE id = $1", owner)
    tx.notify = tx.notify or bool(let_go)
    return len(let_go)


async def _retire(store: PostgresStore, tx: _Tx, instances: tuple[str, ...]) -> None:
    await tx.conn.execute("UPDATE instances SET heartbeat_at = 0 WHERE id = ANY($1::text[])",
                          list(instances))


async def _submitted(store: PostgresStore, tx: _Tx, message_id: str, seq: int, smsc: str,
                     smsc_id: str, id_keys: tuple[str, ...],
                     at: float) -> ReceiptOutcome | None:
    conn = tx.conn
    row = await conn.fetchrow(_SUBMIT_PART, smsc, smsc_id, at, message_id, seq)
    if row is None:
        raise LookupError(f"message {message_id} has no part {seq}")
    total, part_state = int(row[0]), PartState(row[1])
    keys = list(dict.fromkeys(id_keys))
    if keys:
        await _lock_keys(conn, smsc, keys)
        await conn.execute(_INSERT_KEYS, [smsc] * len(keys), keys, [message_id] * len(keys),
                           [seq] * len(keys))
    part_detail, detail, all_submitted = submit_details(seq, total, smsc, smsc_id)
    tx.event(message_id, at, "part_submitted", part_detail)
    await _reaggregate(tx, message_id, at, detail, submitted=all_submitted,
                       only_part=part_state if total == 1 else None)
    if not keys:
        return None
    orphans = await conn.fetch(
        _ORPHANS_OF, smsc, keys)
    outcome: ReceiptOutcome | None = None
    applied: set[str] = set()
    for receipt, orphan_state, stat, err, receipt_at in orphans:
        if receipt in applied:
            continue
        applied.add(receipt)
        # Applied now: the timeline shows it after the submit, not before.
        state = await _apply_receipt(tx, message_id, seq,
                                     PartState(orphan_state) if orphan_state else None, stat,
                                     err, max(at, float(receipt_at)), orphan=True)
        outcome = ReceiptOutcome(True, message_id, state, at, smsc_id)
    if applied:
        await conn.executemany("DELETE FROM orphan_receipts WHERE receipt = $1",
                               [(receipt,) for receipt in applied])
    return outcome


async def _lock_keys(conn: Any, smsc: str, keys: Sequence[str]) -> None:
    """A submit and a receipt that share an SMSC id key, on two instances at once, must not
    miss each other (the receipt stored as an orphan after the submit looked for orphans,
    the submit's keys stored after the receipt looked for them): the key's advisory lock
    makes one wait for the other's commit."""
    await _lock_pairs(conn, [(smsc, key) for key in keys])


async def _submitted_together(store: PostgresStore, tx: _Tx,
                              run: list[tuple[Any, ...]]) -> list[Any] | None:
    """`_submitted` for a run (what a draining batch is made of): the ops that submit the
    only part of a different message, with no orphan receipt waiting for their keys, are
    written together, a few statements whatever their number (`_submit_segment`); any other
    op goes one by one in its place, so rows, events and their order are those of one by
    one. None, with nothing written, when a message comes twice or no op can go together
    (the key and row locks taken here are held to the commit, as one by one takes them)."""
    ids = [args[0] for args in run]
    if len(set(ids)) != len(ids):
        return None
    conn = tx.conn
    keyed = [list(dict.fromkeys(args[4])) for args in run]
    pairs = sorted({(args[2], key) for args, keys in zip(run, keyed) for key in keys})
    if pairs:
        await _lock_pairs(conn, pairs)
    found = await _locked_parts(conn, ids)
    waiting = {(r[0], r[1]) for r in await conn.fetch(
        _ORPHAN_PAIRS, [p[0] for p in pairs], [p[1] for p in pairs])} if pairs else set()
    rows = [_only_part(found, args[0], args[1]) for args in run]
    together = [row is not None and not any((args[2], key) in waiting for key in keys)
                for args, keys, row in zip(run, keyed, rows)]
    if not any(together):
        return None

    async def apart(i: int) -> Any:
        return await _submitted(store, tx, *run[i])

    async def joint(span: range) -> list[Any]:
        return await _submit_segment(tx, [run[i] for i in span], [rows[i] for i in span])
    return await _in_segments(together, joint, apart)


async def _submit_segment(tx: _Tx, ops: list[tuple[Any, ...]],
                          rows: list[Any]) -> list[None]:
    """Submits of single parts, their rows locked (`_LOCK_PARTS`): the one-by-one statements
    as one statement (`_write_together`), each move decided from the locked message state
    as the conditional UPDATE would decide it, the events in op order."""
    columns = zip(*[(smsc, smsc_id, at, mid, seq) for mid, seq, smsc, smsc_id, _, at in ops])
    new_keys = [(smsc, key, mid, seq) for mid, seq, smsc, _, keys, _ in ops
                for key in dict.fromkeys(keys)]
    moves: dict[MessageState, list[tuple[Any, ...]]] = {}
    events: list[tuple[str, float, str, str]] = []
    for (mid, seq, smsc, smsc_id, _, at), row in zip(ops, rows):
        part = PartState(row[3])
        target = aggregate((PartState.SUBMITTED if part is PartState.QUEUED else part,))
        part_detail, detail, all_submitted = submit_details(seq, 1, smsc, smsc_id)
        events.append((mid, at, "part_submitted", part_detail))
        if row[6] in _SOURCES[target]:
            moves.setdefault(target, []).append(_move_params(target, at, detail, mid))
            events.append((mid, at, target.value,
                           all_submitted if target is MessageState.SUBMITTED else detail))
    await _write_together(tx.conn, [
        (_SUBMIT_PARTS, tuple(map(list, columns))),
        (_INSERT_KEYS, tuple(map(list, zip(*new_keys)))) if new_keys else None,
        *_move_writes(moves), tx.events_written(events)])
    return [None] * len(ops)


async def _receipts_together(store: PostgresStore, tx: _Tx,
                             run: list[tuple[Any, ...]]) -> list[Any] | None:
    """`_receipt` for a run: the receipts that match a submit (by `_receipt`'s ranking) of
    the only part of a message no earlier receipt of the run touched are applied together
    (`_receipt_segment`); any other (an orphan, a part of a multi-part message, a part
    again) goes one by one in its place. None, with nothing written, when none can go
    together."""
    conn = tx.conn
    keyed = [list(dict.fromkeys(args[1])) for args in run]
    pairs = sorted({(args[0], key) for args, keys in zip(run, keyed) for key in keys})
    if not pairs:
        return None
    await _lock_pairs(conn, pairs)
    best = await _run_matches(conn, run, keyed, pairs)
    seen: set[tuple[str, int]] = set()
    together: list[bool] = []
    for match in best:
        part = (match[1], int(match[2])) if match is not None else None
        together.append(match is not None and int(match[5]) == 1 and part not in seen)
        if part is not None:
            seen.add(part)
    if not any(together):
        return None
    found = await _locked_parts(conn, [m[1] for m, t in zip(best, together) if m and t])
    rows = [_only_part(found, m[1], int(m[2])) if m and t else None
            for m, t in zip(best, together)]
    together = [row is not None for row in rows]  # as locked (a part may have gone since)

    async def apart(i: int) -> Any:
        return await _receipt(store, tx, *run[i])

    async def joint(span: range) -> list[Any]:
        return await _receipt_segment(tx, [run[i] for i in span], [rows[i] for i in span])
    return await _in_segments(together, joint, apart)


async def _run_matches(conn: Any, run: list[tuple[Any, ...]], keyed: list[list[str]],
                       pairs: list[tuple[str, str]]) -> list[tuple[Any, ...] | None]:
    """Each receipt's best match (`best_match` over its keys, as `_receipt` ranks them),
    from one lookup of every (smsc, key) of the run."""
    by_smsc: dict[str, list[tuple[Any, ...]]] = {}
    for r in await conn.fetch(_RUN_MATCHES, [p[0] for p in pairs], [p[1] for p in pairs]):
        by_smsc.setdefault(r[0], []).append(tuple(r[1:]))
    matches = {smsc: by_key(rows) for smsc, rows in by_smsc.items()}
    return [best_match(keys, matches.get(args[0], {})) if keys else None
            for args, keys in zip(run, keyed)]


async def _receipt_segment(tx: _Tx, ops: list[tuple[Any, ...]],
                           rows: list[Any]) -> list[ReceiptOutcome]:
    """Receipts for single parts of different messages, their rows locked: the part updates
    and moves of `_apply_receipt` and the events, one statement (`_write_together`), each
    decided from the locked row."""
    updates: list[tuple[Any, ...]] = []
    buffered: list[tuple[Any, ...]] = []
    moves: dict[MessageState, list[tuple[Any, ...]]] = {}
    events: list[tuple[str, float, str, str]] = []
    out: list[ReceiptOutcome] = []
    for (_, _, part_state, stat, err, at), row in zip(ops, rows):
        mid, seq, current, message = row[0], int(row[1]), PartState(row[3]), MessageState(row[6])
        sent, sent_id = (None if row[7] is None else float(row[7])), row[8]
        new = receipt_change(current, row[4], row[5], part_state, stat, err)
        if new is None:
            out.append(ReceiptOutcome(True, mid, message, sent, sent_id))
            continue
        updates.append((new.value, stat or "", err, at, mid, seq))
        if interim(current, new, stat):
            buffered.append((at, stat, mid))
        detail = receipt_detail(seq, 1, stat, err)
        events.append((mid, at, "receipt", detail))
        target = aggregate((new,))
        if new is not current and message.value in _SOURCES[target]:
            moves.setdefault(target, []).append(_move_params(target, at, detail, mid))
            events.append((mid, at, target.value, detail))
            message = target
        out.append(ReceiptOutcome(True, mid, message, sent, sent_id))
    conn = tx.conn
    if buffered:
        await conn.executemany(_QUEUE_BUFFERED, buffered)
    await _write_together(conn, [
        (_RECEIPT_PARTS, tuple(map(list, zip(*updates)))) if updates else None,
        *_move_writes(moves), tx.events_written(events)])
    return out


async def _in_segments(together: list[bool],
                       joint: Callable[[range], Awaitable[list[Any]]],
                       apart: Callable[[int], Awaitable[Any]]) -> list[Any]:
    """A run's ops in order: each span of ops that go together by `joint`, the others one
    by one by `apart`."""
    out: list[Any] = []
    i = 0
    while i < len(together):
        j = i + 1
        if together[i]:
            while j < len(together) and together[j]:
                j += 1
            out.extend(await joint(range(i, j)))
        else:
            out.append(await apart(i))
        i = j
    return out


async def _locked_parts(conn: Any, ids: list[str]) -> dict[str, list[Any]]:
    """The parts of these messages with their message's state, locked (`_LOCK_PARTS`; ids
    sorted, so two instances lock in one order), by message."""
    found: dict[str, list[Any]] = {}
    for r in await conn.fetch(_LOCK_PARTS, sorted(set(ids))):
        found.setdefault(r[0], []).append(r)
    return found


def _only_part(found: dict[str, list[Any]], message_id: str, seq: int) -> Any:
    """The locked row of the message's part `seq` when it is its only part, else None."""
    rows = found.get(message_id, [])
    return rows[0] if len(rows) == 1 and rows[0][1] == seq and rows[0][2] == 1 else None


async def _lock_pairs(conn: Any, pairs: Sequence[tuple[str, str]]) -> None:
    """`_lock_keys` for (smsc, key) pairs of several SMSCs at once (sorted: no deadlock)."""
    await _lock_all(conn, [lock_key("smsc-key", smsc, key) for smsc, key in pairs])


def _move_params(target: MessageState, at: float, detail: str,
                 message_id: str) -> tuple[Any, ...]:
    """`_MOVE[target]`'s parameters, as `_reaggregate` passes them."""
    params: tuple[Any, ...] = (target.value, at, message_id)
    return params + (detail,) if keeps_why(target) else params


def _move_writes(moves: dict[MessageState, list[tuple[Any, ...]]]) -> list[Write]:
    """The conditional moves (`_MOVES`), one statement per target state; the rows are locked
    and their states checked against `_SOURCES` already, so each one moves. A message moved
    to a state twice keeps its first move, as one by one (no state is its own source, so
    the second would find it moved). One statement, not one per message: each was a
    statement for the server to run, a third of its time on a batch of submits."""
    writes: list[Write] = []
    for target, params in moves.items():
        first: dict[str, tuple[float, str | None]] = {}
        for p in params:
            first.setdefault(p[2], (p[1], p[3] if len(p) > 3 else None))
        writes.append((_MOVES[target], (target.value, list(first),
                                        [at for at, _ in first.values()],
                                        [detail for _, detail in first.values()])))
    return writes


async def _receipt(store: PostgresStore, tx: _Tx, smsc: str, id_keys: tuple[str, ...],
                   part_state: PartState | None, stat: str | None, err: str | None,
                   at: float) -> ReceiptOutcome:
    conn = tx.conn
    keys = list(dict.fromkeys(id_keys))
    if not keys:
        return ReceiptOutcome(False, None, None)
    await _lock_keys(conn, smsc, keys)
    best = best_match(keys, by_key(await conn.fetch(_RECEIPT_MATCHES, smsc, keys)))
    if best is None:
        receipt = uuid.uuid4().hex
        state_value = part_state.value if part_state is not None else None
        n = len(keys)
        await conn.execute(_INSERT_ORPHANS, [receipt] * n, [smsc] * n, keys, [state_value] * n,
                           [stat] * n, [err] * n, [at] * n)
        if at - store._orphans_pruned_at >= _ORPHAN_PRUNE_S:
            store._orphans_pruned_at = at
            await conn.execute("DELETE FROM orphan_receipts WHERE at < $1",
                               at - store.orphan_ttl_s)
        return ReceiptOutcome(False, None, None)
    message_id, seq = best[1], best[2]
    state = await _apply_receipt(tx, message_id, seq, part_state, stat, err, at, orphan=False,
                                 row=tuple(best[4:]))
    return ReceiptOutcome(True, message_id, state,
                          None if best[9] is None else float(best[9]), best[10])


async def _restart(store: PostgresStore, tx: _Tx, message_id: str,
                   parts: tuple[tuple[int, int, bytes, str], ...], data_coding: int,
                   esm_class: int, encoding: str, at: float, detail: str) -> bool:
    """See Store.restart_message. The old keys' advisory locks are taken first (before the
    message's row, in the order a receipt takes them), so a receipt for one of them on
    another instance is applied wholly before (and reset here) or wholly after (an orphan):
    never to a part of the new attempt. The keys cannot grow meanwhile: the instance that
    restarts the message is the one that submits its parts."""
    conn = tx.conn
    keys = await conn.fetch("SELECT smsc, key FROM smsc_keys WHERE message_id = $1",
                            message_id)
    await _lock_pairs(conn, [(smsc, key) for smsc, key in keys])
    state = await conn.fetchval("SELECT state FROM messages WHERE id = $1 FOR UPDATE",
                                message_id)
    if state not in RESTARTABLE:
        return False
    await conn.execute("DELETE FROM smsc_keys WHERE message_id = $1", message_id)
    await conn.execute("DELETE FROM parts WHERE message_id = $1", message_id)
    n = len(parts)
    await conn.execute(_INSERT_PARTS, [message_id] * n, [p[0] for p in parts],
                       [p[1] for p in parts], [p[2] for p in parts], [p[3] for p in parts],
                       [PartState.QUEUED.value] * n)
    await conn.execute("UPDATE messages SET state = $1, updated_at = $2, parts = $3, "
                       "data_coding = $4, esm_class = $5, encoding = $6 WHERE id = $7",
                       MessageState.QUEUED.value, at, n, data_coding, esm_class, encoding,
                       message_id)
    tx.event(message_id, at, RESTARTED, detail)
    return True


async def _state(store: PostgresStore, tx: _Tx, message_id: str, state: MessageState, at: float,
                 error: str | None, detail: str) -> None:
    conn = tx.conn
    current_value = await conn.fetchval("SELECT state FROM messages WHERE id = $1 FOR UPDATE",
                                        message_id)
    if current_value is None:
        raise LookupError(f"no message {message_id}")
    current = MessageState(current_value)
    if not can_move(current, state):
        tx.event(message_id, at, "state_ignored", ignored_detail(state, current, error, detail))
        return
    if error is not None or keeps_why(state):
        await conn.execute("UPDATE messages SET state = $1, updated_at = $2, "
                           "error = coalesce($3, error), error_detail = coalesce($4, error_detail) "
                           "WHERE id = $5", state.value, at, error, detail or None, message_id)
    elif state is MessageState.DELIVERED:
        await conn.execute("UPDATE messages SET state = $1, updated_at = $2, error = NULL, "
                           "error_detail = NULL WHERE id = $3", state.value, at, message_id)
    else:
        await conn.execute("UPDATE messages SET state = $1, updated_at = $2 WHERE id = $3",
                           state.value, at, message_id)
    if state in FINAL_MESSAGE_STATES:
        await conn.execute(
            "UPDATE parts SET state = $1, delivered_at = coalesce(delivered_at, $2) "
            "WHERE message_id = $3 AND state = ANY($4::text[])",
            state.value, at if state is MessageState.DELIVERED else None, message_id,
            list(NOT_FINAL_PARTS))
    tx.event(message_id, at, state.value, state_detail(error, detail))


async def _begin_submit(store: PostgresStore, tx: _Tx, message_id: str, owner: str) -> bool:
    """See Store.begin_submit: the UPDATE waits for a cancel holding the row and then reads
    its outcome, so one of the two sees the other."""
    return await tx.conn.fetchval(
        f"UPDATE messages SET sending_by = $1 WHERE id = $2 "
        f"AND {_BY_KEY_STATE} IN ({_PENDING_SQL}) "
        f"RETURNING 1", owner, message_id) is not None


#: The fences of a run: the pending messages among the ids ($1, sorted) locked in the ids'
#: order (instances lock in one order), as `_begin_submit`'s UPDATE locks its row, by the
#: primary key only; then each one's fence set to its owner ($2), in the same statement.
_FENCE_PENDING = f"""
WITH pending AS MATERIALIZED (
    SELECT m.id FROM unnest($1::text[]) AS u(id)
    CROSS JOIN LATERAL (SELECT id FROM messages
                        WHERE id = u.id AND {_BY_KEY_STATE} IN ({_PENDING_SQL})
                        FOR NO KEY UPDATE) AS m)
UPDATE messages m SET sending_by = u.owner
FROM unnest($1::text[], $2::text[]) AS u(id, owner) JOIN pending ON pending.id = u.id
WHERE m.id = u.id RETURNING m.id
"""


async def _begin_submits_together(store: PostgresStore, tx: _Tx,
                                  run: list[tuple[Any, ...]]) -> list[bool]:
    """`_begin_submit` for a run (workers taking their next messages in one loop turn): one
    statement locks the rows and sets the fences (`_FENCE_PENDING`), the same rows and
    answers. One by one, each fence is a round trip inside the transaction that every
    worker's next submit waits for."""
    owners = dict(sorted(dict(run).items()))  # one per message; its last owner, as one by one
    pending = {r[0] for r in await tx.conn.fetch(_FENCE_PENDING, list(owners),
                                                 list(owners.values()))}
    return [message_id in pending for message_id, _ in run]


async def _end_submit(store: PostgresStore, tx: _Tx, message_id: str, owner: str) -> None:
    await tx.conn.execute(
        "UPDATE messages SET sending_by = NULL WHERE id = $1 AND sending_by = $2 "
        "AND NOT EXISTS (SELECT 1 FROM parts WHERE message_id = $1 AND smsc_id IS NOT NULL)",
        message_id, owner)


async def _cancel(store: PostgresStore, tx: _Tx, ids: tuple[str, ...], at: float,
                  actor: str) -> list[ActionOutcome]:
    conn = tx.conn
    out = []
    for message_id in ids:
        row = await conn.fetchrow(
            "SELECT state, sending_by IS NOT NULL OR EXISTS (SELECT 1 FROM parts p "
            "WHERE p.message_id = m.id AND p.smsc_id IS NOT NULL) FROM messages m "
            "WHERE id = $1 FOR UPDATE", message_id)
        outcome = cancel_verdict(message_id, row[0] if row is not None else None,
                                 sending=row is not None and bool(row[1]), actor=actor)
        out.append(outcome)
        if not outcome.done:
            continue
        assert outcome.state is not None
        await conn.execute(
            "UPDATE messages SET state = $1, updated_at = $2, error_detail = $3, "
            "lease_owner = NULL, dsn_delay_owed = NULL WHERE id = $4",
            outcome.state.value, at, outcome.detail, message_id)
        await conn.execute("UPDATE parts SET state = $1 WHERE message_id = $2 "
                           "AND state = ANY($3::text[])", outcome.state.value, message_id,
                           list(NOT_FINAL_PARTS))
        tx.event(message_id, at, outcome.state.value, outcome.detail)
    return out


async def _retry(store: PostgresStore, tx: _Tx, ids: tuple[str, ...], at: float,
                 actor: str) -> list[ActionOutcome]:
    conn = tx.conn
    out = []
    for message_id in ids:
        row = await conn.fetchrow("SELECT state, created_at, send_at, expires_at FROM messages "
                                  "WHERE id = $1 FOR UPDATE", message_id)
        outcome, expires_at = retry_verdict(message_id, row, at=at, actor=actor)
        out.append(outcome)
        if not outcome.done:
            continue
        await conn.execute(
            "UPDATE messages SET state = 'queued', updated_at = $1, expires_at = $2, "
            "error = NULL, error_detail = NULL, lease_owner = NULL, sending_by = NULL "
            "WHERE id = $3", at, expires_at, message_id)
        await conn.execute(
            "UPDATE parts SET state = 'queued', smsc = NULL, smsc_id = NULL, "
            "submitted_at = NULL, delivered_at = NULL, receipt_stat = NULL, receipt_err = NULL "
            "WHERE message_id = $1", message_id)
        await conn.execute("DELETE FROM smsc_keys WHERE message_id = $1", message_id)
        tx.event(message_id, at, MessageState.QUEUED.value, outcome.detail)
        tx.notify = True  # unheld: the instances claim it
    return out


async def _add_credit(store: PostgresStore, tx: _Tx, account: str, change: int, quota: int,
                      at: float, actor: str) -> tuple[int, str | None]:
    """See Store.add_credit: the account's usage row is locked as an accept locks it, so a
    top-up and the accepts of every instance decide one after the other."""
    [(_, _, credit)] = await _locked_rows(tx.conn, _USAGE, [account])
    try:
        after = credit_after(quota, int(credit), change)
    except ValueError as exc:
        return int(credit), str(exc)
    await tx.conn.execute("UPDATE account_usage SET credit = $2 WHERE account = $1",
                          account, after)
    await tx.conn.execute("INSERT INTO credits (account, change, credit, at, actor) "
                          "VALUES ($1, $2, $3, $4, $5)", account, change, after, at, actor)
    return after, None


async def _event(store: PostgresStore, tx: _Tx, message_id: str, name: str, at: float,
                 detail: str) -> None:
    """An entry for a message found here: the events table checks no foreign key (schema
    3); the other paths write events for rows they have just locked or written."""
    if await tx.conn.fetchval("SELECT 1 FROM messages WHERE id = $1", message_id) is None:
        raise LookupError(f"no message {message_id}")
    tx.event(message_id, at, name, detail)


async def _attempted(tx: _Tx, table: str, events: dict[str, str], row_id: int,
                     message_id: str, outcome: str, attempts: int, next_at: float, at: float,
                     detail: str) -> None:
    """After an attempt at a queued callback or mail: "retry" keeps the row until `next_at`,
    "delivered" and "gave_up" remove it; each leaves its timeline event."""
    event = events.get(outcome)
    if event is None:
        raise ValueError(f"unknown attempt outcome {outcome!r}")
    if outcome == "retry":
        await tx.conn.execute(f"UPDATE {table} SET attempts = $1, next_at = $2, last_error = $3, "
                              "claimed_by = NULL, claimed_until = NULL WHERE id = $4",
                              attempts, next_at, detail, row_id)
    else:
        await tx.conn.execute(f"DELETE FROM {table} WHERE id = $1", row_id)
    tx.event(message_id, at, event, detail)


async def _callback(store: PostgresStore, tx: _Tx, callback_id: int, message_id: str,
                    outcome: str, attempts: int, next_at: float, at: float, detail: str) -> None:
    await _attempted(tx, "callbacks", CALLBACK_EVENTS, callback_id, message_id, outcome,
                     attempts, next_at, at, detail)


async def _push(store: PostgresStore, tx: _Tx, push_id: int, outcome: str, attempts: int,
                next_at: float, detail: str) -> None:
    """After an attempt at a push: as `_attempted`, without a timeline (an inbound SMS has
    none)."""
    if outcome == "retry":
        await tx.conn.execute("UPDATE pushes SET attempts = $1, next_at = $2, last_error = $3, "
                              "claimed_by = NULL, claimed_until = NULL WHERE id = $4",
                              attempts, next_at, detail, push_id)
    elif outcome in ("delivered", "gave_up"):
        await tx.conn.execute("DELETE FROM pushes WHERE id = $1", push_id)
    else:
        raise ValueError(f"unknown attempt outcome {outcome!r}")


async def _mailback(store: PostgresStore, tx: _Tx, mailback_id: int, message_id: str, kind: str,
                    outcome: str, attempts: int, next_at: float, at: float, detail: str) -> None:
    events = MAIL_EVENTS.get(kind)
    if events is None:
        raise ValueError(f"unknown mail kind {kind!r}")
    await _attempted(tx, "mailbacks", events, mailback_id, message_id, outcome, attempts,
                     next_at, at, detail)


async def _queue_delay_dsns(store: PostgresStore, tx: _Tx, accepted_before: float, now: float,
                            limit: int) -> tuple[int, int]:
    """As the SQLite store's: each message owing a delay notice is looked at once (taken with
    SKIP LOCKED, so two instances never look at one together)."""
    conn = tx.conn
    rows = await conn.fetch(
        "UPDATE messages SET dsn_delay_owed = NULL WHERE id IN ("
        "  SELECT id FROM messages WHERE dsn_delay_owed IS NOT NULL AND created_at < $1 "
        "  ORDER BY created_at LIMIT $2 FOR UPDATE SKIP LOCKED) RETURNING id, state",
        accepted_before, max(0, limit))
    late = [message_id for message_id, state in rows if state in DELAYED_STATES]
    if late:
        await conn.execute(
            "INSERT INTO mailbacks (kind, message_id, state, at, next_at) "
            "SELECT 'dsn', m, $2, $3, $3 FROM unnest($1::text[]) AS m", late, DELAYED, now)
    return len(rows), len(late)


async def _purge(store: PostgresStore, tx: _Tx, before: float, limit: int) -> int:
    """Delete up to `limit` final messages unchanged since `before`, oldest first, with
    everything that refers to them; how many went."""
    conn = tx.conn
    doomed = [r[0] for r in await conn.fetch(
        "SELECT id FROM messages WHERE created_at < $1 AND updated_at < $1 "
        "AND state = ANY($2::text[]) ORDER BY created_at LIMIT $3 FOR UPDATE SKIP LOCKED",
        before, sorted(FINAL_VALUES), max(0, limit))]
    if not doomed:
        return 0
    # Replies stored after `before` may answer a message that goes: they stay.
    await conn.execute("UPDATE inbound SET reply_to_message_id = NULL "
                       "WHERE reply_to_message_id = ANY($1::text[])", doomed)
    for table in ("events", "smsc_keys", "callbacks", "mailbacks", "parts"):
        await conn.execute(f"DELETE FROM {table} WHERE message_id = ANY($1::text[])", doomed)
    await conn.execute("DELETE FROM messages WHERE id = ANY($1::text[])", doomed)
    # replies as old as the messages go with them
    for table in ("mailbacks", "pushes"):
        await conn.execute(f"DELETE FROM {table} WHERE inbound_id IN "
                           f"(SELECT id FROM inbound WHERE received_at < $1)", before)
    await conn.execute("DELETE FROM inbound WHERE received_at < $1", before)
    return len(doomed)


async def _inbound(store: PostgresStore, tx: _Tx, m: InboundMessage) -> None:
    await tx.conn.execute(
        "INSERT INTO inbound (id, smsc, source, destination, text, received_at, "
        "reply_to_message_id) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        m.id, m.smsc, m.source, m.destination, m.text, m.received_at, m.reply_to_message_id)
    if m.account is not None and m.push_url is not None:
        await tx.conn.execute("INSERT INTO pushes (inbound_id, account, url, next_at) "
                              "VALUES ($1, $2, $3, $4)", m.id, m.account, m.push_url,
                              m.received_at)
    if m.mail_reply and m.reply_to_message_id is not None:
        await tx.conn.execute(
            "INSERT INTO mailbacks (kind, message_id, inbound_id, at, next_at) "
            "VALUES ('reply', $1, $2, $3, $3)", m.reply_to_message_id, m.id, m.received_at)


_MO_SET = "source = $1 AND destination = $2 AND ref = $3 AND total = $4"


async def _mo_part(store: PostgresStore, tx: _Tx, part: MoPart, inbound: InboundMessage) -> bool:
    """See Store.record_mo_part: the set's advisory lock makes two instances that take its
    last two parts at once do so one after the other, so one of them completes it."""
    conn = tx.conn
    key = (part.source, part.destination, part.ref, part.total)
    await _lock_all(conn, [lock_key("mo", *map(str, key))])
    await conn.execute(
        "INSERT INTO mo_parts (source, destination, ref, total, seq, smsc, text, received_at) "
        "VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (source, destination, ref, total, "
        "seq) DO UPDATE SET smsc = excluded.smsc, text = excluded.text, "
        "received_at = excluded.received_at", *key, part.seq, part.smsc, part.text,
        part.received_at)
    texts = {int(seq): text for seq, text in await conn.fetch(
        f"SELECT seq, text FROM mo_parts WHERE {_MO_SET}", *key)}
    text = assemble(part.total, texts)
    if text is None:
        return False
    await _inbound(store, tx, dataclasses.replace(inbound, text=text))
    await conn.execute(f"DELETE FROM mo_parts WHERE {_MO_SET}", *key)
    return True


async def _mo_partial(store: PostgresStore, tx: _Tx, mo_set: MoSet,
                      inbound: InboundMessage) -> bool:
    conn = tx.conn
    key = (mo_set.source, mo_set.destination, mo_set.ref, mo_set.total)
    await _lock_all(conn, [lock_key("mo", *map(str, key))])
    texts = {int(seq): text for seq, text in await conn.fetch(
        f"DELETE FROM mo_parts WHERE {_MO_SET} RETURNING seq, text", *key)}
    if not texts:
        return False
    await _inbound(store, tx, dataclasses.replace(inbound, text=join_partial(mo_set.total,
                                                                              texts)))
    return True


async def _heartbeat(store: PostgresStore, tx: _Tx, instance: str, at: float,
                     info_json: str) -> float | None:
    previous = await tx.conn.fetchval("SELECT heartbeat_at FROM instances WHERE id = $1",
                                      instance)
    await tx.conn.execute(_HEARTBEAT, instance, at, info_json)
    return float(previous) if previous is not None else None


# -------------------------------------------------------------- shared steps

async def _apply_receipt(tx: _Tx, message_id: str, seq: int, part_state: PartState | None,
                         stat: str | None, err: str | None, at: float, *, orphan: bool,
                         row: tuple[Any, ...] | None = None) -> MessageState:
    """Part state (store.common.receipt_change), then the message aggregate."""
    conn = tx.conn
    if row is None:  # else read with the match: (part state, total, stat, err, message state)
        found = await conn.fetchrow(_PART_AND_MESSAGE, message_id, seq)
        row = tuple(found)
    current = PartState(row[0])
    total = int(row[1])
    new = receipt_change(current, row[2], row[3], part_state, stat, err)
    if new is None:
        return MessageState(row[4])
    await conn.execute(_RECEIPT_PART, new.value, stat or "", err, at, message_id, seq)
    if interim(current, new, stat):
        await conn.execute(_QUEUE_BUFFERED, at, stat, message_id)
    detail = receipt_detail(seq, total, stat, err)
    tx.event(message_id, at, "receipt",
             detail + (" (arrived before submit_sm_resp)" if orphan else ""))
    if new is current:
        return MessageState(row[4])
    return await _reaggregate(tx, message_id, at, detail, only_part=new if total == 1 else None)


async def _reaggregate(tx: _Tx, message_id: str, at: float, detail: str,
                       submitted: str | None = None, *,
                       only_part: PartState | None = None) -> MessageState:
    """Move the message to the aggregate of its parts, in one conditional UPDATE the
    transition table guards; `only_part`: a single-part message's part state, known."""
    conn = tx.conn
    if only_part is not None:
        target = aggregate((only_part,))
    else:
        target = aggregate(PartState(r[0]) for r in await conn.fetch(
            "SELECT state FROM parts WHERE message_id = $1 ORDER BY seq", message_id))
    params: tuple[Any, ...] = (target.value, at, message_id)
    if keeps_why(target):
        params += (detail,)
    if await conn.fetchval(_MOVE[target], *params) is None:
        return MessageState(await conn.fetchval("SELECT state FROM messages WHERE id = $1",
                                                message_id))
    tx.event(message_id, at, target.value,
             submitted if target is MessageState.SUBMITTED and submitted else detail)
    return target




# ---------------------------------------------------------------------------------- reads

async def _views(conn: Any, rows: Sequence[Any]) -> list[MessageView]:
    """MessageViews for message rows selected with _VIEW_COLUMNS, in the same order."""
    parts: dict[str, list[tuple[str, str | None]]] = {}
    ids = [r[0] for r in rows]
    if ids:
        for message_id, state, smsc_id in await conn.fetch(
                "SELECT message_id, state, smsc_id FROM parts WHERE message_id = ANY($1::text[]) "
                "ORDER BY message_id, seq", ids):
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


async def _limits_peek(conn: Any, account: str, recipients: tuple[str, ...], now: float,
                       flood_max: int, flood_gap_s: float,
                       rate_per_s: float) -> list[str | None]:
    limits = AcceptLimits(window_s=0, quota=0, parts=1, flood_max=flood_max,
                          flood_gap_s=flood_gap_s, rate=rate_per_s)
    row = await conn.fetchrow("SELECT tokens, updated FROM buckets WHERE account = $1", account)
    bucket = Bucket(float(row[0]), float(row[1])) if row is not None and row[0] is not None \
        else None
    floods = {s: FloodRun(int(n), float(last)) for s, n, last in await conn.fetch(
        "SELECT recipient, count, last FROM floods WHERE recipient = ANY($1::text[])",
        list(recipients))}
    return [limits_verdict(floods.get(r), bucket, now=now, limits=limits) for r in recipients]


async def _usage(conn: Any, accounts: tuple[str, ...]) -> list[AccountUsage]:
    found = {r[0]: (int(r[1]), int(r[2])) for r in await conn.fetch(
        "SELECT account, parts_used, credit FROM account_usage WHERE account = ANY($1::text[])",
        list(accounts))}
    return [AccountUsage(a, *found.get(a, (0, 0))) for a in accounts]


async def _credit_changes(conn: Any, account: str, limit: int) -> list[CreditChange]:
    return [CreditChange(r[0], int(r[1]), int(r[2]), float(r[3]), r[4]) for r in await conn.fetch(
        "SELECT account, change, credit, at, actor FROM credits WHERE account = $1 "
        "ORDER BY at DESC, id DESC LIMIT $2", account, max(0, limit))]


async def _load_pending(conn: Any, limit: int) -> list[OutboundMessage]:
    rows = await conn.fetch(
        f"SELECT {_OUTBOUND_COLUMNS}, routes FROM messages m WHERE state = ANY($1::text[]) "
        f"AND EXISTS (SELECT 1 FROM parts p WHERE p.message_id = m.id AND p.smsc_id IS NULL) "
        f"ORDER BY created_at, id LIMIT $2", list(PENDING_STATES), limit)
    return await _outbound(conn, rows)


async def _outbound(conn: Any, rows: Sequence[Any]) -> list[OutboundMessage]:
    """OutboundMessages for rows selected with _OUTBOUND_COLUMNS and routes, with parts."""
    parts: dict[str, list[OutboundPart]] = {}
    if rows:
        for p in await conn.fetch(
                "SELECT message_id, seq, total, short_message, tlvs_json, state, smsc, smsc_id, "
                "submitted_at FROM parts WHERE message_id = ANY($1::text[]) "
                "ORDER BY message_id, seq", [r[0] for r in rows]):
            parts.setdefault(p[0], []).append(OutboundPart(
                seq=int(p[1]), total=int(p[2]), short_message=bytes(p[3]), tlvs_json=p[4],
                state=PartState(p[5]), smsc=p[6], smsc_id=p[7],
                submitted_at=None if p[8] is None else float(p[8])))
    return [OutboundMessage(
        id=r[0], account=r[1], recipient=r[2], source_addr=r[3], source_ton=int(r[4]),
        source_npi=int(r[5]), dest_ton=int(r[6]), dest_npi=int(r[7]),
        data_coding=int(r[8]), esm_class=int(r[9]), registered_delivery=int(r[10]),
        state=MessageState(r[11]), created_at=float(r[12]),
        send_at=None if r[13] is None else float(r[13]), expires_at=float(r[14]),
        parts=tuple(parts.get(r[0], ())), routes=tuple(r[15])) for r in rows]


async def _stale_mo_sets(conn: Any, before: float, limit: int) -> list[MoSet]:
    sets = await conn.fetch(
        "SELECT source, destination, ref, total, min(received_at), min(smsc) FROM mo_parts "
        "GROUP BY source, destination, ref, total HAVING min(received_at) < $1 "
        "ORDER BY 5 LIMIT $2", before, max(0, limit))
    out = []
    for source, destination, ref, total, first, smsc in sets:
        texts = await conn.fetch(f"SELECT seq, text FROM mo_parts WHERE {_MO_SET} ORDER BY seq",
                                 source, destination, ref, total)
        out.append(MoSet(smsc=smsc, source=source, destination=destination, ref=int(ref),
                         total=int(total), first_at=float(first),
                         texts=tuple((int(s), x) for s, x in texts)))
    return out
async def _message_text(conn: Any, message_id: str) -> str | None:
    text = await conn.fetchval("SELECT text FROM messages WHERE id = $1", message_id)
    return None if text is None else str(text)


async def _instances(conn: Any) -> list[InstanceRow]:
    return [InstanceRow(r[0], float(r[1]), r[2]) for r in await conn.fetch(
        "SELECT id, heartbeat_at, info_json FROM instances ORDER BY heartbeat_at DESC, id")]


async def _get_messages(conn: Any, wanted: tuple[str, ...]) -> list[MessageView]:
    rows = await conn.fetch(f"SELECT {_VIEW_COLUMNS} FROM messages WHERE id = ANY($1::text[])",
                            list(dict.fromkeys(wanted)))
    by_id = {v.id: v for v in await _views(conn, rows)}
    return [by_id[i] for i in wanted if i in by_id]


async def _list_messages(conn: Any, account: str | None, offset: int, limit: int,
                         state: MessageState | None,
                         since: float | None) -> tuple[int, list[MessageView]]:
    where = "TRUE"
    params: list[Any] = []
    if account is not None:
        params.append(account)
        where += f" AND account = ${len(params)}"
    if state is not None:
        params.append(MessageState(state).value)
        where += f" AND state = ${len(params)}"
    if since is not None:
        params.append(since)
        where += f" AND created_at >= ${len(params)}"
    total = int(await conn.fetchval(f"SELECT count(*) FROM messages WHERE {where}", *params))
    rows = await conn.fetch(
        f"SELECT {_VIEW_COLUMNS} FROM messages WHERE {where} "
        f"ORDER BY created_at DESC, id DESC LIMIT ${len(params) + 1} OFFSET ${len(params) + 2}",
        *params, max(0, limit), max(0, offset))
    return total, await _views(conn, rows)


async def _timeline(conn: Any, message_id: str) -> list[Event]:
    return [Event(r[0], float(r[1]), r[2], r[3]) for r in await conn.fetch(
        "SELECT message_id, at, state, detail FROM events WHERE message_id = $1 "
        "ORDER BY at, id", message_id)]


async def _counts_by_state(conn: Any) -> dict[str, int]:
    counts = {s.value: 0 for s in MessageState}
    for state, n in await conn.fetch("SELECT state, count(*) FROM messages GROUP BY state"):
        counts[state] = int(n)
    return counts


async def _last_message_to(conn: Any, recipient: str, since: float) -> MessageView | None:
    rows = await conn.fetch(
        f"SELECT {_VIEW_COLUMNS} FROM messages WHERE recipient = $1 AND created_at >= $2 "
        f"ORDER BY created_at DESC, id DESC LIMIT 1", recipient, since)
    views = await _views(conn, rows)
    return views[0] if views else None


_FIRST_PART = "(SELECT p.{} FROM parts p WHERE p.message_id = c.message_id ORDER BY p.seq LIMIT 1)"
_LAST_RECEIPT = ("(SELECT p.{} FROM parts p WHERE p.message_id = c.message_id "
                 "AND coalesce(p.receipt_stat, '') <> '' ORDER BY p.seq DESC LIMIT 1)")
_CALLBACKS = (
    "SELECT c.id, c.message_id, c.url, c.state, c.at, c.attempts, m.recipient, m.meta_json, "
    "m.parts, (SELECT count(*) FROM parts p WHERE p.message_id = c.message_id "
    "AND p.state = 'delivered'), m.error, m.error_detail, m.account, m.raw_recipient, "
    "m.source_addr, m.text, m.created_at, m.report_mask, c.detail, "
    + ", ".join(_FIRST_PART.format(col) for col in ("smsc", "smsc_id", "submitted_at")) + ", "
    + ", ".join(_LAST_RECEIPT.format(col) for col in ("receipt_stat", "receipt_err"))
    + " FROM callbacks c JOIN messages m ON m.id = c.message_id ")
_PUSHES = ("SELECT p.id, p.inbound_id, p.account, p.url, p.attempts, i.smsc, i.source, "
           "i.destination, i.text, i.received_at FROM pushes p "
           "JOIN inbound i ON i.id = p.inbound_id ")
_MAILBACKS = """
SELECT b.id, b.kind, b.message_id, b.state, b.at, b.attempts, m.recipient, m.meta_json,
    m.created_at, m.parts,
    (SELECT count(*) FROM parts p WHERE p.message_id = b.message_id AND p.state = 'delivered'),
    m.error, m.error_detail, b.inbound_id, i.source, i.text, m.state
FROM mailbacks b JOIN messages m ON m.id = b.message_id LEFT JOIN inbound i ON i.id = b.inbound_id
"""
_DUE = "WHERE {t}.next_at <= $1 AND ({t}.claimed_until IS NULL OR {t}.claimed_until <= $1)"
#: Take due rows of a queue ({table}) for an owner, each once across the instances.
_HOLD = """
UPDATE {table} SET claimed_by = $2, claimed_until = $3 WHERE id IN (
    SELECT id FROM {table} WHERE next_at <= $1 AND (claimed_until IS NULL OR claimed_until <= $1)
    ORDER BY next_at, id LIMIT $4 FOR UPDATE SKIP LOCKED)
RETURNING id
"""


def _due_callback(r: Any) -> DueCallback:
    return DueCallback(id=int(r[0]), message_id=r[1], account=r[12], url=r[2], state=r[3],
                       at=float(r[4]), attempts=int(r[5]), recipient=r[6], meta_json=r[7],
                       parts=int(r[8]), parts_delivered=int(r[9]), error=r[10],
                       error_detail=r[11], raw_recipient=r[13], source_addr=r[14], text=r[15],
                       created_at=float(r[16]), report_mask=r[17], event_detail=r[18],
                       smsc=r[19], smsc_id=r[20],
                       submitted_at=None if r[21] is None else float(r[21]),
                       receipt_stat=r[22], receipt_err=r[23])


def _due_push(r: Any) -> DuePush:
    return DuePush(id=int(r[0]), inbound_id=r[1], account=r[2], url=r[3], attempts=int(r[4]),
                   smsc=r[5], source=r[6], destination=r[7], text=r[8], received_at=float(r[9]))


def _due_mailback(r: Any) -> DueMailback:
    return DueMailback(id=int(r[0]), kind=r[1], message_id=r[2], state=r[3], at=float(r[4]),
                       attempts=int(r[5]), recipient=r[6], meta_json=r[7],
                       created_at=float(r[8]), parts=int(r[9]), parts_delivered=int(r[10]),
                       error=r[11], error_detail=r[12], inbound_id=r[13], inbound_source=r[14],
                       inbound_text=r[15], message_state=r[16])


async def _callbacks_due(conn: Any, now: float, limit: int) -> list[DueCallback]:
    return [_due_callback(r) for r in await conn.fetch(
        _CALLBACKS + _DUE.format(t="c") + " ORDER BY c.next_at, c.id LIMIT $2", now,
        max(0, limit))]


async def _mailbacks_due(conn: Any, now: float, limit: int) -> list[DueMailback]:
    return [_due_mailback(r) for r in await conn.fetch(
        _MAILBACKS + _DUE.format(t="b") + " ORDER BY b.next_at, b.id LIMIT $2", now,
        max(0, limit))]


async def _pushes_due(conn: Any, now: float, limit: int) -> list[DuePush]:
    return [_due_push(r) for r in await conn.fetch(
        _PUSHES + _DUE.format(t="p") + " ORDER BY p.next_at, p.id LIMIT $2", now,
        max(0, limit))]


async def _claim_pushes(store: PostgresStore, tx: _Tx, owner: str, now: float,
                        hold_until: float, limit: int) -> list[DuePush]:
    ids = [r[0] for r in await tx.conn.fetch(_HOLD.format(table="pushes"), now, owner,
                                              hold_until, max(0, limit))]
    return [_due_push(r) for r in await tx.conn.fetch(
        _PUSHES + "WHERE p.id = ANY($1::bigint[]) ORDER BY p.next_at, p.id", ids)] if ids else []


async def _claim_callbacks(store: PostgresStore, tx: _Tx, owner: str, now: float,
                           hold_until: float, limit: int) -> list[DueCallback]:
    ids = [r[0] for r in await tx.conn.fetch(_HOLD.format(table="callbacks"), now, owner,
                                              hold_until, max(0, limit))]
    return [_due_callback(r) for r in await tx.conn.fetch(
        _CALLBACKS + "WHERE c.id = ANY($1::bigint[]) ORDER BY c.next_at, c.id", ids)] \
        if ids else []


async def _claim_mailbacks(store: PostgresStore, tx: _Tx, owner: str, now: float,
                           hold_until: float, limit: int) -> list[DueMailback]:
    ids = [r[0] for r in await tx.conn.fetch(_HOLD.format(table="mailbacks"), now, owner,
                                              hold_until, max(0, limit))]
    return [_due_mailback(r) for r in await tx.conn.fetch(
        _MAILBACKS + "WHERE b.id = ANY($1::bigint[]) ORDER BY b.next_at, b.id", ids)] \
        if ids else []


#: Operations whose runs have a form that writes the run together (`PostgresStore._apply`).
_TOGETHER: dict[Callable[..., Any], Callable[..., Any]] = {
    _submitted: _submitted_together,
    _receipt: _receipts_together,
    _begin_submit: _begin_submits_together,
}

#: The writer lanes (`_Lane`), and the operations not on the outbound one: accepts with the
#: credit top-up (it changes the rows an accept decides the quota by), the fences, and the
#: receipts.
_LANES, _ACCEPTS, _OUTBOUND, _FENCES, _RECEIPTS = 4, 0, 1, 2, 3
_LANE_OF: dict[Callable[..., Any], int] = {
    _accept: _ACCEPTS, _add_credit: _ACCEPTS, _begin_submit: _FENCES, _end_submit: _FENCES,
    _receipt: _RECEIPTS}

#: The Store's write calls as writer operations, by interface method name (as WRITES in
#: bridge.store.sqlite: the store process's pipe sends these names).
WRITES: dict[str, Callable[..., Any]] = {
    "flush": _noop, "accept": _accept, "record_submitted": _submitted, "record_state": _state,
    "record_event": _event, "record_receipt": _receipt, "record_inbound": _inbound,
    "record_callback": _callback, "record_mailback": _mailback, "purge": _purge,
    "queue_delay_dsns": _queue_delay_dsns, "heartbeat": _heartbeat, "claim": _claim,
    "release": _release, "retire": _retire, "claim_callbacks": _claim_callbacks,
    "claim_mailbacks": _claim_mailbacks, "claim_pushes": _claim_pushes, "record_push": _push,
    "record_mo_part": _mo_part, "record_mo_partial": _mo_partial,
    "restart_message": _restart,
    "begin_submit": _begin_submit, "end_submit": _end_submit, "cancel": _cancel,
    "retry": _retry, "add_credit": _add_credit,
}

#: The Store's read calls by interface method name; positional arguments after the connection.
READS: dict[str, Callable[..., Any]] = {
    "usage": _usage, "credit_changes": _credit_changes, "load_pending": _load_pending,
    "get_messages": _get_messages,
    "list_messages": _list_messages, "timeline": _timeline, "counts_by_state": _counts_by_state,
    "last_message_to": _last_message_to, "callbacks_due": _callbacks_due,
    "mailbacks_due": _mailbacks_due, "instances": _instances, "pushes_due": _pushes_due,
    "limits_peek": _limits_peek, "stale_mo_sets": _stale_mo_sets, "message_text": _message_text,
}

__all__ = ["PostgresStore", "READS", "WRITES", "lock_key", "safe_url"]
