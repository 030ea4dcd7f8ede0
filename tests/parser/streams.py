"""Drive a codec session three ways (whole, byte by byte, with trailing bytes) with plain bytes."""

from __future__ import annotations

import json
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
