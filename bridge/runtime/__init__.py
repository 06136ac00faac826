"""Composition roots: which process runs what, and nothing else.

- `app`: the `Bridge`, the process that serves SMTP and SOAP and starts the store process;
- `process` / `child`: the store process (the store and the outbound side), and its pipe;
- `outbound`: the outbound side composed (SMPP binds, dispatcher, callbacks, mail back,
  retention) over one store.
"""

from __future__ import annotations

from pathlib import Path

from bridge.config import StoreConfig
from bridge.runtime.process import StoreProcess
from bridge.store import sqlite_path

__all__ = ["StoreProcess", "open_store"]


def open_store(config: StoreConfig, base_dir: Path) -> StoreProcess:
    """The store for `config.url` (not opened yet: call `await store.open()`). SQLite runs in a
    process of its own (bridge.runtime.process explains why)."""
    url = config.url
    if url.startswith(("postgresql://", "postgres://")):
        raise NotImplementedError("the PostgreSQL store is not implemented yet; "
                                  'use url = "sqlite:///PATH" in [store]')
    if url.startswith("sqlite:///"):
        return StoreProcess(sqlite_path(url, base_dir), commit_max_batch=config.commit_max_batch)
    raise ValueError(f'unsupported store url "{url}": use "sqlite:///PATH"')
