"""The PostgreSQL test harness (tests/postgres.py and the pg_server / pg_url fixtures) does what
the store's tests rely on: fresh empty databases, stop/start keeping the data, refused
connections while stopped, and skip-or-fail when there is no server."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import asyncpg
import pytest

from tests.conftest import ROOT, closed_port
from tests.postgres import (BIN_ENV, EXTERNAL_ENV, REQUIRE_ENV, PgServer, PgUnavailable,
                            StopMode, database_of, find_bindir, skip_reasons, unavailable)

USER_TABLES = ("SELECT count(*) FROM pg_tables"
               " WHERE schemaname NOT IN ('pg_catalog', 'information_schema')")


async def test_query_on_fresh_database(pg_url: str) -> None:
    conn = await asyncpg.connect(pg_url)
    try:
        version = await conn.fetchval("SELECT version()")
        assert version.startswith("PostgreSQL ")
        assert int(await conn.fetchval("SHOW server_version_num")) >= 150000, version
        assert await conn.fetchval("SELECT current_database()") == database_of(pg_url)
        assert await conn.fetchval(USER_TABLES) == 0
    finally:
        await conn.close()


async def test_databases_are_distinct_and_empty(pg_server: PgServer, pg_url: str) -> None:
    # create_database from inside the running loop of an async test (run_sync's thread path)
    other = pg_server.create_database("other")
    try:
        assert database_of(other) != database_of(pg_url)
        first, second = await asyncpg.connect(pg_url), await asyncpg.connect(other)
        try:
            assert await second.fetchval(USER_TABLES) == 0
            await first.execute("CREATE TABLE t (x int)")
            assert await first.fetchval(USER_TABLES) == 1
            assert await second.fetchval(USER_TABLES) == 0
        finally:
            await first.close()
            await second.close()  # left open, drop_database's FORCE would end it anyway
    finally:
        pg_server.drop_database(database_of(other))
    assert not await _exists(pg_server, database_of(other))


def _own_server(pg_server: PgServer) -> None:
    if not pg_server.can_stop:
        pytest.skip(f"the server named by {EXTERNAL_ENV} cannot be stopped by the tests")


@pytest.mark.parametrize("mode", ["fast", "immediate"])
async def test_stop_and_start_keep_the_data(pg_server: PgServer, pg_url: str,
                                            mode: StopMode) -> None:
    _own_server(pg_server)
    conn = await asyncpg.connect(pg_url)
    await conn.execute("CREATE TABLE t (x int); INSERT INTO t VALUES (1), (2)")
    await conn.close()
    pg_server.stop(mode)  # "immediate" is a crash: the start recovers from the WAL
    assert not pg_server.is_running()
    pg_server.start()
    assert pg_server.is_running()
    conn = await asyncpg.connect(pg_url)  # same URL: same port, same data
    try:
        assert await conn.fetchval("SELECT sum(x) FROM t") == 3
    finally:
        await conn.close()


async def test_stopped_server_refuses_connections(pg_server: PgServer, pg_url: str) -> None:
    _own_server(pg_server)
    open_conn = await asyncpg.connect(pg_url)
    pg_server.stop()  # "fast": ends open sessions
    try:
        with pytest.raises(ConnectionRefusedError):
            await asyncpg.connect(pg_url, timeout=5)
        # The stop ended the open session too. (A query on it raises one of asyncpg's
        # errors, which one depending on timing, so an outage test should catch them broadly.)
        for _ in range(100):
            if open_conn.is_closed():
                break
            await asyncio.sleep(0.02)
        assert open_conn.is_closed()
    finally:
        open_conn.terminate()
        pg_server.start()
    conn = await asyncpg.connect(pg_url)
    assert await conn.fetchval("SELECT 1") == 1
    await conn.close()


async def test_server_does_not_run_as_root(pg_server: PgServer, pg_url: str) -> None:
    _own_server(pg_server)
    conn = await asyncpg.connect(pg_url)
    data = Path(await conn.fetchval("SHOW data_directory"))
    await conn.close()
    owner = data.stat().st_uid
    assert owner != 0
    if os.geteuid() != 0:
        assert owner == os.geteuid()


async def _exists(server: PgServer, name: str) -> bool:
    conn = await asyncpg.connect(server.admin_url)
    try:
        return bool(await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name))
    finally:
        await conn.close()


# The skip-or-fail switch, without a server.

def test_unavailable_skips_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    for value in (None, "", "0"):
        if value is None:
            monkeypatch.delenv(REQUIRE_ENV, raising=False)
        else:
            monkeypatch.setenv(REQUIRE_ENV, value)
        with pytest.raises(pytest.skip.Exception, match="PostgreSQL unavailable: fake reason"):
            unavailable("fake reason")


def test_unavailable_fails_when_required(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(REQUIRE_ENV, "1")
    with pytest.raises(pytest.fail.Exception, match="required .* unavailable: fake reason"):
        unavailable("fake reason")


def test_skip_reasons_counts_only_postgres_skips() -> None:
    reports = [SimpleNamespace(longrepr=("t.py", 1, "Skipped: PostgreSQL unavailable: no initdb")),
               SimpleNamespace(longrepr=("t.py", 2, "Skipped: PostgreSQL unavailable: no initdb")),
               SimpleNamespace(longrepr=("t.py", 3, "Skipped: something else"))]
    assert skip_reasons(reports) == {"no initdb": 2}


def test_no_binaries_or_unreachable_url_is_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(EXTERNAL_ENV, raising=False)
    monkeypatch.setenv(BIN_ENV, "/nonexistent")
    missing = "no initdb and pg_ctl in SMS_BRIDGE_PG_BIN=/nonexistent"
    with pytest.raises(PgUnavailable, match=missing):
        find_bindir()
    with pytest.raises(PgUnavailable, match=missing):
        PgServer.launch()
    monkeypatch.setenv(EXTERNAL_ENV, f"postgresql://postgres@127.0.0.1:{closed_port()}/postgres")
    with pytest.raises(PgUnavailable, match=f"cannot connect to {EXTERNAL_ENV}"):
        PgServer.launch()


@pytest.mark.parametrize("required", [False, True])
def test_no_server_is_one_summary_line_or_a_failure(required: bool) -> None:
    """End to end, in a child pytest with no PostgreSQL binaries to be found."""
    env = {k: v for k, v in os.environ.items() if k not in (EXTERNAL_ENV, REQUIRE_ENV)}
    env[BIN_ENV] = "/nonexistent"
    if required:
        env[REQUIRE_ENV] = "1"
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider",
         f"{Path(__file__).relative_to(ROOT)}::test_query_on_fresh_database",
         f"{Path(__file__).relative_to(ROOT)}::test_databases_are_distinct_and_empty"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    reason = "no initdb and pg_ctl in SMS_BRIDGE_PG_BIN=/nonexistent"
    if required:
        assert done.returncode == 1, done.stdout
        assert "2 errors" in done.stdout, done.stdout
        assert f"required ({REQUIRE_ENV}=1) but unavailable: {reason}" in done.stdout
    else:
        assert done.returncode == 0, done.stdout
        assert "2 skipped" in done.stdout, done.stdout
        lines = [line for line in done.stdout.splitlines() if "PostgreSQL tests skipped" in line]
        assert lines == [f"PostgreSQL tests skipped (2): {reason}"], done.stdout
