"""submit_sm/s of `SmppBind` against the SMSC simulator running in a separate process.

    python -m bridge.smpp.bench [--count N] [--windows 1,10,50] [--no-receipts]

For each window: `count` submits through one transceiver `SmppBind` (exactly `window`
concurrent submitters, so the window is always full), timed until every submit_sm_resp *and*
(with receipts) every receipt has been handed to the receipt handler. Then a "bare loop" on
the same simulator: bind, encode `count` submit_sm with the same codec and write them as fast
as the socket takes them, read responses and answer receipts, no window or future bookkeeping.
`client_vs_bare` is the client's window-`max(windows)` rate over the bare loop's rate.

The simulator runs in its own process (`python -m bridge.benchkit simulator`) so the client
and the server each get a core.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import struct
import sys
import time
from typing import Any, Sequence

from bridge.benchkit import child_process
from bridge.config import SmscConfig
from bridge.core.model import Address
from bridge.core.receipts import Receipt
from bridge.smpp import codec
from bridge.smpp.client import MoMessage, SmppBind, SubmitSm

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
    simulator_args = ["-m", "bridge.benchkit", "simulator", "--system-id", SYSTEM_ID,
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


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bridge.smpp.bench")
    parser.add_argument("--count", type=int, default=20000)
    parser.add_argument("--windows", default="1,10,50")
    parser.add_argument("--no-receipts", action="store_true")
    args = parser.parse_args(argv)
    windows = tuple(int(w) for w in args.windows.split(",") if w.strip())
    result = asyncio.run(bench_smpp(windows, args.count, not args.no_receipts))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
