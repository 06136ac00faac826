"""`sms-bridge` / `python -m bridge`: serve, check-config, status, messages, accounts,
simulator, passwd, wsdl, bench, store copy."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

from bridge import __version__, cli_admin
from bridge.config import (CONFIG_ENV, DEFAULT_CONFIG_PATH, default_config_path, Config, ConfigError, SimulatorConfig, load_config,
                           parse_simulator)
from bridge.logs import setup_logging

if TYPE_CHECKING:
    from bridge.store.base import Store


def _config(path: str) -> Config:
    return load_config(Path(path))


async def _serve(config: Config) -> int:
    from bridge.runtime.app import Bridge, ListenError, freeze_startup_heap

    bridge = Bridge(config)
    try:
        await bridge.start()
    except ListenError as exc:
        print(f"sms-bridge: {exc}", file=sys.stderr, flush=True)
        await bridge.stop(drain_timeout=1.0)
        return 1
    freeze_startup_heap()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    http_host = config.http.listen_host or config.soap.listen_host
    print(f"sms-bridge: SMTP on {config.smtp.listen_host}:{bridge.smtp_port}, "
          f"SOAP on http://{config.soap.listen_host}:{bridge.soap_port}{config.soap.path}, "
          f"HTTP on {http_host}:{bridge.http_port}"
          f"{' (simulator on port %d)' % bridge.simulator.port if bridge.simulator else ''}",
          flush=True)
    stopped = asyncio.ensure_future(stop.wait())
    failed = asyncio.ensure_future(bridge.failed.wait())
    await asyncio.wait((stopped, failed), return_when=asyncio.FIRST_COMPLETED)
    stopped.cancel()
    failed.cancel()
    if bridge.failed.is_set():
        logging.getLogger("bridge").error("the store is lost: stopping (exit 1) so that a "
                                          "supervisor restarts the bridge")
    else:
        logging.getLogger("bridge").info("shutting down: stop intake, drain, unbind")
    await bridge.stop()
    return 1 if bridge.failed.is_set() else 0


async def _status(config: Config, ids: Sequence[str], *, text: bool = False) -> int:
    from bridge.runtime import open_store

    store = open_store(config.store, config.base_dir)
    await store.open()
    try:
        if not ids:
            await _overview(store, config)
            return 0
        views = {v.id: v for v in await store.get_messages(list(ids))}
        code = 0
        for message_id in ids:
            view = views.get(message_id)
            if view is None:
                print(f"{message_id}: not found")
                code = 1
                continue
            print(f"{view.id}  {view.state.value}  to {view.recipient}  account {view.account}  "
                  f"via {view.ingress.value}  {view.parts} part(s), {view.parts_delivered} delivered  "
                  f"{view.encoding}" + (f"  error {view.error}" if view.error else ""))
            if text:
                # As a JSON string: the phone's text exactly, control characters escaped.
                print(f"  text {json.dumps(await store.message_text(message_id), ensure_ascii=False)}")
            for event in await store.timeline(message_id):
                stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(event.at))
                print(f"  {stamp}.{int(event.at * 1000) % 1000:03d}Z  {event.state:<14} "
                      f"{event.detail}")
        return code
    finally:
        await store.close()


async def _overview(store: Store, config: Config) -> None:
    """`status` without ids: the instances on this store (alive, binds, what each holds) and
    the messages by state."""
    from bridge.outbound.membership import views

    now = time.time()
    print("instances:")
    shown = views(await store.instances(), now=now, lease_s=config.store.lease_s)
    for view in shown:
        print(f"  {'alive' if view.alive else 'dead '}  {view.id}  host {view.host or '-'}  "
              f"binds {','.join(view.binds) or '-'}  holds {view.held}  "
              f"heartbeat {view.heartbeat_age_s:.0f} s ago")
    if not shown:
        print("  none yet (an instance shows here once its outbound side has started)")
    counts = await store.counts_by_state()
    print("messages: " + ", ".join(f"{state} {n}" for state, n in counts.items() if n) or "none")


async def _simulator(config: SimulatorConfig) -> int:
    from bridge.simulator import run_simulator

    task = asyncio.ensure_future(run_simulator(config))
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, task.cancel)
    try:
        await task
    except asyncio.CancelledError:
        pass
    return 0


def _command_status(text: str) -> int | str:
    """An SMPP command_status as operators write it, hex (0x45) or decimal (69); anything else
    is passed on as text, so that parse_simulator refuses it by its key (exit 1)."""
    try:
        return int(text, 16) if text.lower().startswith("0x") else int(text)
    except ValueError:
        return text


#: `sms-bridge simulator`'s options: (flag, its [simulator] key, type, help). The options are
#: checked as that table of a config is, and a problem names the flag.
SIMULATOR_FLAGS: tuple[tuple[str, str, Callable[[str], object], str], ...] = (
    ("--host", "host", str, "address to listen on"),
    ("--port", "port", int, "port to listen on (0: any free one, printed)"),
    ("--system-id", "system_id", str, "system_id a bind must give"),
    ("--password", "password", str, "password a bind must give"),
    ("--no-receipts", "receipts", bool, "send no delivery receipts"),
    ("--receipt-delay", "receipt_delay_s", float, "seconds from submit to its receipt"),
    ("--id-format", "id_format", str, "message ids in submit_sm_resp: hex or dec"),
    ("--receipt-id-format", "receipt_id_format", str,
     "message ids in receipts: hex, dec or padded"),
    ("--throttle-every", "throttle_every", int, "answer every Nth submit_sm with 0x58 (throttled)"),
    ("--error-every", "error_every", int,
     "answer every Nth submit_sm with --error-status and no message id"),
    ("--error-status", "error_status", _command_status,
     "command_status of those answers, hex (0x45) or decimal (8 = ESME_RSYSERR)"),
    ("--silent-every", "silent_every", int,
     "never answer every Nth submit_sm (the client must time out); 1 = no submit is "
     "answered, enquire_link still is"),
    ("--throttle-part", "throttle_part", int,
     "answer part K of every concatenated message (UDH or SAR) with 0x58"),
    ("--throttle-part-times", "throttle_part_times", int,
     "throttle only the first T arrivals of that part per message, accept later ones "
     "(0 = always)"),
    ("--drop-between-parts", "drop_between_parts", int,
     "close the connection right after answering part 1 of the Nth concatenated message, "
     "before its other parts (once)"),
    ("--fail-receipt-every", "fail_receipt_every", int, "every Nth receipt says UNDELIV"),
    ("--drop-after", "drop_after", int, "close the connection after N submits (once)"),
    ("--response-delay", "response_delay_s", float, "seconds before a submit_sm_resp"),
    ("--delay-every", "delay_every", int,
     "delay only every Nth submit_sm_resp by --response-delay (0 = every one)"),
    ("--reply-every", "reply_every", int,
     "the handset of every Nth message answers it with an SMS (MO)"),
    ("--reply-text", "reply_text", str, "the text of those answers"),
    ("--redeliver", "redeliver_s", float,
     "a receipt or MO answered with an error status is delivered again after this many "
     "seconds, as SMSCs do (0 = never)"),
)


def _simulator_config(args: argparse.Namespace) -> SimulatorConfig:
    """The options as a [simulator] table, checked by parse_simulator; a problem with a key
    is reported with the flag that set it."""
    table: dict[str, object] = {"enabled": True}
    table.update((key, getattr(args, key)) for _, key, _, _ in SIMULATOR_FLAGS)
    try:
        return parse_simulator(table)
    except ConfigError as exc:
        flags = {f"simulator.{key}": flag for flag, key, _, _ in SIMULATOR_FLAGS}
        raise ConfigError([_flag_problem(problem, flags) for problem in exc.problems]) from None


def _flag_problem(problem: str, flags: dict[str, str]) -> str:
    key, sep, rest = problem.partition(":")
    return f"{flags[key]}:{rest}" if sep and key in flags else problem


def _config_option(parser: argparse.ArgumentParser) -> None:
    default = default_config_path(os.environ)
    parser.add_argument("-c", "--config", metavar="FILE", default=str(default),
                        help=f"the config file (default: ${CONFIG_ENV} if set, else "
                             f"{DEFAULT_CONFIG_PATH} in the working folder; now {default})")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sms-bridge", description=__doc__)
    parser.add_argument("--version", action="version", version=f"sms-bridge {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, help_text in (("serve", "run SMTP, SOAP, dispatcher and the embedded simulator"),
                            ("check-config", "validate a config; exit 1 on any problem")):
        _config_option(sub.add_parser(name, help=help_text))
    p = sub.add_parser("status", help="print the timeline of messages; without ids, the "
                                      "instances on the store and the messages by state")
    p.add_argument("ids", nargs="*")
    p.add_argument("--text", action="store_true",
                   help="also print each message's text, as the phone gets it")
    _config_option(p)
    p = sub.add_parser("simulator", help="run a standalone SMSC simulator")
    for flag, key, kind, help_text in SIMULATOR_FLAGS:
        default = getattr(SimulatorConfig, key)
        if kind is bool:
            p.add_argument(flag, dest=key, action="store_false" if default else "store_true",
                           help=help_text)
        else:
            p.add_argument(flag, dest=key, type=kind, default=default,
                           help=f"{help_text} (default: {default})",
                           metavar="N" if kind is int else "S" if kind is float else "TEXT")
    p = sub.add_parser("passwd", help="print a password_hash (or an api_tokens entry)")
    p.add_argument("--token", action="store_true",
                   help="make a new API token: print it, then its hash for api_tokens")
    p = sub.add_parser("wsdl", help="compare or rewrite the checked-in wsdl/ files")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--check", action="store_true", default=True)
    group.add_argument("--write", action="store_true")
    p.add_argument("--dir", default="wsdl")
    cli_admin.add_parsers(sub)
    _store_parser(sub)
    p = sub.add_parser("bench", help="load generators; each prints a JSON summary")
    p.add_argument("what", choices=("smpp", "store", "soap", "smtp", "http", "failover",
                                    "cluster", "all"))
    p.add_argument("options", nargs=argparse.REMAINDER,
                   help="passed to that benchmark, e.g. `bench soap --rounds 5` "
                        "(python -m bridge.bench.soap --help lists them)")
    return parser


def _store_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`store copy --from URL --to URL [--force]`; its help is bridge.store.copy's."""
    from bridge.store.copy import HELP

    store = sub.add_parser("store", help="commands on a store: copy")
    commands = store.add_subparsers(dest="store_command", required=True)
    p = commands.add_parser("copy", help="move a site from one store to another "
                                         "(SQLite to PostgreSQL)",
                            description=HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--from", dest="source", required=True, metavar="URL",
                   help="the store to copy, e.g. sqlite:///var/bridge.db (only read)")
    p.add_argument("--to", dest="target", required=True, metavar="URL",
                   help="the store to fill, e.g. postgresql://bridge@db.example:5432/bridge")
    p.add_argument("--force", action="store_true",
                   help="replace whatever the target holds (deleted in the copy's transaction)")


#: What `sms-bridge bench` says when the bench extra is missing (README: make builds .venv).
BENCH_EXTRA = "the benches need httptools, not installed: .venv/bin/pip install -e '.[bench]'"


def _bench(what: str, options: Sequence[str] = ()) -> int:
    """Each benchmark is a module that prints one JSON document; run them one after another
    (never concurrently: the machine has two cores) and print them together. `options` go to
    the one benchmark named (each has its own)."""
    import importlib
    import subprocess

    try:  # the load generators' HTTP parser: the bench extra, not a dependency of the product
        importlib.import_module("httptools")
    except ImportError:
        print(f"sms-bridge bench: {BENCH_EXTRA}", file=sys.stderr)
        return 2
    if options and what == "all":
        print("sms-bridge bench: options need one benchmark (smpp, store, soap, smtp or http)",
              file=sys.stderr)
        return 2
    targets = ["smpp", "store", "soap", "smtp", "http"] if what == "all" else [what]
    results: dict[str, object] = {}
    failed = False
    for index, target in enumerate(targets, 1):
        print(f"[{index}/{len(targets)}] bench {target} …", file=sys.stderr, flush=True)
        # Standard error stays the terminal's: the bench's progress bar and its errors show.
        done = subprocess.run([sys.executable, "-m", f"bridge.bench.{target}", *options],
                              stdout=subprocess.PIPE, text=True, check=False)
        summary = _json_summary(done.stdout)
        if summary is None and what != "all":
            print(done.stdout, end="")  # its --help, or whatever it said instead of a summary
            return done.returncode
        if done.returncode != 0 or summary is None:
            results[target] = {"error": f"exit {done.returncode}"}
            failed = True
            continue
        results[target] = summary
    print(json.dumps(results if what == "all" else results[what], indent=2))
    return 1 if failed else 0


def _json_summary(text: str) -> object | None:
    """The JSON document a bench printed last (after any lines of its own), or None."""
    start = text.find("{")
    if start < 0:
        return None
    try:
        summary: object = json.loads(text[start:])
        return summary
    except ValueError:
        return None


async def _check(path: str, config: Config) -> int:
    """The config is valid; its store is reachable (PostgreSQL: connected) and which schema
    version it holds."""
    from bridge.store import StoreUnavailable, describe, store_spec

    print(f"{path}: ok ({_summary(config)})")
    try:
        print(f"store: {await describe(store_spec(config.store, config.base_dir))}")
    except StoreUnavailable as exc:
        print(f"store: {exc}", file=sys.stderr)
        return 1
    return 0


def _passwd(token: bool) -> int:
    """A hash for `password_hash` of a password read from the terminal (or standard input),
    or a new random API token and its hash for `api_tokens`: the secret itself never goes
    in a config."""
    import getpass
    import secrets

    from bridge.intake.credentials import hash_password

    if token:
        secret = secrets.token_urlsafe(24)
        print(f"token: {secret}")
    elif sys.stdin.isatty():
        secret = getpass.getpass("password: ")
        if getpass.getpass("again: ") != secret:
            print("sms-bridge passwd: the two differ", file=sys.stderr)
            return 1
    else:
        secret = sys.stdin.readline().rstrip("\n")
    if not secret:
        print("sms-bridge passwd: empty", file=sys.stderr)
        return 1
    print(hash_password(secret))
    return 0


def _summary(config: Config) -> str:
    """What check-config confirms beyond "ok": the parts an operator most often gets wrong."""
    said = [f"{len(config.accounts)} account(s)",
            f"{len(config.smsc) or 'embedded simulator as'} SMSC(s)",
            f"mail back via {config.smtp.smarthost}" if config.smtp.mail_back
            else "no mail back (no [smtp] smarthost)"]
    if config.store.retention_days:
        said.append(f"messages kept {config.store.retention_days:g} day(s)")
    return ", ".join(said)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "check-config":
            config = _config(args.config)
            return asyncio.run(_check(args.config, config))
        if args.command == "serve":
            config = _config(args.config)
            setup_logging(config.log.level)
            return asyncio.run(_serve(config))
        if args.command == "status":
            return asyncio.run(_status(_config(args.config), args.ids, text=args.text))
        if args.command in ("messages", "accounts"):
            path = getattr(args, "config", None) or str(default_config_path(os.environ))
            return asyncio.run(cli_admin.run(_config(path), args))
        if args.command == "simulator":
            setup_logging("info")
            sim = _simulator_config(args)
            return asyncio.run(_simulator(sim))
        if args.command == "passwd":
            return _passwd(args.token)
        if args.command == "wsdl":
            from bridge.ingress.soap.wsdl import check_wsdl, write_wsdl

            if args.write:
                write_wsdl(Path(args.dir))
                print(f"wrote {args.dir}/")
                return 0
            problems = check_wsdl(Path(args.dir))
            for problem in problems:
                print(problem)
            if not problems:
                print(f"{args.dir}/ matches the code")
            return 1 if problems else 0
        if args.command == "bench":
            return _bench(args.what, args.options)
        if args.command == "store":
            from bridge.store.copy import run

            return asyncio.run(run(args.source, args.target, force=args.force))
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"config error: {problem}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        # The reader went away (`sms-bridge status ID | head`): no traceback, and no second
        # one from the flush at exit (the recipe of Python's signal documentation).
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    return 2
