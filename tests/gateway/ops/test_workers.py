"""``gateway run --workers 2``: two processes share one port and both take connections; a worker
that dies is restarted and serves again."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import threading
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.gateway.devices import DeviceSocket
from tests.gateway.gatewayproc import GATEWAY, wait_for
from tests.local_server import free_port
from tests.parser.streams import evb1_ack, evb1_login


def scrape(port: int, name: str) -> float:
    """The sum of the samples of ``name`` a worker's /metrics shows."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return sum(
        float(line.rpartition(" ")[2])
        for line in text.splitlines()
        if line.partition("{")[0].partition(" ")[0] == name
    )


def connections_total(port: int) -> float:
    return scrape(port, "gateway_connections_total")


@dataclass
class Workers:
    proc: subprocess.Popen[bytes]
    port: int
    metrics: int  # worker i serves metrics on metrics + i
    lines: list[dict[str, Any]] = field(default_factory=list)

    def events(self, name: str) -> list[dict[str, Any]]:
        return [line for line in list(self.lines) if line.get("event") == name]

    def pids(self) -> dict[int, int]:
        """Worker index -> pid of the supervisor's live children."""
        found = {}
        for children in Path(f"/proc/{self.proc.pid}/task").glob("*/children"):
            for pid in children.read_text().split():
                environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
                [index] = [v for v in environ if v.startswith(b"GATEWAY_WORKER=")]
                found[int(index.partition(b"=")[2])] = int(pid)
        return found

    def connect(self, count: int) -> list[DeviceSocket]:
        devices = []
        for i in range(count):
            dev = DeviceSocket(self.port)
            dev.send(evb1_login(f"3563070424{i:05d}"))
            assert dev.recv_exact(11) == evb1_ack(0, 1)
            devices.append(dev)
        return devices


def start(tmp_path: Path, port: int, metrics: int, health: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
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


@contextmanager
def two_workers(tmp_path: Path) -> Iterator[Workers]:
    port, metrics, health = free_port(), free_port(), free_port()
    while metrics + 1 in (port, health):
        metrics = free_port()
    proc = start(tmp_path, port, metrics, health)
    workers = Workers(proc, port, metrics)

    def read() -> None:
        assert proc.stdout is not None
        for raw in proc.stdout:
            try:
                workers.lines.append(json.loads(raw))
            except ValueError:
                continue

    threading.Thread(target=read, daemon=True).start()
    try:
        assert wait_for(lambda: len(workers.events("ready")) == 2, timeout=20)
        yield workers
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def test_two_workers_share_the_port(tmp_path: Path) -> None:
    with two_workers(tmp_path) as workers:
        ready = workers.events("ready")
        assert sorted(r["worker"] for r in ready) == [0, 1]
        devices = workers.connect(40)
        per_worker = [connections_total(workers.metrics), connections_total(workers.metrics + 1)]
        assert sum(per_worker) == 40 and all(n > 0 for n in per_worker), per_worker
        for dev in devices:
            dev.close()
        workers.proc.send_signal(signal.SIGTERM)
        assert workers.proc.wait(30) == 0


def test_a_worker_that_dies_is_restarted_and_serves_again(tmp_path: Path) -> None:
    """A killed worker was not restarted: capacity dropped silently."""
    with two_workers(tmp_path) as workers:
        before = workers.pids()
        assert sorted(before) == [0, 1]
        os.kill(before[0], signal.SIGKILL)
        assert wait_for(lambda: len(workers.events("ready")) == 3, timeout=20)
        [restart] = workers.events("worker exited; restarting")
        assert (restart["worker"], restart["pid"], restart["exit_code"]) == (0, before[0], -9)
        assert restart["restarts"] == 1 and restart["level"] == "error"
        after = workers.pids()
        assert after[1] == before[1] and after[0] not in before.values()
        # The new worker 0 takes its share of new connections (its counters started at 0).
        devices = workers.connect(40)
        assert wait_for(lambda: connections_total(workers.metrics) > 0)
        assert scrape(workers.metrics, "gateway_worker_restarts_total") == 1
        assert scrape(workers.metrics + 1, "gateway_worker_restarts_total") == 0
        for dev in devices:
            dev.close()
        workers.proc.send_signal(signal.SIGTERM)
        assert workers.proc.wait(30) == 0


def test_a_worker_that_cannot_start_stops_them_all(tmp_path: Path) -> None:
    """Worker 1's metrics port is taken: it exits 2 (a configuration that cannot work), which a
    restart would only repeat; the supervisor stops worker 0 and exits 2 instead of looping."""
    port, metrics, health = free_port(), free_port(), free_port()
    while metrics + 1 in (port, health):
        metrics = free_port()
    with socket.create_server(("127.0.0.1", metrics + 1)):
        proc = start(tmp_path, port, metrics, health)
        try:
            out, _ = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
    assert proc.returncode == 2
    assert b"worker cannot run with this configuration; stopping" in out
    assert b"worker exited; restarting" not in out


def series(data: Path, stream: str) -> dict[str, list[int]]:
    """Each series of ``stream`` in ``data`` (its file-name prefix) -> its segments' bases."""
    found: dict[str, list[int]] = {}
    for path in sorted((data / stream).glob("*.jsonl")):
        prefix, _, base = path.stem.rpartition("-")
        found.setdefault(prefix, []).append(int(base))
    return found


def journaled_lines(data: Path) -> list[str]:
    return [
        line for path in (data / "raw").glob("*.jsonl") for line in path.read_text().splitlines()
    ]


def test_workers_stop_when_their_supervisor_is_killed(tmp_path: Path) -> None:
    """Workers run in their own process group: a SIGKILLed supervisor left them serving,
    holding the port and their journals' locks, so the next start was refused."""
    with two_workers(tmp_path) as workers:
        pids = workers.pids()
        assert len(pids) == 2
        workers.proc.kill()
        workers.proc.wait(10)

        def gone(pid: int) -> bool:
            try:
                state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
            except FileNotFoundError:
                return True
            return state == "Z"  # exited, waiting for init to reap it

        assert wait_for(lambda: all(gone(pid) for pid in pids.values()), timeout=30), pids


def test_each_worker_keeps_its_own_journal_and_a_restarted_one_continues_it(
    tmp_path: Path,
) -> None:
    """Workers shared the data directory's files by pid: a restarted worker could not tell its
    own journal from the other's (it re-sent the other's notifications)."""
    data = tmp_path / "data"
    with two_workers(tmp_path) as workers:
        for dev in workers.connect(40):
            dev.close()
        # Each worker's records are in its own series only, under its index. (A login's reply
        # does not wait for the journal: the kill waits until all 40 are written.)
        assert wait_for(lambda: set(series(data, "raw")) == {"raw-w0", "raw-w1"}, timeout=10)
        assert wait_for(lambda: len(journaled_lines(data)) == 40, timeout=10)
        before = workers.pids()
        os.kill(before[0], signal.SIGKILL)
        assert wait_for(lambda: len(workers.events("ready")) == 3, timeout=20)
        for dev in workers.connect(40):
            dev.close()
        assert wait_for(lambda: len(series(data, "raw")["raw-w0"]) == 2, timeout=10)
        workers.proc.send_signal(signal.SIGTERM)
        assert workers.proc.wait(30) == 0
    first, second = series(data, "raw")["raw-w0"]
    assert second == first + (data / "raw" / f"raw-w0-{first:020d}.jsonl").stat().st_size
    assert len(journaled_lines(data)) == 80  # every login journaled once, by its worker
    # A second gateway on a running worker's journal is refused, in one line.
    with two_workers(tmp_path) as other:
        clash = subprocess.run(
            [GATEWAY, "run", "--listen", "evb1=127.0.0.1:0", "--data-dir", str(data),
             "--metrics", "127.0.0.1:0", "--health", "127.0.0.1:0"],
            check=False, capture_output=True, text=True, timeout=30,
            env={**os.environ, "GATEWAY_WORKER": "1"},
        )  # fmt: skip
        assert other.proc.poll() is None
    assert clash.returncode != 0
    assert clash.stderr.count("\n") == 1 and "in use by pid" in clash.stderr, clash.stderr
