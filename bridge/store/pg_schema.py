"""The PostgreSQL schema as an ordered list of migrations, each applied in its own transaction
under an advisory lock, so instances starting together never migrate side by side: the first
takes the lock and migrates, the others wait for it and then find nothing to do.

The tables are the SQLite store's (bridge.store.schema), in PostgreSQL's types, so that
`sms-bridge store copy` moves rows as they are. What SQLite does with triggers (a callback or a
DSN queued by the transaction that makes a message final) PostgreSQL does with trigger
functions built from the same core tables. Never edit a released migration: append one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bridge.core.reports import BUFFERED, EVENT_OF, FINAL_EVENTS
from bridge.core.states import FINAL_MESSAGE_STATES, MessageState
from bridge.store.common import PENDING_STATES

#: pg_advisory_lock key for migrations: any constant the bridge alone uses.
MIGRATION_LOCK = 0x534D53_42524447  # "SMS" "BRDG"

_FAILED = ", ".join(f"'{s.value}'" for s in sorted(FINAL_MESSAGE_STATES, key=lambda s: s.value)
                    if s is not MessageState.DELIVERED)
_FINAL = ", ".join(f"'{s.value}'" for s in sorted(FINAL_MESSAGE_STATES, key=lambda s: s.value))
_PENDING = ", ".join(f"'{v}'" for v in PENDING_STATES)
#: A state's report event (core.reports.EVENT_OF), as the CASE arms of the trigger.
_EVENT_CASES = " ".join(f"WHEN '{name}' THEN {int(event)}" for name, event in EVENT_OF.items()
                        if name != BUFFERED)


@dataclass(frozen=True)
class Migration:
    version: int
    title: str
    statements: tuple[str, ...]


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "the SQLite store's tables at its version 12", (
        """
        CREATE TABLE messages (
            id TEXT PRIMARY KEY,
            account TEXT NOT NULL,
            ingress TEXT NOT NULL,
            recipient TEXT NOT NULL,
            raw_recipient TEXT NOT NULL,
            source_addr TEXT,
            source_ton INTEGER NOT NULL,
            source_npi INTEGER NOT NULL,
            dest_ton INTEGER NOT NULL,
            dest_npi INTEGER NOT NULL,
            text TEXT NOT NULL,
            encoding TEXT NOT NULL,
            data_coding INTEGER NOT NULL,
            esm_class INTEGER NOT NULL,
            registered_delivery INTEGER NOT NULL,
            state TEXT NOT NULL,
            parts INTEGER NOT NULL,
            created_at DOUBLE PRECISION NOT NULL,
            updated_at DOUBLE PRECISION NOT NULL,
            send_at DOUBLE PRECISION,
            expires_at DOUBLE PRECISION NOT NULL,
            error TEXT,
            error_detail TEXT,
            idempotency_key TEXT,
            dup_digest TEXT,
            dup_at DOUBLE PRECISION,
            callback_url TEXT,
            meta_json TEXT NOT NULL DEFAULT '{}',
            dsn_notify TEXT,
            dsn_delay_owed INTEGER,
            lease_owner TEXT,
            routes TEXT[] NOT NULL DEFAULT '{}',
            report_mask INTEGER,
            sending_by TEXT
        )
        """,
        "CREATE INDEX messages_held ON messages (lease_owner) WHERE lease_owner IS NOT NULL",
        "CREATE UNIQUE INDEX messages_idempotency ON messages (account, idempotency_key) "
        "WHERE idempotency_key IS NOT NULL",
        "CREATE INDEX messages_dup ON messages (account, dup_digest, dup_at) "
        "WHERE dup_digest IS NOT NULL",
        "CREATE INDEX messages_dup_at ON messages (dup_at) WHERE dup_digest IS NOT NULL",
        "CREATE INDEX messages_account_created ON messages (account, created_at)",
        "CREATE INDEX messages_state ON messages (state)",
        "CREATE INDEX messages_recipient_created ON messages (recipient, created_at)",
        "CREATE INDEX messages_created ON messages (created_at)",
        "CREATE INDEX messages_dsn_delay ON messages (created_at) WHERE dsn_delay_owed IS NOT NULL",
        # Messages not yet final, in the order they came: what the dispatchers take from.
        f"CREATE INDEX messages_pending ON messages (created_at) WHERE state IN ({_PENDING})",
        """
        CREATE TABLE parts (
            message_id TEXT NOT NULL REFERENCES messages (id),
            seq INTEGER NOT NULL,
            total INTEGER NOT NULL,
            short_message BYTEA NOT NULL,
            tlvs_json TEXT NOT NULL,
            state TEXT NOT NULL,
            smsc TEXT,
            smsc_id TEXT,
            submitted_at DOUBLE PRECISION,
            delivered_at DOUBLE PRECISION,
            attempts INTEGER NOT NULL DEFAULT 0,
            receipt_stat TEXT,
            receipt_err TEXT,
            PRIMARY KEY (message_id, seq)
        )
        """,
        """
        CREATE TABLE smsc_keys (
            id BIGSERIAL PRIMARY KEY,
            smsc TEXT NOT NULL,
            key TEXT NOT NULL,
            message_id TEXT NOT NULL,
            seq INTEGER NOT NULL,
            FOREIGN KEY (message_id, seq) REFERENCES parts (message_id, seq)
        )
        """,
        "CREATE INDEX smsc_keys_lookup ON smsc_keys (smsc, key)",
        "CREATE INDEX smsc_keys_message ON smsc_keys (message_id)",
        """
        CREATE TABLE events (
            id BIGSERIAL PRIMARY KEY,
            message_id TEXT NOT NULL REFERENCES messages (id),
            at DOUBLE PRECISION NOT NULL,
            state TEXT NOT NULL,
            detail TEXT NOT NULL
        )
        """,
        "CREATE INDEX events_message ON events (message_id)",
        """
        CREATE TABLE account_usage (
            account TEXT PRIMARY KEY,
            parts_used BIGINT NOT NULL,
            credit BIGINT NOT NULL DEFAULT 0
        )
        """,
        """
        CREATE TABLE credits (
            id BIGSERIAL PRIMARY KEY,
            account TEXT NOT NULL,
            change BIGINT NOT NULL,
            credit BIGINT NOT NULL,
            at DOUBLE PRECISION NOT NULL,
            actor TEXT NOT NULL
        )
        """,
        "CREATE INDEX credits_account ON credits (account, at)",
        """
        CREATE TABLE orphan_receipts (
            id BIGSERIAL PRIMARY KEY,
            receipt TEXT NOT NULL,
            smsc TEXT NOT NULL,
            key TEXT NOT NULL,
            part_state TEXT,
            stat TEXT,
            err TEXT,
            at DOUBLE PRECISION NOT NULL
        )
        """,
        "CREATE INDEX orphan_receipts_lookup ON orphan_receipts (smsc, key)",
        "CREATE INDEX orphan_receipts_receipt ON orphan_receipts (receipt)",
        "CREATE INDEX orphan_receipts_at ON orphan_receipts (at)",
        """
        CREATE TABLE inbound (
            id TEXT PRIMARY KEY,
            smsc TEXT NOT NULL,
            source TEXT NOT NULL,
            destination TEXT NOT NULL,
            text TEXT NOT NULL,
            received_at DOUBLE PRECISION NOT NULL,
            reply_to_message_id TEXT
        )
        """,
        "CREATE INDEX inbound_received ON inbound (received_at)",
        """
        CREATE TABLE callbacks (
            id BIGSERIAL PRIMARY KEY,
            message_id TEXT NOT NULL REFERENCES messages (id),
            url TEXT NOT NULL,
            state TEXT NOT NULL,
            at DOUBLE PRECISION NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0,
            next_at DOUBLE PRECISION NOT NULL,
            last_error TEXT,
            claimed_by TEXT,
            claimed_until DOUBLE PRECISION,
            detail TEXT
        )
        """,
        "CREATE INDEX callbacks_due ON callbacks (next_at)",
        "CREATE INDEX callbacks_message ON callbacks (message_id)",
        """
        CREATE TABLE mailbacks (
            id BIGSERIAL PRIMARY KEY,
            kind TEXT NOT NULL,
            message_id TEXT NOT NULL REFERENCES messages (id),
            inbound_id TEXT REFERENCES inbound (id),
            state TEXT,
            at DOUBLE PRECISION NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0,
            next_at DOUBLE PRECISION NOT NULL,
            last_error TEXT,
            claimed_by TEXT,
            claimed_until DOUBLE PRECISION
        )
        """,
        "CREATE INDEX mailbacks_due ON mailbacks (next_at)",
        "CREATE INDEX mailbacks_message ON mailbacks (message_id)",
        """
        CREATE TABLE pushes (
            id BIGSERIAL PRIMARY KEY,
            inbound_id TEXT NOT NULL REFERENCES inbound (id),
            account TEXT NOT NULL,
            url TEXT NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0,
            next_at DOUBLE PRECISION NOT NULL,
            last_error TEXT,
            claimed_by TEXT,
            claimed_until DOUBLE PRECISION
        )
        """,
        "CREATE INDEX pushes_due ON pushes (next_at)",
        """
        CREATE TABLE mo_parts (
            source TEXT NOT NULL,
            destination TEXT NOT NULL,
            ref INTEGER NOT NULL,
            total INTEGER NOT NULL,
            seq INTEGER NOT NULL,
            smsc TEXT NOT NULL,
            text TEXT NOT NULL,
            received_at DOUBLE PRECISION NOT NULL,
            PRIMARY KEY (source, destination, ref, total, seq)
        )
        """,
        "CREATE INDEX mo_parts_received ON mo_parts (received_at)",
        # The flood and rate limits every instance holds alike (core.policy decides).
        """
        CREATE TABLE floods (
            recipient TEXT PRIMARY KEY,
            count INTEGER NOT NULL,
            last DOUBLE PRECISION NOT NULL
        )
        """,
        "CREATE INDEX floods_last ON floods (last)",
        """
        CREATE TABLE buckets (
            account TEXT PRIMARY KEY,
            tokens DOUBLE PRECISION,
            updated DOUBLE PRECISION
        )
        """,
        """
        CREATE TABLE instances (
            id TEXT PRIMARY KEY,
            heartbeat_at DOUBLE PRECISION NOT NULL,
            info_json TEXT NOT NULL DEFAULT '{}'
        )
        """,
        # A message becoming final queues its callback and its DSN in the same transaction,
        # whichever path finished it (as the SQLite store's triggers do).
        f"""
        CREATE FUNCTION sms_bridge_message_final() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF NEW.state IS DISTINCT FROM OLD.state AND NEW.callback_url IS NOT NULL
                AND (coalesce(NEW.report_mask, {int(FINAL_EVENTS)})
                     & CASE NEW.state {_EVENT_CASES} ELSE 0 END) != 0 THEN
                INSERT INTO callbacks (message_id, url, state, at, next_at)
                VALUES (NEW.id, NEW.callback_url, NEW.state, NEW.updated_at, NEW.updated_at);
            END IF;
            IF NEW.state IS DISTINCT FROM OLD.state AND NEW.state IN ({_FINAL}) THEN
                IF NEW.dsn_notify IS NOT NULL AND (
                        (NEW.state = 'delivered' AND strpos(NEW.dsn_notify, 'SUCCESS') > 0)
                        OR (NEW.state IN ({_FAILED}) AND strpos(NEW.dsn_notify, 'FAILURE') > 0))
                THEN
                    INSERT INTO mailbacks (kind, message_id, state, at, next_at)
                    VALUES ('dsn', NEW.id, NEW.state, NEW.updated_at, NEW.updated_at);
                END IF;
            END IF;
            RETURN NULL;
        END $$
        """,
        "CREATE TRIGGER messages_final AFTER UPDATE OF state ON messages "
        "FOR EACH ROW EXECUTE FUNCTION sms_bridge_message_final()",
    )),
    Migration(2, "message moves without a report to queue skip the trigger; room for fences", (
        # The function ran (PL/pgSQL, and a queued after-trigger event) for every move of
        # every message, twice a message, to find most had nothing to report. The WHEN test
        # runs without it, as the SQLite store's triggers' WHEN clauses do.
        "DROP TRIGGER messages_final ON messages",
        "CREATE TRIGGER messages_final AFTER UPDATE OF state ON messages FOR EACH ROW "
        "WHEN (NEW.state IS DISTINCT FROM OLD.state "
        "AND (NEW.callback_url IS NOT NULL OR NEW.dsn_notify IS NOT NULL)) "
        "EXECUTE FUNCTION sms_bridge_message_final()",
        # Room on each page for a row's next version: a fence (sending_by, no index) is then
        # written beside the row (a heap-only update) instead of elsewhere with an entry in
        # each of the table's indexes. Pages written from now on.
        "ALTER TABLE messages SET (fillfactor = 80)",
    )),
    Migration(3, "timeline events and SMSC keys without foreign-key checks", (
        # Each row inserted ran a check of its own (a query, and a lock on the row it names):
        # five events and a key per message, for rows the same transaction has just written
        # or locked. The retention sweep deletes a message's events and keys before it.
        # SQLite's checks stay: there they are a lookup in the same process.
        "ALTER TABLE events DROP CONSTRAINT events_message_id_fkey",
        "ALTER TABLE smsc_keys DROP CONSTRAINT smsc_keys_message_id_seq_fkey",
    )),
    Migration(4, "parts updated beside their row", (
        # A part is updated twice (its submit, its receipt), columns no index holds: with
        # room on its page each is a heap-only update, not a new entry in its primary key.
        "ALTER TABLE parts SET (fillfactor = 80)",
    )),
)

LATEST_VERSION = MIGRATIONS[-1].version


class SchemaTooNew(RuntimeError):
    """The database was written by a newer bridge; refusing to guess how to use it."""


async def schema_version(conn: Any) -> int:
    """0 for an empty database (`conn`: an asyncpg connection)."""
    exists = await conn.fetchval("SELECT to_regclass('schema_version') IS NOT NULL")
    if not exists:
        return 0
    version = await conn.fetchval("SELECT max(version) FROM schema_version")
    return int(version) if version is not None else 0


async def migrate(conn: Any, target: int = LATEST_VERSION) -> tuple[int, int]:
    """Bring the database to `target`; (from, to). Holds the migration advisory lock for the
    whole time, each migration in a transaction of its own."""
    if not 0 <= target <= LATEST_VERSION:
        raise ValueError(f"no schema version {target} (latest is {LATEST_VERSION})")
    await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK)
    try:
        before = current = await schema_version(conn)
        if current > LATEST_VERSION:
            raise SchemaTooNew(f"database schema version {current} is newer than this bridge "
                               f"understands ({LATEST_VERSION}); upgrade the bridge")
        for migration in MIGRATIONS[current:target]:
            async with conn.transaction():
                if current == 0:
                    await conn.execute("CREATE TABLE IF NOT EXISTS schema_version "
                                       "(version INTEGER NOT NULL)")
                for statement in migration.statements:
                    await conn.execute(statement)
                await conn.execute("DELETE FROM schema_version")
                await conn.execute("INSERT INTO schema_version (version) VALUES ($1)",
                                   migration.version)
            current = migration.version
        return before, max(before, current)
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK)
