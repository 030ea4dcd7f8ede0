"""Running ``gateway replay`` and comparing its records with a live run's."""

from __future__ import annotations

import json
import subprocess
from collections import defaultdict
from typing import Any

from tests.gateway.gatewayproc import GATEWAY

CODECS = ("teltonika", "gt06", "evb1")  # the codecs of the live run (conftest.py)


def replay(*args: str) -> tuple[dict[str, Any], str]:
    result = subprocess.run(
        [GATEWAY, "replay", *args], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.splitlines()[-1]), result.stderr


def by_device(records: list[dict[str, Any]]) -> dict[str, list[str]]:
    order: dict[str, list[str]] = defaultdict(list)
    for r in records:
        order[r["device_id"]].append(r["id"])
    return order
