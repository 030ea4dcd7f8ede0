"""The system's ``prometheus`` and ``promtool`` for the tests: a server on a loopback port, its
HTTP API, and promtool runs.

Both come from Debian's ``prometheus`` package (``make setup`` installs it when ``promtool`` is
missing). The server runs with a temporary TSDB and is stopped with SIGTERM, SIGKILL after
``STOP_TIMEOUT_S``.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import IO, Any

from tests.kinesis.emulator import free_port

START_ATTEMPTS = 3
READY_TIMEOUT_S = 15.0
STOP_TIMEOUT_S = 10.0
TOOL_TIMEOUT_S = 30.0


def missing_tools() -> str | None:
    """What stops these tests from running here, as an instruction; None if nothing."""
    missing = [tool for tool in ("prometheus", "promtool") if shutil.which(tool) is None]
    if missing:
        return (
            f"{' and '.join(missing)} not on PATH: run `make setup` "
            "(apt-get install --no-install-recommends prometheus)"
        )
    return None


def promtool(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """``promtool args…``; its exit status and output are the caller's to judge."""
    return subprocess.run(
        ["promtool", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=TOOL_TIMEOUT_S,
        check=False,
    )


class PrometheusServer:
    """``prometheus`` with ``config`` (written as JSON, which is YAML) on a free loopback port,
    ready on return. ``workdir`` holds the config, the TSDB and the log."""

    def __init__(self, config: dict[str, Any], workdir: Path) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        config_file = workdir / "prometheus.yml"
        config_file.write_text(json.dumps(config, indent=2))
        self._log_path = workdir / "prometheus.log"
        # A file, not a pipe: nobody has to drain it while the server runs.
        self._log: IO[bytes] = self._log_path.open("wb")
        failures = []
        for attempt in range(START_ATTEMPTS):
            self.port = free_port()
            self.url = f"http://127.0.0.1:{self.port}"
            self.proc = subprocess.Popen(
                [
                    "prometheus",
                    f"--config.file={config_file}",
                    f"--storage.tsdb.path={workdir / f'tsdb-{attempt}'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                ],
                stdin=subprocess.DEVNULL,
                stdout=self._log,
                stderr=subprocess.STDOUT,
            )
            if self._wait_ready():
                return
            self.kill()
            failures.append(f"port {self.port}: exit status {self.proc.returncode}")
        self._log.close()
        raise RuntimeError(
            "prometheus did not get ready (" + "; ".join(failures) + "):\n" + self.output()
        )

    def _wait_ready(self) -> bool:
        """Poll ``/-/ready``; False if the process exits (a port taken since free_port())."""
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            try:
                with urllib.request.urlopen(self.url + "/-/ready", timeout=1) as response:
                    if response.status == 200:
                        return True
            except (OSError, urllib.error.HTTPError):
                pass
            time.sleep(0.05)
        return False

    def output(self) -> str:
        return self._log_path.read_text(errors="replace")

    def api(self, path: str, **params: str) -> Any:
        """``GET /api/v1/<path>``'s ``data``; an error answer raises with Prometheus' message."""
        url = f"{self.url}/api/v1/{path}?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                body = json.load(response)
        except urllib.error.HTTPError as exc:
            body = json.load(exc)
        if body.get("status") != "success":
            raise RuntimeError(f"{path} {params}: {body.get('errorType')}: {body.get('error')}")
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """The instant vector of ``expr`` now: ``[{"metric": {...}, "value": [t, "v"]}, …]``."""
        data = self.api("query", query=expr)
        result: list[dict[str, Any]] = data["result"] if data["resultType"] == "vector" else []
        return result

    def stop(self) -> int:
        """SIGTERM, then SIGKILL after STOP_TIMEOUT_S; returns the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.kill()
        self._log.close()
        return self.proc.returncode

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
