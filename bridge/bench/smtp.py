"""SMTP ingress throughput against the ceiling of aiosmtpd itself.

    python -m bridge.bench.smtp [--mails 4000] [--rounds 3] [--connections 8]
                                [--per-session 50] [--warmup 200] [--no-receipts]

One load generator (this process: asyncio, raw sockets) and three servers, each in its own
child process, each on a `loop.create_server` listener:
- noop: aiosmtpd with a no-op handler (`250 OK` after DATA): the ceiling of aiosmtpd here;
- accept_only: the bridge's SMTP listener, mail → text, Service and the SQLite store with
  durable group commit, but no dispatcher and no SMPP (where the time goes, by subtraction);
- bridge: the whole bridge (SMTP → text → Service → SQLite → dispatcher → SMPP client) against
  an SMSC simulator running in this process, with receipts (unless --no-receipts), so the
  bridge also processes the DLRs, as in production.
Each of `connections` clients sends one recipient per mail, `per-session` mails per session
(MAIL/RCPT/DATA pipelined as RFC 2920 allows, then the content), then QUIT and reconnects.
Recipients rotate over 2,000 valid numbers and every mail has its own Message-ID and text, so
no duplicate, flood or rate policy refuses any. Each round sends `mails` to each server in turn
(noise from the machine falls on all three alike); medians and samples are printed.
`bridge_end_to_end` counts until the simulator has received every submit_sm; the ratios are
against noop. `delivery` checks, by the event tag in each text, that the simulator received
every mail of every round exactly once (`targets.exactly_once`). `cpu_us_per_mail` gives each
process's CPU per mail (load = this process, with the simulator; the bridge's until its
receipts are recorded): 2e6 / total bounds what two cores can do, and `cores_busy_at_target`
is what 0.70 of the no-op rate would keep busy at that cost. `store_per_mail` gives the
whole bridge's store transactions (one fsync each) and write operations per mail, read from its
/metrics. Prints one JSON object.

accept_only and the bridge log as `sms-bridge serve` does, at the shipped level unless
`--log-level` says otherwise, each into a file in the bench's temporary folder (not onto the
terminal); the JSON gives `log_level` and the lines they logged (`log_lines`, warm-up
included).

On PostgreSQL or both (`--store postgresql|both`, `--compare`, `--url URL`; see
bridge.bench.stores): accept_only and the bridge run on each chosen store, each on a fresh
store of its own, the no-op once per round and the stores in turn within it; the JSON then
has the no-op's figures, a summary per store and `postgresql_vs_sqlite` (the median of the
rounds' own ratios). CPU of a PostgreSQL server counts under "postgres".

Against a running bridge instead (`--target HOST:PORT --to "+4474001{n:05d}"`): only the load
generator runs, and the JSON gives every answer by reply code ("250 2.0.0", "451 4.7.1" for a
rate limit, …), accepted and answered mails per second, the time from a mail's last octet to its
answer (p50/p90/p99/max), and sessions that failed and why (a refused login, a lost connection).
`--rate` paces the load, `--starttls`/`--user` (password from $SMS_BRIDGE_BENCH_PASSWORD) log
in, and `--metrics URL` also waits until the bridge's successful submits have grown by what it
accepted (end to end). Every accepted mail is an SMS to a number of `--to`: aim it at a bridge
whose SMSC is the simulator or a test SMSC. A progress bar goes to standard error on a terminal.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import collections
import contextlib
import dataclasses
import json
import os
import re
import ssl
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from bridge.bench.kit import (CpuMeter, Progress, SubmitWatch, add_log_option,
                              announce_and_wait, child_process, client_tls, delivery_check,
                              delivery_total, latency_ms, log_lines, log_to_file,
                              median_by_key, number_template_problem, store_commits,
                              target_options)
from bridge.bench.stores import (POSTGRESQL, SQLITE, Stores, add_store_options, chosen_kinds,
                                 stores)
from bridge.config import Config, parse_config

_MAIL_FROM = "monitor@acme.example"
LOG = "bridge.log"  # a bench server's log, in its folder


_EVENT = re.compile(r"\(event ([a-z]+-[0-9]+)\)")


def _number(i: int) -> str:
    return f"+4474001{i % 2000:05d}"


def _event(text: str) -> str | None:
    """The mail an SMS came from, by the event tag `_mail` writes into the body."""
    found = _EVENT.search(text)
    return found.group(1) if found else None


def _mail(i: int, tag: str, *, mail_from: str, to: str) -> bytes:
    """A monitoring tool's alert: text/plain, a subject, about 600 octets."""
    return (
        f"From: Monitoring <{mail_from}>\r\n"
        f"To: <{to}>\r\n"
        f"Subject: PROBLEM: web-{i % 40:02d} HTTP is CRITICAL\r\n"
        f"Date: Mon, 8 Jan 2024 03:00:00 +0000\r\n"
        f"Message-ID: <bench-{tag}-{i}@mon1.acme.example>\r\n"
        "MIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        "Content-Transfer-Encoding: 8bit\r\n"
        "X-Mailer: bench\r\n"
        "\r\n"
        f"Host web-{i % 40:02d} (10.0.3.{i % 250}) state CRITICAL since 03:00 UTC.\r\n"
        f"Check HTTP: socket timeout after 10 s (event {tag}-{i}).\r\n"
        "\r\n"
        "-- \r\n"
        "Nagios Monitoring, mon1.acme.example\r\n"
        "This message was generated automatically.\r\n"
    ).encode()


# ---------------------------------------------------------------- children


async def _serve_noop() -> None:
    from aiosmtpd.smtp import SMTP

    class Noop:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            return "250 OK"

    import logging
    logging.getLogger("mail.log").setLevel(logging.WARNING)
    loop = asyncio.get_running_loop()
    handler = Noop()
    server = await loop.create_server(
        lambda: SMTP(handler, data_size_limit=1_048_576, enable_SMTPUTF8=True,
                     hostname="noop.localhost", auth_require_tls=False, loop=loop),
        "127.0.0.1", 0)
    await announce_and_wait({"port": server.sockets[0].getsockname()[1],
                             "pids": {"server": os.getpid()}})
    server.close()


def _bridge_config(smsc_port: int, directory: str, store_url: str = "") -> Config:
    """The shipped defaults except: an SMSC at `smsc_port`, an account without a rate limit,
    the store `store_url` names (default: SQLite in `directory`)."""
    return parse_config({
        "smtp": {"listen": "127.0.0.1:0", "domains": ["sms.localhost"]},
        "soap": {"listen": "127.0.0.1:0"},
        "store": {"url": store_url or f"sqlite:///{Path(directory) / 'bench.db'}"},
        "smsc": [{"name": "sim", "host": "127.0.0.1", "port": smsc_port or 2775,
                  "system_id": "bridge", "password": "secret", "window": 50}],
        "account": [{"name": "bench", "password": "bench-password", "senders": ["ACME"],
                     "default_sender": "ACME", "rate_per_s": 100_000,
                     "relay_networks": ["127.0.0.1/32"]}],
    }, base_dir=Path(directory))


async def _serve_bridge(smsc_port: int, directory: str, store_url: str, log_level: str) -> None:
    from bridge.runtime.app import Bridge, freeze_startup_heap

    log_to_file(Path(directory) / LOG, log_level)
    bridge = Bridge(_bridge_config(smsc_port, directory, store_url))
    await bridge.start()
    await bridge.wait_bound(10.0)
    freeze_startup_heap()  # as `sms-bridge serve` does
    await announce_and_wait({"port": bridge.smtp_port,
                             "pids": {"server": os.getpid(), "store": bridge.store.pid},
                             "metrics": f"http://127.0.0.1:{bridge.soap_port}/metrics"})
    await bridge.stop()


async def _serve_accept_only(directory: str, store_url: str, log_level: str) -> None:
    """SMTP → text → Service → durable SQLite, without the dispatcher and SMPP: where the
    end-to-end time goes, by subtraction."""
    from bridge.metrics import Metrics
    from bridge.intake.service import Service
    from bridge.ingress.smtp.server import start_smtp
    from bridge.runtime import open_store

    config = _bridge_config(0, directory, store_url)
    log_to_file(Path(directory) / LOG, log_level)
    store = open_store(config.store, config.base_dir)
    await store.open()
    server = await start_smtp(Service(config, store), config, Metrics())
    await announce_and_wait({"port": server.sockets[0].getsockname()[1],
                             "pids": {"server": os.getpid(), "store": store.pid}})
    server.close()
    await store.close()


# ---------------------------------------------------------------- load generator


class _Client(asyncio.Protocol):
    """One SMTP client connection as a Protocol: replies are split from the byte stream in
    `data_received` and handed to the waiting coroutine, so the load generator takes less of
    the CPU the servers share with it on a 2-core machine than with a StreamReader and a
    `readuntil` per line (about 320-390 against 410-450 µs per mail, simulator included)."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self._buffer = b""
        self._replies: collections.deque[str] = collections.deque()
        self._waiter: asyncio.Future[None] | None = None
        self._closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        *lines, self._buffer = self._buffer.split(b"\r\n")
        for line in lines:
            if line[3:4] != b"-":  # the last line of a (possibly multi-line) reply
                self._replies.append(line.decode())
        if self._replies and self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self._closed.done():
            self._closed.set_result(None)
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(ConnectionError("the server closed the connection"))

    def write(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.write(data)

    async def reply(self) -> str:
        """The next reply's last line."""
        while not self._replies:
            if self._closed.done():
                raise ConnectionError("the server closed the connection")
            self._waiter = asyncio.get_running_loop().create_future()
            await self._waiter
        return self._replies.popleft()

    async def expect(self, code: str) -> str:
        line = await self.reply()
        if not line.startswith(code):
            raise RuntimeError(f"expected {code}, got {line.strip()}")
        return line

    async def close(self) -> None:
        if self.transport is not None:
            self.transport.close()
        await self._closed


_REPLY_KEY = re.compile(r"\d{3}(?: [245]\.\d{1,3}\.\d{1,3})?")


class _Outcomes:
    """What the server answered each mail: counts by reply ("250 2.0.0", "451 4.7.1", …; the
    first refusal of MAIL, RCPT or DATA, else the answer to the content) and, for mails whose
    content was sent, the time from its last octet to the answer (durably stored, here)."""

    def __init__(self) -> None:
        self.replies: collections.Counter[str] = collections.Counter()
        self.latencies: list[float] = []
        self.session_errors: collections.Counter[str] = collections.Counter()

    def add(self, line: str) -> None:
        found = _REPLY_KEY.match(line)
        self.replies[found.group(0) if found else line[:3]] += 1

    @property
    def accepted(self) -> int:
        return sum(n for key, n in self.replies.items() if key.startswith("250"))

    def summary(self) -> dict[str, Any]:
        return {"replies": dict(sorted(self.replies.items())),
                "latency_ms": latency_ms(self.latencies),
                "session_errors": dict(self.session_errors)}


@dataclasses.dataclass(frozen=True)
class _Login:
    """How a session gets the right to send: STARTTLS first, then AUTH PLAIN, when given."""
    starttls: ssl.SSLContext | None = None
    user: str = ""
    password: str = ""


async def _session(host: str, port: int, mails: list[bytes], rcpts: list[str],
                   outcomes: _Outcomes, *, mail_from: str = _MAIL_FROM,
                   domain: str = "sms.localhost", login: _Login = _Login(),
                   progress: Progress | None = None, pace: Callable[[], Awaitable[None]] | None
                   = None) -> None:
    loop = asyncio.get_running_loop()
    _, client = await loop.create_connection(_Client, host, port)
    await client.expect("220")
    client.write(b"EHLO bench.localhost\r\n")
    await client.expect("250")
    if login.starttls is not None:
        client.write(b"STARTTLS\r\n")
        await client.expect("220")
        assert client.transport is not None
        client.transport = await loop.start_tls(
            client.transport, client, login.starttls, server_hostname=host)
        client.write(b"EHLO bench.localhost\r\n")
        await client.expect("250")
    if login.user:
        token = base64.b64encode(f"\0{login.user}\0{login.password}".encode()).decode()
        client.write(f"AUTH PLAIN {token}\r\n".encode())
        await client.expect("235")
    for data, rcpt in zip(mails, rcpts):
        if pace is not None:
            await pace()
        client.write(f"MAIL FROM:<{mail_from}>\r\nRCPT TO:<{rcpt}@{domain}>\r\nDATA\r\n"
                     .encode())
        answers = [await client.reply(), await client.reply(), await client.reply()]
        if answers[2].startswith("354"):
            sent = time.perf_counter()
            client.write(data + b".\r\n")
            answer = await client.reply()
            outcomes.latencies.append(time.perf_counter() - sent)
            outcomes.add(answer)
        else:  # the first refusal says why; nothing was sent
            outcomes.add(next(a for a in answers if not a.startswith("250")))
            client.write(b"RSET\r\n")
            await client.expect("250")
        if progress is not None:
            progress.advance()
    client.write(b"QUIT\r\n")
    await client.expect("221")
    await client.close()


async def _load(port: int, *, tag: str, first: int, count: int, connections: int,
                per_session: int, host: str = "127.0.0.1", outcomes: _Outcomes | None = None,
                progress: Progress | None = None, rate: float = 0.0,
                number: Callable[[int], str] = _number, mail_from: str = _MAIL_FROM,
                domain: str = "sms.localhost", login: _Login = _Login()) -> float:
    """Send `count` mails over `connections` concurrent clients; seconds taken. Without
    `outcomes` every mail must be accepted (the bench's own servers); with it, answers are
    counted, and a session that fails (refused login, lost connection) is counted by why and
    ends alone. `rate` > 0 paces all clients
    together to that many mails per second."""
    queue: list[tuple[bytes, str]] = [
        (_mail(i, tag, mail_from=mail_from, to=f"{number(i)}@{domain}"), number(i))
        for i in range(first, first + count)]
    position = 0
    strict = outcomes is None
    seen = outcomes if outcomes is not None else _Outcomes()
    start = time.perf_counter()
    slots = 0

    async def pace() -> None:
        nonlocal slots
        due = start + slots / rate
        slots += 1
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)

    async def worker() -> None:
        nonlocal position
        while position < len(queue):
            batch = queue[position:position + per_session]
            position += len(batch)
            try:
                await _session(host, port, [m for m, _ in batch], [r for _, r in batch], seen,
                               mail_from=mail_from, domain=domain, login=login,
                               progress=progress, pace=pace if rate > 0 else None)
            except (ConnectionError, OSError, RuntimeError) as exc:
                if strict:
                    raise
                seen.session_errors[f"{type(exc).__name__}: {exc}"] += 1

    try:
        await asyncio.gather(*(worker() for _ in range(connections)))
    finally:
        if progress is not None:
            progress.close()
    seconds = time.perf_counter() - start
    if strict and seen.accepted != count:
        raise RuntimeError(f"{tag}: not every mail was accepted: {seen.summary()['replies']}")
    return seconds


@dataclasses.dataclass
class _StoreServers:
    """One store kind's two servers (accept_only, the whole bridge) and their rounds."""

    kind: str
    accept: dict[str, Any]
    bridge: dict[str, Any]
    meters: dict[str, CpuMeter]
    samples: dict[str, list[float]] = dataclasses.field(default_factory=lambda: {
        "accept_only": [], "bridge_accepted": [], "bridge_end_to_end": []})
    cpu: dict[str, list[dict[str, float]]] = dataclasses.field(
        default_factory=lambda: {"accept_only": [], "bridge": []})
    deliveries: list[dict[str, int]] = dataclasses.field(default_factory=list)
    commits: list[dict[str, float]] = dataclasses.field(default_factory=list)

    @property
    def tag(self) -> str:
        """The event tag of its bridge's mails (letters only), as before for SQLite."""
        return "bridge" if self.kind == SQLITE else f"bridge{self.kind}"


def _logs(made: Stores, kind: str) -> list[Path]:
    """The log files of one store kind's two servers (accept_only, the whole bridge)."""
    folder = Path(made.directory) / kind
    return [folder / "accept" / LOG, folder / "bridge" / LOG]


async def _start_servers(children: contextlib.AsyncExitStack, made: Stores, kind: str,
                         sim_port: int, log_level: str) -> _StoreServers:
    me = ("-m", "bridge.bench.smtp", "--log-level", log_level, "--child")
    folder = Path(made.directory) / kind
    accept_log, bridge_log = _logs(made, kind)
    accept = await children.enter_async_context(child_process(
        *me, "accept", "--dir", str(folder / "accept"),
        "--store-url", await made.fresh(kind, "smtp_accept"), log=accept_log))
    bridge = await children.enter_async_context(child_process(
        *me, "bridge", "--smsc-port", str(sim_port), "--dir", str(folder / "bridge"),
        "--store-url", await made.fresh(kind, "smtp_bridge"), log=bridge_log))
    extra = made.cpu(kind)
    return _StoreServers(kind, accept, bridge, {
        "accept_only": CpuMeter(accept["pids"], extra),
        "bridge": CpuMeter(bridge["pids"], extra)})


async def _accept_round(servers: _StoreServers, args: argparse.Namespace, r: int,
                        first: int) -> None:
    n = args.mails
    before = servers.meters["accept_only"].read()
    seconds = await _load(servers.accept["port"], tag=f"accept{servers.kind}", first=first,
                          count=n, connections=args.connections, per_session=args.per_session,
                          progress=Progress(n, f"round {r + 1} accept_only {servers.kind}"))
    servers.samples["accept_only"].append(n / seconds)
    servers.cpu["accept_only"].append(servers.meters["accept_only"].us_per_message(before, n))


async def _bridge_round(servers: _StoreServers, sim: Any, args: argparse.Namespace, r: int,
                        first: int) -> None:
    """One load of the whole bridge: until the simulator has every submit (end to end) and,
    with receipts, until the bridge has recorded them; what it delivered, checked."""
    n, bridge = args.mails, servers.bridge
    base = len(sim.submits)
    commits_before = await store_commits(bridge["metrics"])
    before = servers.meters["bridge"].read()
    start = time.perf_counter()
    seconds = await _load(bridge["port"], tag=servers.tag, first=first, count=n,
                          connections=args.connections, per_session=args.per_session,
                          progress=Progress(n, f"round {r + 1} bridge {servers.kind}"))
    await sim.wait_for_submits(base + n, timeout=120)
    servers.samples["bridge_accepted"].append(n / seconds)
    servers.samples["bridge_end_to_end"].append(n / (time.perf_counter() - start))
    if not args.no_receipts:  # let the bridge finish the DLRs before the next load
        await sim.wait_until(lambda: sim.receipts_sent >= len(sim.submits)
                             and sim.unacked_deliveries == 0, timeout=60)
    servers.cpu["bridge"].append(servers.meters["bridge"].us_per_message(before, n))
    commits_after = await store_commits(bridge["metrics"])
    servers.commits.append({key: round((commits_after[key] - commits_before[key]) / n, 2)
                            for key in commits_before})
    servers.deliveries.append(delivery_check(
        (_event(s.text) for s in sim.submits[base:]),
        {f"{servers.tag}-{i}" for i in range(first, first + n)}))
    await asyncio.sleep(0.2)


def _store_summary(servers: _StoreServers, noop_rate: float) -> dict[str, Any]:
    """One store kind's figures: medians over the rounds, ratios against the no-op."""
    result: dict[str, Any] = {}
    for name, values in servers.samples.items():
        result[f"{name}_msgs_per_s"] = round(statistics.median(values), 1)
        result[f"{name}_samples"] = [round(v, 1) for v in values]
    # CPU µs per mail by process (load = this process, with the simulator), medians over the
    # rounds; the bridge's counts until its receipts are recorded too.
    result["cpu_us_per_mail"] = {name: median_by_key(values)
                                 for name, values in servers.cpu.items()}
    # Store transactions (each one fsync) and write operations per mail in the whole bridge.
    result["store_per_mail"] = median_by_key(servers.commits)
    result["delivery"] = delivery_total(servers.deliveries)
    result["ratio_accept_only_vs_noop"] = round(result["accept_only_msgs_per_s"] / noop_rate, 3)
    result["ratio_end_to_end_vs_noop"] = round(result["bridge_end_to_end_msgs_per_s"]
                                               / noop_rate, 3)
    result["targets"] = {"end_to_end_vs_noop_0.70": result["ratio_end_to_end_vs_noop"] >= 0.7,
                         "exactly_once": result["delivery"]["exactly_once"]}
    # What the 0.70 target would take at this CPU per mail: cores busy for the whole bridge,
    # its load and simulator included (this machine has `cpus`).
    bridge_cpu = result["cpu_us_per_mail"].get("bridge", {}).get("total", 0.0)
    result["cores_busy_at_target"] = round(0.7 * noop_rate * bridge_cpu / 1e6, 2)
    return result


async def _run(args: argparse.Namespace) -> dict[str, Any]:
    from bridge.config import SimulatorConfig
    from bridge.simulator import SmscSimulator

    kinds = chosen_kinds(args)
    n, conns, per = args.mails, args.connections, args.per_session
    result: dict[str, Any] = {"mails_per_round": n, "rounds": args.rounds, "connections": conns,
                              "mails_per_session": per, "recipients_per_mail": 1,
                              "warmup_mails": args.warmup, "cpus": os.cpu_count(),
                              "receipts": not args.no_receipts, "log_level": args.log_level}
    noop_samples: list[float] = []
    noop_cpu: list[dict[str, float]] = []
    sim = SmscSimulator(SimulatorConfig(enabled=True, port=0, receipts=not args.no_receipts,
                                        receipt_delay_s=0.05), history=None)
    sim_port = await sim.start()
    with tempfile.TemporaryDirectory(prefix="smtp-bench-") as directory:
        try:
            async with stores(kinds, Path(directory), args.url) as made, \
                    contextlib.AsyncExitStack() as children:
                noop = await children.enter_async_context(child_process(
                    "-m", "bridge.bench.smtp", "--child", "noop"))
                servers = [await _start_servers(children, made, kind, sim_port,
                                                args.log_level) for kind in kinds]
                for child in [noop] + [c for s in servers for c in (s.accept, s.bridge)]:
                    await _load(child["port"], tag="warm", first=0, count=args.warmup,
                                connections=conns, per_session=per)
                await sim.wait_for_submits(args.warmup * len(servers), timeout=60)
                noop_meter = CpuMeter(noop["pids"])
                # Rounds alternate the servers (and the stores), so that noise from the
                # machine (2 cores, other work) falls on all of them alike; medians reported.
                for r in range(args.rounds):
                    first = (r + 1) * n
                    before = noop_meter.read()
                    seconds = await _load(noop["port"], tag="noop", first=first, count=n,
                                          connections=conns, per_session=per,
                                          progress=Progress(n, f"round {r + 1} noop"))
                    noop_samples.append(n / seconds)
                    noop_cpu.append(noop_meter.us_per_message(before, n))
                    for each in servers:
                        await _accept_round(each, args, r, first)
                        await _bridge_round(each, sim, args, r, first)
                described = made.describe()
            # The servers have stopped: every line they logged is in their files.
            result["log_lines"] = log_lines(p for kind in kinds for p in _logs(made, kind))
        finally:
            await sim.stop()
    result["noop_msgs_per_s"] = round(statistics.median(noop_samples), 1)
    result["noop_samples"] = [round(v, 1) for v in noop_samples]
    result["submits_at_simulator"] = len(sim.submits)
    result["receipts_sent"] = sim.receipts_sent
    summaries = {s.kind: _store_summary(s, result["noop_msgs_per_s"]) for s in servers}
    if len(kinds) == 1:
        flat = summaries[kinds[0]]
        flat["cpu_us_per_mail"] = {"noop": median_by_key(noop_cpu), **flat["cpu_us_per_mail"]}
        return {**result, **flat, "store": kinds[0], **described}
    result["cpu_us_per_mail_noop"] = median_by_key(noop_cpu)
    return {**result, **described, **summaries, **_compared(servers)}


def _compared(servers: list[_StoreServers]) -> dict[str, Any]:
    """PostgreSQL over SQLite from the same rounds (the median of the rounds' own ratios);
    exactly once on both."""
    by_kind = {s.kind: s for s in servers}
    pg, lite = by_kind[POSTGRESQL].samples, by_kind[SQLITE].samples

    def ratio(name: str) -> float:
        return round(statistics.median(a / b for a, b in zip(pg[name], lite[name])), 3)
    once = all(delivery_total(s.deliveries)["exactly_once"] for s in servers)
    return {"postgresql_vs_sqlite": {"end_to_end": ratio("bridge_end_to_end"),
                                     "accepted": ratio("bridge_accepted"),
                                     "accept_only": ratio("accept_only")},
            "targets": {"exactly_once": once}}


def _letters(n: int) -> str:
    """`n` in base 26 as lowercase letters: a run's tag (the event tag takes letters only)."""
    out = ""
    while True:
        n, digit = divmod(n, 26)
        out = chr(97 + digit) + out
        if not n:
            return out


async def _against(args: argparse.Namespace) -> dict[str, Any]:
    """Load a running bridge (`--target`): every mail's answer, rates, latency; with
    `--metrics`, also until the bridge has submitted what it accepted."""
    host, port = args.target_address
    login = _Login(client_tls(args.cafile, args.insecure) if args.starttls else None,
                   args.user, os.environ.get(args.password_env, "") if args.user else "")
    template: str = args.to

    def number(i: int) -> str:
        return template.format(n=i % args.numbers)

    watch = SubmitWatch(args.metrics) if args.metrics else None
    if watch is not None:
        await watch.start()
    outcomes = _Outcomes()
    seconds = await _load(port, host=host, tag=_letters(time.time_ns() // 1_000_000),
                          first=0, count=args.mails, connections=args.connections,
                          per_session=args.per_session, outcomes=outcomes,
                          progress=Progress(args.mails, f"smtp → {args.target}"),
                          rate=args.rate, number=number, mail_from=args.mail_from,
                          domain=args.domain, login=login)
    accepted = outcomes.accepted
    result: dict[str, Any] = {
        "target": args.target, "mails": args.mails, "connections": args.connections,
        "mails_per_session": args.per_session, "rate_limit": args.rate,
        "seconds": round(seconds, 3), "accepted": accepted,
        "accepted_msgs_per_s": round(accepted / seconds, 1),
        "answered_msgs_per_s": round(sum(outcomes.replies.values()) / seconds, 1),
        **outcomes.summary()}
    if watch is not None:
        result.update(await watch.finish(accepted, args.wait))
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bridge.bench.smtp", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mails", type=int, default=4000)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--per-session", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-receipts", action="store_true")
    add_store_options(parser)
    add_log_option(parser)
    target = target_options(parser, metavar="HOST:PORT", target_help="its SMTP listener",
                            unit="mails", tls="STARTTLS")
    target.add_argument("--domain", default="sms.localhost")
    target.add_argument("--mail-from", default=_MAIL_FROM)
    target.add_argument("--starttls", action="store_true")
    target.add_argument("--user", default="", help="AUTH PLAIN as this user")
    parser.add_argument("--child", choices=("noop", "accept", "bridge"), help=argparse.SUPPRESS)
    parser.add_argument("--smsc-port", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--dir", default="", help=argparse.SUPPRESS)
    parser.add_argument("--store-url", default="", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if not 1 <= args.mails <= 1_000_000 or not 1 <= args.connections <= 1000 \
            or args.per_session < 1 or args.warmup < 0 or not 1 <= args.rounds <= 20:
        parser.error("out of range")
    if args.target:
        from bridge.config import split_host_port

        args.target_address = split_host_port(args.target)
        if args.target_address is None or not args.target_address[0] \
                or not args.target_address[1]:
            parser.error('--target must be "host:port"')
        problem = number_template_problem(args.to)
        if problem:
            parser.error(problem)
        if not 1 <= args.numbers <= 10_000_000 or args.rate < 0 or args.wait < 0:
            parser.error("out of range")
        print(json.dumps(asyncio.run(_against(args)), indent=2))
        return
    if args.child == "noop":
        asyncio.run(_serve_noop())
    elif args.child == "accept":
        asyncio.run(_serve_accept_only(args.dir, args.store_url, args.log_level))
    elif args.child == "bridge":
        asyncio.run(_serve_bridge(args.smsc_port, args.dir, args.store_url, args.log_level))
    else:
        print(json.dumps(asyncio.run(_run(args)), indent=2))


if __name__ == "__main__":
    main()
