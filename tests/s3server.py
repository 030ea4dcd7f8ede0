"""moto_server (``moto[server]`` from PyPI) as an S3 endpoint on a loopback port, with helpers.
The same server answers SNS and SQS (the notification tests); ``moto`` is the fixture.

The helpers speak S3's REST API with stdlib ``urllib`` and path-style URLs: moto checks no
signatures unless configured to, so unsigned requests do, and the tests need no AWS library.
"""

from __future__ import annotations

import re
import sys
import tempfile
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.local_server import LocalServer

MOTO_SERVER = Path(sys.executable).with_name("moto_server")
RUNNING = re.compile(r"Running on http://127\.0\.0\.1:(\d+)")  # werkzeug's line once it listens


class MotoS3(LocalServer):
    """``moto_server -H 127.0.0.1 -p PORT`` on a free port below 32768, ready on return."""

    name = "moto_server"
    # It imports Flask and moto's backends first: ~0.4 s warm here, a few seconds on a cold cache.
    ready_timeout_s = 30.0

    def __init__(self) -> None:
        problem = missing_moto()
        if problem:
            raise RuntimeError(problem)
        # A file: moto logs every request and nobody drains it. Closed by stop().
        self._start(tempfile.TemporaryFile())  # noqa: SIM115

    def command(self, port: int, attempt: int) -> list[str]:
        return [str(MOTO_SERVER), "-H", "127.0.0.1", "-p", str(port)]

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def ready(self) -> bool:
        """Its own "Running on" line names our port and GET /moto-api/ answers 200."""
        running = RUNNING.search(self.output())
        if not running or int(running[1]) != self.port:
            return False
        try:
            with urllib.request.urlopen(self.endpoint + "/moto-api/", timeout=1) as r:
                return bool(r.status == 200)
        except OSError:
            return False

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
