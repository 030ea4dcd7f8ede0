"""``gateway run`` under a Type=notify unit: READY once bound, the watchdog, RELOADING, STOPPING."""

from __future__ import annotations

import signal
import socket
from pathlib import Path

from tests.gateway.gatewayproc import GatewayProcess, wait_for


def test_gateway_speaks_sd_notify_through_its_lifecycle(tmp_path: Path) -> None:
    systemd = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    systemd.bind(str(tmp_path / "notify"))
    systemd.settimeout(5.0)
    env = {"NOTIFY_SOCKET": str(tmp_path / "notify"), "WATCHDOG_USEC": "200000"}
    proc = GatewayProcess(tmp_path / "data", codecs=("evb1",), env=env)
    try:
        ready = systemd.recv(4096)
        port = proc.ports["evb1"]
        assert ready == f"READY=1\nSTATUS=serving evb1:{port}; sink local".encode()
        # Pinged every WATCHDOG_USEC / 2 = 0.1 s by the event loop.
        assert [systemd.recv(4096) for _ in range(3)] == [b"WATCHDOG=1"] * 3
        proc.proc.send_signal(signal.SIGHUP)
        assert wait_for(lambda: proc.events("reloaded"))
        seen = [systemd.recv(4096) for _ in range(20)]
        reloading = next(i for i, m in enumerate(seen) if m.startswith(b"RELOADING=1\n"))
        assert seen[reloading].split(b"\n")[1].startswith(b"MONOTONIC_USEC=")
        assert seen[reloading + 1 :].index(ready) >= 0  # READY=1 again after the reload
        assert proc.stop() == 0
        rest = []
        systemd.settimeout(0.5)
        while True:
            try:
                rest.append(systemd.recv(4096))
            except TimeoutError:
                break
        assert b"STOPPING=1\nSTATUS=draining, deadline 20 s" in rest
    finally:
        proc.kill()
        systemd.close()


def test_without_systemd_the_gateway_sends_nothing(tmp_path: Path) -> None:
    proc = GatewayProcess(tmp_path / "data", codecs=("evb1",), env={"NOTIFY_SOCKET": ""})
    assert proc.stop() == 0
    assert not [line for line in proc.lines if line.get("level") == "warning"]
