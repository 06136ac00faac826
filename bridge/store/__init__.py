"""Durable storage: the `Store` interface (base.py) and its implementations, chosen by URL."""

from __future__ import annotations

import contextlib
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

from bridge.config import StoreConfig
from bridge.store.base import (
    AcceptOutcome,
    Event,
    InboundMessage,
    MessageView,
    NewMessage,
    NewPart,
    OutboundMessage,
    OutboundPart,
    ReceiptOutcome,
    Store,
    StoreUnavailable,
)
from bridge.store.postgres import PostgresStore, safe_url, schema_of
from bridge.store.schema import LATEST_VERSION as SQLITE_LATEST
from bridge.store.schema import schema_version as sqlite_schema_version
from bridge.store.sqlite import SqliteStore

__all__ = [
    "AcceptOutcome", "Event", "InboundMessage", "MessageView", "NewMessage", "NewPart",
    "OutboundMessage", "OutboundPart", "PostgresStore", "ReceiptOutcome", "SqliteStore", "Store",
    "StoreSpec", "StoreUnavailable", "describe", "sqlite_path", "store_spec",
]


def sqlite_path(url: str, base_dir: Path) -> Path:
    """`sqlite:///var/bridge.db` is relative to `base_dir`; `sqlite:////abs/x.db` is absolute."""
    if not url.startswith("sqlite:///"):
        raise ValueError(f'store url "{url}" is not "sqlite:///PATH"')
    rest = url[len("sqlite:///"):].split("?", 1)[0]
    if not rest or rest == ":memory:":
        raise ValueError(f'store url "{url}" must name a file (the store is shared by threads)')
    return Path(base_dir) / rest


@dataclass(frozen=True)
class StoreSpec:
    """Which store, where, and how: a SQLite file or a PostgreSQL URL with its options. What
    the store process is told to open (in its first frame, not on its command line: it may
    hold a password)."""

    sqlite: Path | None = None
    postgres_url: str | None = None
    password: str | None = field(default=None, repr=False)
    commit_max_batch: int = 2000

    @classmethod
    def of(cls, location: Path | str | StoreSpec, **options: object) -> StoreSpec:
        """A spec from a SQLite path (the tests' and the CLI's short form) or a spec."""
        if isinstance(location, StoreSpec):
            return location
        if isinstance(location, str) and location.startswith(("postgresql://", "postgres://")):
            return cls(postgres_url=location, **options)  # type: ignore[arg-type]
        return cls(sqlite=Path(location), **options)  # type: ignore[arg-type]

    @property
    def label(self) -> str:
        """Where the store is, for logs (never the password)."""
        if self.sqlite is not None:
            return str(self.sqlite)
        return safe_url(self.postgres_url or "")

    def build(self) -> SqliteStore | PostgresStore:
        if self.sqlite is not None:
            return SqliteStore(self.sqlite, commit_max_batch=self.commit_max_batch)
        assert self.postgres_url is not None
        return PostgresStore(self.postgres_url, password=self.password,
                             commit_max_batch=self.commit_max_batch)


async def describe(spec: StoreSpec) -> str:
    """One line on the store a config names, read without changing it (`check-config`): where
    it is and its schema version. StoreUnavailable when it cannot be reached."""
    if spec.postgres_url is not None:
        found, latest = await schema_of(spec.postgres_url, spec.password)
        return f"PostgreSQL {spec.label}, schema version {found} (this bridge: {latest})"
    assert spec.sqlite is not None
    if not spec.sqlite.exists():
        return f"SQLite {spec.label}, not created yet (schema version {SQLITE_LATEST} at start)"
    try:
        with contextlib.closing(sqlite3.connect(f"file:{spec.sqlite}?mode=ro", uri=True)) as conn:
            found = sqlite_schema_version(conn)
    except sqlite3.Error as exc:
        raise StoreUnavailable(f"cannot read {spec.label}: {exc}") from exc
    return f"SQLite {spec.label}, schema version {found} (this bridge: {SQLITE_LATEST})"


def store_spec(config: StoreConfig, base_dir: Path) -> StoreSpec:
    """The store `[store]` names; ValueError for a URL that names none."""
    url = config.url
    if url.startswith(("postgresql://", "postgres://")):
        return StoreSpec(postgres_url=url, password=config.password,
                         commit_max_batch=config.commit_max_batch)
    if url.startswith("sqlite:///"):
        return StoreSpec(sqlite=sqlite_path(url, base_dir),
                         commit_max_batch=config.commit_max_batch)
    raise ValueError(f'unsupported store url "{url}": use "sqlite:///PATH" or '
                     f'"postgresql://USER@HOST:PORT/DB"')
