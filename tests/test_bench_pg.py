"""The benches' own PostgreSQL (bridge/bench/pg.py): a throwaway cluster with durable settings,
databases made and dropped, and the server's CPU read from /proc."""

from __future__ import annotations

import asyncpg
import pytest

from bridge.bench.pg import ENV, PgUnavailable, Postgres, postgres
from tests.postgres import unavailable


async def test_a_throwaway_cluster_is_durable_and_its_cpu_counted(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV, raising=False)
    try:
        async with postgres() as server:
            assert server.own and server.durable  # fsync and synchronous_commit on
            assert server.postmaster is not None
            url = await server.database("probe")
            before = server.server_cpu_s()
            conn = await asyncpg.connect(url)
            try:
                await conn.execute("CREATE TABLE t (n int)")
                for n in range(300):  # a commit each: the server works
                    await conn.execute("INSERT INTO t VALUES ($1)", n)
            finally:
                await conn.close()
            after = server.server_cpu_s()
            assert before is not None and after is not None and after > before
            await server.drop(url)
            root = server._cluster
    except PgUnavailable as exc:
        unavailable(str(exc))
    assert root is not None and not root.exists()  # stopped and deleted


async def test_a_server_named_by_url_is_used_as_it_is(pg_url: str) -> None:
    async with postgres(pg_url) as server:
        assert not server.own
        assert server.server_cpu_s() is not None  # on this machine: its processes are seen
        url = await server.database("named")
        await server.drop(url)
    conn = await asyncpg.connect(pg_url)  # not stopped
    await conn.close()


async def test_not_a_postgresql_url() -> None:
    with pytest.raises(PgUnavailable):
        async with postgres("sqlite:///x.db"):
            pass
    assert Postgres("postgresql://u:secret@h/db").label == "postgresql://u@h/db"
