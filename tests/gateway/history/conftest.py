"""The live fleet run that replays are compared with."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.gateway.gatewayproc import GATEWAY, GatewayProcess
from tests.gateway.history.replays import CODECS


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A live fleet run's data directory (raw/ and parsed/), made once for each module."""
    tmp = tmp_path_factory.mktemp("live")
    gw = GatewayProcess(tmp / "data", codecs=CODECS)
    try:
        targets = [a for c in CODECS for a in ("--target", f"{c}=127.0.0.1:{gw.ports[c]}")]
        subprocess.run(
            [
                GATEWAY,
                "simulate",
                "--codec",
                ",".join(CODECS),
                *targets,
                "--devices",
                "60",
                "--rate",
                "2",
                "--duration",
                "4",
                "--faults",
                "3",
                "--seed",
                "5",
            ],
            capture_output=True,
            timeout=60,
            check=True,
        )
    finally:
        assert gw.stop() == 0
    return tmp / "data"
