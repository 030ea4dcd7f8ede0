"""The codec contract: a codec makes per-connection sessions and decodes frames purely.

``Session.feed(bytes) -> list[Event]`` frames the stream, verifies checksums, tracks the login and
calls the codec's ``decode`` for each whole frame. ``decode(payload)`` is a pure function of the
frame bytes (and the codec's options), so replaying raw records gives exactly the live output.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from parser.events import Event
from parser.records import Reading


@dataclass(frozen=True, slots=True)
class CodecOptions:
    """Per-listener codec settings. ``None`` limits mean the codec's own default."""

    max_frame_bytes: int | None = None
    # Device clock zone for protocols that send local time (GT06); an IANA name or "UTC".
    timezone: str = "UTC"
    # When set, logins from other device ids are refused (Teltonika answers 00).
    allowed_devices: frozenset[str] | None = None
    # A model family whose packets differ from the protocol document (GT06: see
    # parser.gt06_packets.VARIANTS); "standard" is the document.
    variant: str = "standard"
    # Wall-clock Unix time in ms, for replies that carry the time (GT06 0x8A). Injected by the
    # runtime: parser/ reads no clock. None: such requests are kept but not answered.
    clock_ms: Callable[[], int] | None = None


class Session(Protocol):
    """Per-connection protocol state machine. Never raises on any input."""

    @property
    def device_id(self) -> str | None: ...

    @property
    def buffered_bytes(self) -> int:
        """Bytes held for an incomplete frame; never above the codec's frame bound."""
        ...

    def feed(self, data: bytes) -> list[Event]:
        """Take the next bytes of the stream; return the events they complete, in order."""
        ...

    def eof(self) -> list[Event]:
        """The stream ended: report what is left (trailing garbage or an incomplete frame)."""
        ...


class Codec(Protocol):
    name: str
    transports: frozenset[str]
    # Bound on one frame and so on what a session may buffer.
    max_frame_bytes: int

    def session(self) -> Session:
        """A fresh session for one connection."""
        ...

    def decode(self, payload: bytes) -> tuple[Reading, ...]:
        """Readings of one whole, verified frame; raises ``DecodeError``. Pure."""
        ...


CodecFactory = Callable[[CodecOptions], Codec]
