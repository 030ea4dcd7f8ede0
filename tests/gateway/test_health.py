"""NLB health checks over real HTTP: live, ready, and not ready while draining."""

from __future__ import annotations

import signal
import urllib.error
import urllib.request
from pathlib import Path

from tests.gateway.devices import DeviceSocket
from tests.gateway.gatewayproc import GatewayProcess, wait_for
from tests.parser.streams import evb1_heartbeat, evb1_login


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


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
