"""NLB health checks over real HTTP: live, ready, and not ready while draining; where the health
and metrics endpoints bind, and a port that is taken."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from tests.gateway.devices import DeviceSocket
from tests.gateway.gatewayproc import GATEWAY, GatewayProcess, get, wait_for
from tests.parser.streams import evb1_heartbeat, evb1_login


def test_health_endpoints_and_draining(tmp_path: Path) -> None:
    stall = tmp_path / "stall"
    config = tmp_path / "gw.toml"
    config.write_text(f"[sink.local]\nstall_while_exists = '{stall}'\n")
    gw = GatewayProcess(tmp_path / "data", codecs=("evb1",), config=config)
    try:
        assert gw.health_url is not None
        assert get(gw.health_url + "/healthz") == (200, "ok\n")
        assert get(gw.health_url + "/readyz") == (200, "ready\n")
        assert get(gw.health_url + "/nope")[0] == 404
        stall.touch()  # the sink hangs, so the drain below takes a while
        dev = DeviceSocket(gw.ports["evb1"])
        dev.send(evb1_login("356307042441013") + evb1_heartbeat(1))
        assert wait_for(lambda: gw.metric("gateway_frames_total") == 1)
        gw.proc.send_signal(signal.SIGTERM)
        assert wait_for(lambda: get(gw.health_url + "/readyz") == (503, "draining\n"), timeout=5)
        assert get(gw.health_url + "/healthz") == (200, "ok\n")  # alive while it drains
        stall.unlink()
        assert gw.proc.wait(30) == 0
    finally:
        gw.kill()


def run_gateway(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            GATEWAY,
            "run",
            "--data-dir",
            str(tmp_path / "data"),
            "--listen",
            "evb1=127.0.0.1:0",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize("flag", ["--metrics", "--health"])
def test_a_port_in_use_is_one_line_and_exit_2(tmp_path: Path, flag: str) -> None:
    other = "--health" if flag == "--metrics" else "--metrics"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_gateway(tmp_path, flag, f"127.0.0.1:{port}", other, "127.0.0.1:0")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    name = flag.removeprefix("--")
    assert result.stderr == f"gateway run: {name} on 127.0.0.1:{port}: Address already in use\n"


def test_health_and_metrics_default_to_loopback_and_port_0_picks_a_free_one(
    tmp_path: Path,
) -> None:
    # Only the ports configured, not the hosts: both stay on loopback. Two gateways on one host
    # with port 0 do not collide, and the ready line says where each one listens.
    config = tmp_path / "gw.toml"
    config.write_text("[health]\nport = 0\n[metrics]\nport = 0\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    gateways = []
    try:
        for index in range(2):
            proc = subprocess.Popen(
                [GATEWAY, "run", "--config", str(config), "--data-dir", str(tmp_path / str(index)),
                 "--listen", "evb1=127.0.0.1:0"],
                stdout=subprocess.PIPE,
                text=True,
                env=env,
            )  # fmt: skip
            gateways.append(proc)
            assert proc.stdout is not None
            ready = next(
                line for text in proc.stdout if (line := json.loads(text))["event"] == "ready"
            )
            for key in ("health", "metrics"):
                url = urllib.parse.urlsplit(ready[key])
                assert url.hostname == "127.0.0.1" and url.port not in (None, 0, 8080, 9108)
            assert get(ready["health"] + "/readyz") == (200, "ready\n")
            with urllib.request.urlopen(ready["metrics"], timeout=5) as response:
                assert b"gateway_frames_total" in response.read()
    finally:
        for proc in gateways:
            proc.send_signal(signal.SIGTERM)
        for proc in gateways:
            assert proc.wait(30) == 0
