"""The SQLite schema as an ordered list of migrations, applied in one transaction on open.

`schema_version` holds one row: the number of migrations applied. A migration is a tuple of
plain SQL statements (no `executescript`, which would commit half-way), so a failed upgrade
leaves the database exactly as it was. Never edit a released migration: append a new one.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass


@dataclass(frozen=True)
class Migration:
    version: int
    title: str
    statements: tuple[str, ...]


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "messages, parts, SMSC keys, events, account usage", (
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
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL,
            send_at REAL,
            expires_at REAL NOT NULL,
            error TEXT,
            error_detail TEXT,
            idempotency_key TEXT,
            dup_digest TEXT,
            dup_at REAL,
            callback_url TEXT,
            meta_json TEXT NOT NULL DEFAULT '{}'
        )
        """,
        # A repeat of a key returns the first id; NULL keys are not indexed at all.
        "CREATE UNIQUE INDEX messages_idempotency ON messages (account, idempotency_key) "
        "WHERE idempotency_key IS NOT NULL",
        # Only digests inside the duplicate window stay set (older ones are cleared lazily),
        # so this index stays small whatever the size of the table.
        "CREATE INDEX messages_dup ON messages (account, dup_digest, dup_at) "
        "WHERE dup_digest IS NOT NULL",
        "CREATE INDEX messages_account_created ON messages (account, created_at)",
        "CREATE INDEX messages_state ON messages (state)",
        """
        CREATE TABLE parts (
            message_id TEXT NOT NULL REFERENCES messages (id),
            seq INTEGER NOT NULL,
            total INTEGER NOT NULL,
            short_message BLOB NOT NULL,
            tlvs_json TEXT NOT NULL,
            state TEXT NOT NULL,
            smsc TEXT,
            smsc_id TEXT,
            submitted_at REAL,
            delivered_at REAL,
            attempts INTEGER NOT NULL DEFAULT 0,
            receipt_stat TEXT,
            receipt_err TEXT,
            PRIMARY KEY (message_id, seq)
        )
        """,
        """
        CREATE TABLE smsc_keys (
            id INTEGER PRIMARY KEY,
            smsc TEXT NOT NULL,
            key TEXT NOT NULL,
            message_id TEXT NOT NULL,
            seq INTEGER NOT NULL,
            FOREIGN KEY (message_id, seq) REFERENCES parts (message_id, seq)
        )
        """,
        "CREATE INDEX smsc_keys_lookup ON smsc_keys (smsc, key)",
        """
        CREATE TABLE events (
            id INTEGER PRIMARY KEY,
            message_id TEXT NOT NULL REFERENCES messages (id),
            at REAL NOT NULL,
            state TEXT NOT NULL,
            detail TEXT NOT NULL
        )
        """,
        "CREATE INDEX events_message ON events (message_id)",
        """
        CREATE TABLE account_usage (
            account TEXT PRIMARY KEY,
            parts_used INTEGER NOT NULL
        )
        """,
    )),
    Migration(2, "orphan receipts, inbound (MO) messages, reply routing index", (
        """
        CREATE TABLE orphan_receipts (
            id INTEGER PRIMARY KEY,
            receipt TEXT NOT NULL,
            smsc TEXT NOT NULL,
            key TEXT NOT NULL,
            part_state TEXT,
            stat TEXT,
            err TEXT,
            at REAL NOT NULL
        )
        """,
        "CREATE INDEX orphan_receipts_lookup ON orphan_receipts (smsc, key)",
        "CREATE INDEX orphan_receipts_receipt ON orphan_receipts (receipt)",
        "CREATE INDEX orphan_receipts_at ON orphan_receipts (at)",
        # Range scan for the lazy pruning of duplicate digests that left the window.
        "CREATE INDEX messages_dup_at ON messages (dup_at) WHERE dup_digest IS NOT NULL",
        """
        CREATE TABLE inbound (
            id TEXT PRIMARY KEY,
            smsc TEXT NOT NULL,
            source TEXT NOT NULL,
            destination TEXT NOT NULL,
            text TEXT NOT NULL,
            received_at REAL NOT NULL,
            reply_to_message_id TEXT
        )
        """,
        "CREATE INDEX inbound_received ON inbound (received_at)",
        "CREATE INDEX messages_recipient_created ON messages (recipient, created_at)",
    )),
    Migration(3, "delivery callbacks, queued by the transaction that makes a message final", (
        """
        CREATE TABLE callbacks (
            id INTEGER PRIMARY KEY,
            message_id TEXT NOT NULL REFERENCES messages (id),
            url TEXT NOT NULL,
            state TEXT NOT NULL,
            at REAL NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0,
            next_at REAL NOT NULL,
            last_error TEXT
        )
        """,
        "CREATE INDEX callbacks_due ON callbacks (next_at)",
        # A trigger, so that every path that finishes a message (receipts, failures, expiry,
        # a late receipt refining a verdict) queues the callback in its own transaction, and
        # messages without a callback_url pay only the WHEN test.
        """
        CREATE TRIGGER messages_final_callback AFTER UPDATE OF state ON messages
        FOR EACH ROW WHEN NEW.callback_url IS NOT NULL AND NEW.state IS NOT OLD.state
            AND NEW.state IN ('delivered', 'undeliverable', 'expired', 'failed')
        BEGIN
            INSERT INTO callbacks (message_id, url, state, at, next_at)
            VALUES (NEW.id, NEW.callback_url, NEW.state, NEW.updated_at, NEW.updated_at);
        END
        """,
    )),
    Migration(4, "mail back to email senders: DSNs queued by a trigger, SMS replies", (
        # The final outcomes the email sender asked to hear of ("SUCCESS", "FAILURE", both).
        "ALTER TABLE messages ADD COLUMN dsn_notify TEXT",
        """
        CREATE TABLE mailbacks (
            id INTEGER PRIMARY KEY,
            kind TEXT NOT NULL,
            message_id TEXT NOT NULL REFERENCES messages (id),
            inbound_id TEXT REFERENCES inbound (id),
            state TEXT,
            at REAL NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0,
            next_at REAL NOT NULL,
            last_error TEXT
        )
        """,
        "CREATE INDEX mailbacks_due ON mailbacks (next_at)",
        # As for callbacks: every path that finishes a message queues its DSN in its own
        # transaction; messages nobody asked about pay only the WHEN test.
        """
        CREATE TRIGGER messages_final_dsn AFTER UPDATE OF state ON messages
        FOR EACH ROW WHEN NEW.dsn_notify IS NOT NULL AND NEW.state IS NOT OLD.state
            AND ((NEW.state = 'delivered' AND instr(NEW.dsn_notify, 'SUCCESS') > 0)
                 OR (NEW.state IN ('undeliverable', 'expired', 'failed')
                     AND instr(NEW.dsn_notify, 'FAILURE') > 0))
        BEGIN
            INSERT INTO mailbacks (kind, message_id, state, at, next_at)
            VALUES ('dsn', NEW.id, NEW.state, NEW.updated_at, NEW.updated_at);
        END
        """,
    )),
    Migration(5, "retention: a message's SMSC id keys found by message", (
        "CREATE INDEX smsc_keys_message ON smsc_keys (message_id)",
    )),
    Migration(6, "delay notifications: which messages still owe their sender one", (
        # 1 while a recipient that asked for NOTIFY=DELAY has not been told of a delay; the
        # partial index holds only those, so looking for due ones costs nothing otherwise.
        "ALTER TABLE messages ADD COLUMN dsn_delay_owed INTEGER",
        "CREATE INDEX messages_dsn_delay ON messages (created_at) "
        "WHERE dsn_delay_owed IS NOT NULL",
    )),
    Migration(7, "instances: each outbound side's heartbeat, its probe that writes succeed", (
        """
        CREATE TABLE instances (
            id TEXT PRIMARY KEY,
            heartbeat_at REAL NOT NULL,
            info_json TEXT NOT NULL DEFAULT '{}'
        )
        """,
    )),
    Migration(8, "which instance holds a message, and the SMSCs that may send it", (
        "ALTER TABLE messages ADD COLUMN lease_owner TEXT",
        "ALTER TABLE messages ADD COLUMN routes TEXT NOT NULL DEFAULT ''",
        "CREATE INDEX messages_pending ON messages (created_at) "
        "WHERE state IN ('queued', 'scheduled', 'submitted')",
        "CREATE INDEX messages_held ON messages (lease_owner) WHERE lease_owner IS NOT NULL",
    )),
    Migration(9, "callbacks and mails held by the instance attempting them", (
        "ALTER TABLE callbacks ADD COLUMN claimed_by TEXT",
        "ALTER TABLE callbacks ADD COLUMN claimed_until REAL",
        "ALTER TABLE mailbacks ADD COLUMN claimed_by TEXT",
        "ALTER TABLE mailbacks ADD COLUMN claimed_until REAL",
    )),
    Migration(10, "reports on more events than the final ones; inbound SMS pushed to mo_url", (
        # Which events a message's callback_url hears of, as bridge.core.reports.ReportEvent
        # bits: 1 delivered, 2 undeliverable or expired, 4 buffered (an interim receipt),
        # 8 submitted (every part accepted by the SMSC), 16 failed. NULL: the final states
        # (1 + 2 + 16), which is what a callback has always reported.
        "ALTER TABLE messages ADD COLUMN report_mask INTEGER",
        # What else the event said when it was queued (a buffered event: the receipt's stat).
        "ALTER TABLE callbacks ADD COLUMN detail TEXT",
        "DROP TRIGGER messages_final_callback",
        # As migration 3's trigger, for every state a mask can ask for; a message without a
        # callback_url still pays only the WHEN test. Buffered events queue where receipts
        # are applied (bridge.store.sqlite), since no state changes then.
        """
        CREATE TRIGGER messages_report_callback AFTER UPDATE OF state ON messages
        FOR EACH ROW WHEN NEW.callback_url IS NOT NULL AND NEW.state IS NOT OLD.state
            AND (coalesce(NEW.report_mask, 19) & CASE NEW.state
                 WHEN 'delivered' THEN 1 WHEN 'undeliverable' THEN 2 WHEN 'expired' THEN 2
                 WHEN 'failed' THEN 16 WHEN 'submitted' THEN 8 ELSE 0 END) != 0
        BEGIN
            INSERT INTO callbacks (message_id, url, state, at, next_at)
            VALUES (NEW.id, NEW.callback_url, NEW.state, NEW.updated_at, NEW.updated_at);
        END
        """,
        # An inbound SMS to an account's number, to be POSTed to its mo_url; queued in the
        # transaction that stores the SMS.
        """
        CREATE TABLE pushes (
            id INTEGER PRIMARY KEY,
            inbound_id TEXT NOT NULL REFERENCES inbound (id),
            account TEXT NOT NULL,
            url TEXT NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0,
            next_at REAL NOT NULL,
            last_error TEXT,
            claimed_by TEXT,
            claimed_until REAL
        )
        """,
        "CREATE INDEX pushes_due ON pushes (next_at)",
    )),
    Migration(11, "parts of concatenated inbound SMS, put together by the store", (
        # Kept until their set is complete (then one inbound row) or given up as partial:
        # parts that come through different binds or instances, or across a restart, meet.
        """
        CREATE TABLE mo_parts (
            source TEXT NOT NULL,
            destination TEXT NOT NULL,
            ref INTEGER NOT NULL,
            total INTEGER NOT NULL,
            seq INTEGER NOT NULL,
            smsc TEXT NOT NULL,
            text TEXT NOT NULL,
            received_at REAL NOT NULL,
            PRIMARY KEY (source, destination, ref, total, seq)
        )
        """,
        "CREATE INDEX mo_parts_received ON mo_parts (received_at)",
    )),
    Migration(12, "operators: cancel and retry, credit topped up, the console's newest messages", (
        # The instance whose dispatcher began handing the message to an SMSC (Store.begin_submit):
        # cancel refuses it from then on, so a message is never cancelled yet sent.
        "ALTER TABLE messages ADD COLUMN sending_by TEXT",
        # Parts an operator topped up beside the account's quota, and every change of it.
        "ALTER TABLE account_usage ADD COLUMN credit INTEGER NOT NULL DEFAULT 0",
        """
        CREATE TABLE credits (
            id INTEGER PRIMARY KEY,
            account TEXT NOT NULL,
            change INTEGER NOT NULL,
            credit INTEGER NOT NULL,
            at REAL NOT NULL,
            actor TEXT NOT NULL
        )
        """,
        "CREATE INDEX credits_account ON credits (account, at)",
        # The newest messages of every account (the console, `messages list`).
        "CREATE INDEX messages_created ON messages (created_at)",
        # Migration 10's and 4's triggers, with `cancelled`: a final state, reported as the
        # failed ones are (bridge.core.reports.EVENT_OF) and mailed back as a FAILURE.
        "DROP TRIGGER messages_report_callback",
        """
        CREATE TRIGGER messages_report_callback AFTER UPDATE OF state ON messages
        FOR EACH ROW WHEN NEW.callback_url IS NOT NULL AND NEW.state IS NOT OLD.state
            AND (coalesce(NEW.report_mask, 19) & CASE NEW.state
                 WHEN 'delivered' THEN 1 WHEN 'undeliverable' THEN 2 WHEN 'expired' THEN 2
                 WHEN 'failed' THEN 16 WHEN 'cancelled' THEN 16 WHEN 'submitted' THEN 8
                 ELSE 0 END) != 0
        BEGIN
            INSERT INTO callbacks (message_id, url, state, at, next_at)
            VALUES (NEW.id, NEW.callback_url, NEW.state, NEW.updated_at, NEW.updated_at);
        END
        """,
        "DROP TRIGGER messages_final_dsn",
        """
        CREATE TRIGGER messages_final_dsn AFTER UPDATE OF state ON messages
        FOR EACH ROW WHEN NEW.dsn_notify IS NOT NULL AND NEW.state IS NOT OLD.state
            AND ((NEW.state = 'delivered' AND instr(NEW.dsn_notify, 'SUCCESS') > 0)
                 OR (NEW.state IN ('undeliverable', 'expired', 'failed', 'cancelled')
                     AND instr(NEW.dsn_notify, 'FAILURE') > 0))
        BEGIN
            INSERT INTO mailbacks (kind, message_id, state, at, next_at)
            VALUES ('dsn', NEW.id, NEW.state, NEW.updated_at, NEW.updated_at);
        END
        """,
    )),
)

LATEST_VERSION = MIGRATIONS[-1].version


class SchemaTooNew(RuntimeError):
    """The database was written by a newer bridge; refusing to guess how to use it."""


def schema_version(conn: sqlite3.Connection) -> int:
    """0 for an empty database."""
    row = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'").fetchone()
    if row is None:
        return 0
    row = conn.execute("SELECT max(version) FROM schema_version").fetchone()
    return int(row[0]) if row is not None and row[0] is not None else 0


def migrate(conn: sqlite3.Connection, target: int = LATEST_VERSION) -> tuple[int, int]:
    """Bring the database to `target` in one transaction; returns (from, to).

    `conn` must be in autocommit mode (isolation_level=None). BEGIN IMMEDIATE takes the write
    lock before the version is read, so two processes opening one file cannot both migrate.
    """
    if not 0 <= target <= LATEST_VERSION:
        raise ValueError(f"no schema version {target} (latest is {LATEST_VERSION})")
    conn.execute("BEGIN IMMEDIATE")
    try:
        current = schema_version(conn)
        if current > LATEST_VERSION:
            raise SchemaTooNew(f"database schema version {current} is newer than this bridge "
                               f"understands ({LATEST_VERSION}); upgrade the bridge")
        if current < target:
            if current == 0:
                conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            for migration in MIGRATIONS[current:target]:
                for statement in migration.statements:
                    conn.execute(statement)
            conn.execute("DELETE FROM schema_version")
            conn.execute("INSERT INTO schema_version (version) VALUES (?)", (target,))
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return current, max(current, target)
