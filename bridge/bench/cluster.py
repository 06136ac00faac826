"""Several instances on one PostgreSQL: one instance, then two, on one database and one SMSC.

    python -m bridge.bench.cluster [--calls 60] [--recipients 100] [--rounds 3]
                                   [--concurrency 16] [--url POSTGRESQL_URL]

Each instance is a whole bridge in processes of its own (the bench bridge of
bridge.bench.soap: ingress process and store process), named apart (`[store] instance`), on
the PostgreSQL server bridge.bench.pg provides (`--url`, $SMS_BRIDGE_BENCH_PG, else a
throwaway durable cluster). Two clusters run side by side, each on a database of its own:
`one` (instance a) and `two` (instances b and c); all three bind to one SMSC simulator in this
process, which is also the load generator. A round loads `one`, then `two`, with the same
SendSms calls (`recipients` numbers each, every number its own); `two`'s calls alternate
between its instances over `concurrency` connections in all. msgs/s is end to end: from the
first call until the simulator has every message (each checked exactly once).

On two cores the instances, PostgreSQL, the simulator and the load share the machine, so the
point of `two_vs_one` (target: at least 1) is that two instances do not collapse from
contention (locks, claims, leases), not that they scale. CPU per message by process tells
what each costs (`instances`: an instance's ingress and store processes per message it
took; `cpu_us_per_msg`: every process per message of the cluster, "postgres" the server's),
and `postgresql_feeds_instances` what that means for one PostgreSQL server (see
`feeds_instances`). Prints one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from bridge.bench.kit import (CpuMeter, add_log_option, child_process, delivery_check,
                              delivery_total, http_load, median_by_key)
from bridge.bench.soap import ACCOUNT, LOG, PASSWORD, _number, _requests, send_envelopes
from bridge.bench.stores import POSTGRESQL, Stores, stores
from bridge.config import SimulatorConfig
from bridge.simulator import SmscSimulator

#: The clusters and their instances' names, in the order a round loads them.
CLUSTERS = {"one": ("a",), "two": ("b", "c")}


class _Cluster:
    """Instances on one database: their ports and CPU meters, and what each round measured."""

    def __init__(self, name: str, ready: Mapping[str, dict[str, Any]],
                 extra_cpu: Mapping[str, Callable[[], float | None]]) -> None:
        self.name = name
        self.instances = list(ready)
        self.ports = {i: ("127.0.0.1", int(info["soap_port"])) for i, info in ready.items()}
        self.meter = CpuMeter({f"{i}.{proc}": pid for i, info in ready.items()
                               for proc, pid in info["pids"].items()}, extra_cpu)
        self.runs: list[dict[str, Any]] = []


async def _start(stack: contextlib.AsyncExitStack, made: Stores, sim_port: int,
                 log_level: str) -> dict[str, _Cluster]:
    clusters = {}
    for name, instances in CLUSTERS.items():
        url = await made.fresh(POSTGRESQL, f"cluster_{name}")
        ready = {}
        for instance in instances:
            folder = made.directory / instance
            folder.mkdir()
            ready[instance] = await stack.enter_async_context(child_process(
                "-m", "bridge.bench.soap", "--serve", str(folder), "--smsc-port",
                str(sim_port), "--store-url", url, "--instance", instance,
                "--log-level", log_level, log=folder / LOG))
        clusters[name] = _Cluster(name, ready, made.cpu(POSTGRESQL))
    return clusters


async def _load(cluster: _Cluster, sim: SmscSimulator, *, calls: int, recipients: int,
                concurrency: int, first: int, tag: str) -> dict[str, Any]:
    """`calls` SendSms over `concurrency` connections shared among the cluster's instances
    (call k to instance k mod n); end to end until the simulator has every message."""
    auth = "Basic " + base64.b64encode(f"{ACCOUNT}:{PASSWORD}".encode()).decode()
    headers = {"Content-Type": "text/xml; charset=utf-8", "Authorization": auth}
    bodies = send_envelopes(calls, recipients, run=tag, first_number=first)
    n = len(cluster.instances)
    shares = {i: _requests(cluster.ports[i], "/soap", bodies[k::n], headers)
              for k, i in enumerate(cluster.instances)}
    base, total = sim.accepted, calls * recipients
    before = cluster.meter.read()
    started = time.perf_counter()
    answers = await asyncio.gather(*(http_load(cluster.ports[i], shares[i],
                                               max(1, concurrency // n))
                                     for i in cluster.instances))
    http_s = time.perf_counter() - started
    await sim.wait_for_submits(base + total, timeout=300)
    e2e_s = time.perf_counter() - started
    await sim.wait_until(lambda: sim.receipts_sent >= sim.accepted
                         and sim.unacked_deliveries == 0, timeout=120)
    cpu = cluster.meter.us_per_message(before, total)
    statuses: dict[int, int] = {}
    for _, _, counted in answers:
        for status, count in counted.items():
            statuses[status] = statuses.get(status, 0) + count
    ours = sim.accepted - base
    return {"messages": total, "statuses": statuses, "at_simulator": ours,
            "http_msgs_per_s": round(total / http_s, 1),
            "e2e_msgs_per_s": round(ours / e2e_s, 1), "cpu_us_per_msg": cpu,
            "delivery": delivery_check((s.destination for s in sim.submits[-ours:]),
                                       {_number(first + k) for k in range(total)})
            if 0 < ours <= len(sim.submits) else None}


def feeds_instances(instance_us: float, postgres_us: float) -> float:
    """How many instances one PostgreSQL server could feed, from CPU per message.

    An instance whose ingress and store processes spend `instance_us` µs of CPU on a message
    moves at most C·1e6 / instance_us msgs/s on C cores; a PostgreSQL server spending
    `postgres_us` µs on a message takes at most C·1e6 / postgres_us msgs/s on as many cores.
    So a server as large as one instance's machine feeds

        instances = (C·1e6 / postgres_us) / (C·1e6 / instance_us) = instance_us / postgres_us

    instances running flat out (k times the cores: k times as many). A ceiling from CPU
    alone: it leaves out the server's WAL flushes (fsync per commit; group commit shares
    them), lock waits between instances, and the network, which on one machine is loopback.
    """
    return round(instance_us / postgres_us, 2) if postgres_us > 0 else 0.0


def _instance_cpu(cluster: _Cluster, cpu: Mapping[str, float]) -> dict[str, dict[str, float]]:
    """Each instance's processes per message IT took (the cluster's messages split evenly
    among its instances: every n-th call went to each)."""
    n = len(cluster.instances)
    out = {}
    for i in cluster.instances:
        own = {proc: round(n * us, 1) for key, us in cpu.items() if key.startswith(f"{i}.")
               for proc in [key.split(".", 1)[1]]}
        own["total"] = round(sum(own.values()), 1)
        out[i] = own
    return out


def _summary(cluster: _Cluster) -> dict[str, Any]:
    runs = cluster.runs
    ordered = sorted(runs, key=lambda r: r["e2e_msgs_per_s"])
    cpu = median_by_key([r["cpu_us_per_msg"] for r in runs])
    instances = _instance_cpu(cluster, cpu)
    instance_us = statistics.fmean(v["total"] for v in instances.values())
    postgres_us = cpu.get("postgres", 0.0)
    return {
        "instances": cluster.instances,
        "e2e_msgs_per_s": ordered[len(ordered) // 2]["e2e_msgs_per_s"],
        "e2e_samples": [r["e2e_msgs_per_s"] for r in runs],
        "http_msgs_per_s": statistics.median(r["http_msgs_per_s"] for r in runs),
        "cpu_us_per_msg": cpu,
        "instance_cpu_us_per_own_msg": instances,
        "postgresql_feeds_instances": feeds_instances(instance_us, postgres_us),
        "delivery": delivery_total(r["delivery"] for r in runs),
        "statuses": {str(k): v for k, v in sorted(_sum_statuses(runs).items())},
    }


def _sum_statuses(runs: Sequence[Mapping[str, Any]]) -> dict[int, int]:
    total: dict[int, int] = {}
    for run in runs:
        for status, count in run["statuses"].items():
            total[status] = total.get(status, 0) + count
    return total


async def bench_cluster(*, calls: int = 60, recipients: int = 100, concurrency: int = 16,
                        rounds: int = 3, url: str | None = None,
                        log_level: str = "info") -> dict[str, Any]:
    """Run the clusters (see the module docstring) and return the summary."""
    calls, recipients = max(1, min(calls, 10_000)), max(1, min(recipients, 1000))
    rounds = max(1, min(rounds, 9))
    sim = SmscSimulator(SimulatorConfig(enabled=True, port=0, receipt_delay_s=0.05))
    sim_port = await sim.start()
    try:
        with tempfile.TemporaryDirectory(prefix="cluster-bench-") as tmp:
            async with stores((POSTGRESQL,), Path(tmp), url) as made, \
                    contextlib.AsyncExitStack() as stack:
                clusters = await _start(stack, made, sim_port, log_level)
                await _rounds(clusters, sim, calls=calls, recipients=recipients,
                              concurrency=concurrency, rounds=rounds)
                described = made.describe()
    finally:
        await sim.stop()
    return {**_result(clusters, described, calls=calls, recipients=recipients,
                      concurrency=concurrency, rounds=rounds), "log_level": log_level}


async def _rounds(clusters: Mapping[str, _Cluster], sim: SmscSimulator, *, calls: int,
                  recipients: int, concurrency: int, rounds: int) -> None:
    """A warm-up per cluster, then the rounds: `one`, then `two`, each with numbers of its
    own, so that noise from the machine falls on both alike."""
    per_load = calls * recipients
    for c, cluster in enumerate(clusters.values()):
        await _load(cluster, sim, calls=max(2, calls // 10), recipients=recipients,
                    concurrency=concurrency, first=90_000_000 + c * 1_000_000, tag="warm")
    for r in range(rounds):
        for c, cluster in enumerate(clusters.values()):
            first = 10_000_000 + (r * len(clusters) + c) * per_load
            cluster.runs.append(await _load(cluster, sim, calls=calls, recipients=recipients,
                                            concurrency=concurrency, first=first,
                                            tag=f"{cluster.name}-{r}"))


def _result(clusters: Mapping[str, _Cluster], described: Mapping[str, Any], *, calls: int,
            recipients: int, concurrency: int, rounds: int) -> dict[str, Any]:
    one, two = clusters["one"], clusters["two"]
    ratios = [b["e2e_msgs_per_s"] / a["e2e_msgs_per_s"] for a, b in zip(one.runs, two.runs)]
    ratio = round(statistics.median(ratios), 3)
    summaries = {name: _summary(cluster) for name, cluster in clusters.items()}
    once = all(s["delivery"]["exactly_once"] for s in summaries.values())
    return {"calls_per_load": calls, "recipients_per_call": recipients,
            "concurrency": concurrency, "rounds": rounds, **described, **summaries,
            "two_vs_one": ratio, "two_vs_one_samples": [round(v, 3) for v in ratios],
            "targets": {"two_at_least_one": ratio >= 1.0, "exactly_once": once}}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bridge.bench.cluster", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=60, help="SendSms calls per load")
    parser.add_argument("--recipients", type=int, default=100, help="numbers per call")
    parser.add_argument("--concurrency", type=int, default=16,
                        help="connections in all (shared among a cluster's instances)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--url", default=None, metavar="POSTGRESQL_URL",
                        help="a PostgreSQL server on which the bench may create and drop "
                             "databases (else $SMS_BRIDGE_BENCH_PG, else a throwaway cluster)")
    add_log_option(parser)
    args = parser.parse_args(argv)
    print(json.dumps(asyncio.run(bench_cluster(
        calls=args.calls, recipients=args.recipients, concurrency=args.concurrency,
        rounds=args.rounds, url=args.url, log_level=args.log_level)), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
