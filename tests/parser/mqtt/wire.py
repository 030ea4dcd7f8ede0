"""Hand-built packets for tests: what a broken or hostile client might send."""

from __future__ import annotations


def length(value: int) -> bytes:
    """A Variable Byte Integer, written out from 5.0 §1.5.5's algorithm."""
    out = bytearray()
    while True:
        value, byte = divmod(value, 128)
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def packet(first: int, body: bytes) -> bytes:
    return bytes((first,)) + length(len(body)) + body


def string(text: str | bytes) -> bytes:
    raw = text.encode() if isinstance(text, str) else text
    return len(raw).to_bytes(2, "big") + raw


def connect(
    level: int = 4,
    flags: int = 0x02,
    payload: bytes = b"\x00\x01c",
    *,
    name: bytes = b"MQTT",
    properties: bytes = b"\x00",
    keep_alive_s: int = 0,
) -> bytes:
    """A CONNECT with exactly these fields (properties only at level 5)."""
    body = string(name) + bytes((level, flags)) + keep_alive_s.to_bytes(2, "big")
    return packet(0x10, body + (properties if level == 5 else b"") + payload)


def publish(
    topic: str | bytes,
    payload: bytes = b"x",
    qos: int = 0,
    packet_id: int = 1,
    *,
    flags: int | None = None,
    properties: bytes | None = None,
) -> bytes:
    """A PUBLISH; ``properties`` (5.0) are written when given, ``flags`` override QoS bits."""
    body = string(topic) + (packet_id.to_bytes(2, "big") if qos else b"")
    body += (properties if properties is not None else b"") + payload
    return packet(0x30 | (qos << 1 if flags is None else flags), body)


def disconnect_reply(code: int) -> bytes:
    """The 5.0 DISCONNECT a server owes after CONNECT (5.0 §3.14)."""
    return bytes((0xE0, 1, code))


def connack_v5(code: int) -> bytes:
    return bytes((0x20, 3, 0, code, 0))


def connack_v311(return_code: int) -> bytes:
    return bytes((0x20, 2, 0, return_code))
