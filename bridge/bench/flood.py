"""The subscriber flood limit's cost as the number of subscribers inside its window grows
(issue: a bulk campaign to more than 200,000 distinct numbers inside 30 s rebuilt the whole
table on every message). Prints JSON: microseconds per message for 1,000 … 1,000,000
distinct subscribers inside the window, for the ledger the stores use
(bridge.core.policy.FloodLedger) and for the old prune-by-rebuild, in the same run.

    python -m bridge.bench.flood [--max 1000000]
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable, Sequence

from bridge.core.policy import FloodLedger, FloodRun, flood_check

GAP_S = 30.0
FLOOD_MAX = 50
#: The old table's rebuild threshold.
OLD_PRUNE_ABOVE = 200_000


def ledger_run(n: int) -> float:
    """µs per message for `n` distinct subscribers, all inside the window."""
    ledger = FloodLedger()
    return _timed(n, lambda subscriber, now: _ledger_step(ledger, subscriber, now))


def _ledger_step(ledger: FloodLedger, subscriber: str, now: float) -> None:
    ok, run = flood_check(ledger.get(subscriber), now=now, flood_max=FLOOD_MAX, gap_s=GAP_S)
    if ok:
        ledger.put(subscriber, run, now=now, gap_s=GAP_S)


def old_run(n: int) -> float:
    """The same with the dict the service kept before: pruned by a comprehension over the
    whole table whenever it held more than OLD_PRUNE_ABOVE runs."""
    table: dict[str, FloodRun] = {}

    def step(subscriber: str, now: float) -> None:
        nonlocal table
        ok, run = flood_check(table.get(subscriber), now=now, flood_max=FLOOD_MAX, gap_s=GAP_S)
        if not ok:
            return
        if len(table) > OLD_PRUNE_ABOVE:
            horizon = now - GAP_S
            table = {k: v for k, v in table.items() if v.last >= horizon}
        table[subscriber] = run

    return _timed(n, step, cap_s=20.0)


def _timed(n: int, step: Callable[[str, float], None], cap_s: float = 120.0) -> float:
    """Messages to n distinct subscribers within one window (a bulk campaign); stops early
    (bounded) when a slow form would take longer than `cap_s`, and reports what it saw."""
    spacing = GAP_S / (2 * n)  # every message inside the window
    started = time.perf_counter()
    done = 0
    for i in range(n):
        step(f"+4474{i:08d}", i * spacing)
        done = i + 1
        if done % 10_000 == 0 and time.perf_counter() - started > cap_s:
            break
    return (time.perf_counter() - started) / done * 1e6


def bench(sizes: Sequence[int]) -> dict[str, object]:
    rows = []
    for n in sizes:
        rows.append({"distinct_subscribers": n, "ledger_us_per_msg": round(ledger_run(n), 3),
                     "old_table_us_per_msg": round(old_run(n), 3)})
    first, last = rows[0], rows[-1]
    return {"benchmark": "subscriber flood limit, cost per message by subscribers in window",
            "gap_s": GAP_S, "runs": rows,
            "ledger_growth": round(float(str(last["ledger_us_per_msg"]))
                                   / float(str(first["ledger_us_per_msg"])), 2),
            "old_table_growth": round(float(str(last["old_table_us_per_msg"]))
                                      / float(str(first["old_table_us_per_msg"])), 2)}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bridge.bench.flood", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--max", type=int, default=1_000_000,
                        help="the largest number of distinct subscribers (10 … 10,000,000)")
    args = parser.parse_args(argv)
    top = max(10, min(args.max, 10_000_000))
    sizes = [n for n in (1_000, 10_000, 100_000, 1_000_000, 10_000_000) if n <= top] or [top]
    print(json.dumps(bench(sizes), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
