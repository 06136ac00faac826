"""The store bench runs end to end (small counts; the figures themselves are not checked)."""

from __future__ import annotations

from bridge.store import bench


def test_store_bench_smoke() -> None:
    result = bench.main_result(messages=300, producers=20)
    assert result["single"]["messages"] == result["batch100"]["messages"] == 300
    assert result["pipeline"]["messages"] == 300  # every one accepted, then acknowledged
    for key in ("accepts_per_s_single", "accepts_per_s_batch100",
                "accepts_per_s_in_process_single", "pipeline_accepts_per_s",
                "pipeline_submitted_per_s"):
        assert result[key] > 0, key
