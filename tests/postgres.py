"""A throwaway PostgreSQL server for the tests (the `pg_server` and `pg_url` fixtures in conftest).

Where the server comes from:
- SMS_BRIDGE_TEST_PG=postgresql://user:pw@host:port/db names a server on which the tests may
  create and drop databases; it is used as it is and never started or stopped (`can_stop` is
  False, `stop()`/`start()` raise PgUnavailable). `db` is the database that admin commands
  (CREATE/DROP DATABASE) connect to.
- Otherwise initdb and pg_ctl are looked for in SMS_BRIDGE_PG_BIN (a directory; only there when
  it is set), else beside `initdb` on PATH, else in /usr/lib/postgresql/*/bin (newest first), and a
  cluster is made in a temporary directory: loopback TCP on a free port, trust authentication,
  fsync off for speed. It is stopped and deleted at the end of the session.

PostgreSQL refuses to run as root: as root, the cluster belongs to the unprivileged account
`postgres` (or `nobody` where there is none) and initdb/pg_ctl run as that account.

When no server can be had, a test that needs one is skipped with the reason, or fails when
SMS_BRIDGE_REQUIRE_PG=1 (CI): see `unavailable`.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import os
import pwd
import re
import shutil
import stat
import subprocess
import tempfile
import uuid
from collections import Counter
from pathlib import Path
from typing import Any, Coroutine, Iterable, Literal, NoReturn, TypeVar
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from bridge.bench import pg as bench_pg

EXTERNAL_ENV = "SMS_BRIDGE_TEST_PG"
REQUIRE_ENV = "SMS_BRIDGE_REQUIRE_PG"
BIN_ENV = bench_pg.BIN_ENV
SKIP_PREFIX = "PostgreSQL unavailable: "
SUPERUSER = "postgres"  # initdb -U: the same role name whichever OS account runs the server

# Appended to the cluster's postgresql.conf: a fast, disposable server. Without fsync an OS crash
# could corrupt it (no matter here); a server crash, such as stop("immediate"), recovers as usual.
SETTINGS = {
    "listen_addresses": "'127.0.0.1'",
    "fsync": "off",
    # Left on: with fsync off a commit costs the same either way (measured), and "off" would lose
    # the last commits in a stop("immediate"), which a crash test must not see.
    "synchronous_commit": "on",
    "full_page_writes": "off",
    "max_connections": "200",  # several bridges' pools at once
    "shared_buffers": "32MB",
    "log_min_messages": "warning",
}

StopMode = Literal["smart", "fast", "immediate"]
T = TypeVar("T")
# What a failed connection raises: refused or unresolvable (OSError), timed out, refused by the
# server (PostgresError), or a URL asyncpg cannot use (InterfaceError, ValueError).
CONNECT_ERRORS = (OSError, asyncio.TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError,
                  ValueError)


#: No PostgreSQL server can be started or reached; str() is the reason, one line.
PgUnavailable = bench_pg.PgUnavailable


def required() -> bool:
    """SMS_BRIDGE_REQUIRE_PG set to anything but "" or "0": a missing server is a failure."""
    return os.environ.get(REQUIRE_ENV, "") not in ("", "0")


def unavailable(reason: str) -> NoReturn:
    """Skip the calling test (or fixture) because PostgreSQL cannot be had, or fail it when
    SMS_BRIDGE_REQUIRE_PG=1, so that CI cannot go green without running the PostgreSQL tests."""
    if required():
        pytest.fail(f"PostgreSQL is required ({REQUIRE_ENV}=1) but unavailable: {reason}",
                    pytrace=False)
    pytest.skip(SKIP_PREFIX + reason)


def skip_reasons(reports: Iterable[Any]) -> Counter[str]:
    """How many of these skipped test reports `unavailable` skipped, by reason."""
    reasons: Counter[str] = Counter()
    for report in reports:
        longrepr = getattr(report, "longrepr", None)
        if isinstance(longrepr, tuple) and len(longrepr) == 3:
            message = str(longrepr[2]).removeprefix("Skipped: ")
            if message.startswith(SKIP_PREFIX):
                reasons[message.removeprefix(SKIP_PREFIX)] += 1
    return reasons


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run `coro` to its end from synchronous code. Inside a running event loop (an async test
    under pytest-asyncio) asyncio.run is not allowed, so it runs on its own loop in a worker
    thread; the calling loop is blocked meanwhile (milliseconds for the admin commands here)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="pg-sync") as pool:
        return pool.submit(asyncio.run, coro).result()


def database_of(url: str) -> str:
    """The database name in a postgresql:// URL."""
    return urlsplit(url).path.lstrip("/")


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def one_line(text: str, lines: int = 3) -> str:
    """The last few non-empty lines of a command's output or a log, joined into one line."""
    kept = [line.strip() for line in text.splitlines() if line.strip()][-lines:]
    return " | ".join(kept) or "(no output)"


class PgServer:
    """A PostgreSQL server the tests may create and drop databases on.

    `admin_url` connects to the maintenance database (`postgres` for our own cluster);
    `url(name)` is the URL of database `name` on the same server. `create_database` and
    `drop_database` are synchronous and may be called from async tests too (see `run_sync`).
    `stop()` / `start()` take our own cluster down and bring it back on the same port with the
    same data; with it stopped, connections to the port are refused."""

    def __init__(self, admin_url: str, cluster: _Cluster | None = None) -> None:
        self.admin_url = admin_url
        self._cluster = cluster

    @classmethod
    def launch(cls) -> PgServer:
        """The server for this test session: SMS_BRIDGE_TEST_PG if set (checked by connecting),
        else a new cluster of our own, started. Raises PgUnavailable with the reason."""
        external = os.environ.get(EXTERNAL_ENV, "")
        if external:
            if urlsplit(external).scheme not in ("postgres", "postgresql"):
                raise PgUnavailable(f"{EXTERNAL_ENV} is not a postgresql:// URL: {external!r}")
            server = cls(external)
            try:
                run_sync(server._execute("SELECT 1"))
            except CONNECT_ERRORS as e:
                raise PgUnavailable(f"cannot connect to {EXTERNAL_ENV} "
                                    f"({type(e).__name__}: {one_line(str(e))})") from e
            return server
        cluster = _Cluster.create()
        try:
            cluster.start(first=True)
        except BaseException:
            cluster.destroy()
            raise
        server = cls(cluster.url("postgres"), cluster)
        atexit.register(server.close)  # in case the session ends without fixture teardown
        return server

    @property
    def can_stop(self) -> bool:
        """True for our own cluster; False for an external server (SMS_BRIDGE_TEST_PG)."""
        return self._cluster is not None

    def url(self, dbname: str) -> str:
        parts = urlsplit(self.admin_url)
        return urlunsplit(parts._replace(path="/" + dbname))

    def create_database(self, prefix: str = "test") -> str:
        """A new empty database named from `prefix` (lower-cased, [a-z0-9_] kept) and a unique
        suffix; returns its URL (`database_of(url)` is its name, for drop_database)."""
        stem = re.sub(r"[^a-z0-9_]+", "_", prefix.lower()).strip("_")[:40] or "test"
        name = f"{stem}_{uuid.uuid4().hex[:12]}"
        run_sync(self._execute(f"CREATE DATABASE {quote_ident(name)}"))
        return self.url(name)

    def drop_database(self, name: str) -> None:
        """Drop database `name` if it exists, ending any sessions still connected to it."""
        run_sync(self._execute(f"DROP DATABASE IF EXISTS {quote_ident(name)} WITH (FORCE)"))

    def stop(self, mode: StopMode = "fast") -> None:
        """Stop our own cluster (`pg_ctl stop -m mode`, waiting until it is down); "immediate"
        is a crash as far as the server's clients and its recovery are concerned."""
        self._own().stop(mode)

    def start(self) -> None:
        """Start our own cluster again, same port and data, once it accepts connections."""
        self._own().start()

    def is_running(self) -> bool:
        """Our own cluster: its postmaster process is alive. External: a connection works."""
        if self._cluster is not None:
            return self._cluster.is_running()
        try:
            run_sync(self._execute("SELECT 1"))
        except CONNECT_ERRORS:
            return False
        return True

    def close(self) -> None:
        """End of session: stop our own cluster and delete its directory (idempotent)."""
        if self._cluster is not None:
            self._cluster.destroy()

    def _own(self) -> _Cluster:
        if self._cluster is None:
            raise PgUnavailable(f"the server named by {EXTERNAL_ENV} is not ours to stop or start")
        return self._cluster

    async def _execute(self, sql: str) -> None:
        conn = await asyncpg.connect(self.admin_url, timeout=10)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()


def find_bindir() -> Path:
    """The directory with initdb and pg_ctl, found as the benches find it."""
    return bench_pg.find_bindir(f"set {EXTERNAL_ENV} to a server's URL")


def _traversable_by_others(path: str) -> bool:
    here = Path(path).resolve()
    return all(os.stat(p).st_mode & stat.S_IXOTH for p in (here, *here.parents))


class _Cluster:
    """initdb's data directory in a temporary directory, run with pg_ctl (as `account`)."""

    def __init__(self, bindir: Path, account: pwd.struct_passwd | None, root: Path) -> None:
        self.bindir = bindir
        self.account = account
        self.root = root  # holds data/, the log and the Unix socket
        self.data = root / "data"
        self.log = root / "postgresql.log"
        self.port = 0
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        self.env["LC_ALL"] = "C"

    @classmethod
    def create(cls) -> _Cluster:
        bindir = find_bindir()
        account = bench_pg.server_account()
        base = tempfile.gettempdir()
        if account is not None and not _traversable_by_others(base):
            base = next((d for d in ("/tmp", "/dev/shm") if _traversable_by_others(d)), base)
        root = Path(tempfile.mkdtemp(prefix="sms-bridge-pg-", dir=base))
        if account is not None:
            os.chown(root, account.pw_uid, account.pw_gid)
        cluster = cls(bindir, account, root)
        try:
            cluster._initdb()
        except BaseException:
            cluster.destroy()
            raise
        return cluster

    def url(self, dbname: str) -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{dbname}"

    def _run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        account = self.account
        try:
            return subprocess.run(
                [str(self.bindir / args[0]), *args[1:]], cwd=self.root, env=self.env,
                stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout,
                user=account.pw_uid if account else None, group=account.pw_gid if account else None,
                extra_groups=[] if account else None)
        except (OSError, subprocess.SubprocessError) as e:
            raise PgUnavailable(f"{args[0]} could not run: {e}") from e

    def _initdb(self) -> None:
        done = self._run("initdb", "-D", str(self.data), "-U", SUPERUSER, "-A", "trust",
                         "-E", "UTF8", "--locale=C", "--no-sync")
        if done.returncode != 0:
            raise PgUnavailable(f"initdb failed (exit {done.returncode}"
                                f"{self._as()}): {one_line(done.stderr + done.stdout)}")
        settings = {**SETTINGS, "unix_socket_directories": f"'{self.root}'"}
        with open(self.data / "postgresql.conf", "a") as conf:
            conf.write("\n# tests/postgres.py\n")
            conf.writelines(f"{key} = {value}\n" for key, value in settings.items())

    def _as(self) -> str:
        return f", as {self.account.pw_name}" if self.account else ""

    def start(self, first: bool = False) -> None:
        """pg_ctl start, waiting until it accepts connections. The first start picks a free
        port (and picks again if another process took it meanwhile); later ones keep it."""
        if self.is_running():
            return
        for attempt in range(3 if first else 1):
            if first:
                self.port = bench_pg.free_port()
            log_start = self.log.stat().st_size if self.log.exists() else 0
            done = self._run("pg_ctl", "start", "-D", str(self.data), "-l", str(self.log),
                             "-w", "-t", "60", "-o", f"-p {self.port}")
            if done.returncode == 0:
                return
            log = self.log.read_text(errors="replace")[log_start:] if self.log.exists() else ""
            if not (first and "Address already in use" in log and attempt < 2):
                raise PgUnavailable(f"pg_ctl start failed (exit {done.returncode}{self._as()}): "
                                    f"{one_line(log or done.stderr + done.stdout)}")

    def stop(self, mode: StopMode = "fast") -> None:
        if not self.is_running():
            return
        done = self._run("pg_ctl", "stop", "-D", str(self.data), "-m", mode, "-w", "-t", "60")
        if done.returncode != 0 and self.is_running():
            raise PgUnavailable(f"pg_ctl stop failed (exit {done.returncode}): "
                                f"{one_line(done.stderr + done.stdout)}")

    def is_running(self) -> bool:
        """The postmaster named in postmaster.pid is alive (as `pg_ctl status` decides; a
        zombie, which a killed postmaster is until reaped, counts as dead)."""
        try:
            pid = int((self.data / "postmaster.pid").read_text().split("\n", 1)[0])
            os.kill(pid, 0)
        except PermissionError:
            pass  # alive, and not ours to signal
        except (OSError, ValueError):
            return False
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except FileNotFoundError:
            return False  # gone since kill(pid, 0)
        except (OSError, IndexError):
            return True  # /proc cannot tell: kill(pid, 0) said alive
        return state != "Z"

    def destroy(self) -> None:
        if self.root.exists():
            try:
                self.stop("fast")
            finally:
                shutil.rmtree(self.root, ignore_errors=True)
