"""Accepted means never lost: SIGKILL the bridge mid-load, restart, every accepted message
reaches the SMSC; duplicates (at-least-once) are counted and bounded by the window."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections import Counter
from pathlib import Path

import pytest

from bridge.config import SimulatorConfig
from bridge.outbound.dispatcher import worker_count
from bridge.simulator import SmscSimulator
from tests.conftest import ROOT, child_pids, wait_gone, write_serve_config

TOTAL = 3000
BATCH = 50
WINDOW = 20


def write_config(tmp_path: Path, smsc_port: int) -> Path:
    return write_serve_config(tmp_path, "crash.db", f"""
[[smsc]]
name = "sim"
host = "127.0.0.1"
port = {smsc_port}
system_id = "bridge"
password = "secret"
window = {WINDOW}
reconnect_min_s = 0.05
reconnect_max_s = 0.5
[policy]
duplicate_window_s = 0
[[account]]
name = "crash"
password = "x"
senders = ["CRASH"]
default_sender = "CRASH"
rate_per_s = 0
""")


async def start_child(config: Path, count: int) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, str(ROOT / "tests" / "crash_child.py"), str(config), str(count), str(BATCH),
        stdout=asyncio.subprocess.PIPE, cwd=str(ROOT),
        env={**os.environ, "PYTHONPATH": str(ROOT)})


@pytest.mark.slow
@pytest.mark.parametrize("kill_store_too", [False, True], ids=["bridge", "bridge+store"])
async def test_sigkill_mid_load_loses_nothing(tmp_path: Path, kill_store_too: bool) -> None:
    """`bridge+store`: the store process dies in the same instant (as in a power cut), so the
    calls still in its pipe are lost too; they were never acknowledged, so nothing is lost."""
    sim = SmscSimulator(SimulatorConfig(enabled=True, port=0, receipt_delay_s=0.01,
                                        response_delay_s=0.002))
    port = await sim.start()
    config = write_config(tmp_path, port)
    try:
        child = await start_child(config, TOTAL)
        assert child.stdout is not None
        accepted: set[str] = set()
        while True:
            line = (await asyncio.wait_for(child.stdout.readline(), 60)).decode()
            if line.startswith("ACCEPTED"):
                accepted.add(line.split()[2])
            # Kill once a good part is accepted and some of it is already at the SMSC.
            if len(accepted) >= TOTAL // 2 and len(sim.submits) > 0:
                break
            assert line, "child exited early"
        submitted_before_kill = len(sim.submits)
        victims = child_pids(child.pid) if kill_store_too else []
        assert victims or not kill_store_too, "the store process was not found"
        for pid in victims:
            os.kill(pid, signal.SIGKILL)
        child.send_signal(signal.SIGKILL)
        await child.wait()
        assert submitted_before_kill < len(accepted), "kill came too late to test anything"

        restarted = await start_child(config, 0)
        assert restarted.stdout is not None
        assert (await asyncio.wait_for(restarted.stdout.readline(), 30)).startswith(b"READY")
        for _ in range(600):  # bounded: 60 s
            if accepted <= {"+" + s.destination for s in sim.submits}:
                break
            await asyncio.sleep(0.1)
        stores = child_pids(restarted.pid)
        restarted.send_signal(signal.SIGTERM)  # crash_child dies at once: its store process
        await asyncio.wait_for(restarted.wait(), 30)  # drains, unbinds and exits by itself
        await wait_gone(stores)  # before the SMSC goes away under it

        per_destination = Counter("+" + s.destination for s in sim.submits)
        missing = accepted - set(per_destination)
        duplicates = sum(n - 1 for n in per_destination.values())
        print(f"\ncrash test ({'bridge+store' if kill_store_too else 'bridge'}): accepted_before_kill={len(accepted)} "
              f"submitted_before_kill={submitted_before_kill} total_submits={len(sim.submits)} "
              f"missing={len(missing)} duplicates={duplicates} window={WINDOW} bound={worker_count([WINDOW])}")
        assert not missing, f"{len(missing)} accepted messages never reached the SMSC"
        # At-least-once: only the messages the dispatcher's workers held when the process died
        # (in flight, or acknowledged but not yet durable) may go twice.
        assert duplicates <= worker_count([WINDOW])
    finally:
        await sim.stop()
