"""`sms-bridge store copy`: move a site from one store to another (SQLite to PostgreSQL mainly;
PostgreSQL to SQLite and SQLite to SQLite work the same way).

Both stores are opened once through their own `open()`, so each is at this bridge's schema
version, and then copied with plain SQL: the source read in one snapshot, the target written in
ONE transaction, so a failure (or counts that differ at the end) leaves the target as it was.
The tables and their columns are read from the live schemas, not listed here: a column added by
a later migration is copied without touching this module, and a source column the target lacks
stops the copy before anything is written. Rows keep their ids (events, SMSC keys, callbacks…:
receipts, timelines and queues refer to them); PostgreSQL's sequences are set past them after.
Values are converted by the target column's type where the two schemas differ (routes are TEXT
joined by commas in SQLite and TEXT[] in PostgreSQL; REAL/double precision; BLOB/bytea).

Beyond that migration the source is only read (SQLite: through a read-only connection). A
target that holds any row is refused unless `force`: then what it holds is deleted first, in
the same transaction.
"""

from __future__ import annotations

import abc
import asyncio
import os
import sqlite3
import sys
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from graphlib import CycleError, TopologicalSorter
from pathlib import Path
from typing import Any, TextIO

import asyncpg

from bridge.config import StoreConfig
from bridge.store import StoreSpec, store_spec
from bridge.store import pg_schema
from bridge.store import schema as sqlite_schema
from bridge.store.base import StoreUnavailable
from bridge.store.postgres import schema_of

HELP = """\
Copy every row of one bridge store into another: messages with their parts, SMSC id keys and
timelines, orphan receipts, inbound SMS, queued callbacks, mail backs and pushes, account usage
and instances, keeping their ids. Stop the bridge first: what it accepts once the copy has
begun stays behind in the source.

URLs are those of [store] url: sqlite:///relative/path.db (relative to the current folder),
sqlite:////absolute/path.db, postgresql://user@host:port/database (the database must exist;
the password comes from PGPASSWORD or ~/.pgpass when the URL has none).

Both stores are opened as the bridge opens them, which brings an older schema to this
bridge's version; a store written by a newer bridge is refused, and so is a source that does
not exist. No row of the source is written. The target is written in one transaction: a
failure leaves it as it was. The row counts of every table are compared at the end; if any
differs nothing is committed and the exit status is 1.

A target that already holds rows is refused. With --force, everything it holds is deleted and
replaced by the source's rows (in the same transaction: a failed copy keeps what it had).
Rows are never merged: ids of two stores collide.

Exit status: 0 copied and counted, 1 refused or failed (the target unchanged), 2 usage."""

#: Not moved: each store's own schema version, and the flood and rate limits' state, which only
#: PostgreSQL keeps in tables (SQLite in its writer's memory) and which lasts seconds anyway.
NOT_COPIED = frozenset({"schema_version", "floods", "buckets"})
#: Rows read and written at a time.
BATCH = 2000
#: A line of progress each time a table has copied this many more rows.
PROGRESS_EVERY = 100_000
#: How long the target's tables may take to lock (a bridge still running on them).
LOCK_TIMEOUT_S = 10


class CopyError(Exception):
    """The copy was refused or failed; the target is as it was. The message names stores by
    their URL without a password."""


@dataclass(frozen=True)
class Column:
    name: str
    type: str  # as its database declares it, lower case: "integer", "real", "int8", "_text"…


@dataclass(frozen=True)
class TableCount:
    name: str
    source_rows: int
    target_rows: int
    seconds: float


@dataclass(frozen=True)
class CopyReport:
    tables: tuple[TableCount, ...]
    removed: int  # rows the target held before (--force)
    seconds: float

    @property
    def ok(self) -> bool:
        return all(t.source_rows == t.target_rows for t in self.tables)

    @property
    def rows(self) -> int:
        return sum(t.target_rows for t in self.tables)


# ---------------------------------------------------------------------------------- values
# One converter per target column type: what the other database's driver returns for the same
# column becomes what this one's takes. A value that fits no rule raises ValueError, so that a
# surprise stops the copy rather than storing something else.

Convert = Callable[[Any], Any]


def _text(value: Any) -> Any:
    """TEXT; a PostgreSQL TEXT[] (routes) becomes SQLite's comma-joined form."""
    if isinstance(value, list):
        return ",".join(value)
    if value is None or isinstance(value, str):
        return value
    raise ValueError(f"not text: {_shown(value)}")


def _text_array(value: Any) -> Any:
    """TEXT[]; SQLite's comma-joined routes ("" for none) become an array."""
    if isinstance(value, str):
        return value.split(",") if value else []
    if value is None or isinstance(value, list):
        return value
    raise ValueError(f"not text or a text array: {_shown(value)}")


def _integer(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if value is None or (isinstance(value, int) and not isinstance(value, bool)):
        return value
    raise ValueError(f"not an integer: {_shown(value)}")


def _real(value: Any) -> Any:
    if isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if value is None or isinstance(value, float):
        return value
    raise ValueError(f"not a number: {_shown(value)}")


def _blob(value: Any) -> Any:
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    if value is None or isinstance(value, bytes):
        return value
    raise ValueError(f"not bytes: {_shown(value)}")


#: SQLite's declared types and PostgreSQL's udt_name, both lower case.
CONVERTERS: dict[str, Convert] = {
    "text": _text, "_text": _text_array,
    "integer": _integer, "int2": _integer, "int4": _integer, "int8": _integer,
    "real": _real, "float4": _real, "float8": _real,
    "blob": _blob, "bytea": _blob,
}


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def converter(table: str, column: Column) -> Convert:
    try:
        return CONVERTERS[column.type]
    except KeyError:
        raise CopyError(f"no conversion to {table}.{column.name}'s type {column.type!r}: "
                        f"bridge.store.copy.CONVERTERS needs one") from None


def quoted(name: str) -> str:
    """An identifier as both databases quote it (names come from the catalogs)."""
    return '"' + name.replace('"', '""') + '"'


# ---------------------------------------------------------------------------------- sides
# One class per kind of database: what the copy asks of a source and of a target, in SQL.

class Side(abc.ABC):
    """An open connection to one store, inside one transaction once `begin` is called."""

    def __init__(self, label: str) -> None:
        self.label = label

    @abc.abstractmethod
    async def identity(self) -> tuple[object, ...]:
        """Equal for two connections to the same database (a copy onto itself is refused:
        with --force it would delete the source)."""

    @abc.abstractmethod
    async def begin(self, *, write: bool) -> None:
        """A read: one snapshot for every count and row. A write: one transaction that nothing
        else writes meanwhile."""

    @abc.abstractmethod
    async def end(self, *, commit: bool) -> None: ...

    @abc.abstractmethod
    async def tables(self) -> dict[str, tuple[Column, ...]]:
        """Every table and its columns in order, from the live schema."""

    @abc.abstractmethod
    async def references(self) -> dict[str, set[str]]:
        """The tables each table's foreign keys refer to."""

    @abc.abstractmethod
    async def count(self, table: str) -> int: ...

    @abc.abstractmethod
    def batches(self, table: str, columns: Sequence[str],
                size: int) -> AsyncIterator[list[tuple[Any, ...]]]: ...

    @abc.abstractmethod
    async def insert(self, table: str, columns: Sequence[str],
                     rows: list[tuple[Any, ...]]) -> None: ...

    @abc.abstractmethod
    async def empty(self, tables: Sequence[str]) -> None:
        """Delete every row of `tables`, given referring tables first."""

    async def lock(self, tables: Sequence[str]) -> None:
        """Keep other writers off `tables` until `end` (SQLite's BEGIN IMMEDIATE already does)."""

    async def restart_ids(self, table: str, columns: Sequence[str]) -> None:
        """Ids generated from now on come after the copied ones (SQLite's INTEGER PRIMARY KEY
        does so by itself)."""

    @abc.abstractmethod
    async def close(self) -> None: ...


class SqliteSide(Side):
    """Plain sqlite3 calls on the loop's thread: the copy is the only thing this process
    does, so blocking the loop costs nothing."""

    def __init__(self, path: Path, label: str, *, write: bool) -> None:
        super().__init__(label)
        self.path = path
        if write:
            self.conn = sqlite3.connect(path, isolation_level=None, timeout=LOCK_TIMEOUT_S)
            self.conn.execute("PRAGMA foreign_keys = ON")
            self.conn.execute("PRAGMA synchronous = FULL")
        else:  # read only: the source cannot be written by mistake
            self.conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True,
                                        isolation_level=None, timeout=LOCK_TIMEOUT_S)

    async def identity(self) -> tuple[object, ...]:
        found = os.stat(self.path)
        return ("sqlite", found.st_dev, found.st_ino)

    async def begin(self, *, write: bool) -> None:
        self.conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")

    async def end(self, *, commit: bool) -> None:
        if self.conn.in_transaction:
            self.conn.execute("COMMIT" if commit else "ROLLBACK")

    async def tables(self) -> dict[str, tuple[Column, ...]]:
        names = [r[0] for r in self.conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' "
            "ORDER BY name")]
        return {name: tuple(Column(r[1], str(r[2]).lower()) for r in self.conn.execute(
            f"PRAGMA table_info({quoted(name)})")) for name in names}

    async def references(self) -> dict[str, set[str]]:
        return {name: {r[2] for r in self.conn.execute(
            f"PRAGMA foreign_key_list({quoted(name)})")} for name in await self.tables()}

    async def count(self, table: str) -> int:
        return int(self.conn.execute(f"SELECT count(*) FROM {quoted(table)}").fetchone()[0])

    async def batches(self, table: str, columns: Sequence[str],
                      size: int) -> AsyncIterator[list[tuple[Any, ...]]]:
        cursor = self.conn.execute(
            f"SELECT {', '.join(map(quoted, columns))} FROM {quoted(table)}")
        while rows := cursor.fetchmany(size):
            yield rows

    async def insert(self, table: str, columns: Sequence[str],
                     rows: list[tuple[Any, ...]]) -> None:
        self.conn.executemany(
            f"INSERT INTO {quoted(table)} ({', '.join(map(quoted, columns))}) "
            f"VALUES ({', '.join('?' * len(columns))})", rows)

    async def empty(self, tables: Sequence[str]) -> None:
        for table in tables:
            self.conn.execute(f"DELETE FROM {quoted(table)}")

    async def close(self) -> None:
        self.conn.close()


class PostgresSide(Side):
    """One asyncpg connection; rows go in with COPY (binary), the fastest way in."""

    def __init__(self, conn: Any, label: str) -> None:
        super().__init__(label)
        self.conn = conn
        self._tx: Any = None

    @classmethod
    async def connect(cls, url: str, password: str | None, label: str) -> PostgresSide:
        try:
            conn = await asyncpg.connect(url, password=password, timeout=10)
        except (OSError, asyncio.TimeoutError, asyncpg.PostgresError,
                asyncpg.InterfaceError) as exc:
            raise StoreUnavailable(f"cannot connect to {label}: {exc}") from exc
        return cls(conn, label)

    async def identity(self) -> tuple[object, ...]:
        row = await self.conn.fetchrow(
            "SELECT pg_postmaster_start_time()::text, current_setting('port'), "
            "current_database(), current_schema()")
        return ("postgresql", *row)

    async def begin(self, *, write: bool) -> None:
        self._tx = (self.conn.transaction() if write else
                    self.conn.transaction(isolation="repeatable_read", readonly=True))
        await self._tx.start()

    async def end(self, *, commit: bool) -> None:
        tx, self._tx = self._tx, None
        if tx is not None:
            await (tx.commit() if commit else tx.rollback())

    async def tables(self) -> dict[str, tuple[Column, ...]]:
        rows = await self.conn.fetch(
            "SELECT c.table_name, c.column_name, c.udt_name FROM information_schema.columns c "
            "JOIN information_schema.tables t USING (table_schema, table_name) "
            "WHERE c.table_schema = current_schema() AND t.table_type = 'BASE TABLE' "
            "ORDER BY c.table_name, c.ordinal_position")
        found: dict[str, list[Column]] = {}
        for table, column, kind in rows:
            found.setdefault(table, []).append(Column(column, str(kind).lower()))
        return {table: tuple(columns) for table, columns in found.items()}

    async def references(self) -> dict[str, set[str]]:
        rows = await self.conn.fetch(
            "SELECT c.relname, p.relname FROM pg_constraint k "
            "JOIN pg_class c ON c.oid = k.conrelid JOIN pg_class p ON p.oid = k.confrelid "
            "WHERE k.contype = 'f' AND k.connamespace = current_schema()::regnamespace")
        found: dict[str, set[str]] = {}
        for table, parent in rows:
            found.setdefault(table, set()).add(parent)
        return found

    async def count(self, table: str) -> int:
        return int(await self.conn.fetchval(f"SELECT count(*) FROM {quoted(table)}"))

    async def batches(self, table: str, columns: Sequence[str],
                      size: int) -> AsyncIterator[list[tuple[Any, ...]]]:
        cursor = await self.conn.cursor(
            f"SELECT {', '.join(map(quoted, columns))} FROM {quoted(table)}")
        while rows := await cursor.fetch(size):
            yield [tuple(r) for r in rows]

    async def insert(self, table: str, columns: Sequence[str],
                     rows: list[tuple[Any, ...]]) -> None:
        await self.conn.copy_records_to_table(table, records=rows, columns=list(columns))

    async def empty(self, tables: Sequence[str]) -> None:
        if tables:
            await self.conn.execute(f"TRUNCATE {', '.join(map(quoted, tables))}")

    async def lock(self, tables: Sequence[str]) -> None:
        # Readers may go on; a bridge still writing makes the copy fail rather than wait.
        await self.conn.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT_S}s'")
        if tables:
            await self.conn.execute(
                f"LOCK TABLE {', '.join(map(quoted, tables))} IN EXCLUSIVE MODE")

    async def restart_ids(self, table: str, columns: Sequence[str]) -> None:
        for column in columns:
            sequence = await self.conn.fetchval(
                "SELECT pg_get_serial_sequence($1, $2)", quoted(table), column)
            if sequence is not None:
                await self.conn.execute(
                    f"SELECT setval($1, coalesce((SELECT max({quoted(column)}) "
                    f"FROM {quoted(table)}), 0) + 1, false)", sequence)

    async def close(self) -> None:
        await self.conn.close()


# ---------------------------------------------------------------------------------- before

def spec_of(url: str, base_dir: Path) -> StoreSpec:
    """The store a URL names, as `[store] url` would (CopyError for one that names none)."""
    try:
        return store_spec(StoreConfig(url=url), base_dir)
    except ValueError as exc:
        raise CopyError(str(exc)) from None


async def schema_version(spec: StoreSpec) -> int | None:
    """The store's schema version, read without changing anything; None for a SQLite file
    that does not exist."""
    if spec.postgres_url is not None:
        try:
            found, _ = await schema_of(spec.postgres_url, spec.password)
        except ValueError as exc:  # asyncpg cannot parse it (a port that is not a number…)
            raise CopyError(f"cannot use {spec.label}: {exc}") from None
        return found
    assert spec.sqlite is not None
    if not spec.sqlite.is_file():
        return None
    side = SqliteSide(spec.sqlite, spec.label, write=False)
    try:
        return sqlite_schema.schema_version(side.conn)
    except sqlite3.Error as exc:
        raise CopyError(f"cannot read {spec.label}: {exc}") from exc
    finally:
        await side.close()


def latest_version(spec: StoreSpec) -> int:
    if spec.postgres_url is not None:
        return pg_schema.LATEST_VERSION
    return sqlite_schema.LATEST_VERSION


async def check_versions(source: StoreSpec, target: StoreSpec) -> None:
    """Refuse before anything is opened: a source that is missing or holds no bridge store
    (opening it would create one), and either store written by a newer bridge."""
    found = await schema_version(source)
    if found is None:
        raise CopyError(f"the source {source.label} does not exist")
    if found == 0:
        raise CopyError(f"the source {source.label} holds no bridge store (no schema version)")
    for role, spec, version in (("source", source, found),
                                ("target", target, await schema_version(target))):
        if version is not None and version > latest_version(spec):
            raise CopyError(f"the {role} {spec.label} has schema version {version}, newer than "
                            f"this bridge's ({latest_version(spec)}): copy with a newer bridge")


async def migrate(spec: StoreSpec) -> None:
    """Open and close the store as the bridge does: it ends at this bridge's schema version
    (created when new), so the two schemas are the ones the copy expects."""
    store = spec.build()
    await store.open()
    await store.close()


async def connect(spec: StoreSpec, *, write: bool) -> Side:
    if spec.postgres_url is not None:
        return await PostgresSide.connect(spec.postgres_url, spec.password, spec.label)
    assert spec.sqlite is not None
    try:
        return SqliteSide(spec.sqlite, spec.label, write=write)
    except sqlite3.Error as exc:
        raise CopyError(f"cannot open {spec.label}: {exc}") from exc


@dataclass(frozen=True)
class TablePlan:
    name: str
    columns: tuple[str, ...]
    converters: tuple[Convert, ...]


async def plan(source: Side, target: Side) -> list[TablePlan]:
    """The source's tables in an order the target's foreign keys accept, each with the
    converters of its target columns; CopyError naming every source table or column the
    target lacks."""
    have, want = await source.tables(), await target.tables()
    missing: list[str] = []
    plans: dict[str, TablePlan] = {}
    for table, columns in have.items():
        if table in NOT_COPIED:
            continue
        if table not in want:
            missing.append(f"table {table}")
            continue
        types = {c.name: c for c in want[table]}
        missing += [f"column {table}.{c.name}" for c in columns if c.name not in types]
        names = tuple(c.name for c in columns if c.name in types)
        plans[table] = TablePlan(table, names,
                                 tuple(converter(table, types[name]) for name in names))
    if missing:
        raise CopyError(f"the target {target.label} has no {', '.join(missing)}: is it another "
                        f"version of the bridge's schema? Nothing was copied")
    return [plans[name] for name in load_order(set(plans), await target.references())]


def load_order(tables: set[str], references: dict[str, set[str]]) -> list[str]:
    """Tables referred to before those that refer to them (alphabetical among equals)."""
    sorter = TopologicalSorter({t: (references.get(t, set()) & tables) - {t} for t in tables})
    order: list[str] = []
    try:
        sorter.prepare()
    except CycleError as exc:
        raise CopyError(f"the target's foreign keys form a cycle: {exc.args[1]}") from None
    while sorter.is_active():
        ready = sorted(sorter.get_ready())
        order += ready
        sorter.done(*ready)
    return order


# ---------------------------------------------------------------------------------- the copy

#: What a database or a value may raise in the middle of a copy: the copy stops and says where.
_COPY_ERRORS: tuple[type[BaseException], ...] = (
    sqlite3.Error, asyncpg.PostgresError, asyncpg.InterfaceError, OSError,
    asyncio.TimeoutError, ValueError)


async def copy_store(source_url: str, target_url: str, *, force: bool = False,
                     base_dir: Path | None = None, out: TextIO | None = None,
                     batch: int = BATCH) -> CopyReport:
    """Copy every row of the source into the target (see the module's docstring); a report of
    the counts per table. CopyError or StoreUnavailable when refused or failed, with the target
    as it was; a report that is not `ok` was rolled back too."""
    base = Path.cwd() if base_dir is None else base_dir
    say = _printer(sys.stdout if out is None else out)
    source_spec, target_spec = spec_of(source_url, base), spec_of(target_url, base)
    await check_versions(source_spec, target_spec)
    await migrate(source_spec)
    await migrate(target_spec)
    try:
        return await _copy_specs(source_spec, target_spec, force=force, say=say, batch=batch)
    except _COPY_ERRORS as exc:
        raise CopyError(f"the copy failed: {exc}; nothing was committed, the target is as it "
                        f"was") from exc


async def _copy_specs(source_spec: StoreSpec, target_spec: StoreSpec, *, force: bool,
                      say: Callable[[str], None], batch: int) -> CopyReport:
    source = await connect(source_spec, write=False)
    try:
        target = await connect(target_spec, write=True)
        try:
            if await source.identity() == await target.identity():
                raise CopyError(f"the source and the target are the same store ({source.label})")
            say(f"copying {source.label} to {target.label}")
            return await copy_between(source, target, force=force, say=say, batch=batch)
        finally:
            await target.close()
    finally:
        await source.close()


def _printer(out: TextIO) -> Callable[[str], None]:
    def say(line: str) -> None:
        print(line, file=out, flush=True)
    return say


async def copy_between(source: Side, target: Side, *, force: bool, say: Callable[[str], None],
                       batch: int = BATCH) -> CopyReport:
    """The copy on open connections: a snapshot of the source into one transaction of the
    target, committed only when every table's count matches."""
    started = time.monotonic()
    await source.begin(write=False)
    await target.begin(write=True)
    committed = False
    try:
        tables = await plan(source, target)
        await target.lock([t.name for t in tables])
        removed = await make_room(target, tables, force=force, say=say)
        counts = tuple([await copy_table(source, target, t, batch=batch, say=say)
                        for t in tables])
        for t in tables:
            await target.restart_ids(t.name, t.columns)
        report = CopyReport(counts, removed, time.monotonic() - started)
        if report.ok:
            await target.end(commit=True)
            committed = True
        summarise(report, say)
        return report
    finally:
        if not committed:
            await target.end(commit=False)
        await source.end(commit=False)


async def make_room(target: Side, tables: Sequence[TablePlan], *, force: bool,
                    say: Callable[[str], None]) -> int:
    """Refuse a target that holds rows, or with `force` delete them (in the copy's transaction,
    so a failed copy keeps them). Rows are never merged: two stores' ids collide."""
    held = {t.name: n for t in tables if (n := await target.count(t.name))}
    if not held:
        return 0
    what = ", ".join(f"{name} {n}" for name, n in held.items())
    if not force:
        raise CopyError(f"the target {target.label} is not empty ({what}): nothing was copied; "
                        f"--force replaces what it holds")
    await target.empty([t.name for t in reversed(tables)])
    say(f"--force: deleting what the target held ({what})")
    return sum(held.values())


async def copy_table(source: Side, target: Side, table: TablePlan, *, batch: int,
                     say: Callable[[str], None]) -> TableCount:
    started = time.monotonic()
    copied, next_progress = 0, PROGRESS_EVERY
    try:
        async for rows in source.batches(table.name, table.columns, batch):
            await target.insert(table.name, table.columns, [convert(table, r) for r in rows])
            copied += len(rows)
            if copied >= next_progress:
                say(f"  {table.name}: {copied} rows, {time.monotonic() - started:.1f} s")
                next_progress += PROGRESS_EVERY
        count = TableCount(table.name, await source.count(table.name),
                           await target.count(table.name), time.monotonic() - started)
    except _COPY_ERRORS as exc:
        raise CopyError(f"copying {table.name} failed: {exc}; nothing was committed, "
                        f"the target is as it was") from exc
    say(f"{table.name}: {count.target_rows} rows in {count.seconds:.1f} s")
    return count


def convert(table: TablePlan, row: tuple[Any, ...]) -> tuple[Any, ...]:
    try:
        return tuple(f(v) for f, v in zip(table.converters, row, strict=True))
    except ValueError:
        for name, f, value in zip(table.columns, table.converters, row):
            try:
                f(value)
            except ValueError as exc:
                raise ValueError(f"{table.name}.{name}: {exc}") from None
        raise


def summarise(report: CopyReport, say: Callable[[str], None]) -> None:
    """Rows per table in each store, then one verdict line."""
    width = max([len("table"), *(len(t.name) for t in report.tables)])
    say(f"{'table':<{width}}  {'source':>10}  {'target':>10}")
    for t in report.tables:
        flag = "" if t.source_rows == t.target_rows else "  MISMATCH"
        say(f"{t.name:<{width}}  {t.source_rows:>10}  {t.target_rows:>10}{flag}")
    if report.ok:
        say(f"copied {report.rows} rows in {len(report.tables)} tables in "
            f"{report.seconds:.1f} s; every count matches")
    else:
        say("counts differ: nothing was committed, the target is as it was")


async def run(source_url: str, target_url: str, *, force: bool, out: TextIO | None = None,
              err: TextIO | None = None) -> int:
    """`sms-bridge store copy`: the exit status (0 copied, 1 refused, failed or miscounted)."""
    try:
        report = await copy_store(source_url, target_url, force=force, out=out)
    except (CopyError, StoreUnavailable, pg_schema.SchemaTooNew,
            sqlite_schema.SchemaTooNew) as exc:
        print(f"sms-bridge store copy: {exc}", file=sys.stderr if err is None else err)
        return 1
    return 0 if report.ok else 1
