"""`sms-bridge` / `python -m bridge`: serve, check-config, status, messages, accounts,
simulator, passwd, wsdl, bench, store copy."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from bridge import __version__, cli_admin
from bridge.config import (DEFAULT_CONFIG_PATH, Config, ConfigError, SimulatorConfig, load_config,
                           parse_simulator)
from bridge.logs import setup_logging

if TYPE_CHECKING:
    from bridge.store.base import Store


def _config(path: str) -> Config:
    return load_config(Path(path))


async def _serve(config: Config) -> int:
    from bridge.runtime.app import Bridge, freeze_startup_heap

    bridge = Bridge(config)
    await bridge.start()
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


async def _status(config: Config, ids: Sequence[str]) -> int:
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


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sms-bridge", description=__doc__)
    parser.add_argument("--version", action="version", version=f"sms-bridge {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, help_text in (("serve", "run SMTP, SOAP, dispatcher and the embedded simulator"),
                            ("check-config", "validate a config; exit 1 on any problem")):
        p = sub.add_parser(name, help=help_text)
        p.add_argument("-c", "--config", default=str(DEFAULT_CONFIG_PATH))
    p = sub.add_parser("status", help="print the timeline of messages; without ids, the "
                                      "instances on the store and the messages by state")
    p.add_argument("ids", nargs="*")
    p.add_argument("-c", "--config", default=str(DEFAULT_CONFIG_PATH))
    p = sub.add_parser("simulator", help="run a standalone SMSC simulator")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=2775)
    p.add_argument("--system-id", default="bridge")
    p.add_argument("--password", default="secret")
    p.add_argument("--receipt-delay", type=float, default=0.05)
    p.add_argument("--no-receipts", action="store_true")
    p.add_argument("--id-format", choices=("hex", "dec"), default="hex")
    p.add_argument("--receipt-id-format", choices=("hex", "dec", "padded"), default="dec")
    p.add_argument("--throttle-every", type=int, default=0)
    p.add_argument("--error-every", type=int, default=0, metavar="N",
                   help="answer every Nth submit_sm with --error-status and no message id")
    p.add_argument("--error-status", type=_command_status, default=SimulatorConfig.error_status,
                   metavar="STATUS",
                   help="command_status of those answers, hex (0x45) or decimal "
                        "(default 0x08 ESME_RSYSERR)")
    p.add_argument("--silent-every", type=int, default=0, metavar="N",
                   help="never answer every Nth submit_sm (the client must time out); "
                        "1 = no submit is answered, enquire_link still is")
    p.add_argument("--throttle-part", type=int, default=0, metavar="K",
                   help="answer part K of every concatenated message (UDH or SAR) with 0x58")
    p.add_argument("--throttle-part-times", type=int, default=0, metavar="T",
                   help="throttle only the first T arrivals of that part per message, accept "
                        "later ones (0 = always)")
    p.add_argument("--drop-between-parts", type=int, default=0, metavar="N",
                   help="close the connection right after answering part 1 of the Nth "
                        "concatenated message, before its other parts (once)")
    p.add_argument("--fail-receipt-every", type=int, default=0)
    p.add_argument("--drop-after", type=int, default=0)
    p.add_argument("--response-delay", type=float, default=0.0)
    p.add_argument("--delay-every", type=int, default=0, metavar="N",
                   help="delay only every Nth submit_sm_resp by --response-delay, answer the "
                        "others at once (0 = delay every one)")
    p.add_argument("--reply-every", type=int, default=0, metavar="N",
                   help="the handset of every Nth message answers it with an SMS (MO)")
    p.add_argument("--reply-text", default=SimulatorConfig.reply_text)
    p.add_argument("--redeliver", type=float, default=SimulatorConfig.redeliver_s, metavar="S",
                   help="a receipt or MO answered with an error status is delivered again "
                        "after S seconds, as SMSCs do (0 = never)")
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
    p.add_argument("what", choices=("smpp", "store", "soap", "smtp", "http", "all"))
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


def _bench(what: str, options: Sequence[str] = ()) -> int:
    """Each benchmark is a module that prints one JSON document; run them one after another
    (never concurrently: the machine has two cores) and print them together. `options` go to
    the one benchmark named (each has its own)."""
    import subprocess

    if options and what == "all":
        print("sms-bridge bench: options need one benchmark (smpp, store, soap, smtp or http)",
              file=sys.stderr)
        return 2
    targets = ["smpp", "store", "soap", "smtp", "http"] if what == "all" else [what]
    results: dict[str, object] = {}
    failed = False
    for index, target in enumerate(targets, 1):
        print(f"[{index}/{len(targets)}] bench {target} …", file=sys.stderr, flush=True)
        done = subprocess.run([sys.executable, "-m", f"bridge.bench.{target}", *options],
                              capture_output=True, text=True, check=False)
        if done.returncode != 0:
            print(done.stderr[-2000:], file=sys.stderr)
            results[target] = {"error": f"exit {done.returncode}"}
            failed = True
            continue
        text = done.stdout.strip()
        results[target] = json.loads(text[text.index("{"):])
    print(json.dumps(results if what == "all" else results[what], indent=2))
    return 1 if failed else 0


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
            return asyncio.run(_status(_config(args.config), args.ids))
        if args.command in ("messages", "accounts"):
            config = _config(getattr(args, "config", str(DEFAULT_CONFIG_PATH)))
            return asyncio.run(cli_admin.run(config, args))
        if args.command == "simulator":
            setup_logging("info")
            # The options are checked as the [simulator] table of a config is.
            sim = parse_simulator({
                "enabled": True, "host": args.host, "port": args.port,
                "system_id": args.system_id, "password": args.password,
                "receipts": not args.no_receipts, "receipt_delay_s": args.receipt_delay,
                "id_format": args.id_format, "receipt_id_format": args.receipt_id_format,
                "throttle_every": args.throttle_every,
                "error_every": args.error_every, "error_status": args.error_status,
                "silent_every": args.silent_every, "delay_every": args.delay_every,
                "fail_receipt_every": args.fail_receipt_every, "drop_after": args.drop_after,
                "throttle_part": args.throttle_part,
                "throttle_part_times": args.throttle_part_times,
                "drop_between_parts": args.drop_between_parts,
                "response_delay_s": args.response_delay, "reply_every": args.reply_every,
                "reply_text": args.reply_text, "redeliver_s": args.redeliver})
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
    return 2
