"""A destination's journal series without brokers: the line format, group commit, and when the
source hears back under each ACK policy."""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path

import msgspec
import pytest

from gateway.bridge.outbox import (
    JournaledMessage,
    Outbox,
    decode_message,
    encode_message,
    stranded_series,
)
from gateway.journal.reader import SegmentReader
from gateway.journal.settings import LocalSinkSettings
from gateway.pipeline.flow_control import FlowControl


def message(seq: int, payload: bytes = b"\x00\xff\n{") -> JournaledMessage:
    return JournaledMessage(
        id=f"id-{seq}",
        route="telemetry",
        topic=f"aws/in/dev{seq}/t",
        qos=1,
        retain=seq % 2 == 1,
        received_ms=1_765_000_000_000 + seq,
        payload=payload,
        content_type="application/octet-stream",
        user_properties=(("k", "v"), ("k", "w")),
    )


def test_a_message_is_one_json_line_with_its_payload_in_base64_and_comes_back_equal() -> None:
    original = message(1, payload=bytes(range(256)))
    line = encode_message(original)
    assert b"\n" not in line
    fields = json.loads(line)
    assert base64.b64decode(fields["payload"]) == bytes(range(256))
    assert (fields["id"], fields["topic"], fields["qos"], fields["retain"]) == (
        "id-1",
        "aws/in/dev1/t",
        1,
        True,
    )
    assert decode_message(line) == original


def test_a_line_that_is_not_a_message_is_a_decode_error() -> None:
    for line in (b"{}", b'{"id": 1}', b"not json", encode_message(message(1))[:-5]):
        with pytest.raises(msgspec.DecodeError):
            decode_message(line)


class Told:
    """Stands in for a source delivery: records when it was told."""

    def __init__(self, name: str, log: list[str]) -> None:
        self.name = name
        self._log = log

    def delivered(self) -> None:
        self._log.append(self.name)


def outbox(directory: Path, flow: FlowControl) -> Outbox:
    settings = LocalSinkSettings(data_dir=directory)
    box = Outbox(directory / "bridge", "aws", settings, flow)
    box.open()
    return box


@pytest.mark.asyncio
async def test_journaled_messages_are_told_after_the_write_and_delivered_ones_once_shipped(
    tmp_path: Path,
) -> None:
    flow = FlowControl(1 << 20, 1 << 19, lambda: 0.0)
    box = outbox(tmp_path, flow)
    task = box.start()
    told: list[str] = []
    lines = [encode_message(message(i)) for i in range(3)]
    box.append(lines[0], Told("journaled-0", told), None)
    box.append(lines[1], None, Told("delivered-1", told))
    box.append(lines[2], Told("journaled-2", told), None)
    assert told == [] and flow.buffered_bytes == sum(len(x) + 1 for x in lines)
    while box.end < sum(len(x) + 1 for x in lines):
        await box.written.wait()
        box.written.clear()
    assert told == ["journaled-0", "journaled-2"]
    assert flow.buffered_bytes == 0
    records, _ = SegmentReader(tmp_path / "bridge", "aws").read(0, box.end, 1 << 20, 100)
    assert records == lines
    box.shipped(len(lines[0]) + 1)  # the second line's offset
    assert told == ["journaled-0", "journaled-2", "delivered-1"]
    box.shipped(len(lines[0]) + 1)  # told once
    assert told.count("delivered-1") == 1
    await box.close(5.0)
    assert task.done()


@pytest.mark.asyncio
async def test_messages_appended_during_a_write_go_together_in_the_next_one(
    tmp_path: Path,
) -> None:
    stall = tmp_path / "stall"
    settings = LocalSinkSettings(data_dir=tmp_path, stall_while_exists=stall)
    box = Outbox(tmp_path / "bridge", "aws", settings, FlowControl(1 << 20, 1 << 19, lambda: 0))
    box.open()
    stall.touch()  # the first write hangs, as on a slow disk, while more messages arrive
    box.start()
    box.append(encode_message(message(0)), None, None)
    while box.pending:  # until the first write took it (and hangs on the stall file)
        await asyncio.sleep(0.005)
    for i in range(1, 6):
        box.append(encode_message(message(i)), None, None)
    stall.unlink()
    while box.messages_written < 6:
        await box.written.wait()
        box.written.clear()
    segments = sorted((tmp_path / "bridge").glob("aws-*.jsonl"))
    lines = b"".join(p.read_bytes() for p in segments).splitlines()
    assert [decode_message(x).id for x in lines] == [f"id-{i}" for i in range(6)]
    # Two writes: the first message alone, the five that arrived meanwhile in one batch.
    assert box.writes == 2
    await box.close(5.0)


@pytest.mark.asyncio
async def test_a_restarted_outbox_continues_after_a_torn_tail(tmp_path: Path) -> None:
    flow = FlowControl(1 << 20, 1 << 19, lambda: 0.0)
    box = outbox(tmp_path, flow)
    box.start()
    box.append(encode_message(message(0)), None, None)
    while box.messages_written < 1:
        await box.written.wait()
    await box.close(5.0)
    end = box.end
    [segment] = (tmp_path / "bridge").glob("aws-*.jsonl")
    with open(segment, "ab") as file:
        file.write(b'{"id": "half a li')  # what a crash mid-write leaves
    again = outbox(tmp_path, flow)
    assert again.end == end


def test_series_of_destinations_no_longer_configured_are_found_with_their_bytes(
    tmp_path: Path,
) -> None:
    directory = tmp_path / "bridge"
    assert stranded_series(directory, {"aws"}) == {}  # no journal yet
    directory.mkdir()
    for name, size in (
        ("aws-00000000000000000000.jsonl", 10),
        ("aws-w1-00000000000000000000.jsonl", 20),  # worker 1's series of aws
        ("old-aws-00000000000000000000.jsonl", 30),
        ("old-aws-00000000000000000030.jsonl", 5),
        ("old-aws-w0-00000000000000000000.jsonl", 7),
        ("notes.txt", 1),
    ):
        (directory / name).write_bytes(b"x" * size)
    assert stranded_series(directory, {"aws"}) == {"old-aws": 35, "old-aws-w0": 7}
