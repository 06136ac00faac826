"""Kannel 1.4.5 (bearerbox + smsbox) on loopback, bound to an SMSC on a given port: the peer
`sms-bridge bench http` measures against, and tests/http_ingress/kannel_compare.py compares
with. Its config is written here; nothing of a system-wide Kannel is used. Needs `bearerbox`
and `smsbox` on PATH (Debian: apt-get install kannel)."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp

CONFIG = """
group = core
admin-port = {admin}
admin-password = bench-admin
smsbox-port = {box}
box-allow-ip = "127.0.0.1"
log-file = "{directory}/bearerbox.log"
log-level = {log_level}
dlr-storage = internal

group = smsc
smsc = smpp
smsc-id = sim
host = 127.0.0.1
port = {smsc}
transceiver-mode = true
smsc-username = {system_id}
smsc-password = {smsc_password}
system-type = ""
msg-id-type = 0x01
max-pending-submits = {window}
{allowed}

group = smsbox
bearerbox-host = 127.0.0.1
bearerbox-port = {box}
sendsms-port = {sendsms}
log-file = "{directory}/smsbox.log"
log-level = {log_level}

group = sendsms-user
username = {user}
password = {password}
max-messages = 10
concatenation = true
"""


def installed() -> bool:
    return bool(shutil.which("bearerbox") and shutil.which("smsbox"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass(frozen=True)
class Kannel:
    sendsms_port: int
    pids: dict[str, int]  # bearerbox, smsbox


async def wait_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)


@contextlib.asynccontextmanager
async def process(*args: str) -> AsyncIterator[asyncio.subprocess.Process]:
    """A child process for the block, terminated after it (killed if it will not stop)."""
    proc = await asyncio.create_subprocess_exec(*args, stdout=asyncio.subprocess.DEVNULL,
                                                stderr=asyncio.subprocess.DEVNULL)
    try:
        yield proc
    finally:
        if proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 10)
            except asyncio.TimeoutError:
                proc.kill()
                await proc.wait()


@contextlib.asynccontextmanager
async def kannel(directory: Path, *, smsc_port: int, user: str, password: str,
                 system_id: str = "bridge", smsc_password: str = "secret", window: int = 50,
                 allowed_prefix: str | None = None, log_level: int = 3
                 ) -> AsyncIterator[Kannel]:
    """bearerbox and smsbox for the block, the SMSC online before it starts."""
    admin, box, sendsms = free_port(), free_port(), free_port()
    conf = directory / "kannel.conf"
    conf.write_text(CONFIG.format(
        admin=admin, box=box, smsc=smsc_port, sendsms=sendsms, directory=directory,
        user=user, password=password, system_id=system_id, smsc_password=smsc_password,
        window=window, log_level=log_level,
        allowed=f'allowed-prefix = "{allowed_prefix}"' if allowed_prefix else ""))
    async with process("bearerbox", str(conf)) as bearerbox:
        await wait_port(box)
        async with process("smsbox", str(conf)) as smsbox:
            await wait_port(sendsms)
            await _online(admin)
            yield Kannel(sendsms, {"bearerbox": bearerbox.pid, "smsbox": smsbox.pid})


async def _online(admin: int, timeout: float = 30.0) -> None:
    """Until bearerbox says its SMSC is online."""
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:
            try:
                async with http.get(f"http://127.0.0.1:{admin}/status.txt?password="
                                    f"bench-admin") as response:
                    if "(online" in await response.text():
                        return
            except aiohttp.ClientConnectionError:
                pass  # its admin port may open after the box port on a loaded machine
            await asyncio.sleep(0.2)
    raise TimeoutError("Kannel's SMSC did not come online")
