"""Durable storage: the `Store` interface (base.py) and its implementations, chosen by URL."""

from __future__ import annotations

from pathlib import Path

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
from bridge.store.sqlite import SqliteStore

__all__ = [
    "AcceptOutcome", "Event", "InboundMessage", "MessageView", "NewMessage", "NewPart",
    "OutboundMessage", "OutboundPart", "ReceiptOutcome", "SqliteStore", "Store",
    "StoreUnavailable", "sqlite_path",
]


def sqlite_path(url: str, base_dir: Path) -> Path:
    """`sqlite:///var/bridge.db` is relative to `base_dir`; `sqlite:////abs/x.db` is absolute."""
    if not url.startswith("sqlite:///"):
        raise ValueError(f'store url "{url}" is not "sqlite:///PATH"')
    rest = url[len("sqlite:///"):].split("?", 1)[0]
    if not rest or rest == ":memory:":
        raise ValueError(f'store url "{url}" must name a file (the store is shared by threads)')
    return Path(base_dir) / rest
