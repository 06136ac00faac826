"""Graceful shutdown (SPEC §8): SIGTERM to `sms-bridge serve` mid-load stops intake, lets the
submits in flight finish and be recorded, unbinds and exits 0. Because every submit the SMSC
got is durably acknowledged, the next start sends the rest and nothing twice."""

from __future__ import annotations

import asyncio
import os
import signal
import smtplib
from collections import Counter
from pathlib import Path

import pytest

from bridge.config import SimulatorConfig
from bridge.simulator import SmscSimulator
from bridge.store.sqlite import SqliteStore
from tests.conftest import child_pids, serve_command, wait_gone, write_serve_config

MAILS, PER_MAIL = 4, 50
TOTAL = MAILS * PER_MAIL


def write_config(tmp_path: Path, smsc_port: int) -> Path:
    return write_serve_config(tmp_path, "stop.db", f"""
[[smsc]]
name = "sim"
host = "127.0.0.1"
port = {smsc_port}
system_id = "bridge"
password = "secret"
window = 5
[policy]
duplicate_window_s = 0
[[account]]
name = "stop"
password = "x"
senders = ["STOP"]
default_sender = "STOP"
rate_per_s = 0
relay_networks = ["127.0.0.1/32"]
""")


def send_mails(port: int, first: int) -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as smtp:
        for mail in range(MAILS):
            numbers = [f"+4474002{first + mail * PER_MAIL + k:05d}" for k in range(PER_MAIL)]
            smtp.sendmail("ops@example.com", [f"{n}@sms.localhost" for n in numbers],
                          f"Subject: shutdown {mail}\r\n\r\nmail {mail}\r\n")


async def counts_by_state(db: Path) -> dict[str, int]:
    store = SqliteStore(db)
    await store.open()
    try:
        return await store.counts_by_state()
    finally:
        await store.close()


async def terminate(proc: asyncio.subprocess.Process) -> int:
    proc.send_signal(signal.SIGTERM)
    return await asyncio.wait_for(proc.wait(), 30)



async def stopped_part_way(db: Path, sim: SmscSimulator, who: str) -> int:
    """After a stop in the middle of the load: `who` unbound, every submit the SMSC answered
    was recorded, and the rest wait, queued. Returns how many reached the SMSC."""
    at_smsc = len(sim.submits)
    assert 0 < at_smsc < TOTAL, "the stop should come while most messages still wait"
    assert sim.unbinds_received >= 1, f"{who} should unbind before it exits"
    counts = await counts_by_state(db)
    assert counts["queued"] == TOTAL - at_smsc, counts
    assert sum(counts.values()) == TOTAL
    return at_smsc

@pytest.mark.slow
async def test_sigterm_mid_load_drains_unbinds_and_loses_or_repeats_nothing(
        tmp_path: Path) -> None:
    # Slow answers keep submits in flight (window 5, 50 ms each: about 100 submits/s).
    sim = SmscSimulator(SimulatorConfig(enabled=True, port=0, response_delay_s=0.05,
                                        receipt_delay_s=0.01))
    sim_port = await sim.start()
    config = write_config(tmp_path, sim_port)
    try:
        proc, smtp_port, _ = await serve_command(config)
        await asyncio.to_thread(send_mails, smtp_port, 0)  # every 250 means durably stored
        assert await terminate(proc) == 0
        at_smsc = await stopped_part_way(tmp_path / "stop.db", sim, "the bridge")

        proc, _, _ = await serve_command(config)
        await sim.wait_until(lambda: len({s.destination for s in sim.submits}) >= TOTAL,
                             timeout=60)
        await asyncio.sleep(0.3)  # room for a wrongful resubmission to show
        assert await terminate(proc) == 0
        per_destination = Counter(s.destination for s in sim.submits)
        print(f"\nshutdown test: at_smsc_when_stopped={at_smsc} total_submits={len(sim.submits)} "
              f"destinations={len(per_destination)}")
        assert len(per_destination) == TOTAL
        assert max(per_destination.values()) == 1, "a graceful stop must not cause a resend"
    finally:
        await sim.stop()


@pytest.mark.slow
async def test_serve_exits_1_when_its_store_process_dies(tmp_path: Path) -> None:
    """A bridge without its store could only refuse: it stops so a supervisor restarts it."""
    sim = SmscSimulator(SimulatorConfig(enabled=True, port=0))
    config = write_config(tmp_path, await sim.start())
    try:
        proc, _, _ = await serve_command(config)
        stores = child_pids(proc.pid)
        assert len(stores) == 1
        os.kill(stores[0], signal.SIGKILL)
        assert await asyncio.wait_for(proc.wait(), 30) == 1
    finally:
        await sim.stop()


@pytest.mark.slow
async def test_store_process_drains_and_unbinds_when_the_bridge_is_killed(
        tmp_path: Path) -> None:
    """The outbound side lives in the store process: when the bridge process dies, it lets
    the submits in flight finish and be recorded, unbinds and exits, so a restart resends
    nothing the SMSC already acknowledged."""
    sim = SmscSimulator(SimulatorConfig(enabled=True, port=0, response_delay_s=0.05,
                                        receipt_delay_s=0.01))
    config = write_config(tmp_path, await sim.start())
    try:
        proc, smtp_port, _ = await serve_command(config)
        [store_pid] = child_pids(proc.pid)
        await asyncio.to_thread(send_mails, smtp_port, 0)
        proc.send_signal(signal.SIGKILL)
        await proc.wait()
        assert await wait_gone([store_pid]), "the store process should exit after its bridge died"
        await stopped_part_way(tmp_path / "stop.db", sim, "the store process")
    finally:
        await sim.stop()
