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
from bridge.store import store_spec

__all__ = ["StoreProcess", "open_store"]


def open_store(config: StoreConfig, base_dir: Path) -> StoreProcess:
    """The store for `config.url` (not opened yet: call `await store.open()`), SQLite or
    PostgreSQL, in a process of its own (bridge.runtime.process explains why)."""
    return StoreProcess(store_spec(config, base_dir))
