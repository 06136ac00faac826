"""The store bench runs end to end (small counts; the figures themselves are not checked)."""

from __future__ import annotations

import json

import pytest

from bridge.bench import store as bench


def test_store_bench_smoke() -> None:
    result = bench.main_result(messages=300, producers=20)
    assert result["single"]["messages"] == result["batch100"]["messages"] == 300
    assert result["pipeline"]["messages"] == 300  # every one accepted, then acknowledged
    for key in ("accepts_per_s_single", "accepts_per_s_batch100",
                "accepts_per_s_in_process_single", "pipeline_accepts_per_s",
                "pipeline_submitted_per_s"):
        assert result[key] > 0, key


def test_store_cpu_bench_smoke() -> None:
    result = bench.cpu_result(messages=200, producers=10, repeat=1)
    for shape in ("single", "batch100"):
        assert result[shape]["messages"] == 200  # every one accepted, submitted, delivered
        assert result[shape]["child_cpu_us_per_msg"] >= 0
        assert result[shape]["parent_cpu_us_per_msg"] > 0
    assert result["in_process_single"]["messages"] == 200


def _databases(url: str) -> set[str]:
    import asyncpg

    from tests.postgres import run_sync

    async def names() -> set[str]:
        conn = await asyncpg.connect(url)
        try:
            return {r[0] for r in await conn.fetch("SELECT datname FROM pg_database")}
        finally:
            await conn.close()
    return run_sync(names())


def test_store_bench_compares_sqlite_and_postgresql_in_one_run(pg_url: str) -> None:
    """`--compare --url`: every shape on both stores, ratios from the same rounds, the
    PostgreSQL server's CPU counted, and the bench's databases dropped afterwards."""
    before = _databases(pg_url)
    result = bench.main_result(messages=300, producers=20, kinds=("sqlite", "postgresql"),
                               url=pg_url, rounds=2)
    assert result["stores"] == ["sqlite", "postgresql"] and result["rounds"] == 2
    for kind in ("sqlite", "postgresql"):
        figures = result[kind]
        assert figures["single"]["messages"] == figures["batch100"]["messages"] == 300
        assert figures["pipeline"]["messages"] == 300  # accepted, then acknowledged
        assert len(figures["single"]["samples"]) == 2
    assert result["postgresql"]["single"]["cpu_us_per_msg"]["postgres"] > 0
    assert "postgres" not in result["sqlite"]["single"]["cpu_us_per_msg"]
    assert set(result["postgresql_vs_sqlite"]) == {
        "single", "batch100", "in_process_single", "pipeline_accepts", "pipeline_submitted"}
    assert all(ratio > 0 for ratio in result["postgresql_vs_sqlite"].values())
    assert set(result["targets"]) == {"postgresql_single_5000_per_s",
                                      "postgresql_single_vs_sqlite_0.5"}
    assert _databases(pg_url) == before


def test_store_bench_on_postgresql_alone_through_the_cli(
        pg_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    from bridge.cli import main

    assert main(["bench", "store", "--url", pg_url, "--messages", "200", "--producers", "10"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["store"] == "postgresql" and result["single"]["messages"] == 200
    assert result["durability"].startswith("fsync on")


def test_store_cpu_bench_on_postgresql(pg_url: str) -> None:
    result = bench.cpu_result(messages=200, producers=10, repeat=1, kinds=("postgresql",),
                              url=pg_url)
    for shape in ("single", "batch100", "in_process_single"):
        assert result[shape]["messages"] == 200  # every one accepted, submitted, delivered
        assert result[shape]["postgres_cpu_us_per_msg"] > 0
