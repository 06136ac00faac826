"""The store bench runs end to end (small counts; the figures themselves are not checked)."""

from __future__ import annotations

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
