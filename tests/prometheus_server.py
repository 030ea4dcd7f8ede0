"""The system's ``prometheus`` and ``promtool`` for the tests: a server on a loopback port, its
HTTP API, and promtool runs.

Both come from Debian's ``prometheus`` package (``make setup`` installs it when ``promtool`` is
missing). The server runs with a temporary TSDB and is stopped with SIGTERM, SIGKILL after
``stop_timeout_s``.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from tests.local_server import LocalServer

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


class PrometheusServer(LocalServer):
    """``prometheus`` with ``config`` (written as JSON, which is YAML) on a free loopback port,
    ready on return. ``workdir`` holds the config, the TSDB and the log."""

    name = "prometheus"
    start_attempts = 3
    ready_timeout_s = 15.0
    stop_timeout_s = 10.0

    def __init__(self, config: dict[str, Any], workdir: Path) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self._config_file = workdir / "prometheus.yml"
        self._config_file.write_text(json.dumps(config, indent=2))
        self._workdir = workdir
        # A file, not a pipe: nobody has to drain it while the server runs.
        self._start((workdir / "prometheus.log").open("w+b"))

    def command(self, port: int, attempt: int) -> list[str]:
        return [
            "prometheus",
            f"--config.file={self._config_file}",
            f"--storage.tsdb.path={self._workdir / f'tsdb-{attempt}'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(self.url + "/-/ready", timeout=1) as response:
                return bool(response.status == 200)
        except (OSError, urllib.error.HTTPError):
            return False

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
