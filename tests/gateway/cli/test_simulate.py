"""``gateway simulate`` as a user runs it: arguments, exit codes, one JSON line, signals."""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import socket
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from gateway.cli import simulate as command
from gateway.cli.status import EXIT_USAGE
from gateway.fleet.stats import SUMMARY_KEYS
from tests.gateway.fleet.servers import AckServer

GATEWAY = str(Path(sys.executable).with_name("gateway"))


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    command.add_arguments(parser.add_subparsers(dest="command").add_parser("simulate"))
    return parser.parse_args(["simulate", *argv])


async def simulate(*argv: str, stop_once: Callable[[], bool] | None = None) -> tuple[int, str, str]:
    """Run ``gateway simulate``; with ``stop_once``, SIGTERM it as soon as that holds (so the
    signal comes after start-up, however slow the machine is)."""
    process = await asyncio.create_subprocess_exec(
        GATEWAY,
        "simulate",
        *argv,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    if stop_once is not None:
        for _ in range(300):
            if stop_once():
                break
            await asyncio.sleep(0.05)
        process.send_signal(signal.SIGTERM)
    stdout, stderr = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode is not None
    return process.returncode, stdout.decode(), stderr.decode()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--target", "127.0.0.1:1", "--codec", "nmea"], "unknown codec 'nmea'"),
        (["--target", "127.0.0.1"], "bad target '127.0.0.1'"),
        (["--target", "127.0.0.1:70000"], "port 1-65535"),
        (["--target", "mqtt=127.0.0.1:1"], "unknown codec 'mqtt'"),
        (["--target", "gt06=127.0.0.1:1"], "no --target for codec 'evb1'"),
        (["--codec", "evb1,gt06", "--target", "evb1=h:1"], "no --target for codec 'gt06'"),
        (["--target", "h:1", "--devices", "0"], "--devices must be at least 1"),
        (["--target", "h:1", "--rate", "fast"], "--rate 'fast' is not a number"),
        (["--target", "h:1", "--rate", "nan"], "--rate must be"),
        (["--target", "h:1", "--imei-base", "999999999999999"], "exceeds 15 digits"),
        (["--target", "h:1", "--acked-log", "/nonexistent/dir/log"], "--acked-log"),
        ([], "no --target"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert command.run(parse(*argv)) == EXIT_USAGE
    out, err = capsys.readouterr()
    assert out == ""
    assert err.count("\n") == 1 and err.startswith("gateway simulate: ")
    assert message in err


def test_targets_per_codec_override_the_default() -> None:
    config = command.config_from_args(
        parse(
            "--codec",
            "teltonika, gt06,evb1",
            "--target",
            "gw:5000",
            "--target",
            "gt06=[::1]:5001",
            "--seed",
            "3",
            "--ack-timeout",
            "2.5",
        )
    )
    assert config.codecs == ("teltonika", "gt06", "evb1")
    assert config.targets == {
        "teltonika": ("gw", 5000),
        "gt06": ("::1", 5001),
        "evb1": ("gw", 5000),
    }
    assert (config.seed, config.unit.ack_timeout_s, config.drain_s) == (3, 2.5, 3.5)


@pytest.mark.asyncio
async def test_the_command_runs_a_mixed_fleet_and_prints_one_json_line(tmp_path: Path) -> None:
    servers = {codec: AckServer(codec) for codec in ("evb1", "teltonika", "gt06")}
    targets: list[str] = []
    for codec, server in servers.items():
        host, port = await server.start()
        targets += ["--target", f"{codec}={host}:{port}"]
    acked_log = tmp_path / "acked.jsonl"
    try:
        code, out, err = await simulate(
            *targets,
            "--codec",
            "evb1,teltonika,gt06",
            "--devices",
            "9",
            "--rate",
            "5",
            "--duration",
            "1.5",
            "--faults",
            "1",
            "--seed",
            "11",
            "--acked-log",
            str(acked_log),
        )
    finally:
        for server in servers.values():
            await server.close()
    assert code == 0, err
    assert err == "", "no progress output when stderr is not a TTY"
    (line,) = out.splitlines()
    summary = json.loads(line)
    assert list(summary)[: len(SUMMARY_KEYS)] == list(SUMMARY_KEYS)
    assert summary["devices"] == 9 and summary["unacked"] == 0 and summary["seed"] == 11
    assert summary["sent"] == summary["acked"] + summary["no_ack"] > 0
    lines = [json.loads(x) for x in acked_log.read_text().splitlines()]
    assert len(lines) == summary["acked"]
    for entry in lines:
        assert (entry["device_id"], bytes.fromhex(entry["payload"])) in servers[
            entry["codec"]
        ].acked


@pytest.mark.asyncio
async def test_sigterm_stops_early_and_still_prints_the_summary() -> None:
    server = AckServer("evb1")
    host, port = await server.start()
    try:
        code, out, err = await simulate(
            "--target",
            f"{host}:{port}",
            "--devices",
            "4",
            "--rate",
            "20",
            "--duration",
            "0",
            stop_once=lambda: len(server.acked) >= 20,  # running, handlers installed
        )
    finally:
        await server.close()
    assert code == 0, err
    summary = json.loads(out)
    assert summary["interrupted"] is True
    assert summary["sent"] == summary["acked"] > 0
    assert "Traceback" not in err


@pytest.mark.asyncio
async def test_a_bad_argument_in_a_real_process_is_one_line_and_no_traceback() -> None:
    code, out, err = await simulate("--target", "nowhere", "--codec", "evb1")
    assert (code, out) == (2, "")
    assert err == "gateway simulate: bad target 'nowhere': expected HOST:PORT with a port 1-65535\n"


@pytest.mark.asyncio
async def test_a_target_where_nothing_listens_is_one_line_and_exit_69() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again: nothing listens there
    server = AckServer("evb1")
    host, good = await server.start()
    try:
        code, out, err = await simulate(
            "--codec", "evb1,gt06", "--target", f"evb1={host}:{good}",
            "--target", f"gt06=127.0.0.1:{port}", "--devices", "4", "--duration", "60",
        )  # fmt: skip
    finally:
        await server.close()
    assert code == 69
    assert err == f"gateway simulate: nothing accepted gt06 connections on 127.0.0.1:{port}\n"
    summary = json.loads(out)
    assert summary["unreachable"] == ["gt06"] and summary["run_s"] < 60
