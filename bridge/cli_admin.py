"""`sms-bridge messages list/cancel/retry` and `sms-bridge accounts [credit NAME ±N]`: the
operator's commands (bridge.intake.admin, the same as the admin API's) on the store the
config names.

The command opens that store itself, as `sms-bridge status` does, whether the bridge runs or
not: every decision is taken in the store's own transaction (a cancel against a dispatcher's
submit, a top-up against accepts), so a command beside a running bridge is as safe as an API
call through it. SQLite serialises the two processes' writes with its file lock (WAL lets the
bridge's reads go on); with PostgreSQL any instance's store is the same database. A retried
message is claimed by the running bridge within a couple of seconds.

Exit status: 0 done, 1 refused (a message not cancelled or retried, a top-up refused) or the
store unavailable, 2 what was given cannot be read.
"""

from __future__ import annotations

import argparse
import contextlib
import getpass
import json
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

from bridge.config import CONFIG_ENV, DEFAULT_CONFIG_PATH, Config
from bridge.intake.admin import Admin, AdminInputError
from bridge.store.base import StoreUnavailable


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    messages = sub.add_parser("messages", help="find messages; cancel queued ones, retry "
                                               "failed ones", description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = messages.add_subparsers(dest="messages_command", required=True)
    p = commands.add_parser("list", help="every account's messages, newest first")
    p.add_argument("--state", help="only this state (queued, failed, …)")
    p.add_argument("--account", help="only this account's")
    p.add_argument("--since", help="only those accepted since: 15m, 2h, 7d or an ISO time")
    p.add_argument("--limit", default="50", help="at most this many (1..1000, default 50)")
    _common(p)
    for name, what in (("cancel", "cancel queued or scheduled messages before they go"),
                       ("retry", "queue failed or expired messages again, with a new "
                                 "validity")):
        p = commands.add_parser(name, help=what)
        p.add_argument("ids", nargs="+", metavar="ID")
        _common(p)
    accounts = sub.add_parser("accounts", help="accounts with quota, credit left and rate; "
                                               "`accounts credit NAME +N` tops up")
    _common(accounts)
    commands = accounts.add_subparsers(dest="accounts_command")
    p = commands.add_parser("credit", help="add N parts of credit (+N), or take some back (-N)")
    p.add_argument("name")
    p.add_argument("change", help="+N or -N parts")
    _common(p)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("-c", "--config", default=argparse.SUPPRESS,
                   help=f"the bridge's config (default: ${CONFIG_ENV} if set, else "
                        f"{DEFAULT_CONFIG_PATH} in the working folder)")
    p.add_argument("--json", action="store_true", default=argparse.SUPPRESS,
                   help="print JSON for scripts")


def actor() -> str:
    """Who acts, as the timeline shows it: the operating-system user running the command."""
    try:
        return f"cli:{getpass.getuser()}"
    except (OSError, KeyError):
        return "cli"


async def run(config: Config, args: argparse.Namespace) -> int:
    try:
        async with _admin(config) as admin:
            return await _command(admin, args)
    except AdminInputError as exc:
        print(f"sms-bridge {args.command}: {exc}", file=sys.stderr)
        return 2
    except StoreUnavailable as exc:
        print(f"sms-bridge {args.command}: the store is unavailable: {exc}", file=sys.stderr)
        return 1


@contextlib.asynccontextmanager
async def _admin(config: Config) -> AsyncIterator[Admin]:
    from bridge.runtime import open_store

    store = open_store(config.store, config.base_dir)
    await store.open()
    try:
        yield Admin(config, store)
    finally:
        await store.close()


async def _command(admin: Admin, args: argparse.Namespace) -> int:
    as_json = getattr(args, "json", False)
    if args.command == "messages" and args.messages_command == "list":
        listed = await admin.messages(state=args.state, account=args.account, since=args.since,
                                      limit=args.limit)
        _show(listed, as_json, _message_lines)
        return 0
    if args.command == "messages":
        action = admin.cancel if args.messages_command == "cancel" else admin.retry
        results = await action(args.ids, actor())
        _show(results, as_json, _outcome_lines)
        return 0 if all(r["done"] for r in results) else 1
    if getattr(args, "accounts_command", None) == "credit":
        row = await admin.credit(args.name, args.change, actor())
        row["history"] = await admin.credit_history(args.name, limit=5)
        _show(row, as_json, _credit_lines)
        return 1 if row["refused"] else 0
    _show(await admin.accounts(), as_json, _account_lines)
    return 0


def _show(data: Any, as_json: bool, lines: Any) -> None:
    if as_json:
        print(json.dumps(data, indent=2))
        return
    for line in lines(data):
        print(line)


def _table(rows: list[list[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]


def _message_lines(listed: dict[str, Any]) -> list[str]:
    messages = listed["messages"]
    if not messages:
        return ["no messages"]
    rows = [["ID", "STATE", "ACCOUNT", "INGRESS", "RECIPIENT", "ACCEPTED", "ERROR"]]
    rows += [[m["id"], m["state"], m["account"], m["ingress"], m["recipient"],
              time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(m["created_at"])),
              m["error"] or ""] for m in messages]
    return _table(rows) + [f"({len(messages)} of {listed['total']} shown)"]


def _outcome_lines(results: list[dict[str, Any]]) -> list[str]:
    return [f"{r['id']}: {r['detail']}" if r["done"] else f"{r['id']}: not done: {r['detail']}"
            for r in results]


def _left(row: dict[str, Any]) -> str:
    return "unlimited" if row["left"] is None else str(row["left"])


def _account_lines(rows: list[dict[str, Any]]) -> list[str]:
    if not rows:
        return ["no accounts in the config"]
    table = [["ACCOUNT", "QUOTA", "CREDIT", "USED", "LEFT", "RATE/S"]]
    table += [[r["name"], str(r["quota"] or "unlimited"), str(r["credit"]), str(r["used"]),
               _left(r), f"{r['rate_per_s']:g}"] for r in rows]
    return _table(table)


def _credit_lines(row: dict[str, Any]) -> list[str]:
    said = [f"{row['name']}: not changed: {row['refused']}" if row["refused"] else
            f"{row['name']}: credit {row['credit']} ({row['change']:+d}), {_left(row)} parts left"]
    for change in row["history"]:
        said.append(f"  {time.strftime('%Y-%m-%d %H:%M:%SZ', time.gmtime(change['at']))}  "
                    f"{change['change']:+d} → {change['credit']}  by {change['actor']}")
    return said
