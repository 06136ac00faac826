"""The SMPP benches run end to end (tiny counts; the figures themselves are not checked)."""

from __future__ import annotations

import json

import pytest

from bridge.bench import smpp as bench


def test_dispatch_bench_smoke(capsys: pytest.CaptureFixture[str]) -> None:
    bench.main(["--dispatch", "--count", "200", "--runs", "1", "--receipt-delay", "0.01"])
    result = json.loads(capsys.readouterr().out)
    [run] = result["runs"]
    assert run["bridge_cpu_us_per_msg"] > 0 and run["simulator_cpu_us_per_msg"] > 0


def test_window_bench_smoke(capsys: pytest.CaptureFixture[str]) -> None:
    bench.main(["--count", "200", "--windows", "1,10"])
    result = json.loads(capsys.readouterr().out)
    assert set(result["windows"]) == {"1", "10"}
    assert all(w["submits"] == 200 and w["failed"] == 0 for w in result["windows"].values())


def test_failover_bench_smoke(capsys: pytest.CaptureFixture[str]) -> None:
    from bridge.bench import failover

    failover.main(["--count", "200", "--rounds", "1", "--receipt-delay", "0.01"])
    result = json.loads(capsys.readouterr().out)
    [healthy], [failing] = result["healthy"], result["one_failing"]
    assert result["lost"] == result["duplicated"] == 0
    assert healthy["submits_refused"] == 0 and failing["submits_refused"] > 0
    assert failing["health"] == {"first": "open", "second": "closed"}
    assert result["ratio"] > 0
