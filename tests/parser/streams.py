"""Drive a codec session three ways (whole, byte by byte, with trailing bytes) with plain bytes."""

from __future__ import annotations

import binascii
import json
import struct
from pathlib import Path
from typing import Any

from parser.codec import Codec, CodecOptions
from parser.events import Event
from parser.layout import compile_layout
from parser.layout_codec import LayoutCodec

VECTORS = Path(__file__).resolve().parent.parent / "data" / "vectors"


def load_vectors(name: str) -> list[dict[str, Any]]:
    """The real captures of ``tests/data/vectors/<name>.json`` (copied from ``shared/vectors``)."""
    cases: list[dict[str, Any]] = json.loads((VECTORS / f"{name}.json").read_text())
    return cases


def feed_whole(codec: Codec, data: bytes) -> list[Event]:
    return codec.session().feed(data)


def feed_bytewise(codec: Codec, data: bytes) -> list[Event]:
    session = codec.session()
    events: list[Event] = []
    for i in range(len(data)):
        events.extend(session.feed(data[i : i + 1]))
    return events


def feed_three_ways(codec: Codec, data: bytes, trailing: bytes) -> list[Event]:
    """Events for ``data``; asserts all three ways agree and ``trailing`` stays buffered."""
    whole = feed_whole(codec, data)
    assert feed_bytewise(codec, data) == whole
    session = codec.session()
    with_tail = session.feed(data + trailing)
    assert with_tail == whole, "a trailing partial frame must not produce events"
    assert session.buffered_bytes == len(trailing)
    return whole


CODECS_DIR = Path(__file__).resolve().parents[2] / "codecs"


def layout_codec(name: str, options: CodecOptions | None = None) -> LayoutCodec:
    """The codec of the project's ``codecs/<name>.toml``."""
    path = CODECS_DIR / f"{name}.toml"
    return LayoutCodec(compile_layout(path.read_text(), str(path)), options or CodecOptions())


def evb1_frame(type_id: int, seq: int, body: bytes) -> bytes:
    """An EVB1 frame built straight from the spec (struct + binascii), not by our layout."""
    header = bytes([1, type_id]) + struct.pack(">HH", seq, len(body)) + body
    return b"EV" + header + struct.pack(">H", binascii.crc_hqx(header, 0xFFFF))


def evb1_login(imei: str, seq: int = 0) -> bytes:
    return evb1_frame(1, seq, imei.encode() + bytes([1, 0]))


def evb1_heartbeat(seq: int, ts: int = 1767225600) -> bytes:
    return evb1_frame(4, seq, struct.pack(">IbI", ts, -70, seq))


def evb1_ack(seq: int, type_id: int) -> bytes:
    return evb1_frame(0x80, seq, bytes([type_id]))
