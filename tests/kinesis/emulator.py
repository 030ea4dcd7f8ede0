"""kinesalite, the Kinesis emulator from npm, as a process on a loopback port, with test helpers.

The helpers speak the Kinesis JSON protocol with stdlib ``urllib``, so reading a stream back needs
no AWS library. kinesalite checks that a SigV4 ``Authorization`` header is present and well formed,
but never the signature, so a constant dummy header does.
"""

from __future__ import annotations

import base64
import errno
import json
import random
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import IO, Any, NotRequired, TypedDict

ROOT = Path(__file__).resolve().parents[2]
CLI = ROOT / "node_modules" / "kinesalite" / "cli.js"
TARGET_PREFIX = "Kinesis_20131202"
JSON_CONTENT_TYPE = "application/x-amz-json-1.1"
HEADERS = {
    "Content-Type": JSON_CONTENT_TYPE,
    "Authorization": (
        "AWS4-HMAC-SHA256 Credential=test/20240101/us-east-1/kinesis/aws4_request, "
        "SignedHeaders=host;x-amz-date, Signature=0"
    ),
    "X-Amz-Date": "20240101T000000Z",
}
# kinesalite treats ``--port 0`` as its default 4567, and ports in the kernel's ephemeral range
# (32768-60999) collided with other processes' outgoing connections, so we pick one below it.
PORT_RANGE = range(20_000, 32_000)
START_ATTEMPTS = 5
READY_TIMEOUT_S = 10.0
POLL_INTERVAL_S = 0.02
STOP_TIMEOUT_S = 5.0
LISTENING = re.compile(r"Listening at http://\S*:(\d+)")  # cli.js's line once it listens


class KinesisError(Exception):
    """An error answer from the emulator: ``__type`` and ``message`` of the JSON body."""

    def __init__(self, status: int, error_type: str, message: str) -> None:
        super().__init__(f"{status} {error_type}: {message}")
        self.status = status
        self.error_type = error_type
        self.message = message


class StreamRecord(TypedDict):
    """One record as GetRecords returns it, with ``Data`` decoded and the shard it was read from.

    GetRecords has no ``ExplicitHashKey`` field (the service does not return it); ``ShardId`` shows
    where an explicit hash key routed the record.
    """

    Data: bytes
    PartitionKey: str
    SequenceNumber: str
    ShardId: str
    ApproximateArrivalTimestamp: NotRequired[float]


class Kinesalite:
    """``node node_modules/kinesalite/cli.js`` on a free port below 32768, ready on return."""

    def __init__(self) -> None:
        problem = missing_tools()
        if problem:
            raise RuntimeError(problem)
        node = shutil.which("node")
        assert node is not None
        # A file, not a pipe: nobody has to drain it while the session runs. Closed by stop().
        self._log: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115
        self._final_output = ""
        failures = []
        for _ in range(START_ATTEMPTS):
            self.port = free_port()
            self.proc = subprocess.Popen(
                [
                    node,
                    str(CLI),
                    "--port",
                    str(self.port),
                    "--shardLimit",
                    "100",
                    "--createStreamMs",
                    "0",
                    "--deleteStreamMs",
                    "0",
                ],
                stdin=subprocess.DEVNULL,
                stdout=self._log,
                stderr=subprocess.STDOUT,
            )
            if self._wait_ready():
                return
            self.kill()
            failures.append(f"port {self.port}: exit status {self.proc.returncode}")
        raise RuntimeError(
            "kinesalite did not get ready (" + "; ".join(failures) + "):\n" + self.output()
        )

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _wait_ready(self) -> bool:
        """Poll until it says it listens and ListStreams answers; False if it exits (EADDRINUSE)
        or stalls. Waiting for its own "Listening at" line keeps a foreign server that grabbed
        the port since free_port() from passing for ours."""
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            listening = LISTENING.search(self.output())
            if listening and int(listening[1]) == self.port:
                try:
                    self.call("ListStreams", {}, timeout_s=1.0)
                except (OSError, KinesisError):
                    pass
                else:
                    return True
            time.sleep(POLL_INTERVAL_S)
        return False

    def output(self) -> str:
        """Everything the process wrote to stdout and stderr (so far, or until stop())."""
        if self._log.closed:
            return self._final_output
        self._log.seek(0)
        return self._log.read().decode(errors="replace")

    def stop(self) -> int | None:
        """SIGTERM (it exits well within a second), SIGKILL after 5 s; returns the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.kill()
        self._final_output = self.output()
        self._log.close()
        return self.proc.returncode

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(STOP_TIMEOUT_S)

    def call(self, operation: str, payload: dict[str, Any], timeout_s: float = 10.0) -> Any:
        """One Kinesis API call; the decoded JSON answer, or KinesisError."""
        request = urllib.request.Request(
            self.endpoint + "/",
            data=json.dumps(payload).encode(),
            headers={**HEADERS, "X-Amz-Target": f"{TARGET_PREFIX}.{operation}"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout_s) as response:
                return json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as error:
            body = error.read()
            try:
                answer = json.loads(body)
            except ValueError:
                answer = {"__type": "", "message": body.decode(errors="replace")}
            raise KinesisError(
                error.code, answer.get("__type", ""), answer.get("message", "")
            ) from None

    def create_stream(self, name: str, shards: int) -> None:
        """CreateStream, then wait until it is ACTIVE."""
        self.call("CreateStream", {"StreamName": name, "ShardCount": shards})
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            summary = self.call("DescribeStreamSummary", {"StreamName": name})
            status = summary["StreamDescriptionSummary"]["StreamStatus"]
            if status == "ACTIVE":
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"stream {name} still {status} after {READY_TIMEOUT_S} s")
            time.sleep(POLL_INTERVAL_S)

    def list_shards(self, name: str) -> list[dict[str, Any]]:
        """Every shard of the stream (open and closed), as ListShards returns them."""
        shards: list[dict[str, Any]] = []
        payload: dict[str, Any] = {"StreamName": name}
        while True:
            answer = self.call("ListShards", payload)
            shards += answer["Shards"]
            if not answer.get("NextToken"):
                return shards
            payload = {"NextToken": answer["NextToken"]}

    def read_all(self, name: str) -> list[StreamRecord]:
        """Every record of every shard from TRIM_HORIZON, shard by shard, in sequence order."""
        records: list[StreamRecord] = []
        for shard in self.list_shards(name):
            shard_id = shard["ShardId"]
            iterator = self.call(
                "GetShardIterator",
                {"StreamName": name, "ShardId": shard_id, "ShardIteratorType": "TRIM_HORIZON"},
            )["ShardIterator"]
            while iterator:
                answer = self.call("GetRecords", {"ShardIterator": iterator, "Limit": 10_000})
                # kinesalite answers empty only at the tip of the shard (real Kinesis may not).
                if not answer["Records"]:
                    break
                for raw in answer["Records"]:
                    record = StreamRecord(
                        Data=base64.b64decode(raw["Data"]),
                        PartitionKey=raw["PartitionKey"],
                        SequenceNumber=raw["SequenceNumber"],
                        ShardId=shard_id,
                    )
                    if "ApproximateArrivalTimestamp" in raw:
                        record["ApproximateArrivalTimestamp"] = raw["ApproximateArrivalTimestamp"]
                    records.append(record)
                iterator = answer.get("NextShardIterator")
        return records


def missing_tools() -> str | None:
    """What stops kinesalite from starting here, as an instruction; None if nothing."""
    if shutil.which("node") is None:
        return "node is not on PATH: install Node.js 20, then run `make setup`"
    if not CLI.is_file():
        return f"kinesalite is not installed ({CLI} is missing): run `make setup`"
    return None


def free_port() -> int:
    """A random port in PORT_RANGE that 127.0.0.1 can bind right now (released before return)."""
    rng = random.Random()
    for _ in range(100):
        port = rng.randrange(PORT_RANGE.start, PORT_RANGE.stop)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError as error:
                if error.errno != errno.EADDRINUSE:
                    raise
                continue
            return port
    raise RuntimeError(f"no free port in {PORT_RANGE}")


def unique_stream_name(prefix: str = "test") -> str:
    """``prefix`` cut to the allowed characters plus a random suffix; at most 128 characters."""
    cleaned = "".join(c if c.isascii() and (c.isalnum() or c in "_.-") else "-" for c in prefix)
    return f"{cleaned[:100]}-{uuid.uuid4().hex[:12]}"
