"""The two-instance bench runs end to end (tiny counts; the figures themselves are not
checked): one instance, then two, on one PostgreSQL and one simulator."""

from __future__ import annotations

import json

import pytest

from bridge.bench import cluster as bench


def test_one_then_two_instances_through_the_cli(pg_url: str,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    from bridge.cli import main

    assert main(["bench", "cluster", "--url", pg_url, "--calls", "4", "--recipients", "10",
                 "--concurrency", "4", "--rounds", "1"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["one"]["instances"] == ["a"] and result["two"]["instances"] == ["b", "c"]
    for name in ("one", "two"):
        figures = result[name]
        assert figures["statuses"] == {"200": 4}
        assert figures["delivery"] == {"expected": 40, "missing": 0, "duplicated": 0,
                                       "unchecked": 0, "exactly_once": True}
        assert figures["e2e_msgs_per_s"] > 0 and figures["postgresql_feeds_instances"] > 0
        assert figures["cpu_us_per_msg"]["postgres"] > 0
    # Each instance's own processes, per message it took; both of `two` did work.
    own = result["two"]["instance_cpu_us_per_own_msg"]
    assert set(own) == {"b", "c"} and all(v["store"] > 0 and v["bridge"] > 0
                                          for v in own.values())
    assert {"b.bridge", "b.store", "c.bridge", "c.store"} <= set(result["two"]["cpu_us_per_msg"])
    assert result["two_vs_one"] > 0 and result["targets"]["exactly_once"] is True


@pytest.mark.parametrize(("instance_us", "postgres_us", "instances"), [
    (400.0, 100.0, 4.0), (300.0, 400.0, 0.75), (250.0, 0.0, 0.0)])
def test_how_many_instances_a_server_feeds(instance_us: float, postgres_us: float,
                                           instances: float) -> None:
    assert bench.feeds_instances(instance_us, postgres_us) == instances
