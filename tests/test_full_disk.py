"""A full disk under load (issue: "a full disk sends thousands of SMS twice").

The store lives on a small filesystem the test makes: a tmpfs it mounts (as root), else the
store process's file size limit (RLIMIT_FSIZE, set with prlimit), which fails SQLite's writes
past a size the same way. Load goes on through the real Service while the disk fills; then
the disk gets room again, and later the bridge restarts. What must hold:

- clients are refused (STORE_UNAVAILABLE) while nothing can be stored; nothing accepted is lost;
- the outbound side pauses while records fail (no submit it cannot record), /healthz says so,
  and it resumes by itself once writes succeed;
- every accepted message reaches the SMSC and is delivered; each went to the SMSC at most
  once, apart from what the workers held when the disk filled (the documented bound);
- the log stays short: no traceback, a bounded number of lines however long the trouble.
"""

from __future__ import annotations

import asyncio
import contextlib
import resource
import subprocess
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from bridge.config import SimulatorConfig
from bridge.core.errors import BridgeError, ErrorName
from bridge.core.model import Ingress
from bridge.core.states import MessageState
from bridge.intake.service import Recipient, SubmitRequest
from bridge.outbound.dispatcher import worker_count
from bridge.runtime.app import Bridge
from bridge.simulator import SmscSimulator
from tests.conftest import make_config

WINDOW = 10
BATCH = 20
BACKLOG = 1000


class SmallDisk:
    """Room for the store that the test takes away and gives back."""

    def fill(self, pid: int, folder: Path) -> None:
        raise NotImplementedError

    def free(self, pid: int) -> None:
        raise NotImplementedError


class Tmpfs(SmallDisk):
    """A real small filesystem: filled with a ballast file, freed by deleting it."""

    def __init__(self, mount: Path) -> None:
        self.mount = mount
        self.ballast = mount / "ballast"

    def fill(self, pid: int, folder: Path) -> None:
        # Unbuffered: with a buffer, closing the file flushed what the full disk had refused
        # and raised ENOSPC out of the `with` (now and then, as the last write fell).
        with open(self.ballast, "wb", buffering=0) as f:
            with contextlib.suppress(OSError):  # ENOSPC: the disk is full, as wanted
                while True:
                    f.write(b"\0" * 65536)

    def free(self, pid: int) -> None:
        self.ballast.unlink()


class FileSizeLimit(SmallDisk):
    """The store process may write no byte to a file (RLIMIT_FSIZE 0: every write() fails
    with EFBIG, an I/O error to SQLite): where the test cannot mount. A limit at the files'
    sizes would flap (SQLite rewrites its WAL from the start), which a real full disk of this
    test does not."""

    def fill(self, pid: int, folder: Path) -> None:
        resource.prlimit(pid, resource.RLIMIT_FSIZE, (0, resource.RLIM_INFINITY))

    def free(self, pid: int) -> None:
        resource.prlimit(pid, resource.RLIMIT_FSIZE,
                         (resource.RLIM_INFINITY, resource.RLIM_INFINITY))


@pytest.fixture(params=["tmpfs", "file-size-limit"])
def small_disk(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[tuple[Path, SmallDisk]]:
    """Both kinds where the test may mount; the file size limit alone where it may not."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if request.param == "file-size-limit":
        yield mount, FileSizeLimit()
        return
    # Room for the backlog's database and WAL with a margin, so that what the ballast gives
    # back lets the WAL grow and checkpoint (at 6 MB, under load, the WAL had taken nearly all
    # of it before the fill and the store stayed full after the ballast went).
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=32m", "tmpfs", str(mount)],
                          capture_output=True)
    if done.returncode != 0:
        yield mount, FileSizeLimit()
        return
    try:
        yield mount, Tmpfs(mount)
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def store_pid(bridge: Bridge) -> int:
    pid = bridge.store.pid
    assert pid is not None
    return pid


async def send(bridge: Bridge, n: int, start: int) -> tuple[list[str], int]:
    """One request of `n` recipients: (ids accepted, how many refused as STORE_UNAVAILABLE)."""
    assert bridge.service is not None
    numbers = [f"+4474009{start + i:05d}" for i in range(n)]
    try:
        results = await bridge.service.submit(SubmitRequest(
            "demo", tuple(Recipient(x) for x in numbers), f"full disk {start}", Ingress.SOAP))
    except BridgeError as exc:
        assert exc.name is ErrorName.STORE_UNAVAILABLE, exc
        return [], n
    assert all(r.status == "accepted" and r.message_id for r in results), results
    return [r.message_id for r in results if r.message_id], 0


async def all_delivered(bridge: Bridge, ids: list[str], timeout: float) -> dict[str, int]:
    """Wait until every message is delivered; the count per state at the end."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        states = Counter(v.state.value for v in await bridge.store.get_messages(ids))
        if states.get(MessageState.DELIVERED.value, 0) == len(ids) or \
                asyncio.get_running_loop().time() > deadline:
            return dict(states)
        await asyncio.sleep(0.1)


@pytest.mark.slow
async def test_full_disk_pauses_sending_refuses_clients_and_loses_nothing(
        tmp_path: Path, small_disk: tuple[Path, SmallDisk],
        capfd: pytest.CaptureFixture[str]) -> None:
    folder, disk = small_disk
    # Answers take a little while and receipts longer, so the disk fills while submits are in
    # flight and receipts are still coming: both kinds of record fail.
    sim = SmscSimulator(SimulatorConfig(enabled=True, port=0, response_delay_s=0.02,
                                        receipt_delay_s=0.3, redeliver_s=0.2))
    port = await sim.start()
    config = make_config(
        tmp_path, store={"url": f"sqlite:///{folder / 'bridge.db'}"}, simulator={"enabled": False},
        smsc=[{"name": "sim", "port": port, "system_id": "bridge", "password": "secret",
               "window": WINDOW, "reconnect_min_s": 0.05, "reconnect_max_s": 0.2}],
        policy={"duplicate_window_s": 0, "flood_max": 0})
    accepted: list[str] = []
    refused = 0
    bridge = Bridge(config)
    await bridge.start()
    try:
        assert await bridge.wait_bound(10)
        for batch in range(BACKLOG // BATCH):  # a backlog the dispatcher is working through
            ids, _ = await send(bridge, BATCH, batch * BATCH)
            accepted += ids
        while len(sim.submits) < BACKLOG // 5:
            await asyncio.sleep(0.01)
        disk.fill(store_pid(bridge), folder)
        # Load on a full disk: go on until clients are refused and the outbound side has
        # stood still for a while with the health check saying why.
        paused_checks = 0
        for _ in range(3000):
            batch += 1
            ids, no = await send(bridge, BATCH, batch * BATCH)
            accepted += ids
            refused += no
            health = await bridge.health()
            if health["store"] == "not writable":
                assert health["status"] == "degraded"  # /healthz answers 503 for this
                paused_checks += 1
            if refused >= 10 * BATCH and paused_checks >= 20:
                break
            await asyncio.sleep(0.01)
        assert refused >= 10 * BATCH and paused_checks >= 20, (refused, paused_checks)
        assert len(sim.submits) < len(accepted), "the backlog was gone before the disk filled"
        submits_while_full = len(sim.submits)
        await asyncio.sleep(1.0)
        # Paused: nothing more went out while records could not be made.
        assert len(sim.submits) - submits_while_full <= worker_count([WINDOW])
        disk.free(store_pid(bridge))
        for i in range(5):  # accepted again once there is room
            ids, no = await send(bridge, BATCH, (batch + 1 + i) * BATCH)
            assert no == 0
            accepted += ids
        states = await all_delivered(bridge, accepted, timeout=60)
        assert states == {"delivered": len(accepted)}, states
        assert (await bridge.health())["store"] == "ok"
    finally:
        await bridge.stop()
    before_restart = len(sim.submits)
    # A graceful restart sends nothing again: everything was recorded.
    bridge = Bridge(config)
    await bridge.start()
    try:
        assert await bridge.wait_bound(10)
        await asyncio.sleep(1.0)
        assert bridge.store is not None
        resent = len(sim.submits) - before_restart
    finally:
        await bridge.stop()
        await sim.stop()
    per_text = Counter(s.text for s in sim.submits)
    twice = {text: n for text, n in per_text.items() if n > 1}
    texts = {f"full disk {b * BATCH}" for b in range(batch + 7)}
    assert set(per_text) <= texts
    # Each request is one text to BATCH numbers: count per (text, number).
    per_message = Counter((s.text, s.destination) for s in sim.submits)
    duplicates = sum(n - 1 for n in per_message.values() if n > 1)
    err = capfd.readouterr().err
    lines = err.count("\n")
    print(f"\nfull disk ({type(disk).__name__}): {len(accepted)} accepted, {refused} refused, "
          f"{len(sim.submits)} submits for {len(per_message)} messages, {duplicates} "
          f"duplicates, {resent} sent again after the restart, {lines} log lines")
    assert len(per_message) == len(accepted)
    assert duplicates <= worker_count([WINDOW]), twice
    assert resent == 0
    if isinstance(disk, Tmpfs):  # under a file size limit the log's own file is full too
        assert "Traceback" not in err
        assert 0 < lines < 60, err[-4000:]
