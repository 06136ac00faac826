"""HTTP ingress benchmark: `python -m bridge.bench.http` prints a JSON summary.

Kannel's sendsms against the bridge's (/cgi-bin/sendsms) and against Kannel 1.4.5 itself where
Kannel is installed, and the bridge's single-recipient SOAP SendSms, in the same run: one
message per request, `concurrency` keep-alive connections (bridge.bench.kit.http_load), each
message counted end to end at the SMSC simulator that receives it, and each number checked to
arrive there exactly once. Every load has numbers of its own (the same text to the same number
inside the duplicate window would be a DUPLICATE, sent once). No report is asked for in any load (no dlr-mask, SOAP dlr false),
so each gateway does the same work per message.

The bridge runs in a child process, as for the SOAP bench (bridge.bench.soap's server: its
temporary SQLite store, one bind with window 50); Kannel runs as bearerbox + smsbox with
max-pending-submits 50 (bridge.bench.kannel), keeping its queue in memory where the bridge
stores every message durably before it answers. This process is the load generator and the
two simulators. The loads run in `rounds` alternating rounds (default 3); each figure is its
median round, each ratio the median of the rounds' own ratios. `cpu_us` gives each load's CPU
per message by process.

Targets: /cgi-bin/sendsms at least 0.5 times Kannel's rate and 1.2 times single-recipient
SOAP.

`noop_aiohttp`, for scale: the same sendsms requests answered with Kannel's "Accepted" by a
handler that does nothing else, on the bench bridge's side app (aiohttp, same process, same
load generator): the ceiling of the HTTP server stack on this machine. HTTP rates only.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

from bridge.bench.kannel import Kannel, installed, kannel
from bridge.bench.kit import (CpuMeter, Progress, add_log_option, child_process,
                              delivery_check, delivery_total, http_load, latency_ms,
                              median_by_key)
from bridge.bench.soap import ACCOUNT, LOG, NOOP_SENDSMS, PASSWORD, send_envelopes
from bridge.config import SimulatorConfig
from bridge.simulator import SmscSimulator

SENDSMS = "/cgi-bin/sendsms"


def _number(n: int) -> str:
    """The n-th bench recipient as the SMSC sees it (the SOAP bench's numbering)."""
    return f"4474{n % 10**8:08d}"


def sendsms_requests(host: str, port: int, count: int, *, run: str,
                     first_number: int, path: str = SENDSMS) -> list[bytes]:
    """`count` sendsms GETs, each to a number of its own."""
    head = f"{path}?username={ACCOUNT}&password={quote(PASSWORD)}&from=BENCH"
    return [(f"GET {head}&to={_number(first_number + i)}&text="
             f"{quote(f'bench {run} {i}')} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n").encode()
            for i in range(count)]


def soap_requests(host: str, port: int, count: int, *, run: str,
                  first_number: int) -> list[bytes]:
    """`count` one-recipient SendSms POSTs (no receipt asked for, as in the sendsms loads)."""
    auth = base64.b64encode(f"{ACCOUNT}:{PASSWORD}".encode()).decode()
    head = (f"POST /soap HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: text/xml; "
            f"charset=utf-8\r\nAuthorization: Basic {auth}\r\n")
    bodies = [b.replace(b"</t:text>", b"</t:text><t:dlr>false</t:dlr>")
              for b in send_envelopes(count, 1, run=run, first_number=first_number)]
    return [f"{head}Content-Length: {len(b)}\r\n\r\n".encode() + b for b in bodies]


async def _reached(sim: SmscSimulator, target: int, timeout: float = 120.0) -> int:
    deadline = time.monotonic() + timeout
    while sim.accepted < target and time.monotonic() < deadline:
        await asyncio.sleep(0.005)
    return sim.accepted


async def _measure(name: str, port: int, requests: list[bytes], sim: SmscSimulator | None,
                   numbers: set[str], concurrency: int, meter: CpuMeter) -> dict[str, Any]:
    """One load: its requests, then until the simulator has every message; the rates, the
    latencies, the delivery check and the CPU per message. Without a simulator (the no-op
    ceiling) the answers are the end."""
    count = len(requests)
    base = sim.accepted if sim is not None else 0
    before = meter.read()
    start = time.perf_counter()
    seconds, latencies, statuses = await http_load(("127.0.0.1", port), requests, concurrency,
                                                   progress=Progress(count, name))
    figures: dict[str, Any] = {"requests": count, "statuses": statuses}
    if sim is not None:
        reached = await _reached(sim, base + count) - base
        ours = sim.accepted - base
        figures["messages_at_simulator"] = reached
        figures["delivery"] = delivery_check(
            (s.destination for s in sim.submits[-ours:] if ours), numbers) \
            if ours <= len(sim.submits) else None
    else:
        reached = count
    e2e = time.perf_counter() - start
    return {**figures, "http_seconds": round(seconds, 3), "e2e_seconds": round(e2e, 3),
            "http_msgs_per_s": round(count / seconds, 1),
            "e2e_msgs_per_s": round(reached / e2e, 1),
            **{f"{q}_ms": v for q, v in latency_ms(latencies).items() if q in ("p50", "p99")},
            "cpu_us_per_msg": meter.us_per_message(before, count)}


@contextlib.asynccontextmanager
async def _kannel(directory: Path, sim_port: int) -> AsyncIterator[Kannel | None]:
    if not installed():
        yield None
        return
    async with kannel(directory, smsc_port=sim_port, user=ACCOUNT, password=PASSWORD,
                      window=50) as peer:
        yield peer


def _median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    ordered = sorted(runs, key=lambda r: float(r["e2e_msgs_per_s"]))
    return {**ordered[len(ordered) // 2], "rounds": [r["e2e_msgs_per_s"] for r in runs]}


async def bench_http(*, requests: int = 3000, concurrency: int = 16,
                     rounds: int = 3, log_level: str = "info") -> dict[str, Any]:
    """The loads in alternating rounds; the summary (see the module doc)."""
    ours = SmscSimulator(SimulatorConfig(enabled=True, port=0, receipt_delay_s=0.05))
    theirs = SmscSimulator(SimulatorConfig(enabled=True, port=0, receipt_delay_s=0.05))
    ours_port, theirs_port = await ours.start(), await theirs.start()
    runs: dict[str, list[dict[str, Any]]] = {"sendsms_bridge": [], "soap_1": [],
                                             "noop_aiohttp": []}
    try:
        with tempfile.TemporaryDirectory(prefix="http-bench-") as tmp:
            async with child_process("-m", "bridge.bench.soap", "--serve", tmp,
                                     "--smsc-port", str(ours_port), "--log-level", log_level,
                                     log=Path(tmp) / LOG) as child, \
                    _kannel(Path(tmp), theirs_port) as peer:
                port, side_port = int(child["soap_port"]), int(child["side_port"])
                pids = dict(child["pids"], **(peer.pids if peer else {}))
                meter = CpuMeter(pids)
                if peer is not None:
                    runs["sendsms_kannel"] = []
                run = f"{os.getpid()}-{int(time.time())}"
                for n, (load, (target, build, sim)) in enumerate(
                        _loads(port, peer, ours, theirs).items()):  # warm-up, not counted
                    await _measure(load, target, build(200, run + "w", 90_000_000 + 1000 * n),
                                   sim, set(), concurrency, meter)
                for r in range(rounds):
                    runs["noop_aiohttp"].append(await _measure(
                        "noop_aiohttp", side_port, sendsms_requests(
                            "127.0.0.1", side_port, requests, run=f"{run}n{r}",
                            first_number=0, path=NOOP_SENDSMS), None, set(), concurrency,
                        meter))
                    for n, (load, (target, build, sim)) in enumerate(
                            _loads(port, peer, ours, theirs).items()):
                        first = 10_000_000 * (n + 1) + r * requests
                        runs[load].append(await _measure(
                            load, target, build(requests, run, first), sim,
                            {_number(first + i) for i in range(requests)}, concurrency, meter))
    finally:
        await ours.stop()
        await theirs.stop()
    return {**_summary(runs, concurrency, rounds), "log_level": log_level}


def _loads(port: int, peer: Kannel | None, ours: SmscSimulator,
           theirs: SmscSimulator) -> dict[str, tuple[int, Any, SmscSimulator]]:
    """Each load: the port it goes to, how its requests are built, the simulator counting."""
    def sendsms_to(target: int) -> Any:
        return lambda count, run, first: sendsms_requests("127.0.0.1", target, count, run=run,
                                                          first_number=first)
    loads: dict[str, tuple[int, Any, SmscSimulator]] = {
        "sendsms_bridge": (port, sendsms_to(port), ours),
        "soap_1": (port, lambda count, run, first: soap_requests(
            "127.0.0.1", port, count, run=run, first_number=first), ours)}
    if peer is not None:
        loads["sendsms_kannel"] = (peer.sendsms_port, sendsms_to(peer.sendsms_port), theirs)
    return loads


def _summary(runs: dict[str, list[dict[str, Any]]], concurrency: int,
             rounds: int) -> dict[str, Any]:
    result: dict[str, Any] = {"concurrency": concurrency, "rounds": rounds,
                              "kannel": "sendsms_kannel" in runs}
    for name, load in runs.items():
        result[name] = _median_run(load)
    result["cpu_us"] = {name: median_by_key([r["cpu_us_per_msg"] for r in load])
                        for name, load in runs.items()}

    def ratio(other: str) -> float:
        values = sorted(float(a["e2e_msgs_per_s"]) / float(b["e2e_msgs_per_s"])
                        for a, b in zip(runs["sendsms_bridge"], runs[other]))
        return round(values[len(values) // 2], 3)

    result["delivery"] = delivery_total(r["delivery"] for name, load in runs.items()
                                        if name != "noop_aiohttp" for r in load)
    result["ratios"] = {"sendsms_vs_soap_1": ratio("soap_1"),
                        "sendsms_vs_noop_aiohttp": ratio("noop_aiohttp")}
    targets = {"sendsms_1.2x_soap_1": result["ratios"]["sendsms_vs_soap_1"] >= 1.2,
               "exactly_once": result["delivery"]["exactly_once"]}
    if result["kannel"]:
        result["ratios"]["sendsms_vs_kannel"] = ratio("sendsms_kannel")
        result["ratios"]["kannel_vs_noop_aiohttp"] = round(
            float(result["sendsms_kannel"]["e2e_msgs_per_s"])
            / float(result["noop_aiohttp"]["e2e_msgs_per_s"]), 3)
        targets["sendsms_0.5x_kannel"] = result["ratios"]["sendsms_vs_kannel"] >= 0.5
    result["targets"] = targets
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bridge.bench.http",
                                     description="HTTP ingress benchmark (prints JSON)")
    parser.add_argument("--requests", type=int, default=3000, help="requests per load a round")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds (medians)")
    add_log_option(parser)
    args = parser.parse_args(argv)
    if not 1 <= args.requests <= 100_000 or not 1 <= args.concurrency <= 1000 \
            or not 1 <= args.rounds <= 9:
        parser.error("out of range")
    result = asyncio.run(bench_http(requests=args.requests, concurrency=args.concurrency,
                                    rounds=args.rounds, log_level=args.log_level))
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
