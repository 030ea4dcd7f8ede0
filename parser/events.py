"""Events a codec session yields for the bytes it was fed.

A session never writes: ``reply`` is what the protocol owes the device, and the runtime sends it
only once the frame is accepted under the listener's ACK policy.
"""

from __future__ import annotations

import enum

import msgspec

from parser.records import Reading


class Action(enum.Enum):
    """What the connection does after a reject."""

    RESYNC = "resync"  # the session already skipped past the bad bytes; keep reading
    CLOSE = "close"  # the stream cannot be trusted any more (no sync marker, refused login …)


# msgspec Structs rather than frozen dataclasses: one is built per frame on the hot path, and a
# frozen dataclass costs ~0.7 µs to build here against ~0.1 µs for a Struct.
class Login(msgspec.Struct, frozen=True, gc=False):
    """The device identified itself. ``payload`` is the exact login frame."""

    device_id: str
    reply: bytes
    payload: bytes
    readings: tuple[Reading, ...] = ()


class Frame(msgspec.Struct, frozen=True, gc=False):
    """One whole frame: ``payload`` is its exact bytes, i.e. the raw record.

    ``error`` is set when the frame framed (and passed its checksum) but did not decode; the raw
    record must still be kept and ``readings`` is then empty.
    """

    device_id: str | None
    payload: bytes
    reply: bytes
    readings: tuple[Reading, ...]
    error_code: str | None = None
    error_detail: str | None = None


class Reject(msgspec.Struct, frozen=True, gc=False):
    """Bytes that were not accepted. ``reason`` is a short code fit for a metric label."""

    reason: str
    detail: str
    action: Action
    skipped_bytes: int = 0
    reply: bytes = b""


Event = Login | Frame | Reject
