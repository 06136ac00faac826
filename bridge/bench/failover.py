"""The outbound rate while one of two SMSCs fails every submit, beside the rate with both
healthy, in one run: `python -m bridge.bench.failover` prints a JSON summary.

What runs here is what the store process runs (bridge.runtime.outbound): a SQLite store in
a temporary directory, the real Dispatcher and SmscPool with two binds ("first" and
"second", catch-alls of equal weight: each message draws its first route, so healthy they
share the traffic) and the default health settings. The SMSCs are simulators in child
processes, three of them: two healthy, one answering every submit_sm with 0x08 (system
error). A healthy round binds "first" to a healthy one, a failing round to the failing one;
"second" is healthy in both. Rounds alternate, healthy first, each on a fresh dispatcher,
pool and store (so each failing round starts with "first" in routing and pays for finding
out).

Each round: `count` single-part messages to distinct numbers are accepted into the store
before the clock starts (held by this dispatcher, as accepted messages are), then handed to
the dispatcher at once; the round ends when the store holds every one as delivered (each
part's receipt came back from the simulator that took it). msgs/s is count over that time.
Nothing lost: every message delivered, none failed; nothing twice: the submits the SMSCs
accepted (submit_sm_resp OK, by the dispatcher's own counter) equal the count. `ratio` is
the median of the rounds' failing/healthy ratios; the issue asks for at least 0.8.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bridge.bench.kit import child_process
from bridge.config import Config, PolicyConfig, SmscConfig
from bridge.core.model import Ingress
from bridge.core.states import MessageState
from bridge.metrics import OutboundMetrics
from bridge.outbound.dispatcher import Dispatcher
from bridge.outbound.smpp.pool import SmscPool
from bridge.runtime.outbound import accepted_messages
from bridge.store.base import NewMessage, NewPart
from bridge.store.rows import accept_rows
from bridge.store.sqlite import SqliteStore

SYSTEM_ID = "bench"
PASSWORD = "bench"
MAX_COUNT = 200_000


def _smsc(name: str, port: int, window: int) -> SmscConfig:
    return SmscConfig(name=name, host="127.0.0.1", port=port, system_id=SYSTEM_ID,
                      password=PASSWORD, window=window, weight=1, response_timeout_s=30.0,
                      enquire_link_s=300.0)


def _message(round_: int, i: int, now: float) -> NewMessage:
    text = f"Fail-over bench {round_}/{i}"
    return NewMessage(
        id=f"fo-{round_}-{i}", account="bench", ingress=Ingress.SOAP,
        recipient=f"+4474{(round_ * MAX_COUNT + i) % 10**8:08d}", raw_recipient="",
        source_addr="BENCH", source_ton=5, source_npi=0, dest_ton=1, dest_npi=1, text=text,
        encoding="gsm7", data_coding=0, esm_class=0, registered_delivery=1,
        parts=(NewPart(1, 1, text.encode(), "[]"),), state=MessageState.QUEUED,
        created_at=now, send_at=None, expires_at=now + 86400, idempotency_key=None,
        dup_digest=None, dup_window_s=0, quota=0, routes=("first", "second"))


async def _round(directory: Path, round_: int, ports: tuple[int, int], count: int,
                 window: int) -> dict[str, Any]:
    config = Config(smsc=(_smsc("first", ports[0], window), _smsc("second", ports[1], window)),
                    policy=PolicyConfig())
    store = SqliteStore(directory / f"round-{round_}.db")
    await store.open()
    metrics = OutboundMetrics()
    dispatcher = Dispatcher(config, store, metrics=metrics)
    pool = SmscPool(config.smsc, on_receipt=dispatcher.on_receipt, on_mo=dispatcher.on_mo)
    dispatcher.attach(pool)
    try:
        await pool.start()
        if not await pool.wait_bound(30.0):
            raise RuntimeError("failover bench: a bind failed")
        await dispatcher.start()
        messages = [_message(round_, i, time.time()) for i in range(count)]
        held = []
        for start in range(0, count, 2000):  # accepted before the clock starts
            batch = messages[start:start + 2000]
            outcomes = await store.accept(batch, now=time.time(), owner=dispatcher.owner())
            held += accepted_messages(accept_rows(batch), outcomes)
        started = time.perf_counter()
        dispatcher.enqueue(held)
        counts = await _until_final(store, count)
        elapsed = time.perf_counter() - started
        accepted = _submits(metrics)
        health = {name: bind.health.circuit.value for name, bind in pool.binds.items()}
    finally:
        await dispatcher.stop()
        await pool.stop()
        await store.close()
    return {"msgs_per_s": round(count / elapsed, 1), "seconds": round(elapsed, 3),
            "delivered": counts.get(MessageState.DELIVERED.value, 0),
            "failed": counts.get(MessageState.FAILED.value, 0),
            "held": len(held), "submits_ok": accepted.get("0x00", 0),
            "submits_refused": sum(n for s, n in accepted.items() if s != "0x00"),
            "health": health}


async def _until_final(store: SqliteStore, count: int, timeout: float = 600.0) -> dict[str, int]:
    """Poll until every message is delivered or failed (nothing else can end a round)."""
    deadline = time.monotonic() + timeout
    while True:
        counts = await store.counts_by_state()
        done = counts.get(MessageState.DELIVERED.value, 0) + \
            counts.get(MessageState.FAILED.value, 0)
        if done >= count or time.monotonic() > deadline:
            return counts
        await asyncio.sleep(0.02)


def _submits(metrics: OutboundMetrics) -> dict[str, int]:
    """submit_sm results by status, from the dispatcher's own counter."""
    out: dict[str, int] = {}
    for family in metrics.registry.collect():
        if family.name == "sms_bridge_submits":
            for sample in family.samples:
                if sample.name.endswith("_total"):
                    status = sample.labels["status"]
                    out[status] = out.get(status, 0) + int(sample.value)
    return out


async def bench_failover(count: int = 5000, rounds: int = 3, window: int = 50,
                         receipt_delay: float = 0.05) -> dict[str, Any]:
    count = max(1, min(int(count), MAX_COUNT))
    sim = ("-m", "bridge.bench.kit", "simulator", "--system-id", SYSTEM_ID, "--password",
           PASSWORD, "--receipt-delay", str(receipt_delay))
    result: dict[str, Any] = {
        "benchmark": "outbound msgs/s with one of two SMSCs failing every submit (0x08) "
                     "beside both healthy",
        "count": count, "rounds": rounds, "window": window, "receipt_delay_s": receipt_delay,
        "python": platform.python_version(), "load_before": os.getloadavg()[0],
        "healthy": [], "one_failing": []}
    async with child_process(*sim) as healthy, child_process(*sim) as second, \
            child_process(*sim, "--error-every", "1") as failing:
        with tempfile.TemporaryDirectory() as tmp:
            for r in range(max(1, rounds)):
                result["healthy"].append(await _round(
                    Path(tmp), 2 * r, (healthy["port"], second["port"]), count, window))
                result["one_failing"].append(await _round(
                    Path(tmp), 2 * r + 1, (failing["port"], second["port"]), count, window))
    return _summary(result)


def _summary(result: dict[str, Any]) -> dict[str, Any]:
    healthy, failing = result["healthy"], result["one_failing"]
    rounds = healthy + failing
    result["healthy_msgs_per_s"] = statistics.median(r["msgs_per_s"] for r in healthy)
    result["one_failing_msgs_per_s"] = statistics.median(r["msgs_per_s"] for r in failing)
    result["ratio"] = round(statistics.median(
        f["msgs_per_s"] / h["msgs_per_s"] for h, f in zip(healthy, failing)), 3)
    result["lost"] = sum(result["count"] - r["delivered"] for r in rounds)
    result["duplicated"] = sum(r["submits_ok"] - result["count"] for r in rounds)
    result["ok"] = result["ratio"] >= 0.8 and result["lost"] == 0 and \
        result["duplicated"] == 0
    result["load_after"] = os.getloadavg()[0]
    return result


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bridge.bench.failover",
                                     description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=5000, help="messages per round")
    parser.add_argument("--rounds", type=int, default=3, help="healthy/failing round pairs")
    parser.add_argument("--window", type=int, default=50)
    parser.add_argument("--receipt-delay", type=float, default=0.05)
    args = parser.parse_args(argv)
    print(json.dumps(asyncio.run(bench_failover(args.count, args.rounds, args.window,
                                                args.receipt_delay)), indent=2))


if __name__ == "__main__":
    main()
