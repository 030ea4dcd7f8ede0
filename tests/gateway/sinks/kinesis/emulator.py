"""kinesalite, the Kinesis emulator from npm, as a process on a loopback port, with test helpers.

The helpers speak the Kinesis JSON protocol with stdlib ``urllib``, so reading a stream back needs
no AWS library. kinesalite checks that a SigV4 ``Authorization`` header is present and well formed,
but never the signature, so a constant dummy header does.
"""

from __future__ import annotations

import base64
import json
import re
import shutil
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any, NotRequired, TypedDict

from tests.local_server import LocalServer

ROOT = Path(__file__).resolve().parents[4]
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
READY_TIMEOUT_S = 10.0
POLL_INTERVAL_S = 0.02
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


class Kinesalite(LocalServer):
    """``node node_modules/kinesalite/cli.js`` on a free port below 32768, ready on return."""

    name = "kinesalite"
    poll_interval_s = POLL_INTERVAL_S

    def __init__(self) -> None:
        problem = missing_tools()
        if problem:
            raise RuntimeError(problem)
        node = shutil.which("node")
        assert node is not None
        self._node = node
        self._start(tempfile.TemporaryFile())  # noqa: SIM115  (closed by stop())

    def command(self, port: int, attempt: int) -> list[str]:
        return [
            self._node, str(CLI), "--port", str(port), "--shardLimit", "100",
            "--createStreamMs", "0", "--deleteStreamMs", "0",
        ]  # fmt: skip

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def ready(self) -> bool:
        """It says it listens and ListStreams answers. Waiting for its own "Listening at" line
        keeps a foreign server that grabbed the port since free_port() from passing for ours."""
        listening = LISTENING.search(self.output())
        if not listening or int(listening[1]) != self.port:
            return False
        try:
            self.call("ListStreams", {}, timeout_s=1.0)
        except (OSError, KinesisError):
            return False
        return True

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


def unique_stream_name(prefix: str = "test") -> str:
    """``prefix`` cut to the allowed characters plus a random suffix; at most 128 characters."""
    cleaned = "".join(c if c.isascii() and (c.isalnum() or c in "_.-") else "-" for c in prefix)
    return f"{cleaned[:100]}-{uuid.uuid4().hex[:12]}"
