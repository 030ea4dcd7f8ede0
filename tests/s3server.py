"""moto_server (``moto[server]`` from PyPI) as an S3 endpoint on a loopback port, with helpers.
The same server answers SNS and SQS (the notification tests); ``moto`` is the fixture.

The helpers speak S3's REST API with stdlib ``urllib`` and path-style URLs: moto checks no
signatures unless configured to, so unsigned requests do, and the tests need no AWS library.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pytest

from tests.kinesis.emulator import free_port

MOTO_SERVER = Path(sys.executable).with_name("moto_server")
START_ATTEMPTS = 5
# It imports Flask and moto's backends first: ~0.4 s warm here, a few seconds on a cold cache.
READY_TIMEOUT_S = 30.0
POLL_INTERVAL_S = 0.05
STOP_TIMEOUT_S = 5.0
RUNNING = re.compile(r"Running on http://127\.0\.0\.1:(\d+)")  # werkzeug's line once it listens


class MotoS3:
    """``moto_server -H 127.0.0.1 -p PORT`` on a free port below 32768, ready on return."""

    def __init__(self) -> None:
        problem = missing_moto()
        if problem:
            raise RuntimeError(problem)
        # A file, not a pipe: moto logs every request and nobody drains it. Closed by stop().
        self._log: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115
        self._final_output = ""
        failures = []
        for _ in range(START_ATTEMPTS):
            self.port = free_port()
            self.proc = subprocess.Popen(
                [str(MOTO_SERVER), "-H", "127.0.0.1", "-p", str(self.port)],
                stdin=subprocess.DEVNULL,
                stdout=self._log,
                stderr=subprocess.STDOUT,
            )
            if self._wait_ready():
                return
            self.stop_process()
            failures.append(f"port {self.port}: exit status {self.proc.returncode}")
        raise RuntimeError(
            "moto_server did not get ready (" + "; ".join(failures) + "):\n" + self.output()
        )

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _wait_ready(self) -> bool:
        """Until its own "Running on" line names our port and GET /moto-api/ answers 200; False
        if it exits (the port was taken after all) or stalls."""
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline and self.proc.poll() is None:
            running = RUNNING.search(self.output())
            if running and int(running[1]) == self.port:
                try:
                    with urllib.request.urlopen(self.endpoint + "/moto-api/", timeout=1) as r:
                        if r.status == 200:
                            return True
                except OSError:
                    pass
            time.sleep(POLL_INTERVAL_S)
        return False

    def output(self) -> str:
        """What the server logged (so far, or until stop()): werkzeug's line per request."""
        if self._log.closed:
            return self._final_output
        self._log.seek(0)
        return self._log.read().decode(errors="replace")

    def stop_process(self) -> int | None:
        """SIGTERM (it exits at once), SIGKILL after 5 s; the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def stop(self) -> int | None:
        status = self.stop_process()
        self._final_output = self.output()
        self._log.close()
        return status

    def request(self, method: str, path: str, body: bytes | None = None) -> bytes:
        """One S3 REST call (path-style); the response body, or HTTPError for an error answer."""
        # urllib's default body type is a form, which moto (werkzeug) tries to parse: stalls.
        headers = {"Content-Type": "application/octet-stream"}
        request = urllib.request.Request(self.endpoint + path, body, headers, method=method)
        with urllib.request.urlopen(request, timeout=10) as response:
            data: bytes = response.read()
            return data

    def create_bucket(self, bucket: str) -> None:
        self.request("PUT", f"/{bucket}")

    def put_object(self, bucket: str, key: str, body: bytes) -> None:
        self.request("PUT", f"/{bucket}/{urllib.parse.quote(key)}", body)


@pytest.fixture(scope="module")
def moto() -> Iterator[MotoS3]:
    """One moto_server per test module; a missing moto fails the tests (CI must run them)."""
    problem = missing_moto()
    if problem:
        pytest.fail(problem, pytrace=False)
    server = MotoS3()
    yield server
    server.stop()


def isolate_aws(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Dummy credentials and us-east-1 for clients (and subprocesses) of moto_server, and
    nothing from the user's own AWS setup; the caller points its clients at the endpoint."""
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_REGION"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")


def missing_moto() -> str | None:
    """What stops moto_server from starting here, as an instruction; None if nothing."""
    if not MOTO_SERVER.is_file():
        return (
            f"moto_server is not installed ({MOTO_SERVER} is missing): "
            "run `.venv/bin/pip install 'moto[server]'` (the test extras)"
        )
    return None
