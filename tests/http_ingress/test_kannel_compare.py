"""Kannel 1.4.5 itself against the bridge (tests/http_ingress/kannel_compare.py): the same
sendsms requests, the same answers, the same dlr-url requests for a delivered and a failed
message, ids and times aside. Skipped where Kannel is not installed."""

from __future__ import annotations

import pytest

from tests.http_ingress.kannel_compare import compare, kannel_installed, render

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not kannel_installed(), reason="Kannel is not installed "
                                                                "(apt-get install kannel)")]


async def test_the_bridge_answers_and_reports_as_kannel_does() -> None:
    result = await compare()
    assert result["differences"] == 0, render(result)
    assert len(result["dlr"]) == 4  # SMSC accepted + delivered, SMSC accepted + failed
    by_design = [a for a in result["answers"] if a["refused_by_design"]]
    assert by_design and all(a["ok"] for a in by_design)
    assert sum(a["same"] for a in result["answers"]) >= 25
