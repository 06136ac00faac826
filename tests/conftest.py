"""Shared fixtures: a whole bridge (store, dispatcher, simulator, SMTP, SOAP) on loopback port 0,
and a throwaway PostgreSQL server (`pg_server`, `pg_url`; see tests/postgres.py)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import socket
import sys
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, AsyncIterator, Callable, Iterator

import pytest

from bridge.config import Config, parse_config
from tests.postgres import PgServer, PgUnavailable, database_of, skip_reasons, unavailable

if TYPE_CHECKING:
    from bridge.runtime.app import Bridge

DEMO_PASSWORD = "demo-password"
ROOT = Path(__file__).resolve().parent.parent


def make_config(tmp_path: Path, **sections: Any) -> Config:
    """A loopback config on ephemeral ports with the embedded simulator; `sections` override
    or extend top-level tables, e.g. make_config(tmp, smtp={"lmtp": True})."""
    data: dict[str, Any] = {
        "smtp": {"listen": "127.0.0.1:0", "domains": ["sms.localhost"]},
        "soap": {"listen": "127.0.0.1:0", "path": "/soap"},
        "store": {"url": f"sqlite:///{tmp_path / 'bridge.db'}"},
        "simulator": {"enabled": True, "port": 0, "receipt_delay_s": 0.01},
        "policy": {"duplicate_window_s": 60},
        "account": [{
            "name": "demo", "password": DEMO_PASSWORD, "senders": ["ACME", "+447400000001"],
            "default_sender": "ACME", "default_region": "GB", "rate_per_s": 10_000,
            "relay_networks": ["127.0.0.1/32"],
        }],
    }
    for key, value in sections.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    return parse_config(data, base_dir=tmp_path)


@contextlib.asynccontextmanager
async def running_bridge(config: Config) -> AsyncIterator[Bridge]:
    from bridge.runtime.app import Bridge

    bridge = Bridge(config)
    await bridge.start()
    try:
        await bridge.wait_bound(10.0)
        yield bridge
    finally:
        await bridge.stop()


def closed_port() -> int:
    """A loopback port nothing listens on (bound once, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def at_least(items: list[Any], n: int, timeout: float = 10.0) -> None:
    """Wait until `items` (filled by a receiver on the same loop) holds `n` or more."""
    deadline = asyncio.get_running_loop().time() + timeout
    while len(items) < n and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.02)
    assert len(items) >= n, items


async def timeline_until(bridge: Bridge, message_id: str, last: str,
                         timeout: float = 10.0) -> list[tuple[str, str]]:
    """The message's (event, detail) list once its last event is `last` (or at the timeout)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        events = [(e.state, e.detail) for e in await bridge.store.timeline(message_id)]
        if (events and events[-1][0] == last) or asyncio.get_running_loop().time() > deadline:
            return events
        await asyncio.sleep(0.05)


@pytest.fixture
def config_factory(tmp_path: Path) -> Callable[..., Config]:
    return lambda **sections: make_config(tmp_path, **sections)


def child_pids(pid: int) -> list[int]:
    """Direct children of `pid` (Linux /proc), e.g. the bridge's store process."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(p) for p in (task / "children").read_text().split()]
    return found


def gone(pid: int) -> bool:
    """Exited (a zombie nobody reaped counts as exited)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


async def wait_gone(pids: list[int], timeout: float = 30.0) -> bool:
    """True once every process in `pids` has exited; False after `timeout` (bounded poll)."""
    for _ in range(int(timeout / 0.1)):
        if all(gone(pid) for pid in pids):
            return True
        await asyncio.sleep(0.1)
    return all(gone(pid) for pid in pids)


def write_serve_config(tmp_path: Path, db_name: str, sections: str, *,
                       store_url: str | None = None, store_extra: str = "",
                       path: Path | None = None) -> Path:
    """A config for the tests that run the real processes: SMTP and SOAP on loopback port 0
    (`serve_command` reads the ports back), SQLite `db_name` in `tmp_path` (or `store_url`,
    with `store_extra` lines of [store]), then the test's own `sections` (TOML). Written to
    `path`, by default tmp_path/bridge.toml."""
    path = path if path is not None else tmp_path / "bridge.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    url = store_url if store_url is not None else f"sqlite:///{tmp_path / db_name}"
    path.write_text(f"""
[smtp]
listen = "127.0.0.1:0"
[soap]
listen = "127.0.0.1:0"
[store]
url = "{url}"
{store_extra}
{sections}""")
    return path


async def serve_command(config: Path, *, stderr: int | IO[bytes] = asyncio.subprocess.DEVNULL
                        ) -> tuple[asyncio.subprocess.Process, int, int]:
    """`python -m bridge serve -c config`, the real command, once it has said it is ready:
    the process, its SMTP port and its SOAP port."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bridge", "serve", "-c", str(config),
        stdout=asyncio.subprocess.PIPE, stderr=stderr, cwd=str(ROOT),
        env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.stdout is not None
    line = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()
    found = re.search(r"SMTP on [\d.]+:(\d+), SOAP on https?://[\d.]+:(\d+)/", line)
    assert found, f"no ready line from serve: {line!r}"
    return proc, int(found.group(1)), int(found.group(2))


@pytest.fixture(autouse=True)
def _root_logging_restored() -> Iterator[None]:
    """A test that runs `cli.main` in-process installs the bridge's log handler on a stream
    pytest closes afterwards, at its level: later tests would log into a closed stream (a
    "Logging error" traceback) at the wrong level. Each test ends with the root as it found it."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    for added in root.handlers:
        if added not in handlers:
            added.close()  # a LineWriter writes what it holds and ends its thread
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    """The session's PostgreSQL server, started on first use and stopped (and its directory
    deleted) at the end. Without one, the test is skipped, or fails with SMS_BRIDGE_REQUIRE_PG=1;
    pytest caches that outcome, so the start is tried once a session."""
    try:
        server: PgServer | str = PgServer.launch()
    except PgUnavailable as e:
        server = str(e)
    if isinstance(server, str):
        unavailable(server)  # outside the except: no "during handling" traceback in the report
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def pg_url(pg_server: PgServer, request: pytest.FixtureRequest) -> Iterator[str]:
    """The URL of a new empty database for this test, dropped afterwards (WITH (FORCE): sessions
    the test left open are ended). A test that stopped the server and did not start it again
    gets it started here, so the tests after it have one."""
    url = pg_server.create_database(request.node.name)
    yield url
    if pg_server.can_stop and not pg_server.is_running():
        pg_server.start()
    pg_server.drop_database(database_of(url))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """One line for the PostgreSQL tests skipped for want of a server, instead of one per test."""
    for reason, count in skip_reasons(terminalreporter.stats.get("skipped", [])).items():
        terminalreporter.write_line(f"PostgreSQL tests skipped ({count}): {reason}")
