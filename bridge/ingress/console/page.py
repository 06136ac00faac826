"""The status page, rendered here as HTML (every value escaped), plots as inline SVG: one
renderer, so the page reads the same with and without JavaScript. console.js only fetches the
live part again every few seconds, looks a message up and posts cancel or retry.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from html import escape
from typing import Any

from bridge.core.console import HISTORY_S
from bridge.ingress.console.status import PLOTS, ConsoleStatus

Json = dict[str, Any]

#: Seconds between two refreshes of the live part (console.js reads it from the page).
REFRESH_S = 2
_W, _H = 600, 90  # a plot's drawing box (the SVG scales to the column)
_ACTIONS = {"queued": "cancel", "scheduled": "cancel", "failed": "retry", "expired": "retry"}


def _e(value: object) -> str:
    return escape(str(value), quote=True)


def _when(at: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(at))


def _age(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172_800:
        return f"{seconds / 3600:.0f} h"
    return f"{seconds / 86400:.0f} d"


def _ms(seconds: float | None) -> str:
    return "–" if seconds is None else f"{seconds * 1000:.0f} ms" if seconds < 10 \
        else f"{seconds:.1f} s"


def page(status: ConsoleStatus | None, *, user: str, csrf: str, found: str = "",
         error: str = "") -> str:
    """The whole page; `found`: a message looked up (`found_panel`), rendered in place."""
    live = live_panel(status) if status is not None else \
        f'<p class="bad">The store did not answer: {_e(error)}</p>'
    version = status.version if status is not None else ""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="csrf-token" content="{_e(csrf)}">
<meta name="refresh-seconds" content="{REFRESH_S}">
<title>sms-bridge status</title>
<link rel="stylesheet" href="/admin/static/console.css">
<script src="/admin/static/console.js" defer></script>
</head><body>
<header><h1>sms-bridge <small>{_e(version)}</small></h1>
<span id="updated" class="muted">rendered {_e(_when(status.at)) if status else ""}</span>
<form method="post" action="/admin/logout" class="logout">
<input type="hidden" name="csrf" value="{_e(csrf)}">
<span class="muted">{_e(user)}</span> <button type="submit">Log out</button></form>
</header>
<main>
<section id="find"><h2>Find a message</h2>
<form method="get" action="/" id="find-form"><input name="id" id="find-id" size="40"
placeholder="message id" autocomplete="off"> <button type="submit">Show timeline</button></form>
<div id="found">{found}</div></section>
<div id="live">{live}</div>
</main></body></html>"""


def live_panel(status: ConsoleStatus) -> str:
    """The part console.js fetches again (GET /admin/live)."""
    warn = f'<p class="bad" id="outbound-error">{_e(status.outbound_error)}</p>' \
        if status.outbound_error else ""
    return (f'<div data-at="{status.at:.3f}">{warn}'
            f'<div class="grid">{_binds(status)}{_queue(status)}</div>'
            f'<section><h2>Throughput, last {HISTORY_S // 60} minutes '
            f'<small>(this instance, per second)</small></h2>'
            f'<div class="plots">{"".join(plot(n, w, status.series.get(n, ())) for n, w in PLOTS)}'
            f'</div></section>'
            f'<div class="grid">{_latency(status)}{_refusals(status)}</div>'
            f'{_messages(status)}{_accounts(status)}</div>')


def _table(section: str, title: str, heads: Sequence[str], rows: str,
           empty: str | None = None) -> str:
    """A section of the page: its title over one table (`empty`, when given, is the row
    shown when `rows` is empty)."""
    if not rows and empty is not None:
        rows = f'<tr><td colspan="{len(heads)}" class="muted">{empty}</td></tr>'
    head = "".join(f"<th>{h}</th>" for h in heads)
    return (f'<section id="{section}"><h2>{title}</h2><table><thead><tr>{head}</tr></thead>'
            f'<tbody>{rows}</tbody></table></section>')


def _binds(status: ConsoleStatus) -> str:
    rows = "".join(
        f'<tr data-bind="{_e(b.name)}"><td>{_e(b.name)}</td>'
        f'<td><span class="badge {"up" if b.up else "down"}">{"up" if b.up else "down"}</span></td>'
        f'<td class="n">{b.in_flight} / {b.window}</td><td class="n">{b.tps:.1f}'
        f'{f" / {b.max_tps:g}" if b.max_tps else ""}</td></tr>' for b in status.binds)
    return _table("binds", "SMSC binds", ("SMSC", "state", "window in use", "submits/s"),
                  rows, "no bind known")


def _queue(status: ConsoleStatus) -> str:
    cells = "".join(f'<tr data-state="{_e(state)}"><td>{_e(state)}</td>'
                    f'<td class="n">{n}</td></tr>' for state, n in status.queue.items())
    return (f'<section id="queue"><h2>Messages by state <small>(every instance)</small></h2>'
            f'<table><tbody>{cells}</tbody></table>'
            f'<p class="muted" data-held="{status.queue_depth}">held by this instance\'s '
            f'dispatcher: {status.queue_depth}</p>'
            f'</section>')


def plot(name: str, what: str, counts: Sequence[int]) -> str:
    """One series as an SVG polyline over the history, with its total and its peak (data
    attributes too, for scripts and tests)."""
    total, peak = sum(counts), max(counts, default=0)
    recent = sum(counts[-10:]) / 10 if counts else 0.0
    top = max(peak, 1)
    step = _W / max(len(counts) - 1, 1)
    points = " ".join(f"{i * step:.1f},{_H - n * (_H - 4) / top:.1f}"
                      for i, n in enumerate(counts))
    return (f'<figure class="plot" data-series="{_e(name)}" data-total="{total}" '
            f'data-peak="{peak}"><figcaption><b>{_e(name)}</b> <span class="muted">'
            f'{_e(what)}</span><span class="figs">{recent:.1f}/s now · peak {peak}/s · '
            f'{total} in all</span></figcaption>'
            f'<svg viewBox="0 0 {_W} {_H}" preserveAspectRatio="none" role="img" '
            f'aria-label="{_e(name)} per second"><title>{_e(name)}: {total} in '
            f'{HISTORY_S // 60} min, peak {peak}/s</title>'
            f'<line x1="0" y1="{_H}" x2="{_W}" y2="{_H}" class="axis"/>'
            f'<polyline points="{points}" class="line {_e(name)}"/></svg>'
            f'<div class="ticks"><span>{round(len(counts) / 60) or 1} min ago</span>'
            f'<span>now</span></div></figure>')


def _latency(status: ConsoleStatus) -> str:
    names = {"accept_to_submit": "accept → submit", "submit_to_receipt": "submit → receipt"}
    rows = "".join(
        f'<tr data-latency="{_e(kind)}"><td>{_e(label)}</td>'
        + "".join(f'<td class="n">{_ms(status.latency.get(kind, {}).get(q))}</td>'
                  for q in ("p50", "p90", "p99")) + "</tr>"
        for kind, label in names.items())
    return _table("latency", f"Latency, last {HISTORY_S // 60} minutes",
                  ("", "p50", "p90", "p99"), rows)


def _refusals(status: ConsoleStatus) -> str:
    rows = "".join(f'<tr data-error="{_e(name)}"><td>{_e(name)}</td>'
                   f'<td class="n">{_e(status.error_codes.get(name, ""))}</td>'
                   f'<td class="n">{n}</td></tr>' for name, n in status.refusals)
    return _table("refusals", f"Refusals, last {HISTORY_S // 60} minutes",
                  ("error", "code", "recipients"), rows, "none")


def _message_row(m: Json) -> str:
    return (f'<tr data-id="{_e(m["id"])}"><td><a href="/?id={_e(m["id"])}" class="mid">'
            f'{_e(m["id"])}</a></td><td>{_e(m["account"])}</td><td>{_e(m["ingress"])}</td>'
            f'<td class="mono">{_e(m["recipient"])}</td><td>{_e(m["state"])}</td>'
            f'<td class="n">{_e(_age(m["age_s"]))}</td></tr>')


def _messages(status: ConsoleStatus) -> str:
    return _table("messages", "Last messages <small>(every instance)</small>",
                  ("id", "account", "ingress", "recipient", "state", "age"),
                  "".join(_message_row(m) for m in status.messages), "none yet")


def _accounts(status: ConsoleStatus) -> str:
    rows = "".join(
        f'<tr data-account="{_e(a["name"])}"><td>{_e(a["name"])}</td>'
        f'<td class="n">{a["quota"] or "unlimited"}</td><td class="n">{a["credit"]}</td>'
        f'<td class="n">{a["used"]}</td>'
        f'<td class="n">{"–" if a["left"] is None else a["left"]}</td>'
        f'<td class="n">{a["rate_per_s"]:g}</td></tr>' for a in status.accounts)
    return _table("accounts", "Accounts",
                  ("account", "quota", "credit", "parts used", "left", "rate/s"), rows)


def found_panel(message: Json | None, wanted: str, *, problem: str = "") -> str:
    """A message looked up by id: its row, the timeline, and cancel or retry when its state
    allows one (the store decides again when asked)."""
    if problem:
        return f'<p class="bad">{_e(problem)}</p>'
    if message is None:
        return f'<p class="bad" data-missing="{_e(wanted)}">No message {_e(wanted)}.</p>'
    action = _ACTIONS.get(message["state"])
    button = (f' <button type="button" data-action="{action}" data-id="{_e(message["id"])}">'
              f'{action.capitalize()}</button>') if action else ""
    events = "".join(f'<tr><td class="mono">{_e(_when(ev["at"]))}</td><td>{_e(ev["event"])}</td>'
                     f'<td>{_e(ev["detail"])}</td></tr>' for ev in message["timeline"])
    return (f'<div class="found" data-found="{_e(message["id"])}"><table><tbody>'
            f'{_message_row(message)}</tbody></table>'
            f'<p>{message["parts"]} part(s), {message["parts_delivered"]} delivered'
            f'{" · error " + _e(message["error"]) if message["error"] else ""}{button}'
            f' <span id="action-result" class="muted"></span></p>'
            f'<table class="timeline"><thead><tr><th>when</th><th>event</th><th>detail</th>'
            f'</tr></thead><tbody>{events}</tbody></table></div>')


def login_page(*, problem: str = "", name: str = "") -> str:
    note = f'<p class="bad" id="login-problem">{_e(problem)}</p>' if problem else ""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>sms-bridge: log in</title><link rel="stylesheet" href="/admin/static/console.css">
</head><body class="login"><main><h1>sms-bridge</h1>{note}
<form method="post" action="/admin/login">
<label>Name <input name="name" autocomplete="username" value="{_e(name)}" required autofocus></label>
<label>Password <input name="password" type="password" autocomplete="current-password" required></label>
<button type="submit">Log in</button></form></main></body></html>"""


def not_configured_page() -> str:
    return """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>sms-bridge: no console</title>
<link rel="stylesheet" href="/admin/static/console.css"></head><body class="login"><main>
<h1>The status page is not configured</h1>
<p>It opens for the users of <code>[admin] users</code> in the bridge's config. Make a
password hash with <code>sms-bridge passwd</code>, then add for example</p>
<pre>[admin]
users = [{ name = "ops", password_hash = "pbkdf2_sha256$…" }]</pre>
<p>and restart the bridge (<code>README.md</code>, "The status page").</p></main></body></html>"""
