"""A PostgreSQL server for the benchmarks, and the CPU its processes use.

Where the server comes from, in this order:
- a URL given to the bench (`--url`) or in $SMS_BRIDGE_BENCH_PG: a server on which the bench may
  create and drop databases (the URL's database is where it connects to do so); it is neither
  started nor stopped;
- otherwise a throwaway cluster: initdb and pg_ctl (from $SMS_BRIDGE_PG_BIN, beside `initdb` on
  PATH, or /usr/lib/postgresql/*/bin, newest first) in a temporary directory, loopback TCP on a
  free port, trust authentication, deleted afterwards. Its settings are DURABLE (fsync on,
  synchronous_commit on, full_page_writes on), because the benches compare durable accepts
  with SQLite's fsync per commit: a server that does not sync would win by not keeping its
  promise. PostgreSQL refuses to run as root; as root the cluster belongs to `postgres` (or
  `nobody`).

Every bench run gets a database of its own (`Postgres.database`), dropped afterwards, so that
runs never see each other's rows.

CPU: `server_cpu_s()` sums, from /proc, the postmaster's own CPU, that of its children that
have exited (cutime/cstime: backends of closed connections) and that of its live children
(backends, WAL writer, checkpointer, autovacuum). The postmaster is found from a backend's pid
(`pg_backend_pid()`), so this works for a server named by URL too, when it runs on this
machine in a process namespace we can see; otherwise the figure is None.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
import uuid
from glob import glob
from pathlib import Path
from typing import AsyncIterator
from urllib.parse import urlsplit, urlunsplit

import asyncpg

ENV = "SMS_BRIDGE_BENCH_PG"
BIN_ENV = "SMS_BRIDGE_PG_BIN"
SUPERUSER = "postgres"
#: Appended to postgresql.conf of the throwaway cluster (see the module docstring).
SETTINGS = {
    "listen_addresses": "'127.0.0.1'",
    "fsync": "on",
    "synchronous_commit": "on",
    "full_page_writes": "on",
    "max_connections": "200",
    "log_min_messages": "warning",
}
_TICK = os.sysconf("SC_CLK_TCK")


class PgUnavailable(RuntimeError):
    """No PostgreSQL server for the bench; str() says why."""


class Postgres:
    """A server the bench may create databases on; `close()` stops it when it is our own."""

    def __init__(self, admin_url: str, cluster: Path | None = None,
                 account: pwd.struct_passwd | None = None, bindir: Path | None = None) -> None:
        self.admin_url = admin_url
        self._cluster = cluster
        self._account = account
        self._bindir = bindir
        self.postmaster: int | None = None
        #: fsync and synchronous_commit on (read from the server by `find_postmaster`).
        self.durable = False

    @property
    def own(self) -> bool:
        """A throwaway cluster this bench started (else a server named by URL)."""
        return self._cluster is not None

    @property
    def label(self) -> str:
        if self.own:
            return "throwaway cluster (fsync on, synchronous_commit on)"
        from bridge.store.postgres import safe_url
        return safe_url(self.admin_url)

    async def find_postmaster(self) -> None:
        """The postmaster's pid, from a backend's parent (None when /proc cannot show it)."""
        conn = await asyncpg.connect(self.admin_url, timeout=10)
        try:
            backend = int(await conn.fetchval("SELECT pg_backend_pid()"))
            settings = {r[0]: r[1] for r in await conn.fetch(
                "SELECT name, setting FROM pg_settings WHERE name = ANY($1::text[])",
                ["fsync", "synchronous_commit"])}
            try:  # while the backend lives
                self.postmaster = _ppid(backend)
            except (OSError, ValueError, IndexError):
                self.postmaster = None
        finally:
            await conn.close()
        self.durable = settings.get("fsync") == "on" and settings.get("synchronous_commit") == "on"

    def server_cpu_s(self) -> float | None:
        """CPU seconds the server's processes have used so far (see the module docstring)."""
        if self.postmaster is None:
            return None
        try:
            total = _reaped_cpu_s(self.postmaster) + _live_cpu_s(self.postmaster)
        except (OSError, ValueError, IndexError):
            return None
        for child in _children(self.postmaster):
            with contextlib.suppress(OSError, ValueError, IndexError):  # it may just have ended
                total += _live_cpu_s(child)
        return total

    def url(self, dbname: str) -> str:
        return urlunsplit(urlsplit(self.admin_url)._replace(path="/" + dbname))

    async def database(self, prefix: str) -> str:
        """A new empty database; its URL."""
        name = f"{re.sub(r'[^a-z0-9_]+', '_', prefix.lower())[:30]}_{uuid.uuid4().hex[:10]}"
        await self._execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    async def drop(self, url: str) -> None:
        name = urlsplit(url).path.lstrip("/").replace('"', '""')
        await self._execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    async def _execute(self, sql: str) -> None:
        conn = await asyncpg.connect(self.admin_url, timeout=10)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    def close(self) -> None:
        if self._cluster is None:
            return
        self._pg_ctl("stop", "-m", "fast", "-w", "-t", "60")
        shutil.rmtree(self._cluster, ignore_errors=True)
        self._cluster = None

    # -------------------------------------------------------------- our own cluster

    @classmethod
    def throwaway(cls) -> Postgres:
        bindir = find_bindir(f"name a server with --url or ${ENV}")
        account = server_account()
        root = Path(tempfile.mkdtemp(prefix="sms-bridge-bench-pg-", dir="/tmp"))
        os.chmod(root, 0o755)
        if account is not None:
            os.chown(root, account.pw_uid, account.pw_gid)
        server = cls("", root, account, bindir)
        try:
            server._initdb()
            port = free_port()
            server._pg_ctl("start", "-l", str(root / "postgresql.log"), "-w", "-t", "60",
                           "-o", f"-p {port}")
        except BaseException:
            shutil.rmtree(root, ignore_errors=True)
            raise
        server.admin_url = f"postgresql://{SUPERUSER}@127.0.0.1:{port}/postgres"
        return server

    def _initdb(self) -> None:
        assert self._cluster is not None
        data = self._cluster / "data"
        self._run("initdb", "-D", str(data), "-U", SUPERUSER, "-A", "trust", "-E", "UTF8",
                  "--locale=C")
        settings = {**SETTINGS, "unix_socket_directories": f"'{self._cluster}'"}
        with open(data / "postgresql.conf", "a", encoding="utf-8") as conf:
            conf.write("\n# bridge/bench/pg.py: durable, loopback only\n")
            conf.writelines(f"{key} = {value}\n" for key, value in settings.items())

    def _pg_ctl(self, *args: str) -> None:
        assert self._cluster is not None
        self._run("pg_ctl", args[0], "-D", str(self._cluster / "data"), *args[1:])

    def _run(self, tool: str, *args: str) -> None:
        assert self._bindir is not None
        account = self._account
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env["LC_ALL"] = "C"
        done = subprocess.run(
            [str(self._bindir / tool), *args], cwd=self._cluster, env=env,
            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=180, check=False,
            user=account.pw_uid if account else None, group=account.pw_gid if account else None,
            extra_groups=[] if account else None)
        if done.returncode != 0:
            tail = " | ".join((done.stderr + done.stdout).strip().splitlines()[-3:])
            raise PgUnavailable(f"{tool} {args[0]} failed (exit {done.returncode}): {tail}")


@contextlib.asynccontextmanager
async def postgres(url: str | None = None) -> AsyncIterator[Postgres]:
    """The bench's server: `url`, else $SMS_BRIDGE_BENCH_PG, else a throwaway cluster (made
    in a thread: initdb takes seconds), stopped and deleted at the end."""
    url = url or os.environ.get(ENV) or None
    if url is not None and urlsplit(url).scheme not in ("postgresql", "postgres"):
        raise PgUnavailable(f"not a postgresql:// URL: {url!r}")
    server = Postgres(url) if url else await asyncio.to_thread(Postgres.throwaway)
    try:
        await server.find_postmaster()
        yield server
    finally:
        await asyncio.to_thread(server.close)


def _ppid(pid: int) -> int:
    with open(f"/proc/{pid}/stat", encoding="ascii") as f:
        return int(f.read().rsplit(")", 1)[1].split()[1])


def _reaped_cpu_s(pid: int) -> float:
    """cutime+cstime of a process (its children that ended), in seconds (clock ticks)."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[13]) + int(fields[14])) / _TICK  # fields 16, 17 of stat


def _live_cpu_s(pid: int) -> float:
    """CPU seconds of a live process's threads, from schedstat (nanoseconds: a short load's
    few milliseconds are not lost to 10 ms clock ticks)."""
    total = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/schedstat", encoding="ascii") as f:
            total += int(f.read().split()[0])
    return total / 1e9


def _children(pid: int) -> list[int]:
    found: list[int] = []
    for task in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(OSError):
            with open(f"/proc/{pid}/task/{task}/children", encoding="ascii") as f:
                found += [int(p) for p in f.read().split()]
    return found


def find_bindir(elsewhere: str) -> Path:
    """The directory with initdb and pg_ctl: $SMS_BRIDGE_PG_BIN alone when set, else the one
    of `initdb` on PATH, else /usr/lib/postgresql/<version>/bin, newest version first. The
    tests' harness (tests/postgres.py) finds it here too; `elsewhere` ends the message of a
    failure: how its caller could name a running server instead."""
    override = os.environ.get(BIN_ENV)
    if override is not None:
        candidates = [Path(override)]
    else:
        candidates = []
        on_path = shutil.which("initdb")
        if on_path:
            candidates.append(Path(on_path).parent)

        def version(bindir: str) -> tuple[int, ...]:
            return tuple(int(n) for n in re.findall(r"\d+", Path(bindir).parent.name))
        candidates += [Path(d) for d in sorted(glob("/usr/lib/postgresql/*/bin"), key=version,
                                               reverse=True)]
    for bindir in candidates:
        if all(os.access(bindir / tool, os.X_OK) for tool in ("initdb", "pg_ctl")):
            return bindir
    if override is not None:
        raise PgUnavailable(f"no initdb and pg_ctl in {BIN_ENV}={override}")
    raise PgUnavailable("no initdb and pg_ctl found (PATH, /usr/lib/postgresql/*/bin): install "
                        f"PostgreSQL's server (Debian: apt-get install postgresql), or {elsewhere}")


def server_account() -> pwd.struct_passwd | None:
    """The account PostgreSQL runs as: None (ourselves) unless we are root, then `postgres`
    or else `nobody`, whichever exists first and is not uid 0."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            account = pwd.getpwnam(name)
            if account.pw_uid != 0:
                return account
    raise PgUnavailable("running as root, and PostgreSQL refuses root, but there is no "
                        "'postgres' or 'nobody' account to run it as")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


__all__ = ["ENV", "PgUnavailable", "Postgres", "find_bindir", "free_port", "postgres",
           "server_account"]
