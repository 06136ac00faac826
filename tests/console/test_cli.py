"""`sms-bridge messages list/cancel/retry`, `accounts [credit]` and `--version`, run as an
operator runs them: beside a running bridge on the same SQLite file (the command opens the
store itself), and on PostgreSQL. Input that cannot be read exits 2 with one line, a refusal
exits 1 with the reason; never a traceback."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest

from bridge.cli import main
from bridge.config import load_config
from bridge.core.states import MessageState
from bridge.runtime.app import Bridge
from tests.conftest import running_bridge, write_serve_config
from tests.console import ADMIN, ADMIN_HASH, SECRET_TEXT, later, request


def write_config(tmp_path: Path, store_url: str) -> Path:
    return write_serve_config(tmp_path, "", f"""
[simulator]
enabled = true
port = 0
receipt_delay_s = 0.01
[admin]
users = [{{ name = "{ADMIN}", password_hash = "{ADMIN_HASH}" }}]
[[account]]
name = "demo"
password = "demo-pw"
rate_per_s = 10000
[[account]]
name = "metered"
password = "metered-pw"
quota = 10
""", store_url=store_url, path=tmp_path / "conf" / "bridge.toml")


async def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """`sms-bridge ARGS` in a thread (it runs its own event loop): exit code, out, err."""
    capsys.readouterr()
    code = await asyncio.to_thread(main, list(args))
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, out, err


async def until(bridge: Bridge, mid: str, state: MessageState, timeout: float = 8.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        [view] = await bridge.store.get_messages([mid])
        if view.state is state:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{mid} never {state.value}")


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stopped:
        main(["--version"])
    assert stopped.value.code == 0 and capsys.readouterr().out.strip() == "sms-bridge 0.1.0"


async def test_commands_beside_a_running_bridge(tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    path = write_config(tmp_path, "sqlite:///var/bridge.db")
    cfg = str(path)
    async with running_bridge(load_config(path)) as bridge:
        assert bridge.service is not None
        [sent] = await bridge.service.submit(request(SECRET_TEXT, "+447400123411"))
        [waiting, failing] = await bridge.service.submit(
            request(SECRET_TEXT, "+447400123412", "+447400123413", send_at=later(3600)))
        assert sent.message_id and waiting.message_id and failing.message_id
        await until(bridge, sent.message_id, MessageState.DELIVERED)
        await bridge.store.record_state(failing.message_id, MessageState.FAILED,
                                        at=time.time(), error="INVALID_DESTINATION")

        code, out, _ = await cli(capsys, "messages", "list", "-c", cfg)
        assert code == 0 and sent.message_id in out and "+447******411" in out
        assert SECRET_TEXT not in out and "(3 of 3 shown)" in out
        code, out, _ = await cli(capsys, "messages", "list", "--state", "scheduled", "--json",
                                 "-c", cfg)
        assert code == 0 and [m["id"] for m in json.loads(out)["messages"]] == [
            waiting.message_id]
        for bad, said in ((("--state", "lost"), "unknown state 'lost'"),
                          (("--since", "yesterday"), "not a time"),
                          (("--limit", "0"), "limit must be"),
                          (("--account", "nobody"), "no account named 'nobody'")):
            code, _, err = await cli(capsys, "messages", "list", *bad, "-c", cfg)
            assert code == 2 and said in err and err.count("\n") == 1, err

        code, out, _ = await cli(capsys, "messages", "cancel", waiting.message_id, "-c", cfg)
        assert code == 0 and f"{waiting.message_id}: cancelled by cli:" in out
        await until(bridge, waiting.message_id, MessageState.CANCELLED)
        code, out, _ = await cli(capsys, "messages", "cancel", sent.message_id, "-c", cfg)
        assert code == 1 and "not done: it is delivered: only queued or scheduled" in out
        code, _, err = await cli(capsys, "messages", "cancel", "bad id!", "-c", cfg)
        assert code == 2 and "not a message id" in err

        code, out, _ = await cli(capsys, "messages", "retry", failing.message_id, "-c", cfg)
        assert code == 0 and "retried by cli:" in out
        await until(bridge, failing.message_id, MessageState.DELIVERED)  # the bridge claims it

        code, out, _ = await cli(capsys, "accounts", "-c", cfg)
        assert code == 0 and out.split("\n")[0].split() == [
            "ACCOUNT", "QUOTA", "CREDIT", "USED", "LEFT", "RATE/S"]
        assert out.split("\n")[2].split() == ["metered", "10", "0", "0", "10", "15"]
        code, out, _ = await cli(capsys, "accounts", "credit", "metered", "+5", "-c", cfg)
        assert code == 0 and out.startswith("metered: credit 5 (+5), 15 parts left")
        for args, exit_code, said in ((("demo", "+5"), 1, "unlimited"),
                                      (("metered", "-20"), 1, "at most -15"),
                                      (("metered", "5"), 2, "+N or -N"),
                                      (("nobody", "+1"), 2, "no account named")):
            code, out, err = await cli(capsys, "accounts", "credit", *args, "-c", cfg)
            assert code == exit_code and said in out + err, (args, out, err)


async def test_commands_on_postgresql(tmp_path: Path, pg_url: str,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    cfg = str(write_config(tmp_path, pg_url))
    code, out, _ = await cli(capsys, "accounts", "credit", "metered", "+7", "--json", "-c", cfg)
    assert code == 0 and json.loads(out)["left"] == 17
    code, out, _ = await cli(capsys, "messages", "list", "-c", cfg)
    assert (code, out.strip()) == (0, "no messages")
