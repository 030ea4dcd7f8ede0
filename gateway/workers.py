"""``gateway run --workers N``: one process per core sharing the listening ports (SO_REUSEPORT).

The kernel spreads new connections over the worker processes; each worker is a complete gateway
(its own pipeline, sinks and budget). Worker ``i`` serves metrics on the metrics port + ``i`` (each
is scraped on its own) and all share the health port. The supervisor only forwards signals and
waits: a worker that exits is not restarted here — under systemd the unit restarts the whole
service, and ``ev-gateway@.service`` runs one unit per core instead.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from types import FrameType

WORKER_ENV = "GATEWAY_WORKER"


def worker_index() -> int | None:
    """This process's worker number when started by the supervisor (None otherwise)."""
    value = os.environ.get(WORKER_ENV)
    return int(value) if value is not None and value.isdigit() else None


def supervise(argv: Sequence[str], workers: int) -> int:
    """Run ``workers`` copies of ``gateway run argv`` and wait; returns the worst exit code."""
    gateway = str(os.path.join(os.path.dirname(sys.executable), "gateway"))
    # Workers get signals only from us (their own process group: a Ctrl-C to the terminal's
    # group would otherwise reach them twice, and a second signal means "exit now"). They do
    # not speak sd_notify: under systemd prefer one ev-gateway@N.service per core.
    env = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC")}
    children = [
        subprocess.Popen([gateway, "run", *argv], env={**env, WORKER_ENV: str(i)}, process_group=0)
        for i in range(workers)
    ]

    def forward(signum: int, _frame: FrameType | None) -> None:
        for child in children:
            if child.poll() is None:
                child.send_signal(signum)

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, forward)
    codes = []
    for child in children:
        while True:
            try:
                codes.append(child.wait())
                break
            except InterruptedError:  # pragma: no cover - PEP 475 retries, kept for clarity
                time.sleep(0.01)
    return max(codes, key=abs)
