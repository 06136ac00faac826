"""The SMTP bench runs end to end (tiny counts; the figures themselves are not checked)."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
from pathlib import Path
from typing import Any

import pytest

from bridge.bench import smtp as bench
from tests.conftest import DEMO_PASSWORD, make_config, running_bridge
from tests.smtp.test_server import tls_config


def test_bench_smoke(capfd: pytest.CaptureFixture[str]) -> None:
    bench.main(["--mails", "40", "--rounds", "1", "--warmup", "8", "--connections", "4",
                "--per-session", "7"])
    out, err = capfd.readouterr()
    result = json.loads(out)
    # The bench's bridges log at the shipped level, into their files, not onto the terminal.
    assert result["log_level"] == "info" and result["log_lines"] >= 2 * (8 + 40)
    assert " info bridge" not in err
    assert result["submits_at_simulator"] == 8 + 40
    assert result["delivery"] == {"expected": 40, "missing": 0, "duplicated": 0, "unchecked": 0,
                                  "exactly_once": True}
    assert result["targets"]["exactly_once"] is True
    for key in ("noop_msgs_per_s", "accept_only_msgs_per_s", "bridge_end_to_end_msgs_per_s",
                "ratio_end_to_end_vs_noop"):
        assert result[key] > 0, key
    cpu = result["cpu_us_per_mail"]
    assert set(cpu["noop"]) == {"load", "server", "total"}
    assert cpu["bridge"]["store"] > 0 and cpu["bridge"]["server"] > 0
    assert cpu["accept_only"]["store"] > 0
    # Every mail is accepted, submitted and receipted: three store writes at least, and some
    # transactions (each an fsync) committed them.
    assert result["cores_busy_at_target"] > 0
    store = result["store_per_mail"]
    assert store["writes"] >= 3
    assert 0 < store["commits"] <= store["writes"]


def test_bench_runs_its_bridges_at_the_log_level_asked(capsys: pytest.CaptureFixture[str]
                                                       ) -> None:
    bench.main(["--mails", "10", "--rounds", "1", "--warmup", "2", "--connections", "2",
                "--per-session", "5", "--log-level", "warning"])
    result = json.loads(capsys.readouterr().out)
    assert result["log_level"] == "warning" and result["log_lines"] == 0
    assert result["delivery"]["exactly_once"] is True


def test_bench_compares_sqlite_and_postgresql_in_one_run(
        pg_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    """`--compare`: the no-op once, accept_only and the whole bridge on each store in the same
    rounds, each store's mails at the simulator exactly once, PostgreSQL's CPU counted."""
    bench.main(["--compare", "--url", pg_url, "--mails", "30", "--rounds", "1", "--warmup",
                "6", "--connections", "3", "--per-session", "5"])
    result = json.loads(capsys.readouterr().out)
    assert result["stores"] == ["sqlite", "postgresql"]
    assert result["submits_at_simulator"] == 2 * (6 + 30)
    for kind in ("sqlite", "postgresql"):
        assert result[kind]["delivery"]["exactly_once"] is True
        assert result[kind]["delivery"]["expected"] == 30
        assert result[kind]["bridge_end_to_end_msgs_per_s"] > 0
    assert result["postgresql"]["cpu_us_per_mail"]["bridge"]["postgres"] > 0
    assert "postgres" not in result["sqlite"]["cpu_us_per_mail"]["bridge"]
    assert result["postgresql_vs_sqlite"]["end_to_end"] > 0
    assert result["targets"]["exactly_once"] is True


# ---------------------------------------------------------------- against a running bridge

def run_against(port: int, *options: str) -> dict[str, Any]:
    """`--target` mode in a thread (it runs its own event loop) against the test's bridge."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        bench.main(["--target", f"127.0.0.1:{port}", "--to", "+4474009{n:05d}",
                    "--connections", "2", "--per-session", "4", *options])
    result: dict[str, Any] = json.loads(out.getvalue())
    return result


async def test_a_running_bridge_is_loaded_and_every_answer_counted(tmp_path: Path) -> None:
    async with running_bridge(make_config(tmp_path)) as bridge:
        metrics = f"http://127.0.0.1:{bridge.soap_port}/metrics"
        result = await asyncio.to_thread(run_against, bridge.smtp_port, "--mails", "20",
                                         "--numbers", "7", "--metrics", metrics)
        assert result["replies"] == {"250 2.0.0": 20} and result["accepted"] == 20
        assert result["submitted"] == 20 and result["end_to_end_msgs_per_s"] > 0
        assert 0 < result["latency_ms"]["p50"] <= result["latency_ms"]["max"]
        assert result["session_errors"] == {}
        assert bridge.simulator is not None
        targets = {s.destination for s in bridge.simulator.submits}
        assert targets == {f"4474009{n:05d}" for n in range(7)}


async def test_refusals_are_counted_not_fatal(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """A rate limit answers 451 4.7.1 at RCPT; a wrong password ends each session at AUTH."""
    config = make_config(tmp_path, account=[{
        "name": "demo", "password": DEMO_PASSWORD, "senders": ["ACME"],
        "default_sender": "ACME", "rate_per_s": 3, "relay_networks": ["127.0.0.1/32"]}])
    async with running_bridge(config) as bridge:
        result = await asyncio.to_thread(run_against, bridge.smtp_port, "--mails", "12")
        assert result["replies"]["451 4.7.1"] >= 6
        assert result["accepted"] == result["replies"].get("250 2.0.0", 0) >= 1
        assert sum(result["replies"].values()) == 12
        monkeypatch.setenv("SMS_BRIDGE_BENCH_PASSWORD", "wrong")
        refused = await asyncio.to_thread(run_against, bridge.smtp_port, "--mails", "8",
                                          "--user", "demo")
        assert refused["accepted"] == 0 and refused["replies"] == {}
        [(why, sessions)] = refused["session_errors"].items()
        assert sessions == 2 and "535 5.7.8" in why


async def test_starttls_and_auth_against_a_running_bridge(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config, _ = tls_config(tmp_path)  # no relay network: AUTH after STARTTLS or nothing
    monkeypatch.setenv("SMS_BRIDGE_BENCH_PASSWORD", DEMO_PASSWORD)
    async with running_bridge(config) as bridge:
        result = await asyncio.to_thread(run_against, bridge.smtp_port, "--mails", "6",
                                         "--starttls", "--cafile", str(tmp_path / "ca.pem"),
                                         "--user", "demo")
        assert result["replies"] == {"250 2.0.0": 6}, result
        plain = await asyncio.to_thread(run_against, bridge.smtp_port, "--mails", "2")
        assert plain["replies"] == {"530 5.7.0": 2}, plain


@pytest.mark.parametrize("options", [
    ["--target", "127.0.0.1:2525"],  # whose numbers? never a default
    ["--target", "127.0.0.1:2525", "--to", "+44740012345"],
    ["--target", "127.0.0.1", "--to", "+4474001{n:05d}"],
    ["--target", "127.0.0.1:2525", "--to", "+4474001{n:05x!}"],
])
def test_target_mode_needs_a_target_and_numbers(options: list[str],
                                                capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        bench.main(options)
    assert info.value.code == 2
    assert "error" in capsys.readouterr().err
