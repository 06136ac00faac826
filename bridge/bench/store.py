"""Accept throughput of the SQLite store with durable group commit.

    python -m bridge.bench.store [--quick] [--messages N] [--producers N]

Figures, each on a fresh database in a temporary directory (removed afterwards), through the
store the bridge uses (StoreProcess: SQLite in a process of its own):
- single: `producers` concurrent asyncio tasks, each awaiting accept() of ONE message at a time
  (what many SMTP/SOAP clients sending one recipient each look like);
- batch100: the same producers, each awaiting accept() of 100 messages at a time.
  Every message carries a duplicate digest and the account has a quota, so the checks run.
- in_process_single: `single` against SqliteStore in this process, for comparison (its writer
  statistics give `commits` and `mean_batch`).
- pipeline: the whole bridge without an ingress protocol. 16 tasks call Service.submit with 100
  recipients each (normalise, plan, policy, durable accept); the dispatcher sends to an SMSC
  simulator in a child process (window 50, receipts on). `accepts_per_s` counts until the last
  accept returned, `submitted_per_s` until every message was acknowledged by the SMSC and that
  acknowledgement was durably recorded.
Prints JSON.

    python -m bridge.bench.store --cpu [--messages N] [--producers N (20)] [--repeat N (3)]

CPU per message of the full store lifecycle the bridge drives, through StoreProcess: accept,
then record_submitted (hex id, `auto` keys, as the dispatcher does after submit_sm_resp), then
record_receipt (decimal id, DELIVRD, as the dispatcher does for a delivery report). Two shapes:
`single` (one message per accept, `producers` concurrent callers) and `batch100` (accepts of
100 messages, then their submits and receipts issued together). CPU is counted from after the
store opened to after the last write was durable: the child's utime+stime from /proc, the
parent's getrusage(RUSAGE_SELF) (the client's pickling and answer reading, plus this driver).
CPU time, not wall time, so that other load on the machine does not change the figure; each
shape runs `repeat` times and the minimum is kept.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from bridge.bench.kit import CpuMeter, process_cpu_s
from bridge.bench.stores import (POSTGRESQL, SQLITE, Stores, add_store_options, chosen_kinds,
                                 spec_of, stores)
from bridge.core.model import Ingress
from bridge.core.receipts import smsc_id_keys
from bridge.core.states import MessageState, PartState
from bridge.store.base import NewMessage, NewPart
from bridge.runtime.process import StoreProcess
from bridge.store.postgres import PostgresStore
from bridge.store.sqlite import SqliteStore

_PART = NewPart(1, 1, b"Your code is 123456. It expires in 10 minutes.", "[]")


def _message(i: int, now: float) -> NewMessage:
    return NewMessage(
        id=f"bench-{i:08d}", account="bench", ingress=Ingress.SOAP, recipient=f"+4477009{i:05d}",
        raw_recipient=f"077009{i:05d}", source_addr="BENCH", source_ton=5, source_npi=0,
        dest_ton=1, dest_npi=1, text="Your code is 123456. It expires in 10 minutes.",
        encoding="gsm7", data_coding=0, esm_class=0, registered_delivery=1, parts=(_PART,),
        state=MessageState.QUEUED, created_at=now, send_at=None, expires_at=now + 86400,
        idempotency_key=None, dup_digest=f"digest-{i}", dup_window_s=60.0, quota=10**9)


def _open(url: str, in_process: bool) -> SqliteStore | PostgresStore | StoreProcess:
    """The store a `[store] url` names: in this process, or in a store process of its own
    (as the bridge runs it)."""
    spec = spec_of(url)
    return spec.build() if in_process else StoreProcess(spec)


async def _run(url: str, *, total: int, producers: int, per_call: int, in_process: bool,
               extra_cpu: Mapping[str, Callable[[], float | None]]) -> dict[str, Any]:
    store = _open(url, in_process)
    await store.open()
    try:
        now = time.time()
        calls = total // per_call
        messages = [_message(i, now) for i in range(calls * per_call)]
        batches = [messages[i * per_call:(i + 1) * per_call] for i in range(calls)]
        queue = iter(batches)

        async def producer() -> int:
            accepted = 0
            for batch in queue:  # shared iterator: producers take the next call's batch
                outcomes = await store.accept(batch, now=now)
                accepted += sum(1 for o in outcomes if o.status == "accepted")
            return accepted

        pid = store.pid if isinstance(store, StoreProcess) else None
        meter = CpuMeter({"store": pid} if pid is not None else {}, extra_cpu)
        before = meter.read()
        started = time.perf_counter()
        accepted = sum(await asyncio.gather(*(producer() for _ in range(producers))))
        elapsed = time.perf_counter() - started
        cpu = meter.us_per_message(before, accepted)
        stats = store.stats() if not isinstance(store, StoreProcess) else {}
    finally:
        await store.close()
    if accepted != calls * per_call:
        raise RuntimeError(f"only {accepted} of {calls * per_call} accepted")
    result: dict[str, Any] = {"messages": accepted, "seconds": round(elapsed, 3),
                              "accepts_per_s": round(accepted / elapsed),
                              "cpu_us_per_msg": cpu}
    if stats:
        result["commits"] = stats["commits"]
        result["mean_batch"] = round(stats["ops"] / max(1, stats["commits"]), 1)
    return result


def _pipeline_config(url: str, directory: Path, smsc_port: int) -> Any:
    from bridge.config import parse_config

    return parse_config({
        "smtp": {"listen": "127.0.0.1:0"}, "soap": {"listen": "127.0.0.1:0"},
        "store": {"url": url},
        "smsc": [{"name": "sim", "host": "127.0.0.1", "port": smsc_port,
                  "system_id": "bridge", "password": "secret", "window": 50}],
        "policy": {"duplicate_window_s": 0},
        "account": [{"name": "bench", "password": "bench", "senders": ["BENCH"],
                     "default_sender": "BENCH", "rate_per_s": 0}],
    }, base_dir=directory)


async def _pipeline(url: str, directory: Path, *, total: int, tasks: int = 16,
                    per_call: int = 100,
                    extra_cpu: Mapping[str, Callable[[], float | None]]) -> dict[str, Any]:
    from bridge.runtime.app import Bridge
    from bridge.bench.kit import child_process
    from bridge.intake.service import Recipient, SubmitRequest

    async with child_process("-m", "bridge.bench.kit", "simulator") as simulator:
        bridge = Bridge(_pipeline_config(url, directory, simulator["port"]))
        await bridge.start()
        try:
            assert bridge.service is not None and bridge.store.pid is not None
            await bridge.wait_bound(10.0)
            service, store = bridge.service, bridge.store
            # "load" is this process: the producers and the bridge's Service together.
            meter = CpuMeter({"store": bridge.store.pid, "simulator": simulator["pid"]},
                             extra_cpu)

            async def queue_depth() -> int:
                return (await store.outbound_status()).queue_depth
            calls = iter(range(total // per_call))

            async def producer() -> int:
                accepted = 0
                for call in calls:
                    first = 10_000_000 + call * per_call
                    results = await service.submit(SubmitRequest(
                        account="bench", ingress=Ingress.SOAP, text=f"pipeline bench {call}",
                        recipients=tuple(Recipient(f"+4474{first + k:08d}")
                                         for k in range(per_call))))
                    accepted += sum(1 for r in results if r.status == "accepted")
                return accepted

            before = meter.read()
            started = time.perf_counter()
            accepted = sum(await asyncio.gather(*(producer() for _ in range(tasks))))
            accepted_after = time.perf_counter() - started
            deadline = time.monotonic() + 300
            while await queue_depth() > 0 and time.monotonic() < deadline:
                await asyncio.sleep(0.005)
            submitted_after = time.perf_counter() - started
            cpu = meter.us_per_message(before, accepted)
            left = await queue_depth()
        finally:
            await bridge.stop()
    if left or accepted != total // per_call * per_call:
        raise RuntimeError(f"accepted {accepted}, {left} still queued after the deadline")
    return {"messages": accepted, "tasks": tasks, "recipients_per_call": per_call,
            "accepts_per_s": round(accepted / accepted_after),
            "submitted_per_s": round(accepted / submitted_after),
            "seconds": round(submitted_after, 3), "cpu_us_per_msg": cpu}


#: The shapes of a run, in the order each round runs them (every store kind in turn).
_SHAPES = ("single", "batch100", "in_process_single", "pipeline")
_DURABILITY = {SQLITE: "WAL, synchronous=FULL (fsync per commit)",
               POSTGRESQL: "fsync on, synchronous_commit on (WAL flushed per commit)"}


async def _shape(stores: Stores, kind: str, shape: str, round_: int, *, total: int,
                 producers: int) -> dict[str, Any]:
    url = await stores.fresh(kind, f"{shape}_{round_}")
    extra = stores.cpu(kind)
    if shape == "pipeline":
        return await _pipeline(url, stores.directory / f"pipeline-{kind}-{round_}",
                               total=total, extra_cpu=extra)
    return await _run(url, total=total, producers=producers,
                      per_call=100 if shape == "batch100" else 1,
                      in_process=shape == "in_process_single", extra_cpu=extra)


def _median_run(runs: list[dict[str, Any]], key: str) -> dict[str, Any]:
    """The round whose `key` is the median, with every round's value beside it (one round:
    that round, as before there were rounds)."""
    ordered = sorted(runs, key=lambda r: float(r[key]))
    chosen = dict(ordered[len(ordered) // 2])
    if len(runs) > 1:
        chosen["samples"] = [r[key] for r in runs]
    return chosen


def _summary(kind: str, runs: dict[str, list[dict[str, Any]]], *, total: int,
             producers: int) -> dict[str, Any]:
    """One store kind's figures, as the bench has always printed them: each shape's median
    round."""
    single = _median_run(runs["single"], "accepts_per_s")
    batch = _median_run(runs["batch100"], "accepts_per_s")
    local = _median_run(runs["in_process_single"], "accepts_per_s")
    pipeline = _median_run(runs["pipeline"], "submitted_per_s")
    return {
        "accepts_per_s_single": single["accepts_per_s"],
        "accepts_per_s_batch100": batch["accepts_per_s"],
        "accepts_per_s_in_process_single": local["accepts_per_s"],
        "messages": total, "producers": producers, "durability": _DURABILITY[kind],
        "pipeline_accepts_per_s": pipeline["accepts_per_s"],
        "pipeline_submitted_per_s": pipeline["submitted_per_s"],
        "single": single, "batch100": batch, "in_process_single": local, "pipeline": pipeline,
    }


def _ratios(runs: dict[str, dict[str, list[dict[str, Any]]]]) -> dict[str, float]:
    """PostgreSQL over SQLite for each figure: the median of the rounds' own ratios (a round
    runs both stores back to back, so a ratio sees one machine state)."""
    figures = {"single": "accepts_per_s", "batch100": "accepts_per_s",
               "in_process_single": "accepts_per_s", "pipeline_accepts": "accepts_per_s",
               "pipeline_submitted": "submitted_per_s"}
    out = {}
    for name, key in figures.items():
        shape = "pipeline" if name.startswith("pipeline") else name
        values = [p[key] / s[key] for p, s in zip(runs[POSTGRESQL][shape], runs[SQLITE][shape])]
        out[name] = round(statistics.median(values), 3)
    return out


async def _bench(*, kinds: Sequence[str], url: str | None, total: int, producers: int,
                 rounds: int) -> dict[str, Any]:
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {
        kind: {shape: [] for shape in _SHAPES} for kind in kinds}
    with tempfile.TemporaryDirectory(prefix="bridge-store-bench-") as tmp:
        async with stores(kinds, Path(tmp), url) as made:
            for round_ in range(rounds):
                for shape in _SHAPES:
                    for kind in kinds:
                        runs[kind][shape].append(await _shape(
                            made, kind, shape, round_, total=total, producers=producers))
            described = made.describe()
    summaries = {kind: _summary(kind, runs[kind], total=total, producers=producers)
                 for kind in kinds}
    if len(kinds) == 1:
        return {**summaries[kinds[0]], "store": kinds[0], "rounds": rounds,
                **_pg_targets(summaries), **described}
    ratios = _ratios(runs)
    return {**described, "rounds": rounds, **summaries, "postgresql_vs_sqlite": ratios,
            **_pg_targets(summaries, ratios)}


def _pg_targets(summaries: Mapping[str, dict[str, Any]],
                ratios: Mapping[str, float] | None = None) -> dict[str, Any]:
    """Issue 17's targets for durable accepts on PostgreSQL (one message per call, as many
    SMTP and SOAP clients send): 5,000/s, and half of SQLite's in the same run."""
    if POSTGRESQL not in summaries:
        return {}
    targets = {"postgresql_single_5000_per_s":
               summaries[POSTGRESQL]["accepts_per_s_single"] >= 5000}
    if ratios is not None:
        targets["postgresql_single_vs_sqlite_0.5"] = ratios["single"] >= 0.5
    return {"targets": targets}


def _own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def _lifecycle(url: str, *, total: int, producers: int, per_call: int,
                     in_process: bool = False,
                     extra_cpu: Mapping[str, Callable[[], float | None]]) -> dict[str, Any]:
    """accept → record_submitted → record_receipt for `total` messages; CPU µs per message."""
    store = _open(url, in_process)
    await store.open()
    try:
        now = time.time()
        calls = total // per_call
        messages = [_message(i, now) for i in range(calls * per_call)]
        # The simulator's ids: hex in submit_sm_resp, decimal in the receipt; the bind's
        # id_format is "auto" (the default), so both carry every plausible key.
        smsc_ids = [f"{0x5A000000 + i:X}" for i in range(len(messages))]
        submit_keys = [smsc_id_keys(s, "auto") for s in smsc_ids]
        receipt_keys = [smsc_id_keys(str(int(s, 16)), "auto") for s in smsc_ids]
        batches = iter(range(calls))

        async def producer() -> int:
            delivered = 0
            for call in batches:
                first = call * per_call
                batch = messages[first:first + per_call]
                outcomes = await store.accept(batch, now=now)
                assert all(o.status == "accepted" for o in outcomes), outcomes
                recorded = [store.record_submitted(
                    m.id, 1, smsc="sim", smsc_id=smsc_ids[first + k],
                    id_keys=submit_keys[first + k], at=now + 1) for k, m in enumerate(batch)]
                await asyncio.gather(*recorded)
                receipts = await asyncio.gather(*(store.record_receipt(
                    smsc="sim", id_keys=receipt_keys[first + k], part_state=PartState.DELIVERED,
                    stat="DELIVRD", err="000", at=now + 2) for k in range(len(batch))))
                delivered += sum(1 for r in receipts if r.message_state is MessageState.DELIVERED)
            return delivered

        pid = store.pid if isinstance(store, StoreProcess) else None
        child_before = process_cpu_s(pid) if pid is not None else 0.0
        extra = CpuMeter({}, extra_cpu)
        extra_before = extra.read()
        own_before = _own_cpu()
        started = time.perf_counter()
        delivered = sum(await asyncio.gather(*(producer() for _ in range(producers))))
        await store.flush()
        elapsed = time.perf_counter() - started
        own_cpu = _own_cpu() - own_before
        child_cpu = process_cpu_s(pid) - child_before if pid is not None else 0.0
        others = extra.us_per_message(extra_before, calls * per_call)
    finally:
        await store.close()
    if delivered != calls * per_call:
        raise RuntimeError(f"only {delivered} of {calls * per_call} delivered")
    n = max(1, delivered)
    result: dict[str, Any] = {"messages": delivered,
                              "parent_cpu_us_per_msg": round(own_cpu / n * 1e6, 1),
                              "lifecycles_per_s": round(n / elapsed)}
    if pid is not None:
        result["child_cpu_us_per_msg"] = round(child_cpu / n * 1e6, 1)
    for name in extra_cpu:
        if name in others:
            result[f"{name}_cpu_us_per_msg"] = others[name]
    return result


async def _cpu(*, kinds: Sequence[str], url: str | None, total: int, producers: int,
               repeat: int) -> dict[str, Any]:
    shapes = (("single", 1, False), ("batch100", 100, False), ("in_process_single", 1, True))
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {kind: {} for kind in kinds}
    with tempfile.TemporaryDirectory(prefix="bridge-store-cpu-") as tmp:
        async with stores(kinds, Path(tmp), url) as made:
            for r in range(repeat):
                for name, per_call, in_process in shapes:
                    for kind in kinds:
                        runs[kind].setdefault(name, []).append(await _lifecycle(
                            await made.fresh(kind, f"cpu_{name}_{r}"), total=total,
                            producers=producers, per_call=per_call, in_process=in_process,
                            extra_cpu=made.cpu(kind)))
            described = made.describe()
    head: dict[str, Any] = {"messages": total, "producers": producers, "repeat": repeat,
                            "taken": "minimum over the repeats, per figure (rates: maximum)"}
    by_kind = {kind: {name: {key: (max if key.endswith("_per_s") else min)(
        run[key] for run in shape_runs) for key in shape_runs[0]}
        for name, shape_runs in runs[kind].items()} for kind in kinds}
    if len(kinds) == 1:
        return {**head, **by_kind[kinds[0]], "store": kinds[0], **described}
    return {**head, **described, **by_kind}


def cpu_result(*, messages: int = 20_000, producers: int = 20, repeat: int = 3,
               kinds: Sequence[str] = (SQLITE,), url: str | None = None) -> dict[str, Any]:
    """CPU µs per message of the store lifecycle (see the module docstring)."""
    return asyncio.run(_cpu(kinds=kinds, url=url, total=max(100, min(messages, 1_000_000)),
                            producers=producers, repeat=max(1, repeat)))


def main_result(quick: bool = False, *, messages: int | None = None, producers: int = 200,
                kinds: Sequence[str] = (SQLITE,), url: str | None = None,
                rounds: int = 1) -> dict[str, Any]:
    """Entry point for `sms-bridge bench store` (bounded counts; temp files and databases
    removed)."""
    total = messages if messages is not None else (2_000 if quick else 20_000)
    total = max(100, min(total, 1_000_000))
    return asyncio.run(_bench(kinds=kinds, url=url, total=total, producers=producers,
                              rounds=max(1, min(rounds, 9))))


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bridge.bench.store", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="2,000 messages instead of 20,000")
    parser.add_argument("--messages", type=int, default=None)
    parser.add_argument("--producers", type=int, default=None,
                        help="concurrent callers (default 200; 20 with --cpu, where commits of "
                             "a few operations each resemble a bridge at ~750 msgs/s)")
    parser.add_argument("--rounds", type=int, default=1,
                        help="rounds of every shape on every store (medians; samples listed)")
    parser.add_argument("--cpu", action="store_true",
                        help="CPU µs per message of accept → submitted → receipt instead")
    parser.add_argument("--repeat", type=int, default=3, help="runs per --cpu figure (min kept)")
    add_store_options(parser)
    args = parser.parse_args(argv)
    kinds = chosen_kinds(args)
    if args.cpu:
        print(json.dumps(cpu_result(messages=args.messages or 20_000,
                                    producers=args.producers or 20, repeat=args.repeat,
                                    kinds=kinds, url=args.url), indent=2))
        return
    print(json.dumps(main_result(args.quick, messages=args.messages,
                                 producers=args.producers or 200, kinds=kinds, url=args.url,
                                 rounds=args.rounds), indent=2))


if __name__ == "__main__":
    main()
