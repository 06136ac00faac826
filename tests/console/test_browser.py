"""The status page in a real browser: headless Chromium over the DevTools protocol logs in
through the form, watches the page's numbers and plots change while messages go through the
bridge's SMTP ingress, looks a message up, cancels one with the page's button, takes a
screenshot (its path is printed) and logs out."""

from __future__ import annotations

import asyncio
import json
import smtplib
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from bridge.core.states import MessageState
from tests.conftest import running_bridge
from tests.console import ADMIN, ADMIN_PASSWORD, console_config, later, request
from tests.console.cdp import Browser, BrowserUnavailable, unavailable


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    try:
        launched = await Browser.launch()
    except (BrowserUnavailable, OSError, aiohttp.ClientError, asyncio.TimeoutError) as exc:
        unavailable(str(exc))
    try:
        yield launched
    finally:
        await launched.close()


def total(series: str) -> str:
    return f"Number(document.querySelector('figure[data-series={series}]').dataset.total)"


HELD = "Number(document.querySelector('#queue [data-held]').dataset.held)"


def send(port: int, numbers: list[str], text: str) -> None:
    """Through the SMTP ingress, as a monitoring tool would (relayed from loopback): one mail
    to every number; an undialable one is refused at RCPT while the others go."""
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as smtp:
        refused = smtp.sendmail("alerts@example.org", [f"{n}@sms.localhost" for n in numbers],
                                f"Subject: {text}\r\n\r\n{text}")
    assert set(refused) <= {"12@sms.localhost"}, refused


async def test_the_status_page_live(browser: Browser, tmp_path: Path) -> None:
    async with running_bridge(console_config(tmp_path)) as bridge:
        base = f"http://127.0.0.1:{bridge.admin_port}"
        await browser.goto(base + "/")
        assert await browser.js("location.pathname") == "/admin/login"
        await browser.js(f"""(() => {{
            document.querySelector('input[name=name]').value = {json.dumps(ADMIN)};
            document.querySelector('input[name=password]').value = {json.dumps(ADMIN_PASSWORD)};
            document.querySelector('form').submit(); }})()""")
        await browser.loaded()
        assert await browser.js("location.pathname") == "/"
        assert await browser.js(total("accepted")) == 0
        assert await browser.js("document.querySelector('#binds .badge').textContent") == "up"
        flat = await browser.js("document.querySelector('figure[data-series=accepted] "
                                "polyline').getAttribute('points')")

        for n in range(4):  # a few seconds of traffic, and a refusal in each round
            numbers = [f"+4474001234{n}{i}" for i in range(5)]
            await asyncio.to_thread(send, bridge.smtp_port, [*numbers, "12"], f"round {n}")
            await asyncio.sleep(0.6)
        await browser.until(f"{total('accepted')} >= 20 && {total('refused')} >= 4 && "
                            f"{total('delivered')} >= 20", timeout=15)
        assert await browser.js("document.querySelector('figure[data-series=accepted] "
                                "polyline').getAttribute('points')") != flat
        assert await browser.js("document.querySelector('#refusals tr[data-error="
                                "INVALID_DESTINATION] td:last-child').textContent") == "4"
        assert await browser.js("document.querySelector('#queue tr[data-state=delivered] "
                                "td.n').textContent") != "0"
        await browser.until("!document.querySelector('#latency tr[data-latency="
                            "submit_to_receipt] td.n').textContent.includes('–')")
        rows = await browser.js("[...document.querySelectorAll('#messages tbody tr')]"
                                ".map(tr => tr.dataset.id)")
        assert len(rows) == 20 and await browser.js(
            "[...document.querySelectorAll('#messages td.mono')]"
            ".every(td => /^[+]447[*]{6}4[0-3][0-4]$/.test(td.textContent))")

        # a message looked up by id: its timeline
        first = rows[-1]
        await browser.js(f"document.getElementById('find-id').value = {json.dumps(first)};"
                         f"document.getElementById('find-form').requestSubmit()")
        await browser.until(f"!!document.querySelector('[data-found=\"{first}\"]')")
        events = await browser.js("[...document.querySelectorAll('.timeline tbody tr')]"
                                  ".map(tr => tr.children[1].textContent)")
        assert events[0] == "queued" and events[-1] == "delivered", events

        # cancel from the page
        assert bridge.service is not None
        [waiting] = await bridge.service.submit(request("later", "+447400123499",
                                                        send_at=later(3600)))
        await browser.js(f"document.getElementById('find-id').value = "
                         f"{json.dumps(waiting.message_id)};"
                         f"document.getElementById('find-form').requestSubmit()")
        await browser.until("!!document.querySelector('button[data-action=cancel]')")
        await browser.until(f"{HELD} === 1")  # scheduled in this instance's dispatcher
        await browser.js("document.querySelector('button[data-action=cancel]').click()")
        await browser.until("(document.getElementById('action-result') || {}).textContent"
                            " === 'cancelled by admin:ops'")
        [view] = await bridge.store.get_messages([waiting.message_id])
        assert view.state is MessageState.CANCELLED
        await browser.until(f"{HELD} === 0")  # and it left the dispatcher with the commit
        assert await browser.js("document.querySelector('#queue tr[data-state=cancelled] "
                                "td.n').textContent") == "1"

        shot = await browser.screenshot(tmp_path / "console.png")
        print(f"status page screenshot: {shot}")
        assert shot.stat().st_size > 10_000

        await browser.js("document.querySelector('form.logout button').click()")
        await browser.loaded()
        assert await browser.js("location.pathname") == "/admin/login"
        assert await browser.js("fetch('/admin/live').then(r => r.status)") == 401
