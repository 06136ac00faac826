"""The README's first calls, run as a newcomer runs them: every command line of "First calls
against `make serve`" against `sms-bridge serve` with the shipped config (its ports moved to
free ones), each must succeed and say what it did."""

from __future__ import annotations

import asyncio
import re
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from tests.conftest import ROOT, child_pids, serve_command, wait_gone


def first_calls() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("### First calls against `make serve`", 1)[1].split("\n#", 1)[0]
    return [line.strip() for line in section.splitlines()
            if re.match(r"    (swaks|curl|\.venv/bin/python) ", line)]


def shipped_config(tmp_path: Path) -> Path:
    """conf/bridge.toml as shipped, on free ports, its SQLite file under tmp_path."""
    (tmp_path / "conf").mkdir()
    config = (ROOT / "conf" / "bridge.toml").read_text()
    for fixed in ("127.0.0.1:2525", "127.0.0.1:8080"):
        assert f'"{fixed}"' in config
        config = config.replace(f'"{fixed}"', '"127.0.0.1:0"')
    config = re.sub(r"(\[simulator\][^\[]*?)port = 2775", r"\1port = 0", config)
    config = config.replace("rate_per_s = 15", "rate_per_s = 100")  # the calls come at once
    path = tmp_path / "conf" / "bridge.toml"
    path.write_text(config)
    return path


def test_the_readme_shows_the_first_calls() -> None:
    calls = first_calls()
    assert [c.split()[0] for c in calls] == ["swaks", ".venv/bin/python", ".venv/bin/python",
                                             "curl", "curl", "curl", "curl", "curl"]


async def test_every_first_call_of_the_readme_works(tmp_path: Path) -> None:
    config = shipped_config(tmp_path)
    proc, smtp_port, soap_port = await serve_command(config)
    outputs = {}
    status = ""
    try:
        for call in first_calls():
            if call.startswith("swaks") and shutil.which("swaks") is None:
                print("swaks is not installed: its README line is not run")
                continue
            command = call.replace("127.0.0.1:2525", f"127.0.0.1:{smtp_port}").replace(
                "2525)", f"{smtp_port})").replace("127.0.0.1', 2525", f"127.0.0.1', {smtp_port}")
            command = command.replace("127.0.0.1:8080", f"127.0.0.1:{soap_port}")
            done = await asyncio.to_thread(subprocess.run, command, shell=True, cwd=ROOT,
                                           capture_output=True, text=True, timeout=60)
            assert done.returncode == 0, (call, done.stdout, done.stderr)
            assert "Traceback" not in done.stderr, (call, done.stderr)
            outputs[call] = done.stdout
        # "status --text ID shows the text as the phone got it": the mail's subject, then body
        mailed = re.search(r"^2\.0\.0 Accepted (\w+)$", "\n".join(outputs.values()), re.M)
        assert mailed is not None, outputs
        done = await asyncio.to_thread(
            subprocess.run, [".venv/bin/sms-bridge", "status", "--text", "-c", str(config),
                             mailed[1]], cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, (done.stdout, done.stderr)
        status = done.stdout
    finally:
        stores = child_pids(proc.pid)
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), 30)
        await wait_gone(stores)
    said = "\n".join(outputs.values())
    assert re.search(r"^2\.0\.0 Accepted \w+$", said, re.M), said  # smtplib's line: the id
    assert "'status': 'accepted'" in said  # zeep's SendSms answer
    assert re.search(r"<(\w+:)?status>accepted<", said)  # curl's SOAP envelope
    assert re.search(r"1701\|447400123456\|\S+", said)  # the bulk-SMS API
    assert '"status": "submitted"' in said or '"status":"submitted"' in said
    assert "0: Accepted for delivery" in said  # Kannel's sendsms
    assert 'Success "' in said  # Jasmin's /send
    assert '\n  text "hi\\nhello"\n' in status, status
    assert '`text "hi\\nhello"`' in (ROOT / "README.md").read_text()
