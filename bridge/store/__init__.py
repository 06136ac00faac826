"""Durable storage: the `Store` interface (base.py) and its implementations, chosen by URL."""

from __future__ import annotations

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
from bridge.store.process import StoreProcess
from bridge.store.sqlite import SqliteStore

__all__ = [
    "AcceptOutcome", "Event", "InboundMessage", "MessageView", "NewMessage", "NewPart",
    "OutboundMessage", "OutboundPart", "ReceiptOutcome", "SqliteStore", "Store", "StoreProcess",
    "StoreUnavailable", "open_store", "sqlite_path",
]


def sqlite_path(url: str, base_dir: Path) -> Path:
    """`sqlite:///var/bridge.db` is relative to `base_dir`; `sqlite:////abs/x.db` is absolute."""
    if not url.startswith("sqlite:///"):
        raise ValueError(f'store url "{url}" is not "sqlite:///PATH"')
    rest = url[len("sqlite:///"):].split("?", 1)[0]
    if not rest or rest == ":memory:":
        raise ValueError(f'store url "{url}" must name a file (the store is shared by threads)')
    return Path(base_dir) / rest


def open_store(config: StoreConfig, base_dir: Path) -> StoreProcess:
    """The store for `config.url` (not opened yet: call `await store.open()`). SQLite runs in a
    process of its own (bridge.store.process explains why)."""
    url = config.url
    if url.startswith(("postgresql://", "postgres://")):
        raise NotImplementedError("the PostgreSQL store is not implemented yet; "
                                  'use url = "sqlite:///PATH" in [store]')
    if url.startswith("sqlite:///"):
        return StoreProcess(sqlite_path(url, base_dir), commit_max_batch=config.commit_max_batch)
    raise ValueError(f'unsupported store url "{url}": use "sqlite:///PATH"')
