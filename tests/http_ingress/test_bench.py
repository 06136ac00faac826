"""`sms-bridge bench http` runs end to end (tiny counts; the figures themselves are not
checked): every load's messages reach their simulator exactly once, Kannel's among them where
Kannel is installed."""

from __future__ import annotations

import json

import pytest

from bridge.bench import http as bench
from bridge.bench.kannel import installed


def test_bench_smoke(capsys: pytest.CaptureFixture[str]) -> None:
    assert bench.main(["--requests", "40", "--concurrency", "4", "--rounds", "1"]) == 0
    result = json.loads(capsys.readouterr().out)
    loads = ["sendsms_bridge", "soap_1"] + (["sendsms_kannel"] if installed() else [])
    assert result["kannel"] is installed()
    for load in loads:
        assert result[load]["messages_at_simulator"] == 40, load
        assert result[load]["statuses"] == {"202" if load.startswith("sendsms") else "200": 40}
    assert result["delivery"] == {"expected": 40 * len(loads), "missing": 0, "duplicated": 0,
                                  "unchecked": 0, "exactly_once": True}
    assert result["ratios"]["sendsms_vs_soap_1"] > 0
    assert set(result["targets"]) >= {"sendsms_1.2x_soap_1", "exactly_once"}
    assert result["cpu_us"]["sendsms_bridge"]["bridge"] > 0
    assert result["noop_aiohttp"]["statuses"] == {"202": 40}  # the server stack's ceiling
    assert result["ratios"]["sendsms_vs_noop_aiohttp"] > 0


def test_the_cli_runs_it(capsys: pytest.CaptureFixture[str]) -> None:
    from bridge.cli import main

    assert main(["bench", "http", "--requests", "10", "--concurrency", "2", "--rounds", "1"]) \
        == 0
    assert json.loads(capsys.readouterr().out)["sendsms_bridge"]["requests"] == 10
