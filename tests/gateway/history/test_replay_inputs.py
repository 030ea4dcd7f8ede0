"""Replay's reader: blocks of whole lines from gzip (many members) or plain files, decoded a block
at a time with the same verdicts, line numbers and errors as decoding line by line."""

from __future__ import annotations

import base64
import gzip
import io
import json
import zlib

import pytest

from gateway.history import replay_inputs
from gateway.history.replay_inputs import DamagedGzip, InputOptions, ReplayInputs, line_blocks
from parser.records import RawRecord
from tests.parser.streams import layout_codec

EVB1 = layout_codec("evb1")
LINES = [f'{{"n": {i}, "pad": "{"x" * (i % 50)}"}}\n'.encode() for i in range(400)]
TEXT = b"".join(LINES)


@pytest.fixture(autouse=True)
def small_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Blocks and reads far smaller than the data, so lines and members span them."""
    monkeypatch.setattr(replay_inputs, "BLOCK_BYTES", 100)
    monkeypatch.setattr(replay_inputs, "READ_BYTES", 37)


def blocks(data: bytes) -> list[bytes]:
    return list(line_blocks(io.BytesIO(data)))


def check_blocks(out: list[bytes], text: bytes) -> None:
    assert b"".join(out) == text
    assert all(block.endswith(b"\n") for block in out[:-1])


@pytest.mark.parametrize(
    "data",
    [
        TEXT,
        TEXT.rstrip(b"\n"),  # a plain file's last line may lack its newline
        gzip.compress(TEXT),
        # Firehose concatenates members; a line may even span two, and zeros may pad them.
        gzip.compress(TEXT[:1001]) + gzip.compress(TEXT[1001:]),
        gzip.compress(TEXT[:500]) + b"\0" * 40 + gzip.compress(TEXT[500:]) + b"\0" * 3,
        b"",
    ],
    ids=["plain", "no-final-newline", "gzip", "members", "zero-padding", "empty"],
)
def test_blocks_hold_every_line_whole(data: bytes) -> None:
    text = gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data
    check_blocks(blocks(data), text)


def test_one_long_line_is_one_block() -> None:
    line = b"y" * 10_000 + b"\n"
    assert blocks(gzip.compress(line + line)) == [line, line]


@pytest.mark.parametrize(
    "damage",
    [
        lambda z: z[:-30],  # cut off
        lambda z: z[:-4],  # trailer (size) missing
        lambda z: z + b"garbage after the member",
        lambda z: z[:200] + bytes([z[200] ^ 0xFF]) + z[201:],  # corrupt deflate data
    ],
    ids=["truncated", "no-trailer", "trailing-garbage", "corrupt"],
)
def test_damaged_gzip_raises_after_the_whole_lines_before_it(damage: object) -> None:
    data = damage(gzip.compress(TEXT))  # type: ignore[operator]
    out: list[bytes] = []
    with pytest.raises(DamagedGzip):
        for block in line_blocks(io.BytesIO(data)):
            out.append(block)
    read = b"".join(out)
    assert read.endswith(b"\n") and TEXT.startswith(read)


def test_corrupt_data_is_a_zlib_error_message() -> None:
    with pytest.raises(DamagedGzip, match="invalid"):
        blocks(b"\x1f\x8b" + b"\x08\x00" + b"\xff" * 200)


def raw_line(**changes: object) -> bytes:
    record = {
        "schema": "ev.raw/1",
        "id": "019b76daa80000000001000000",
        "device_id": "356307040000000",
        "codec": "evb1",
        "transport": "tcp",
        "peer": None,
        "received_at": "2026-01-01T00:00:00.000Z",
        "payload": base64.b64encode(b"\x45\x56").decode(),
        **changes,
    }
    return json.dumps(record).encode() + b"\n"


def read(data: bytes) -> tuple[list[RawRecord], list[str], ReplayInputs]:
    warnings: list[str] = []
    inputs = ReplayInputs(
        InputOptions(),
        lambda where, reason, detail: warnings.append(f"{where} {reason}"),
        lambda name: EVB1 if name == "evb1" else None,
    )
    records = [raw for batch in inputs.records("f", io.BytesIO(data)) for raw in batch]
    return records, warnings, inputs


def test_good_lines_decode_a_block_at_a_time() -> None:
    lines = [raw_line(id=f"{i:026x}") for i in range(50)]
    records, warnings, inputs = read(gzip.compress(b"".join(lines)))
    assert [r.id for r in records] == [f"{i:026x}" for i in range(50)]
    assert records[0].payload == b"\x45\x56"
    assert warnings == [] and inputs.lines == 50


def test_bad_lines_are_reported_with_their_number_and_skipped() -> None:
    lines = [raw_line(id=f"{i:026x}") for i in range(12)]
    lines[2] = b"{not json\n"
    lines[4] = b"   \n"  # blank: skipped, not reported
    lines[5] = raw_line(received_at="2026-01-01 00:00:00")  # the pattern still applies
    lines[7] = raw_line().rstrip(b"\n") + b" " + raw_line()  # two records on one line
    lines[9] = raw_line(payload="not base64!")
    # What the pattern takes, though the fast check does not: other digits, a final newline.
    lines[10] = raw_line(received_at="٢٠٢٦-01-01T00:00:00.000Z")
    lines[11] = raw_line(received_at="2026-01-01T00:00:00.000Z\n")
    lines.append(raw_line(codec="nmea"))
    records, warnings, inputs = read(b"".join(lines))
    assert warnings == [
        *(f"f:{n} corrupt_line" for n in (3, 6, 8, 10)),
        "f:13 unknown_codec",
    ]
    assert len(records) == 7 and inputs.lines == 13
    assert records[-2].received_at.startswith("٢٠٢٦")


def test_a_truncated_gzip_is_reported_at_the_line_after_the_last_whole_one() -> None:
    lines = [raw_line(id=f"{i:026x}") for i in range(30)]
    data = zlib.compressobj(wbits=31)
    whole = data.compress(b"".join(lines)) + data.flush()
    records, warnings, _ = read(whole[: len(whole) // 2])
    assert warnings == [f"f:{len(records) + 1} truncated_gzip"]


@pytest.mark.parametrize("ending", [b"\n", b""], ids=["then-more-lines", "last-line"])
def test_a_line_past_the_limit_is_reported_not_held(
    monkeypatch: pytest.MonkeyPatch, ending: bytes
) -> None:
    monkeypatch.setattr(replay_inputs, "MAX_LINE_BYTES", 100_000)
    good = [raw_line(id=f"{i:026x}") for i in range(3)]
    huge = b"x" * 300_000 + ending  # many blocks with no newline in them
    after = good[2:] if ending else []
    records, warnings, inputs = read(gzip.compress(b"".join([*good[:2], huge, *after])))
    assert [r.id for r in records] == [f"{i:026x}" for i in (0, 1, *([2] if ending else []))]
    assert warnings == ["f:3 line_too_long"]
    assert inputs.lines == (4 if ending else 3)
