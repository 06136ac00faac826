"""The command line as a newcomer meets it: every help works, options say what they are, an
error names what the user typed, never a traceback."""

from __future__ import annotations

import asyncio
import os
import pty
import subprocess
import sys
from pathlib import Path

import pytest

from bridge.cli import SIMULATOR_FLAGS, main
from bridge.config import SimulatorConfig
from tests.conftest import DEMO_PASSWORD, ROOT, make_config, running_bridge

BENCHES = ("smpp", "store", "soap", "smtp", "http")


def sms_bridge(*args: str) -> subprocess.CompletedProcess[str]:
    """The real command; help on wide lines, so that a sentence is not wrapped."""
    return subprocess.run([sys.executable, "-m", "bridge", *args], capture_output=True,
                          text=True, cwd=ROOT, timeout=120, check=False,
                          env={**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "400"})


@pytest.mark.parametrize("bench", BENCHES)
def test_bench_help_prints_the_bench_options(bench: str) -> None:
    done = sms_bridge("bench", bench, "--help")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"usage: python -m bridge.bench.{bench}")
    assert "Traceback" not in done.stderr


def test_a_bench_option_it_does_not_know_is_its_usage_error() -> None:
    done = sms_bridge("bench", "soap", "--bogus")
    assert done.returncode == 2
    assert "error: unrecognized arguments: --bogus" in done.stderr
    assert "Traceback" not in done.stderr


async def test_bench_draws_its_progress_bar_on_the_terminal(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`sms-bridge bench soap --target …` in a terminal: the bench's own progress bar reaches
    it (the bench's standard error is the terminal's), the JSON summary comes after."""
    async with running_bridge(make_config(tmp_path)) as bridge:
        url = f"http://127.0.0.1:{bridge.soap_port}/soap"
        master, slave = pty.openpty()
        try:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "bridge", "bench", "soap", "--target", url,
                "--to", "+4474007{n:05d}", "--calls", "20", "--concurrency", "2",
                stdout=asyncio.subprocess.PIPE, stderr=slave, cwd=str(ROOT),
                env={**os.environ, "PYTHONPATH": str(ROOT),
                     "SMS_BRIDGE_BENCH_PASSWORD": DEMO_PASSWORD})
            out, _ = await asyncio.wait_for(proc.communicate(), 120)
            os.close(slave)
            slave = -1
            terminal = _read_all(master)
        finally:
            if slave >= 0:
                os.close(slave)
            os.close(master)
    assert proc.returncode == 0, terminal
    assert f"soap → {url} [{'#' * 24}] 20/20" in terminal
    assert '"accepted": 20' in out.decode()


def _read_all(fd: int) -> str:
    chunks = []
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # the other end is closed: all read
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks).decode(errors="replace")


def test_every_simulator_option_says_what_it_does() -> None:
    done = sms_bridge("simulator", "--help")
    assert done.returncode == 0
    text = " ".join(done.stdout.split())
    for flag, key, kind, help_text in SIMULATOR_FLAGS:
        assert flag in text
        assert " ".join(help_text.split()) in text, flag
        if kind is not bool:
            assert f"(default: {getattr(SimulatorConfig, key)})" in text, flag


def test_a_bad_simulator_option_is_named_by_its_flag(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["simulator", "--port", "99999", "--receipt-delay", "-1",
                 "--id-format", "oct"]) == 1
    assert capsys.readouterr().err.splitlines() == [
        "config error: --port: must be 0..65535",
        "config error: --receipt-delay: must be 0..3600",
        'config error: --id-format: must be one of "hex", "dec"']


@pytest.mark.parametrize("command", ["serve", "check-config", "status"])
def test_the_config_option_is_explained_with_its_default(
        command: str, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("SMS_BRIDGE_CONFIG", "/etc/sms-bridge/bridge.toml")
    with pytest.raises(SystemExit):
        main([command, "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "-c FILE, --config FILE the config file (default: $SMS_BRIDGE_CONFIG if set, " \
        "else conf/bridge.toml in the working folder; now /etc/sms-bridge/bridge.toml)" in text
