"""The console's arithmetic: masked numbers, nearest-rank percentiles, counts per second over a
ring that forgets what is older than its span."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from bridge.core.console import PerSecond, Samples, mask_number, percentiles


def test_numbers_are_masked_unless_shown() -> None:
    assert mask_number("+447400123456") == "+447******456"
    assert mask_number("+447400123456", show=True) == "+447400123456"
    assert mask_number("12345") == "1**45"
    assert mask_number("123") == "***"


@given(st.text(alphabet="+0123456789", min_size=5, max_size=20))
def test_a_masked_number_keeps_its_length_and_hides_its_middle(number: str) -> None:
    masked = mask_number(number)
    assert len(masked) == len(number) and "*" in masked
    assert masked[-2:] == number[-2:]


def test_percentiles_are_samples_that_happened() -> None:
    assert percentiles([]) == {"p50": None, "p90": None, "p99": None}
    samples = [float(i) for i in range(1, 101)]
    assert percentiles(samples) == {"p50": 50.0, "p90": 90.0, "p99": 99.0}
    assert percentiles([3.0]) == {"p50": 3.0, "p90": 3.0, "p99": 3.0}


def test_counts_per_second_over_the_span() -> None:
    series = PerSecond(span=10)
    series.add("accepted", 2, 100.2)
    series.add("accepted", 3, 100.9)
    series.add("accepted", 1, 103.5)
    assert series.window("accepted", 104.0, 5) == [0, 5, 0, 0, 1]
    assert series.window("accepted", 103.9, 2) == [0, 0]  # the running second is not over
    assert series.total("accepted", 104.0, 5) == 6
    assert series.window("submitted", 104.0, 3) == [0, 0, 0]
    # a lap later the old slots read as zero, not as this lap's counts
    assert series.window("accepted", 114.0, 9) == [0] * 9
    series.add("accepted", 4, 110.1)  # the slot of second 100 again
    assert series.window("accepted", 111.0, 9)[-1] == 4 and series.total("accepted", 111.0, 9) == 5
    assert series.names() == ["accepted"]


def test_samples_of_the_last_minutes() -> None:
    samples = Samples(size=3)
    for at, value in ((1.0, 0.1), (2.0, 0.2), (3.0, 0.3), (4.0, 0.4)):
        samples.add(value, at)
    assert samples.recent(4.0, 1.5) == [0.3, 0.4]
    assert samples.recent(4.0, 100) == [0.2, 0.3, 0.4]  # only the latest are kept
