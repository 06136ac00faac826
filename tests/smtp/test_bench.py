"""The SMTP bench runs end to end (tiny counts; the figures themselves are not checked)."""

from __future__ import annotations

import json

import pytest

from bridge.smtp import bench


def test_bench_smoke(capsys: pytest.CaptureFixture[str]) -> None:
    bench.main(["--mails", "40", "--rounds", "1", "--warmup", "8", "--connections", "4",
                "--per-session", "7"])
    result = json.loads(capsys.readouterr().out)
    assert result["submits_at_simulator"] == 8 + 40
    assert result["delivery"] == {"expected": 40, "missing": 0, "duplicated": 0, "unchecked": 0,
                                  "exactly_once": True}
    assert result["targets"]["exactly_once"] is True
    for key in ("noop_msgs_per_s", "accept_only_msgs_per_s", "bridge_end_to_end_msgs_per_s",
                "ratio_end_to_end_vs_noop"):
        assert result[key] > 0, key
    cpu = result["cpu_us_per_mail"]
    assert set(cpu["noop"]) == {"load", "server", "total"}
    assert cpu["bridge"]["store"] > 0 and cpu["bridge"]["server"] > 0
    assert cpu["accept_only"]["store"] > 0
    # Every mail is accepted, submitted and receipted: three store writes at least, and some
    # transactions (each an fsync) committed them.
    store = result["store_per_mail"]
    assert store["writes"] >= 3
    assert 0 < store["commits"] <= store["writes"]
