"""``gateway run --workers 2``: two processes share one port and both take connections."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

from tests.gateway.devices import DeviceSocket
from tests.gateway.gatewayproc import GATEWAY, wait_for
from tests.local_server import free_port
from tests.parser.streams import evb1_ack, evb1_login


def connections_total(port: int) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return sum(
        float(line.rpartition(" ")[2])
        for line in text.splitlines()
        if line.startswith("gateway_connections_total")
    )


def test_two_workers_share_the_port(tmp_path: Path) -> None:
    port, metrics, health = free_port(), free_port(), free_port()
    while metrics + 1 in (port, health):
        metrics = free_port()
    proc = subprocess.Popen(
        [
            GATEWAY,
            "run",
            "--workers",
            "2",
            "--listen",
            f"evb1=127.0.0.1:{port}",
            "--data-dir",
            str(tmp_path / "data"),
            "--metrics",
            f"127.0.0.1:{metrics}",
            "--health",
            f"127.0.0.1:{health}",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={**os.environ, "GATEWAY_LOG__FORMAT": "json"},
    )
    ready: list[dict[str, object]] = []

    def read() -> None:
        assert proc.stdout is not None
        for raw in proc.stdout:
            try:
                line = json.loads(raw)
            except ValueError:
                continue
            if line.get("event") == "ready":
                ready.append(line)

    threading.Thread(target=read, daemon=True).start()
    try:
        assert wait_for(lambda: len(ready) == 2, timeout=20)
        assert sorted(r["worker"] for r in ready) == [0, 1]  # type: ignore[type-var]
        devices = []
        for i in range(40):
            dev = DeviceSocket(port)
            dev.send(evb1_login(f"3563070424{i:05d}"))
            assert dev.recv_exact(11) == evb1_ack(0, 1)
            devices.append(dev)
        time.sleep(0.3)
        per_worker = [connections_total(metrics), connections_total(metrics + 1)]
        assert sum(per_worker) == 40 and all(n > 0 for n in per_worker), per_worker
        for dev in devices:
            dev.close()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
