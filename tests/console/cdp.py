"""A headless Chromium driven over the Chrome DevTools protocol with aiohttp's websocket client:
just what the status page's test needs (navigate, evaluate, wait for a condition, screenshot).

`Browser.launch` starts Debian's `chromium` with a throwaway profile and the debugging port
chosen by the browser (read back from its DevToolsActivePort file). Without a browser the
test is skipped with one line, or fails when SMS_BRIDGE_REQUIRE_BROWSER=1 (CI).
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import aiohttp
import pytest

START_S = 20.0
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-dev-shm-usage", "--no-first-run", "--no-default-browser-check",
         "--remote-debugging-port=0", "--window-size=1280,1400")


class BrowserUnavailable(Exception):
    pass


def unavailable(reason: str) -> None:
    """Skip (one line), or fail where CI says a browser must be there."""
    if os.environ.get("SMS_BRIDGE_REQUIRE_BROWSER") == "1":
        pytest.fail(f"chromium is required (SMS_BRIDGE_REQUIRE_BROWSER=1): {reason}")
    pytest.skip(f"no headless chromium ({reason}); apt-get install chromium")


class Browser:
    def __init__(self, process: asyncio.subprocess.Process, profile: str,
                 http: aiohttp.ClientSession, socket: aiohttp.ClientWebSocketResponse) -> None:
        self.process = process
        self.profile = profile
        self.http = http
        self.socket = socket
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[Any]] = {}
        self._events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._reader = asyncio.ensure_future(self._read())
        self.session = ""

    @classmethod
    async def launch(cls) -> Browser:
        binary = shutil.which("chromium") or shutil.which("chromium-browser")
        if binary is None:
            raise BrowserUnavailable("no chromium on PATH")
        profile = tempfile.mkdtemp(prefix="sms-bridge-chromium-")
        process = await asyncio.create_subprocess_exec(
            binary, *FLAGS, f"--user-data-dir={profile}", "about:blank",
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
        try:
            url = await _debugger_url(Path(profile), process)
            http = aiohttp.ClientSession()
            socket = await http.ws_connect(url, max_msg_size=64 * 1024 * 1024)
        except BaseException:
            process.kill()
            await process.wait()
            shutil.rmtree(profile, ignore_errors=True)
            raise
        browser = cls(process, profile, http, socket)
        try:
            target = await browser.send("Target.createTarget", url="about:blank", session=False)
            attached = await browser.send("Target.attachToTarget", targetId=target["targetId"],
                                          flatten=True, session=False)
            browser.session = attached["sessionId"]
            await browser.send("Page.enable")
            await browser.send("Runtime.enable")
        except BaseException:
            await browser.close()
            raise
        return browser

    async def _read(self) -> None:
        async for frame in self.socket:
            if frame.type != aiohttp.WSMsgType.TEXT:
                continue
            message = json.loads(frame.data)
            waiter = self._waiting.pop(message.get("id", -1), None)
            if waiter is not None and not waiter.done():
                if "error" in message:
                    waiter.set_exception(RuntimeError(str(message["error"])))
                else:
                    waiter.set_result(message.get("result", {}))
            elif "method" in message:
                self._events.put_nowait(message)

    async def send(self, method: str, *, session: bool = True, **params: Any) -> Any:
        call_id = next(self._ids)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiting[call_id] = future
        message: dict[str, Any] = {"id": call_id, "method": method, "params": params}
        if session:
            message["sessionId"] = self.session
        await self.socket.send_str(json.dumps(message))
        return await asyncio.wait_for(future, 15)

    async def goto(self, url: str) -> None:
        """Navigate and wait for the page's load event."""
        while not self._events.empty():
            self._events.get_nowait()
        await self.send("Page.navigate", url=url)
        await self.loaded()

    async def loaded(self) -> None:
        while True:
            event = await asyncio.wait_for(self._events.get(), 15)
            if event["method"] == "Page.loadEventFired":
                return

    async def js(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (promises awaited)."""
        answer = await self.send("Runtime.evaluate", expression=expression,
                                 returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in answer:
            raise AssertionError(f"{expression}: {answer['exceptionDetails']}")
        return answer["result"].get("value")

    async def until(self, expression: str, timeout: float = 10.0) -> Any:
        """Wait until `expression` is truthy in the page; its value."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            value = await self.js(expression)
            if value:
                return value
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"never true in {timeout} s: {expression}")
            await asyncio.sleep(0.1)

    async def screenshot(self, path: Path) -> Path:
        shot = await self.send("Page.captureScreenshot", format="png", captureBeyondViewport=True)
        path.write_bytes(base64.b64decode(shot["data"]))
        return path

    async def close(self) -> None:
        try:
            await asyncio.wait_for(self.send("Browser.close", session=False), 5)
        except Exception:  # it may close the socket before it answers
            pass
        self._reader.cancel()
        await self.socket.close()
        await self.http.close()
        try:
            await asyncio.wait_for(self.process.wait(), 10)
        except asyncio.TimeoutError:
            self.process.kill()
            await self.process.wait()
        shutil.rmtree(self.profile, ignore_errors=True)


async def _debugger_url(profile: Path, process: asyncio.subprocess.Process) -> str:
    """The browser's websocket, from the file it writes once it listens."""
    port_file = profile / "DevToolsActivePort"
    deadline = asyncio.get_running_loop().time() + START_S
    while asyncio.get_running_loop().time() < deadline:
        if process.returncode is not None:
            raise BrowserUnavailable(f"chromium exited with status {process.returncode}")
        if port_file.exists():
            lines = port_file.read_text().split()
            if len(lines) >= 2:
                return f"ws://127.0.0.1:{lines[0]}{lines[1]}"
        await asyncio.sleep(0.05)
    raise BrowserUnavailable(f"chromium did not listen within {START_S:.0f} s")
