"""``gateway run --workers N``: one process per core sharing the listening ports (SO_REUSEPORT).

The kernel spreads new connections over the worker processes; each worker is a complete gateway
(its own pipeline, sinks and budget). Worker ``i`` serves metrics on the metrics port + ``i`` (each
is scraped on its own) and all share the health port. The supervisor forwards signals, and
restarts a worker that exits while no stop was asked for, after a capped exponential backoff
(reset once the worker has run ``STABLE_S``), logging each exit and counting the restarts
(``gateway_worker_restarts_total``): a dead worker used to drop capacity silently. Its devices
reconnect to the workers still up meanwhile and resend what was not ACKed. Under systemd
``ev-gateway@.service`` runs one unit per core instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
import sys
from collections.abc import Iterator, Sequence

import structlog
from prometheus_client.core import CounterMetricFamily, Metric

log = structlog.get_logger("gateway.ops.workers")

WORKER_ENV = "GATEWAY_WORKER"
RESTARTS_ENV = "GATEWAY_WORKER_RESTARTS"  # how often the supervisor restarted this worker
SUPERVISOR_ENV = "GATEWAY_SUPERVISOR"  # the supervisor's pid, for a worker to die with it
PR_SET_PDEATHSIG = 1  # linux/prctl.h
RESTART_FIRST_S = 0.5
RESTART_MAX_S = 30.0
STABLE_S = 60.0  # a worker that ran this long crashed anew: its backoff starts again
# A worker's exit status for a configuration that cannot work (``gateway.cli.main.EXIT_USAGE``: a
# port taken, say): restarting would fail the same way, so everything stops with it.
EXIT_USAGE = 2


def worker_index() -> int | None:
    """This process's worker number when started by the supervisor (None otherwise)."""
    value = os.environ.get(WORKER_ENV)
    return int(value) if value is not None and value.isdigit() else None


def follow_supervisor() -> None:
    """A worker started by ``run --workers N`` stops (SIGTERM: a clean drain) when its supervisor
    dies, even by SIGKILL or the OOM killer. Workers run in their own process group, so nothing
    else would reach them: orphans kept the port and their journal's lock, and the next start
    of the gateway was refused on that lock. (Under systemd the unit's cgroup is killed whole.)"""
    supervisor = os.environ.get(SUPERVISOR_ENV)
    if supervisor is None or not supervisor.isdigit() or not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
        log.warning("cannot follow the supervisor", error=os.strerror(ctypes.get_errno()))
        return
    if os.getppid() != int(supervisor):  # it died before the prctl: nothing will signal us
        os.kill(os.getpid(), signal.SIGTERM)


class WorkerCollector:
    """``gateway_worker_restarts_total``: how often the supervisor restarted this worker after it
    died. The supervisor hands the count to each new process, so it survives the restart it
    counts (an alert can fire on its increase)."""

    def __init__(self, worker: int) -> None:
        self._worker = str(worker)
        value = os.environ.get(RESTARTS_ENV, "0")
        self._restarts = int(value) if value.isdigit() else 0

    def collect(self) -> Iterator[Metric]:
        restarts = CounterMetricFamily(
            "gateway_worker_restarts", "Restarts of this worker after it died", labels=["worker"]
        )
        restarts.add_metric([self._worker], self._restarts)
        yield restarts


def supervise(argv: Sequence[str], workers: int) -> int:
    """Run ``workers`` copies of ``gateway run argv`` until a stop signal; returns the worst
    exit status."""
    return asyncio.run(Supervisor(argv, workers).run())


class Supervisor:
    def __init__(self, argv: Sequence[str], workers: int) -> None:
        gateway = os.path.join(os.path.dirname(sys.executable), "gateway")
        self._command = [gateway, "run", *argv]
        # Workers do not speak sd_notify: under systemd prefer one ev-gateway@N.service per core.
        self._env = {
            k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC")
        }
        self._env[SUPERVISOR_ENV] = str(os.getpid())
        self._workers = workers
        self._children: dict[int, asyncio.subprocess.Process] = {}
        self._stop = asyncio.Event()

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.add_signal_handler(sig, self._forward, sig)
        codes = await asyncio.gather(*(self._keep(i) for i in range(self._workers)))
        if EXIT_USAGE in codes:  # the reason the others were stopped
            return EXIT_USAGE
        # A worker killed by a signal reports -N; the shell's convention is 128 + N.
        return max(128 - code if code < 0 else code for code in codes)

    def _forward(self, signum: int) -> None:
        if signum != signal.SIGHUP:  # SIGHUP reloads; the others stop
            self._stop.set()
        for child in self._children.values():
            if child.returncode is None:
                child.send_signal(signum)

    async def _keep(self, index: int) -> int:
        """Run worker ``index``, again each time it dies, until a stop; returns its last exit."""
        loop = asyncio.get_running_loop()
        delay = RESTART_FIRST_S
        restarts = 0
        while True:
            started = loop.time()
            # Workers get signals only from us (their own process group: a Ctrl-C to the
            # terminal's group would otherwise reach them twice, and a second signal means
            # "exit now").
            child = await asyncio.create_subprocess_exec(
                *self._command,
                env={**self._env, WORKER_ENV: str(index), RESTARTS_ENV: str(restarts)},
                process_group=0,
            )
            self._children[index] = child
            if self._stop.is_set():  # the stop came while it was being started
                child.send_signal(signal.SIGTERM)
            code = await child.wait()
            del self._children[index]
            if self._stop.is_set():
                return code
            if code == EXIT_USAGE:
                log.error("worker cannot run with this configuration; stopping", worker=index)
                self._forward(signal.SIGTERM)
                return code
            if loop.time() - started >= STABLE_S:
                delay = RESTART_FIRST_S
            restarts += 1
            log.error(
                "worker exited; restarting",
                worker=index,
                pid=child.pid,
                exit_code=code,
                restart_in_s=delay,
                restarts=restarts,
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), delay)
            if self._stop.is_set():
                return code
            delay = min(delay * 2, RESTART_MAX_S)
