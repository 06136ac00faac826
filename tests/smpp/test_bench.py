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
