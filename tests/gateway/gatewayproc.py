"""Start and stop the real ``gateway run`` process on loopback ports it picks itself."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

GATEWAY = str(Path(sys.executable).with_name("gateway"))
START_TIMEOUT_S = 20.0


class GatewayProcess:
    """``gateway run`` (or ``command``, e.g. ``bridge``) with its JSON log captured;
    ``ports[codec]`` are the bound ports."""

    def __init__(
        self,
        data_dir: Path,
        codecs: tuple[str, ...] = ("teltonika", "gt06", "evb1"),
        config: Path | None = None,
        env: dict[str, str] | None = None,
        extra_args: tuple[str, ...] = (),
        command: str = "run",
        launcher: tuple[str, ...] = (),
    ) -> None:
        """``launcher``: a command that runs the gateway, e.g. ``("fiu-run", "-x")``."""
        self.data_dir = data_dir
        args = [
            *launcher,
            GATEWAY,
            command,
            "--data-dir",
            str(data_dir),
            "--metrics",
            "127.0.0.1:0",
            "--health",
            "127.0.0.1:0",
        ]
        if config is not None:
            args += ["--config", str(config)]
        for codec in codecs:
            args += ["--listen", f"{codec}=127.0.0.1:0"]
        args += list(extra_args)
        self.proc = subprocess.Popen(
            args,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
        )
        self.lines: list[dict[str, Any]] = []
        self.raw_output: list[str] = []
        self._ready = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        if not self._ready.wait(START_TIMEOUT_S):
            self.kill()
            raise RuntimeError("gateway did not get ready:\n" + "".join(self.raw_output))
        ready = next((line for line in self.lines if line.get("event") == "ready"), None)
        if ready is None:  # it exited before it was ready
            self._reader.join(5)
            self.kill()
            raise RuntimeError("gateway exited before it was ready:\n" + "".join(self.raw_output))
        self.ports = {item["codec"]: item["port"] for item in ready["listeners"]}
        self.metrics_url: str = ready["metrics"]
        self.health_url: str | None = ready.get("health")

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            text = raw.decode(errors="replace")
            self.raw_output.append(text)
            try:
                line = json.loads(text)
            except ValueError:
                continue
            self.lines.append(line)
            if line.get("event") == "ready":
                self._ready.set()
        self._ready.set()

    def metrics(self) -> dict[str, float]:
        """The scraped samples, keyed by ``name{labels}`` exactly as exposed."""
        with urllib.request.urlopen(self.metrics_url, timeout=5) as response:
            text = response.read().decode()
        samples = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                key, _, value = line.rpartition(" ")
                samples[key] = float(value)
        return samples

    def metric(self, name: str, **labels: str) -> float:
        """Sum of the samples of ``name`` whose labels include ``labels``."""
        total = 0.0
        for key, value in self.metrics().items():
            metric, _, rest = key.partition("{")
            if metric == name and all(f'{k}="{v}"' in rest for k, v in labels.items()):
                total += value
        return total

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM and wait; returns the exit status."""
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise
        self._reader.join(5)
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def events(self, name: str) -> list[dict[str, Any]]:
        return [line for line in self.lines if line.get("event") == name]


def read_records(data_dir: Path, stream: str) -> list[dict[str, Any]]:
    records = []
    for path in sorted((data_dir / stream).glob("*.jsonl")):
        records += [json.loads(line) for line in path.read_text().splitlines()]
    return records


def unstored(data_dir: Path, payloads: Iterable[bytes]) -> dict[str, list[bytes]]:
    """Of ``payloads`` (frames a device saw ACKed), those without a raw record and those whose
    raw record has no parsed record: both lists empty when nothing ACKed was lost.

    A file's last line without its newline is a batch cut off by a crash (SIGKILL): nobody was
    ACKed for it, so it is left out rather than failing the read.
    """
    raw_ids: dict[bytes, set[str]] = {}
    for record in _complete_records(data_dir, "raw"):
        raw_ids.setdefault(base64.b64decode(record["payload"]), set()).add(record["id"])
    parsed = {record["raw_id"] for record in _complete_records(data_dir, "parsed")}
    missing: dict[str, list[bytes]] = {"raw": [], "parsed": []}
    for payload in payloads:
        ids = raw_ids.get(payload)
        if ids is None:
            missing["raw"].append(payload)
        elif not ids & parsed:
            missing["parsed"].append(payload)
    return missing


def stored_payloads(data_dir: Path) -> set[bytes]:
    """Raw payloads on disk; a line torn by a kill is not a record (it was never ACKed)."""
    return {base64.b64decode(r["payload"]) for r in _complete_records(data_dir, "raw")}


def _complete_records(data_dir: Path, stream: str) -> Iterator[dict[str, Any]]:
    for path in sorted((data_dir / stream).glob("*.jsonl")):
        text = path.read_text()
        lines = text.split("\n")
        for line in lines[:-1]:  # the last piece is "" or a line cut off by a crash
            yield json.loads(line)


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def wait_for(predicate: Any, timeout: float = 10.0, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())
