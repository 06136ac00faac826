"""The command line as a newcomer meets it: every help works, options say what they are, an
error names what the user typed, never a traceback."""

from __future__ import annotations

import asyncio
import os
import pty
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from bridge.cli import SIMULATOR_FLAGS, main
from bridge.config import SimulatorConfig
from tests.conftest import DEMO_PASSWORD, ROOT, make_config, running_bridge, write_serve_config

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


@pytest.mark.parametrize("module", ["bridge", "bridge.bench.soap"])
def test_a_bench_without_the_bench_extra_says_how_to_install_it(module: str) -> None:
    """httptools is the bench extra, not a dependency of the product: without it, `sms-bridge
    bench soap` (and `python -m bridge.bench.soap`) say what to install in one line, exit 2."""
    args = ["bench", "soap"] if module == "bridge" else []
    hide = ("import runpy, sys; sys.modules['httptools'] = None; "  # `import httptools` fails
            f"sys.argv = ['{module}', *{args!r}]; "
            f"runpy.run_module('{module}', run_name='__main__', alter_sys=True)")
    done = subprocess.run([sys.executable, "-c", hide], capture_output=True, text=True,
                          cwd=ROOT, timeout=60, check=False,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert "httptools" in done.stderr and "pip install -e '.[bench]'" in done.stderr


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


# ------------------------------------------------------------------ serve, as a service runs it

def serve_config(tmp_path: Path, **listen: str) -> Path:
    """A loopback config file (ephemeral ports unless `listen` names one per section)."""
    smtp, soap = listen.get("smtp", "127.0.0.1:0"), listen.get("soap", "127.0.0.1:0")
    path = tmp_path / "conf" / "bridge.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"""
[smtp]
listen = "{smtp}"
[soap]
listen = "{soap}"
[simulator]
enabled = true
port = 0
[[account]]
name = "demo"
password = "demo-password"
""")
    return path


@pytest.mark.parametrize(("section", "listener"), [("smtp", "SMTP ([smtp] listen)"),
                                                   ("soap", "SOAP ([soap] listen)")])
def test_serve_names_the_listener_whose_port_is_taken(tmp_path: Path, section: str,
                                                      listener: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = serve_config(tmp_path, **{section: f"127.0.0.1:{port}"})
        done = sms_bridge("serve", "-c", str(config))
    assert done.returncode == 1
    assert f"sms-bridge: cannot listen for {listener} on 127.0.0.1:{port}: " in done.stderr
    assert "address already in use" in done.stderr
    assert "Traceback" not in done.stderr


def test_serve_names_a_listen_host_that_does_not_resolve(tmp_path: Path) -> None:
    done = sms_bridge("serve", "-c", str(serve_config(tmp_path, smtp="no-such-host.invalid:0")))
    assert done.returncode == 1
    assert "sms-bridge: cannot listen for SMTP ([smtp] listen) on no-such-host.invalid:0: " \
        in done.stderr
    assert "Traceback" not in done.stderr


async def test_the_exit_codes_the_systemd_unit_relies_on(tmp_path: Path) -> None:
    """conf/sms-bridge.service: its commands exist; a stop (SIGTERM) after draining is 0 (not
    restarted), a command-line mistake 2 (RestartPreventExitStatus), a bad config 1."""
    unit = (ROOT / "conf" / "sms-bridge.service").read_text()
    commands = re.findall(r"^Exec\w+=/opt/sms-bridge/\.venv/bin/sms-bridge (.+)$", unit, re.M)
    assert commands == ["check-config", "serve"]
    assert "Restart=on-failure" in unit and "RestartPreventExitStatus=2" in unit
    config = serve_config(tmp_path)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "SMS_BRIDGE_CONFIG": str(config)}
    assert subprocess.run([sys.executable, "-m", "bridge", "check-config"], env=env, cwd=ROOT,
                          capture_output=True, check=False).returncode == 0
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bridge", "serve", env=env, cwd=str(ROOT),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
    assert proc.stdout is not None
    assert b"SMTP on 127.0.0.1:" in await asyncio.wait_for(proc.stdout.readline(), 60)
    proc.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(proc.wait(), 45) == 0
    assert sms_bridge("serve", "--no-such-flag").returncode == 2
    config.write_text(config.read_text().replace('name = "demo"', 'nmae = "demo"'))
    assert sms_bridge("serve", "-c", str(config)).returncode == 1


def test_output_to_a_reader_that_went_away_is_no_traceback(tmp_path: Path) -> None:
    """`sms-bridge status … | head -1`: the reader closes the pipe while status still prints."""
    config = write_serve_config(tmp_path, "status.db", """
[simulator]
enabled = true
port = 0
[[account]]
name = "a"
password = "p"
""")
    ids = [f"id{i:05d}" for i in range(5000)]  # "not found" lines, more than a pipe holds
    with subprocess.Popen([sys.executable, "-m", "bridge", "status", "-c", str(config), *ids],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        assert proc.stdout.readline().startswith(b"id00000")
        proc.stdout.close()
        err = proc.stderr.read().decode()
        assert proc.wait(timeout=30) == 1
    assert "Traceback" not in err and "BrokenPipe" not in err, err
