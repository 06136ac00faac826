"""The benches' delivery check (what it counts as lost, duplicated and unchecked), their
progress bar and their bridges' log files."""

from __future__ import annotations

import io
from collections.abc import Mapping
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge.bench.kit import Progress, child_process, delivery_check, delivery_total, log_lines


@pytest.mark.parametrize(("received", "expected", "missing", "duplicated"), [
    ([], {"a", "b"}, 2, 0),
    (["a", "b"], {"a", "b"}, 0, 0),
    (["b", "a"], {"a", "b"}, 0, 0),  # order does not matter
    (["a", "a", "b"], {"a", "b"}, 0, 1),
    (["a", "a", "a"], {"a", "b"}, 1, 2),  # a copy does not stand in for a lost message
    (["a", "x", None, "b"], {"a", "b"}, 0, 0),  # other loads' keys and untagged texts
    (["x", "x"], {"a"}, 1, 0),
])
def test_delivery_check(received: list[str | None], expected: set[str], missing: int,
                        duplicated: int) -> None:
    assert delivery_check(received, expected) == {
        "expected": len(expected), "missing": missing, "duplicated": duplicated}


@given(st.lists(st.sampled_from("abcdefgh")), st.sets(st.sampled_from("abcdef")))
def test_delivery_check_accounts_for_every_expected_copy(received: list[str],
                                                         expected: set[str]) -> None:
    """Received copies of expected keys = delivered once + duplicated; the rest is missing."""
    check = delivery_check(received, expected)
    ours = [k for k in received if k in expected]
    assert len(ours) == (check["expected"] - check["missing"]) + check["duplicated"]
    assert check["missing"] == len(expected - set(received))


@pytest.mark.parametrize(("checks", "exactly_once"), [
    ([{"expected": 3, "missing": 0, "duplicated": 0}] * 2, True),
    ([{"expected": 3, "missing": 0, "duplicated": 0}, {"expected": 3, "missing": 1,
                                                        "duplicated": 0}], False),
    ([{"expected": 3, "missing": 0, "duplicated": 1}], False),
    ([{"expected": 3, "missing": 0, "duplicated": 0}, None], False),  # a load not checked
    ([], True),
])
def test_delivery_total(checks: list[Mapping[str, int] | None], exactly_once: bool) -> None:
    total = delivery_total(checks)
    assert total["exactly_once"] is exactly_once
    assert total["expected"] == sum(c["expected"] for c in checks if c is not None)
    assert total["unchecked"] == sum(1 for c in checks if c is None)


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_draws_on_a_terminal_and_ends_the_line() -> None:
    screen = _Terminal()
    progress = Progress(3, "smtp", stream=screen)
    for _ in range(3):
        progress.advance()
    progress.close()
    text = screen.getvalue()
    assert text.startswith("\rsmtp [") and text.endswith("\n")
    last = text.rstrip("\n").split("\r")[-1]
    assert "[" + "#" * Progress.WIDTH + "]" in last and " 3/3 " in last
    assert text.count(" 3/3 ") == 1  # the last state is drawn once, not again at close


def test_progress_is_silent_off_a_terminal() -> None:
    log = io.StringIO()
    progress = Progress(2, "smtp", stream=log)
    progress.advance(2)
    progress.close()
    assert log.getvalue() == "" and progress.done == 2


async def test_a_child_logs_into_its_file_which_says_why_it_died(tmp_path: Path) -> None:
    """A bench server logs (bridge.logs' format, at the level asked) into its file, and so does
    what it prints on standard error; when it ends before it is ready, the error says why."""
    log = tmp_path / "bridge" / "bridge.log"
    code = ("import logging; from pathlib import Path; from bridge.bench.kit import log_to_file; "
            f"log_to_file(Path({str(log)!r}), 'info'); "
            "logging.getLogger('bridge.bench').debug('not at info'); "
            "logging.getLogger('bridge.bench').info('starting'); raise SystemExit('no SMSC')")
    with pytest.raises(RuntimeError, match=r"exited before it was ready \(exit 1\)") as caught:
        async with child_process("-c", code, log=log):
            pass
    assert " info bridge.bench starting" in str(caught.value) and "no SMSC" in str(caught.value)
    assert log_lines([log, tmp_path / "none.log"]) == 2
