"""The SOAP bench runs end to end (tiny counts; the figures themselves are not checked)."""

from __future__ import annotations

import json

import pytest

from bridge.soap import bench


def test_bench_smoke(capsys: pytest.CaptureFixture[str]) -> None:
    bench.main(["--calls", "30", "--batch-calls", "2", "--batch-size", "10", "--noop-calls", "30",
                "--concurrency", "4", "--rounds", "2"])
    result = json.loads(capsys.readouterr().out)
    assert result["send_1"]["messages_at_simulator"] == 30
    assert result["send_100"]["messages_at_simulator"] == 20
    # Every recipient of both rounds reached the simulator exactly once.
    assert result["delivery"] == {"expected": 2 * (30 + 20), "missing": 0, "duplicated": 0,
                                  "unchecked": 0, "exactly_once": True}
    assert result["targets"]["exactly_once"] is True
    assert len(result["noop_stock"]["rounds"]) == len(result["send_1"]["rounds"]) == 2
    for key in ("send_1_e2e_vs_noop_stock", "send_1_e2e_vs_noop_bridge",
                "send_100_e2e_msgs_per_s"):
        assert result["ratios"][key] > 0, key
    # Each load's CPU by process: the store works for sends only, the bridge for all.
    cpu = result["cpu_us"]
    assert cpu["send_1"]["store"] > 0 and cpu["send_1"]["bridge"] > 0
    assert cpu["noop_stock"]["store"] < cpu["send_1"]["store"]
    assert cpu["send_1"]["total"] == pytest.approx(
        sum(v for k, v in cpu["send_1"].items() if k != "total"), abs=0.5)


def test_cli_passes_options_to_the_named_bench(capsys: pytest.CaptureFixture[str]) -> None:
    from bridge.cli import main

    assert main(["bench", "soap", "--calls", "20", "--batch-calls", "1", "--batch-size", "5",
                 "--noop-calls", "20", "--concurrency", "2", "--rounds", "1"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["rounds"] == 1 and result["send_1"]["messages_at_simulator"] == 20
    assert main(["bench", "all", "--rounds", "1"]) == 2  # options belong to one bench
