"""The SOAP bench runs end to end (tiny counts; the figures themselves are not checked)."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
from pathlib import Path
from typing import Any

import pytest
import trustme

from bridge.bench import soap as bench
from tests.conftest import DEMO_PASSWORD, make_config, running_bridge


def test_bench_smoke(capfd: pytest.CaptureFixture[str]) -> None:
    bench.main(["--calls", "30", "--batch-calls", "2", "--batch-size", "10", "--noop-calls", "30",
                "--concurrency", "4", "--rounds", "2"])
    out, err = capfd.readouterr()
    result = json.loads(out)
    # The bench bridge logs at the shipped level, into its file, not onto the terminal.
    assert result["log_level"] == "info" and result["log_lines"] >= 200 + 2 * (30 + 20)
    assert " info bridge" not in err
    assert result["send_1"]["messages_at_simulator"] == 30
    assert result["send_100"]["messages_at_simulator"] == 20
    # Every recipient of both rounds reached the simulator exactly once.
    assert result["delivery"] == {"expected": 2 * (30 + 20), "missing": 0, "duplicated": 0,
                                  "unchecked": 0, "exactly_once": True}
    assert result["targets"]["exactly_once"] is True
    assert len(result["noop_stock"]["rounds"]) == len(result["send_1"]["rounds"]) == 2
    # Ping (bridge.bench.ping) is answered on both stacks, the bridge's own and stock Spyne's.
    assert result["noop_bridge"]["statuses"] == result["noop_stock"]["statuses"] == {"200": 30}
    for key in ("send_1_e2e_vs_noop_stock", "send_1_e2e_vs_noop_bridge",
                "send_100_e2e_msgs_per_s"):
        assert result["ratios"][key] > 0, key
    # Each load's CPU by process: the store works for sends only, the bridge for all.
    cpu = result["cpu_us"]
    assert cpu["send_1"]["store"] > 0 and cpu["send_1"]["bridge"] > 0
    assert cpu["noop_stock"]["store"] < cpu["send_1"]["store"]
    assert cpu["send_1"]["total"] == pytest.approx(
        sum(v for k, v in cpu["send_1"].items() if k != "total"), abs=0.5)


def test_bench_compares_sqlite_and_postgresql_in_one_run(
        pg_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    """`--compare`: a bench bridge per store, the same loads in the same rounds, each
    recipient at the simulator exactly once, PostgreSQL's server CPU counted."""
    bench.main(["--compare", "--url", pg_url, "--calls", "20", "--batch-calls", "2",
                "--batch-size", "10", "--noop-calls", "20", "--concurrency", "4",
                "--rounds", "1"])
    result = json.loads(capsys.readouterr().out)
    assert result["stores"] == ["sqlite", "postgresql"]
    for kind in ("sqlite", "postgresql"):
        assert result[kind]["send_1"]["messages_at_simulator"] == 20
        assert result[kind]["send_100"]["messages_at_simulator"] == 20
        assert result[kind]["delivery"]["exactly_once"] is True
    assert result["postgresql"]["cpu_us"]["send_100"]["postgres"] > 0
    assert "postgres" not in result["sqlite"]["cpu_us"]["send_100"]
    assert result["postgresql_vs_sqlite"]["send_100_e2e"] > 0
    assert result["targets"]["exactly_once"] is True
    assert "send_100_postgresql_vs_sqlite_0.70" in result["targets"]


def test_cli_passes_options_to_the_named_bench(capsys: pytest.CaptureFixture[str]) -> None:
    from bridge.cli import main

    assert main(["bench", "soap", "--calls", "20", "--batch-calls", "1", "--batch-size", "5",
                 "--noop-calls", "20", "--concurrency", "2", "--rounds", "1"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["rounds"] == 1 and result["send_1"]["messages_at_simulator"] == 20
    assert main(["bench", "all", "--rounds", "1"]) == 2  # options belong to one bench


# ---------------------------------------------------------------- against a running bridge

def run_against(url: str, *options: str) -> dict[str, Any]:
    """`--target` mode in a thread (it runs its own event loop) against the test's bridge."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert bench.main(["--target", url, "--to", "+4474008{n:05d}", "--concurrency", "3",
                           *options]) == 0
    result: dict[str, Any] = json.loads(out.getvalue())
    return result


async def test_a_running_bridge_is_loaded_and_every_submission_counted(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SMS_BRIDGE_BENCH_PASSWORD", DEMO_PASSWORD)
    async with running_bridge(make_config(tmp_path)) as bridge:
        url = f"http://127.0.0.1:{bridge.soap_port}/soap"
        metrics = f"http://127.0.0.1:{bridge.soap_port}/metrics"
        result = await asyncio.to_thread(run_against, url, "--calls", "9", "--recipients", "3",
                                         "--numbers", "27", "--metrics", metrics)
        assert result["http_statuses"] == {"200": 9} and result["faults"] == {}
        assert result["submissions"] == {"accepted": 27} and result["accepted"] == 27
        assert result["submitted"] == 27 and result["end_to_end_msgs_per_s"] > 0
        assert bridge.simulator is not None
        assert {s.destination for s in bridge.simulator.submits} == {
            f"4474008{n:05d}" for n in range(27)}
        # An invalid number and a rate limit are a submission's status, not a fault.
        bad = await asyncio.to_thread(run_against, url, "--calls", "2", "--to", "+44770{n}")
        assert bad["submissions"] == {"INVALID_DESTINATION": 2} and bad["accepted"] == 0


async def test_wrong_credentials_are_counted_as_faults(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SMS_BRIDGE_BENCH_PASSWORD", "wrong")
    async with running_bridge(make_config(tmp_path)) as bridge:
        result = await asyncio.to_thread(
            run_against, f"http://127.0.0.1:{bridge.soap_port}/soap", "--calls", "4")
        assert result["http_statuses"] == {"401": 4}
        assert result["faults"] == {"soap:Client.AUTH_FAILED": 4} and result["accepted"] == 0


async def test_https_with_a_trusted_ca(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    cert.private_key_and_cert_chain_pem.write_to_path(str(tmp_path / "cert.pem"))
    cert.private_key_pem.write_to_path(str(tmp_path / "key.pem"))
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    config = make_config(tmp_path, soap={"tls_cert": str(tmp_path / "cert.pem"),
                                         "tls_key": str(tmp_path / "key.pem")})
    monkeypatch.setenv("SMS_BRIDGE_BENCH_PASSWORD", DEMO_PASSWORD)
    async with running_bridge(config) as bridge:
        result = await asyncio.to_thread(
            run_against, f"https://127.0.0.1:{bridge.soap_port}/soap", "--calls", "3",
            "--cafile", str(tmp_path / "ca.pem"))
        assert result["submissions"] == {"accepted": 3}


@pytest.mark.parametrize("options", [
    ["--target", "http://127.0.0.1:8080/soap"],  # whose numbers? never a default
    ["--target", "127.0.0.1:8080", "--to", "+4474001{n:05d}"],
    ["--target", "http://127.0.0.1:8080/soap", "--to", "+4474001{m}"],
    ["--target", "http://127.0.0.1:8080/soap", "--to", "+4474001{n}", "--recipients", "0"],
])
def test_target_mode_needs_a_url_and_numbers(options: list[str],
                                             capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        bench.main(options)
    assert info.value.code == 2
    assert "error" in capsys.readouterr().err
