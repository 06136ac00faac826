"""The flood limit's bench runs and reports the ledger beside the old table."""

from __future__ import annotations

import json

import pytest

from bridge.bench import flood


def test_flood_bench_reports_both_forms(capsys: pytest.CaptureFixture[str]) -> None:
    assert flood.main(["--max", "2000"]) == 0
    result = json.loads(capsys.readouterr().out)
    [run] = result["runs"]
    assert run["distinct_subscribers"] == 1000
    assert run["ledger_us_per_msg"] > 0 and run["old_table_us_per_msg"] > 0
