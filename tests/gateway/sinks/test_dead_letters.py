"""One dead-letter shape for the Kinesis sink and the notification dispatcher: what a line holds."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import msgspec
import pytest
from botocore.exceptions import ClientError

from gateway.journal.settings import LocalSinkSettings
from gateway.sinks.dead_letters import DeadLetter, DeadLetterFile
from gateway.sinks.kinesis import KinesisSink
from gateway.sinks.settings import KinesisSettings, KinesisStreamSettings

pytestmark = pytest.mark.asyncio


def lines(data_dir: Path, prefix: str) -> list[bytes]:
    return [
        line
        for path in sorted((data_dir / "dead-letters").glob(f"{prefix}-*.jsonl"))
        for line in path.read_bytes().splitlines()
    ]


class RefusingClient:
    """Kinesis answering every PutRecords with an error no retry can fix."""

    async def put_records(self, StreamName: str, Records: list[dict[str, Any]]) -> dict[str, Any]:
        error = {"Error": {"Code": "AccessDeniedException", "Message": "not allowed"}}
        raise ClientError(error, "PutRecords")  # type: ignore[arg-type]


async def test_a_refused_kinesis_record_is_dead_lettered_readable_as_written(
    tmp_path: Path,
) -> None:
    settings = KinesisSettings(
        raw=KinesisStreamSettings(name="ev-raw"), parsed=KinesisStreamSettings(name="ev-parsed")
    )
    local = LocalSinkSettings(data_dir=tmp_path)
    sink = KinesisSink(settings, local)
    sink._client = RefusingClient()  # no shard maps: records are sent unrouted
    records = [b'{"id":"r1","n":1}', b'{"id":"r2","n":2}']
    assert await sink.write("raw", records, ["dev-1", "dev-2"]) == [0, 1]
    await sink.close()
    written = lines(tmp_path, "dead-letters")
    letters = [msgspec.json.decode(line, type=DeadLetter) for line in written]
    assert [(d.record_class, d.target, d.stream_name) for d in letters] == [
        ("raw", "kinesis", "ev-raw")
    ] * 2
    assert [(d.reason, d.attempts) for d in letters] == [("AccessDeniedException", 1)] * 2
    assert [d.partition_key for d in letters] == ["dev-1", "dev-2"]
    # The record itself, not base64: an operator reads it and can send it again.
    assert [json.loads(line)["record"] for line in written] == [
        {"id": "r1", "n": 1},
        {"id": "r2", "n": 2},
    ]


async def test_a_notification_dead_letter_leaves_out_what_only_kinesis_has(tmp_path: Path) -> None:
    out = DeadLetterFile(LocalSinkSettings(data_dir=tmp_path), "notifications")
    body = b'{"id":"n1","code":"EVB1-0x0101"}'
    letter = DeadLetter(
        "2026-01-01T00:00:00.000Z", "notifications", "webhook", "refused", "HTTP 401", 1,
        msgspec.Raw(body),
    )  # fmt: skip
    await out.write([letter])
    await out.write([])  # nothing to write: no empty line
    out.close()
    [line] = lines(tmp_path, "notifications")
    assert json.loads(line) == {
        "at": "2026-01-01T00:00:00.000Z",
        "class": "notifications",
        "target": "webhook",
        "reason": "refused",
        "detail": "HTTP 401",
        "attempts": 1,
        "record": {"id": "n1", "code": "EVB1-0x0101"},
    }
    assert msgspec.json.decode(line, type=DeadLetter) == letter
