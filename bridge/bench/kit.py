"""What the benchmarks share: servers run in a child process so load generator and server
each get one of the two cores.

A child announces itself with one JSON line on stdout (its ports) and serves until its stdin
closes, so it never outlives the parent, however the parent ends.

    python -m bridge.bench.kit simulator [--no-receipts] [--receipt-delay S] [--system-id ID]
        [--error-every N [--error-status 0x08]]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import os
import ssl
import statistics
import sys
import time
from pathlib import Path
from typing import (Any, AsyncIterator, Callable, Collection, Iterable, Mapping, Sequence,
                    TextIO)

try:
    import httptools
except ImportError:  # the bench extra (pyproject.toml), not a dependency of the product
    print("bridge.bench: the benches need httptools, not installed: "
          ".venv/bin/pip install -e '.[bench]'", file=sys.stderr)
    raise SystemExit(2) from None


async def announce_and_wait(info: Mapping[str, Any]) -> None:
    """Child side: print `info` as the ready line, then block until stdin closes."""
    print(json.dumps(dict(info)), flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)


def add_log_option(parser: argparse.ArgumentParser) -> None:
    """`--log-level`: the level the bench's bridges log at, by default the one the bridge ships
    with ([log] level), so that the figures are those of a bridge as it is run."""
    from bridge.config import LogConfig

    parser.add_argument("--log-level", choices=("debug", "info", "warning", "error"),
                        default=LogConfig().level,
                        help="the bench bridges' log level, as [log] level (default: the "
                             "shipped %(default)s); the log goes to a file in the bench's "
                             "temporary folder")


def log_to_file(path: Path, level: str) -> None:
    """Child side, before the bridge starts: its processes log as `sms-bridge serve` does
    (bridge.logs: one line per event, written off the event loop) at `level`, into `path`, not
    onto the terminal the bench draws its progress on. Standard error becomes that file, so
    the store process the bridge starts (which inherits it) logs there too."""
    from bridge.logs import setup_logging

    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 2)
    os.close(fd)
    setup_logging(level)


def log_lines(paths: Iterable[Path]) -> int:
    """How many lines the bench bridges logged (after they stopped)."""
    total = 0
    for path in paths:
        with contextlib.suppress(FileNotFoundError), path.open("rb") as f:
            total += sum(1 for _ in f)
    return total


def _tail(path: Path | None, lines: int = 5) -> str:
    if path is None:
        return ""
    try:
        last = path.read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        return ""
    return "".join(f"\n  {line}" for line in last)


@contextlib.asynccontextmanager
async def child_process(*args: str, ready_timeout: float = 60.0, stop_timeout: float = 30.0,
                        log: Path | None = None) -> AsyncIterator[dict[str, Any]]:
    """Parent side: run `python ARGS`, yield its ready line; on exit close its stdin and wait
    (killing it only when it does not stop by itself). `log`: the child's log file
    (`log_to_file`), whose last lines say why when it ends before it is ready."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, *args, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
    assert proc.stdin is not None and proc.stdout is not None
    try:
        line = await asyncio.wait_for(proc.stdout.readline(), ready_timeout)
        if not line:
            await proc.wait()
            raise RuntimeError(f"{' '.join(args)}: exited before it was ready "
                               f"(exit {proc.returncode}){_tail(log)}")
        yield json.loads(line)
    finally:
        proc.stdin.close()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(proc.wait(), stop_timeout)
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


def process_cpu_s(pid: int) -> float:
    """CPU seconds of every thread of a live process, from /proc (schedstat: ns resolution)."""
    total = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/schedstat", encoding="ascii") as f:
            total += int(f.read().split()[0])
    return total / 1e9


class CpuMeter:
    """CPU of named processes, this one ("load") included, between a reading and now, as µs
    per message: steadier than rates on a noisy 2-core machine, and it says which process a
    figure is bound by. `extra` names other readers of CPU seconds, such as a PostgreSQL
    server's processes (bridge.bench.pg); one that cannot tell (None) is left out."""

    def __init__(self, pids: Mapping[str, int],
                 extra: Mapping[str, Callable[[], float | None]] | None = None) -> None:
        self.pids = {"load": os.getpid(), **pids}
        self.extra = dict(extra or {})

    def read(self) -> dict[str, float]:
        out = {name: process_cpu_s(pid) for name, pid in self.pids.items()}
        for name, reader in self.extra.items():
            value = reader()
            if value is not None:
                out[name] = value
        return out

    def us_per_message(self, before: Mapping[str, float], messages: int) -> dict[str, float]:
        after = self.read()
        out = {name: round((after[name] - before[name]) / max(1, messages) * 1e6, 1)
               for name in after if name in before}
        out["total"] = round(sum(out.values()), 1)
        return out


async def metric_totals(metrics_url: str, wanted: Mapping[str, tuple[str, dict[str, str]]]
                        ) -> dict[str, float]:
    """Sums of samples from a bridge's /metrics: `wanted` maps a key to (sample name, labels
    a sample must have)."""
    import aiohttp
    from prometheus_client.parser import text_string_to_metric_families

    async with aiohttp.ClientSession() as session:
        async with session.get(metrics_url) as response:
            response.raise_for_status()
            text = await response.text()
    totals = dict.fromkeys(wanted, 0.0)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            for key, (name, labels) in wanted.items():
                if sample.name == name and labels.items() <= sample.labels.items():
                    totals[key] += sample.value
    return totals


async def store_commits(metrics_url: str) -> dict[str, float]:
    """The store's write transactions and the operations they committed so far, from a
    bridge's /metrics: per message, they say how well group commit amortises the fsyncs."""
    return await metric_totals(metrics_url, {
        "commits": ("sms_bridge_store_commit_seconds_count", {}),
        "writes": ("sms_bridge_store_writes_total", {})})


def target_options(parser: argparse.ArgumentParser, *, metavar: str, target_help: str,
                   unit: str, tls: str) -> argparse._ArgumentGroup:
    """The options of a bench's mode against a running bridge that every bench shares; the
    group is returned for the bench's own."""
    group = parser.add_argument_group(
        "against a running bridge", "Load a bridge that is already running instead of the "
        "bench's own servers. Every accepted message becomes an SMS: use a bridge whose SMSC "
        "is the simulator or a test SMSC, and numbers you own.")
    group.add_argument("--target", metavar=metavar, help=target_help)
    group.add_argument("--to", metavar="TEMPLATE",
                       help='the recipients, e.g. "+4474001{n:05d}": n counts 0..numbers-1')
    group.add_argument("--numbers", type=int, default=2000)
    group.add_argument("--rate", type=float, default=0.0,
                       help=f"{unit} per second in all (0: as fast as answers come)")
    group.add_argument("--cafile", default="", help=f"trust this CA for {tls}")
    group.add_argument("--insecure", action="store_true",
                       help=f"{tls} without checking the certificate")
    group.add_argument("--password-env", default="SMS_BRIDGE_BENCH_PASSWORD",
                       help="the environment variable holding the password")
    group.add_argument("--metrics", default="", metavar="URL",
                       help="its /metrics: also wait until it has submitted what it accepted")
    group.add_argument("--wait", type=float, default=60.0,
                       help="at most this long for those submits (seconds)")
    return group


def number_template_problem(template: str | None) -> str | None:
    """What is wrong with a `--to` template for loading a running bridge: the numbers that get
    the SMS are never a default."""
    if not template or "{n" not in template:
        return ('--target needs --to with "{n}" in it, e.g. "+4474001{n:05d}": the numbers '
                "that get the SMS")
    try:
        template.format(n=0)
    except (ValueError, KeyError, IndexError) as exc:
        return f"--to: {exc}"
    return None


def client_tls(cafile: str, insecure: bool) -> ssl.SSLContext:
    """A client's TLS context for a bench: the system's CAs or `cafile`; `insecure` checks
    nothing (a self-signed test bridge)."""
    context = ssl.create_default_context(cafile=cafile or None)
    if insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


class SubmitWatch:
    """End to end against a running bridge: its successful submit_sm from /metrics, read
    before a load and after it until they have grown by what it accepted (other traffic
    counts too; every bench message is one part)."""

    SUBMITS = {"submits": ("sms_bridge_submits_total", {"status": "0x00"})}

    def __init__(self, metrics_url: str) -> None:
        self.url = metrics_url
        self.before = 0.0
        self.started = 0.0

    async def start(self) -> None:
        self.before = (await metric_totals(self.url, self.SUBMITS))["submits"]
        self.started = time.perf_counter()

    async def finish(self, accepted: int, wait_s: float) -> dict[str, Any]:
        deadline = time.perf_counter() + wait_s
        submitted = 0.0
        while time.perf_counter() < deadline:
            submitted = (await metric_totals(self.url, self.SUBMITS))["submits"] - self.before
            if submitted >= accepted:
                break
            await asyncio.sleep(0.05)
        return {"submitted": int(submitted), "end_to_end_msgs_per_s": round(
            min(submitted, accepted) / (time.perf_counter() - self.started), 1)}


class Progress:
    """A progress bar on a terminal (standard error): done/total, the rate so far. Redrawn at
    most ten times a second; silent when the stream is not a terminal, so logs and the JSON on
    standard output stay clean."""

    WIDTH = 24

    def __init__(self, total: int, label: str, stream: TextIO | None = None) -> None:
        self.total = max(1, total)
        self.label = label
        self.stream = stream if stream is not None else sys.stderr
        self.live = self.stream.isatty()
        self.done = 0
        self._started = time.perf_counter()
        self._drawn_at = 0.0
        self._drawn_done = -1

    def advance(self, n: int = 1) -> None:
        self.done += n
        if self.live and (self.done >= self.total
                          or time.perf_counter() - self._drawn_at >= 0.1):
            self._draw()

    def _draw(self) -> None:
        now = time.perf_counter()
        self._drawn_at, self._drawn_done = now, self.done
        filled = min(self.WIDTH, self.WIDTH * self.done // self.total)
        rate = self.done / max(now - self._started, 1e-9)
        self.stream.write(f"\r{self.label} [{'#' * filled}{' ' * (self.WIDTH - filled)}] "
                          f"{self.done:,}/{self.total:,} {rate:,.0f}/s ")
        self.stream.flush()

    def close(self) -> None:
        if self.live:
            if self._drawn_done != self.done:
                self._draw()
            self.stream.write("\n")
            self.stream.flush()


class HttpConnection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 client connection, one request at a time, responses parsed by
    httptools (llhttp): a few µs per response where aiohttp's client spends a few hundred, so
    the load generator takes little of the CPU the server needs on a 2-core machine."""

    def __init__(self, keep_bodies: bool = False) -> None:
        self._parser = httptools.HttpResponseParser(self)
        self._transport: asyncio.Transport | None = None
        self._reply: asyncio.Future[tuple[int, bool]] | None = None
        self._closed: Exception | None = None
        self._keep_bodies = keep_bodies
        self._body: list[bytes] = []
        self.body = b""  # the last response's, when bodies are kept

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(exc)

    def on_body(self, data: bytes) -> None:  # httptools callback
        if self._keep_bodies:
            self._body.append(data)

    def on_message_complete(self) -> None:  # httptools callback
        if self._keep_bodies:
            self.body, self._body = b"".join(self._body), []
        if self._reply is not None and not self._reply.done():
            self._reply.set_result((self._parser.get_status_code(),
                                    self._parser.should_keep_alive()))

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = exc or ConnectionError("the server closed the connection")
        self._fail(self._closed)

    def _fail(self, exc: Exception) -> None:
        if self._reply is not None and not self._reply.done():
            self._reply.set_exception(exc)

    async def request(self, raw: bytes) -> tuple[int, bool]:
        """Send one whole request; (status, keep-alive) once its response has ended."""
        assert self._transport is not None
        if self._closed is not None:  # closed between two responses: nothing would answer
            raise self._closed
        self._reply = asyncio.get_running_loop().create_future()
        self._transport.write(raw)
        return await self._reply

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()


async def http_load(target: tuple[str, int], requests: Sequence[bytes], concurrency: int, *,
                    progress: Progress | None = None,
                    on_body: Callable[[bytes], None] | None = None,
                    tls: ssl.SSLContext | None = None, rate: float = 0.0
                    ) -> tuple[float, list[float], dict[int, int]]:
    """Send every raw HTTP/1.1 request once over `concurrency` keep-alive connections;
    (seconds, latencies, status counts). The requests are built before the clock starts.
    `on_body` gets each response body; `rate` > 0 paces all connections together to that
    many requests per second."""
    loop = asyncio.get_running_loop()
    feed = iter(requests)
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    sent = 0

    async def connect() -> HttpConnection:
        _, conn = await loop.create_connection(
            lambda: HttpConnection(on_body is not None), *target, ssl=tls,
            server_hostname=target[0] if tls is not None else None)
        return conn

    async def worker() -> None:
        nonlocal sent
        conn = await connect()
        try:
            for raw in feed:
                if rate > 0:
                    due, sent = start + sent / rate, sent + 1
                    if due > time.perf_counter():
                        await asyncio.sleep(due - time.perf_counter())
                t0 = time.perf_counter()
                status, keep_alive = await conn.request(raw)
                latencies.append(time.perf_counter() - t0)
                statuses[status] = statuses.get(status, 0) + 1
                if on_body is not None:
                    on_body(conn.body)
                if progress is not None:
                    progress.advance()
                if not keep_alive:
                    conn.close()
                    conn = await connect()
        finally:
            conn.close()

    start = time.perf_counter()
    try:
        await asyncio.gather(*(worker() for _ in range(concurrency)))
    finally:
        if progress is not None:
            progress.close()
    return time.perf_counter() - start, latencies, statuses


def latency_ms(seconds: Iterable[float]) -> dict[str, float]:
    """p50, p90, p99 and max of latencies given in seconds, in milliseconds."""
    data = sorted(seconds)

    def at(q: float) -> float:
        return round(1000 * data[min(len(data) - 1, int(q * len(data)))], 2) if data else 0.0
    return {"p50": at(0.5), "p90": at(0.9), "p99": at(0.99), "max": at(1.0)}


def median_by_key(samples: Sequence[Mapping[str, float]]) -> dict[str, float]:
    """Each key's median over `samples` (rounds)."""
    return {key: round(statistics.median(s[key] for s in samples), 1) for key in samples[0]} \
        if samples else {}


def delivery_check(received: Iterable[str | None], expected: Collection[str]) -> dict[str, int]:
    """Of the messages a load sent (`expected`: one key each), how many the SMSC never received
    and how many extra copies of one it did: the gateway's promise checked under load, so that
    a fast figure can never come from losing or resending messages. Keys of other loads are
    ignored."""
    counts = collections.Counter(key for key in received if key is not None and key in expected)
    return {"expected": len(expected), "missing": len(expected) - len(counts),
            "duplicated": sum(n - 1 for n in counts.values())}


def delivery_total(checks: Iterable[Mapping[str, int] | None]) -> dict[str, Any]:
    """The sum of a bench's delivery checks. `unchecked` counts loads whose submits the
    simulator no longer held (its history is bounded); `exactly_once` says every message of
    every load reached the SMSC once and every load was checked."""
    total = {"expected": 0, "missing": 0, "duplicated": 0, "unchecked": 0}
    for check in checks:
        if check is None:
            total["unchecked"] += 1
            continue
        for key in ("expected", "missing", "duplicated"):
            total[key] += check[key]
    return {**total, "exactly_once": total["missing"] == total["duplicated"]
            == total["unchecked"] == 0}


async def _serve_simulator(args: argparse.Namespace) -> None:
    from bridge.config import SimulatorConfig
    from bridge.simulator import SmscSimulator

    sim = SmscSimulator(SimulatorConfig(enabled=True, port=0, system_id=args.system_id,
                                        password=args.password, receipts=not args.no_receipts,
                                        receipt_delay_s=args.receipt_delay,
                                        error_every=args.error_every,
                                        error_status=args.error_status))
    port = await sim.start()
    try:
        await announce_and_wait({"port": port, "pid": os.getpid()})
    finally:
        await sim.stop()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bridge.bench.kit", description=__doc__)
    sub = parser.add_subparsers(dest="child", required=True)
    sim = sub.add_parser("simulator", help="an SMSC simulator on port 0")
    sim.add_argument("--system-id", default="bridge")
    sim.add_argument("--password", default="secret")
    sim.add_argument("--no-receipts", action="store_true")
    sim.add_argument("--receipt-delay", type=float, default=0.01)
    sim.add_argument("--error-every", type=int, default=0,
                     help="answer every Nth submit_sm with --error-status (0x08 by default)")
    sim.add_argument("--error-status", type=lambda v: int(v, 0), default=0x08)
    args = parser.parse_args(argv)
    asyncio.run(_serve_simulator(args))


if __name__ == "__main__":
    main()
