"""submit_sm/s of `SmppBind` against the SMSC simulator running in a separate process.

    python -m bridge.bench.smpp [--count N] [--windows 1,10,50] [--no-receipts]
    python -m bridge.bench.smpp --dispatch [--count N] [--runs 3] [--window 50]

For each window: `count` submits through one transceiver `SmppBind` (exactly `window`
concurrent submitters, so the window is always full), timed until every submit_sm_resp *and*
(with receipts) every receipt has been handed to the receipt handler. Then a "bare loop" on
the same simulator: bind, encode `count` submit_sm with the same codec and write them as fast
as the socket takes them, read responses and answer receipts, no window or future bookkeeping.
`client_vs_bare` is the client's window-`max(windows)` rate over the bare loop's rate.

The simulator runs in its own process (`python -m bridge.bench.kit simulator`) so the client
and the server each get a core.

`--dispatch` measures CPU, not rate: the real `Dispatcher` + `SmscPool` (wired as in
bridge/app.py, one transceiver bind, window 50 like the SOAP bench) against the simulator in a
child process, with `InstantStore` (an in-memory fake whose calls complete on the next loop
iteration, the way the process store answers a batch), fed `count` accepted single-part
messages to distinct numbers through `dispatcher.enqueue`. Reported per message, from the first
enqueue until every submit_sm_resp is recorded and every receipt applied: the bridge process's
CPU (`time.process_time()`) and the simulator process's CPU (its /proc schedstat), min of
`runs` runs each. Messages are built before the clock starts. Other load on the machine
inflates wall time but hardly CPU time, which is why CPU is what this reports.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import struct
import time
from typing import Any, Sequence

from bridge.bench.kit import child_process, process_cpu_s
from bridge.config import Config, PolicyConfig, SmscConfig
from bridge.core.model import Address
from bridge.core.receipts import Receipt
from bridge.core.states import MessageState, PartState
from bridge.outbound.smpp import codec
from bridge.outbound.smpp.client import MoMessage, SmppBind, SubmitSm
from bridge.store.base import OutboundMessage, OutboundPart, ReceiptOutcome
from bridge.store.rows import CallsByName

SYSTEM_ID = "bench"
PASSWORD = "bench"
MAX_COUNT = 1_000_000

def _message(i: int) -> SubmitSm:
    return SubmitSm(source=Address("BENCH", 5, 0),
                    destination=Address(f"4474{i % 100_000_000:08d}", 1, 1),
                    short_message=b"Benchmark message %d" % i, data_coding=0, esm_class=0,
                    registered_delivery=1)


async def _run_client(port: int, window: int, count: int, receipts: bool) -> dict[str, Any]:
    received = 0
    all_receipts = asyncio.Event()

    async def on_receipt(smsc: str, receipt: Receipt) -> None:
        nonlocal received
        received += 1
        if received >= count:
            all_receipts.set()

    async def on_mo(mo: MoMessage) -> None:
        return None

    config = SmscConfig(name=f"bench-w{window}", host="127.0.0.1", port=port,
                        system_id=SYSTEM_ID, password=PASSWORD, window=window,
                        response_timeout_s=60.0, enquire_link_s=300.0)
    bind = SmppBind(config, on_receipt=on_receipt, on_mo=on_mo)
    await bind.start()
    try:
        if not await bind.wait_bound(30.0):
            raise RuntimeError(f"bench bind failed: {bind.last_bind_error}")
        messages = [_message(i) for i in range(count)]
        next_index = 0
        failures = 0

        async def submitter() -> None:
            nonlocal next_index, failures
            while next_index < count:
                index = next_index
                next_index += 1
                result = await bind.submit(messages[index])
                if result.command_status != 0:
                    failures += 1

        started = time.perf_counter()
        await asyncio.gather(*(submitter() for _ in range(window)))
        submitted = time.perf_counter()
        if receipts:
            await asyncio.wait_for(all_receipts.wait(), 120.0)
        finished = time.perf_counter()
    finally:
        await bind.stop(drain_timeout=10.0)
    elapsed = finished - started
    return {
        "window": window,
        "submits": count,
        "failed": failures,
        "receipts": received,
        "seconds": round(elapsed, 3),
        "submit_sm_per_s": round(count / elapsed, 1),
        "submit_phase_per_s": round(count / (submitted - started), 1),
    }


async def _run_bare(port: int, count: int, receipts: bool) -> dict[str, Any]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(codec.encode_bind("bind_transceiver", 1, system_id=SYSTEM_ID,
                                   password=PASSWORD))
    head = await reader.readexactly(16)
    length, _, status, _ = struct.unpack(">LLLL", head)
    await reader.readexactly(length - 16)
    if status:
        raise RuntimeError(f"bare bind refused: 0x{status:08X}")
    responses = 0
    receipts_seen = 0
    expected_receipts = count if receipts else 0

    async def read_all() -> None:
        nonlocal responses, receipts_seen
        while responses < count or receipts_seen < expected_receipts:
            head = await reader.readexactly(16)
            length, command_id, _, seq = struct.unpack(">LLLL", head)
            if length > 16:
                await reader.readexactly(length - 16)
            if command_id == codec.SUBMIT_SM_RESP:
                responses += 1
            elif command_id == codec.DELIVER_SM:
                receipts_seen += 1
                writer.write(codec.encode_deliver_sm_resp(seq))
            elif command_id == codec.ENQUIRE_LINK:
                writer.write(codec.encode_header_only(codec.ENQUIRE_LINK_RESP, seq))

    started = time.perf_counter()
    reading = asyncio.ensure_future(read_all())
    for i in range(count):
        writer.write(codec.encode_submit(i + 2, _message(i)))
        if i % 64 == 63:
            await writer.drain()
    await writer.drain()
    await asyncio.wait_for(reading, 120.0)
    elapsed = time.perf_counter() - started
    writer.close()
    try:
        await writer.wait_closed()
    except ConnectionError:
        pass
    return {"submits": count, "receipts": receipts_seen, "seconds": round(elapsed, 3),
            "submit_sm_per_s": round(count / elapsed, 1)}


def _encode_cost_us(n: int = 5000) -> dict[str, float]:
    message = _message(1)
    started = time.perf_counter()
    for i in range(n):
        codec.encode_submit(i + 1, message)
    fast = (time.perf_counter() - started) / n * 1e6
    started = time.perf_counter()
    for i in range(n):
        codec.encode_submit_reference(i + 1, message)
    reference = (time.perf_counter() - started) / n * 1e6
    return {"encode_submit_us": round(fast, 2), "smpplib_make_pdu_us": round(reference, 2)}


async def bench_smpp(windows: Sequence[int] = (1, 10, 50), count: int = 20000,
                     receipts: bool = True) -> dict[str, Any]:
    count = max(1, min(int(count), MAX_COUNT))
    windows = tuple(max(1, min(int(w), 1000)) for w in windows)
    results: dict[str, Any] = {
        "benchmark": "smpp submit_sm/s, SmppBind vs bare encode+write loop",
        "count": count,
        "receipts": receipts,
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "codec": _encode_cost_us(),
        "windows": {},
    }
    simulator_args = ["-m", "bridge.bench.kit", "simulator", "--system-id", SYSTEM_ID,
                      "--password", PASSWORD, *([] if receipts else ["--no-receipts"])]
    async with child_process(*simulator_args) as ready:
        port = int(ready["port"])
        for window in windows:
            results["windows"][str(window)] = await _run_client(port, window, count, receipts)
        results["bare_loop"] = await _run_bare(port, count, receipts)
    best = results["windows"][str(max(windows))]["submit_sm_per_s"]
    bare = results["bare_loop"]["submit_sm_per_s"]
    results["client_vs_bare"] = round(best / bare, 3) if bare else None
    return results


# ------------------------------------------------------------------ --dispatch: CPU per message


class InstantStore(CallsByName):
    """The Store calls the dispatcher makes, answered in memory on the next loop iteration (all
    calls of one iteration together, like the process store's answer frames). Counts what it
    got; `done` is set once `expect_submitted` submits and `expect_receipts` receipts arrived."""

    _READS: dict[str, Any] = {"usage": [], "load_pending": [], "get_messages": [],
                              "list_messages": (0, []), "timeline": [], "counts_by_state": {},
                              "last_message_to": None, "callbacks_due": [], "instances": []}

    def __init__(self) -> None:
        self.submitted = 0
        self.receipts = 0
        self.other: list[str] = []
        self.expect_submitted = 0
        self.expect_receipts = 0
        self.done = asyncio.Event()
        self._batch: list[tuple[asyncio.Future[Any], Any]] = []

    async def open(self) -> None:
        return None

    async def close(self) -> None:
        return None

    def _write(self, method: str, args: tuple[Any, ...]) -> asyncio.Future[Any]:
        value: Any = None
        if method == "record_submitted":
            self.submitted += 1
        elif method == "record_receipt":
            self.receipts += 1
            value = ReceiptOutcome(matched=True, message_id=None,
                                   message_state=MessageState.DELIVERED)
        elif method == "claim":
            value = []
        elif method == "begin_submit":
            value = True  # no operator cancels here
        elif method not in ("flush", "heartbeat", "release", "end_submit"):
            self.other.append(f"{method} {args}")
        if self.submitted >= self.expect_submitted and self.receipts >= self.expect_receipts:
            self.done.set()
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        if not self._batch:
            loop.call_soon(self._resolve)
        self._batch.append((future, value))
        return future

    async def _read(self, method: str, args: tuple[Any, ...]) -> Any:
        return self._READS[method]

    def _resolve(self) -> None:
        batch, self._batch = self._batch, []
        for future, value in batch:
            if not future.done():
                future.set_result(value)


def _outbound(run: int, i: int, now: float) -> OutboundMessage:
    text = b"Benchmark message %d" % i
    return OutboundMessage(
        id=f"bench-{run}-{i}", account="bench", recipient=f"+4474{(run * MAX_COUNT + i) % 10**8:08d}",
        source_addr="BENCH", source_ton=5, source_npi=0, dest_ton=1, dest_npi=1, data_coding=0,
        esm_class=0, registered_delivery=1, state=MessageState.QUEUED, created_at=now,
        send_at=None, expires_at=now + 86400,
        parts=(OutboundPart(seq=1, total=1, short_message=text, tlvs_json="[]",
                            state=PartState.QUEUED, smsc=None, smsc_id=None),))


async def _dispatch_run(port: int, sim_pid: int, run: int, count: int,
                        window: int) -> dict[str, Any]:
    from bridge.outbound.dispatcher import Dispatcher
    from bridge.metrics import OutboundMetrics
    from bridge.outbound.smpp.pool import SmscPool

    smsc = SmscConfig(name="sim", host="127.0.0.1", port=port, system_id=SYSTEM_ID,
                      password=PASSWORD, window=window, response_timeout_s=60.0,
                      enquire_link_s=300.0)
    config = Config(smsc=(smsc,), policy=PolicyConfig())
    store = InstantStore()
    dispatcher = Dispatcher(config, store, metrics=OutboundMetrics())
    pool = SmscPool(config.smsc, on_receipt=dispatcher.on_receipt, on_mo=dispatcher.on_mo)
    dispatcher.attach(pool)
    await pool.start()
    if not await pool.wait_bound(30.0):
        raise RuntimeError("dispatch bench: bind failed")
    await dispatcher.start()
    now = time.time()
    messages = [_outbound(run, i, now) for i in range(count)]
    store.expect_submitted = store.expect_receipts = count
    store.done.clear()  # the start's own writes (heartbeat, claims) counted nothing
    try:
        await asyncio.sleep(0.2)  # let the simulator settle after the bind
        sim_before = process_cpu_s(sim_pid)
        cpu_before = time.process_time()
        started = time.perf_counter()
        dispatcher.enqueue(messages)
        await asyncio.wait_for(store.done.wait(), 300.0)
        elapsed = time.perf_counter() - started
        cpu = time.process_time() - cpu_before
        sim_cpu = process_cpu_s(sim_pid) - sim_before
    finally:
        await dispatcher.stop()
        await pool.stop()
    if store.other:
        raise RuntimeError(f"dispatch bench: unexpected store calls, e.g. {store.other[:3]}")
    return {"bridge_cpu_us_per_msg": round(cpu / count * 1e6, 1),
            "simulator_cpu_us_per_msg": round(sim_cpu / count * 1e6, 1),
            "seconds": round(elapsed, 3), "msgs_per_s": round(count / elapsed, 1)}


async def bench_dispatch(count: int = 20000, runs: int = 3, window: int = 50,
                         receipt_delay: float = 0.05) -> dict[str, Any]:
    count = max(1, min(int(count), MAX_COUNT))
    results: dict[str, Any] = {
        "benchmark": "CPU per message of Dispatcher + SmscPool + simulator (InstantStore)",
        "count": count, "window": window, "receipt_delay_s": receipt_delay,
        "python": platform.python_version(), "runs": [],
    }
    async with child_process("-m", "bridge.bench.kit", "simulator", "--system-id", SYSTEM_ID,
                             "--password", PASSWORD,
                             "--receipt-delay", str(receipt_delay)) as ready:
        for run in range(max(1, runs)):
            results["runs"].append(await _dispatch_run(int(ready["port"]), int(ready["pid"]),
                                                       run, count, window))
    for key in ("bridge_cpu_us_per_msg", "simulator_cpu_us_per_msg"):
        results[f"min_{key}"] = min(r[key] for r in results["runs"])
    return results


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bridge.bench.smpp")
    parser.add_argument("--count", type=int, default=20000)
    parser.add_argument("--windows", default="1,10,50")
    parser.add_argument("--no-receipts", action="store_true")
    parser.add_argument("--dispatch", action="store_true",
                        help="CPU µs per message of the dispatcher path (see module docstring)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--window", type=int, default=50)
    parser.add_argument("--receipt-delay", type=float, default=0.05)
    args = parser.parse_args(argv)
    if args.dispatch:
        print(json.dumps(asyncio.run(bench_dispatch(args.count, args.runs, args.window,
                                                     args.receipt_delay)), indent=2))
        return
    windows = tuple(int(w) for w in args.windows.split(",") if w.strip())
    result = asyncio.run(bench_smpp(windows, args.count, not args.no_receipts))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
