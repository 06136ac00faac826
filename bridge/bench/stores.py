"""Which stores a bench runs on: SQLite (a file in a temporary directory), PostgreSQL (a new
database on the server bridge.bench.pg provides), or both in one run, so that their ratio
comes from one run on one machine state.

    --store sqlite|postgresql|both   (default: sqlite, or postgresql when --url is given)
    --compare                        short for --store both
    --url URL                        the PostgreSQL server (else $SMS_BRIDGE_BENCH_PG, else a
                                     throwaway durable cluster)

A bench asks `Stores.fresh(name)` for a store URL for each run (each a new file or database,
so runs never see each other's rows) and `Stores.cpu(kind)` for the extra CPU readers of a
kind (PostgreSQL: its server processes).
"""

from __future__ import annotations

import argparse
import contextlib
from pathlib import Path
from typing import AsyncIterator, Callable, Mapping, Sequence

from bridge.bench.pg import ENV, Postgres, postgres
from bridge.config import StoreConfig
from bridge.store import StoreSpec, store_spec

SQLITE = "sqlite"
POSTGRESQL = "postgresql"
KINDS = (SQLITE, POSTGRESQL)


def add_store_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "store", "SQLite, PostgreSQL, or both in one run (ratios from one machine state)")
    group.add_argument("--store", choices=(SQLITE, POSTGRESQL, "both"), default=None,
                       help="default: sqlite, or postgresql when --url is given")
    group.add_argument("--compare", action="store_true", help="short for --store both")
    group.add_argument("--url", default=None, metavar="POSTGRESQL_URL",
                       help="a PostgreSQL server on which the bench may create and drop "
                            f"databases (else ${ENV}, else a throwaway durable cluster)")


def chosen_kinds(args: argparse.Namespace) -> tuple[str, ...]:
    """The store kinds the options ask for, SQLite first."""
    store = "both" if args.compare else args.store or (POSTGRESQL if args.url else SQLITE)
    return KINDS if store == "both" else (store,)


class Stores:
    """Fresh stores of the chosen kinds; made by `stores()`."""

    def __init__(self, kinds: Sequence[str], directory: Path, server: Postgres | None) -> None:
        self.kinds = tuple(kinds)
        self.directory = directory
        self.server = server
        self._made: list[str] = []

    async def fresh(self, kind: str, name: str) -> str:
        """A new empty store of `kind`: its `[store] url`."""
        if kind == SQLITE:
            folder = self.directory / name
            folder.mkdir(parents=True, exist_ok=True)
            return f"sqlite:///{folder / 'bench.db'}"
        assert self.server is not None, "PostgreSQL was not asked for"
        url = await self.server.database(name)
        self._made.append(url)
        return url

    def cpu(self, kind: str) -> Mapping[str, Callable[[], float | None]]:
        """What else a run on `kind` makes work, as CPU readers for kit.CpuMeter."""
        if kind == POSTGRESQL and self.server is not None:
            return {"postgres": self.server.server_cpu_s}
        return {}

    def describe(self) -> dict[str, object]:
        out: dict[str, object] = {"stores": list(self.kinds)}
        if self.server is not None:
            out["postgresql_server"] = self.server.label
            out["postgresql_durable"] = self.server.durable
            out["postgresql_cpu_measured"] = self.server.postmaster is not None
        return out

    async def _drop_all(self) -> None:
        assert self.server is not None
        for url in self._made:
            with contextlib.suppress(Exception):  # cleaning up: the figures are what matter
                await self.server.drop(url)


@contextlib.asynccontextmanager
async def stores(kinds: Sequence[str], directory: Path,
                 url: str | None = None) -> AsyncIterator[Stores]:
    """The stores of `kinds`; a PostgreSQL server is found or started only when asked for,
    and the databases made are dropped at the end."""
    if POSTGRESQL not in kinds:
        yield Stores(kinds, directory, None)
        return
    async with postgres(url) as server:
        made = Stores(kinds, directory, server)
        try:
            yield made
        finally:
            await made._drop_all()


def spec_of(url: str) -> StoreSpec:
    """What StoreProcess opens for a `[store] url` from `Stores.fresh`."""
    return store_spec(StoreConfig(url=url), Path("/"))


__all__ = ["KINDS", "POSTGRESQL", "SQLITE", "Stores", "add_store_options", "chosen_kinds",
           "spec_of", "stores"]
