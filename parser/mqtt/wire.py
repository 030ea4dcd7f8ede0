"""MQTT's data representation (3.1.1 §1.5, 5.0 §1.5): read and write its primitive types,
and the rules for topic names and filters (§4.7).

Readers take the packet's bytes, an offset and the end of the field's packet, and return
``(value, next offset)``; running past ``end`` is a Malformed Packet. Writers raise ValueError
for a value the protocol cannot carry (our own caller's bug, not the peer's).
"""

from __future__ import annotations

from parser.mqtt.errors import MalformedPacket, ProtocolViolation
from parser.mqtt.packets import ReasonCode
from parser.topics import TopicError, validate_filter

MAX_VARINT = 268_435_455  # four 7-bit groups (5.0 §1.5.5)


def read_varint(data: bytes, pos: int, end: int) -> tuple[int, int]:
    """A Variable Byte Integer; value -1 when ``end`` comes before its last byte (the framer
    then waits for more). A fifth byte is malformed ([MQTT-1.5.5-1], 3.1.1 §2.2.3)."""
    value = 0
    shift = 0
    for index in range(pos, pos + 4):
        if index >= end:
            return -1, index
        byte = data[index]
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, index + 1
        shift += 7
    raise MalformedPacket("variable byte integer longer than 4 bytes")


def read_length(data: bytes, pos: int, end: int) -> tuple[int, int]:
    """A Variable Byte Integer that must lie wholly inside the packet."""
    if pos < end and data[pos] < 0x80:  # one byte, by far the common case
        return data[pos], pos + 1
    value, pos = read_varint(data, pos, end)
    if value < 0:
        raise MalformedPacket("truncated variable byte integer")
    return value, pos


def read_byte(data: bytes, pos: int, end: int) -> tuple[int, int]:
    if pos >= end:
        raise MalformedPacket("truncated byte")
    return data[pos], pos + 1


def read_u16(data: bytes, pos: int, end: int) -> tuple[int, int]:
    if pos + 2 > end:
        raise MalformedPacket("truncated two byte integer")
    return (data[pos] << 8) | data[pos + 1], pos + 2


def read_u32(data: bytes, pos: int, end: int) -> tuple[int, int]:
    if pos + 4 > end:
        raise MalformedPacket("truncated four byte integer")
    return int.from_bytes(data[pos : pos + 4]), pos + 4


def read_binary(data: bytes, pos: int, end: int) -> tuple[bytes, int]:
    """Binary Data: a two byte length, then that many bytes (5.0 §1.5.6)."""
    if pos + 2 > end:
        raise MalformedPacket("truncated length prefix")
    stop = pos + 2 + ((data[pos] << 8) | data[pos + 1])
    if stop > end:
        raise MalformedPacket("length prefix runs past the packet")
    return data[pos + 2 : stop], stop


def read_string(data: bytes, pos: int, end: int) -> tuple[str, int]:
    """A UTF-8 Encoded String (5.0 §1.5.4)."""
    raw, pos = read_binary(data, pos, end)
    return decode_utf8(raw), pos


def decode_utf8(raw: bytes) -> str:
    """``raw`` as text if it is well-formed UTF-8 without U+0000 ([MQTT-1.5.4-1], -2).

    Python's strict codec already refuses encoded surrogates U+D800..U+DFFF and overlong forms,
    which the spec forbids too. The SHOULD NOTs (control characters, non-characters) are left
    to the application ([MQTT-1.5.4-3] lets the receiver accept them). The U+0000 test runs on
    the text: ``in`` on a str is several times faster than on bytes here.
    """
    try:
        text = raw.decode()
    except UnicodeDecodeError as exc:
        raise MalformedPacket(f"invalid UTF-8 ({exc.reason})") from None
    if "\x00" in text:
        raise MalformedPacket("U+0000 in a UTF-8 string")
    return text


def topic_name(raw: bytes) -> str:
    """A Topic Name: UTF-8 without wildcards ([MQTT-3.3.2-2], [MQTT-4.7.1-1]). It may be
    empty here: 5.0 allows that with a Topic Alias, which the caller resolves."""
    text = decode_utf8(raw)
    if "+" in text or "#" in text:
        raise ProtocolViolation("wildcard in a topic name", ReasonCode.TOPIC_NAME_INVALID)
    return text


def topic_filter(data: bytes, pos: int, end: int, v5: bool) -> tuple[str, int]:
    """A Topic Filter (4.7.1, [MQTT-4.7.3-1]). In 5.0, ``$share/{ShareName}/{filter}`` is a
    shared subscription: a non-empty ShareName without '/', '+', '#', then a filter
    ([MQTT-4.8.2-1], [MQTT-4.8.2-2]); in 3.1.1 it is an ordinary filter."""
    text, pos = read_string(data, pos, end)
    try:
        if v5 and text.startswith("$share/"):
            name, _, shared = text[len("$share/") :].partition("/")
            if not name or "+" in name or "#" in name:
                raise TopicError(f"{text!r}: bad share name")
            validate_filter(shared)
        else:
            validate_filter(text)
    except TopicError as exc:
        raise MalformedPacket(f"invalid topic filter: {exc}") from None
    return text, pos


def encode_varint(value: int) -> bytes:
    if not 0 <= value <= MAX_VARINT:
        raise ValueError(f"{value} does not fit a variable byte integer")
    if value < 0x80:
        return bytes((value,))
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def encode_byte(value: int) -> bytes:
    if not 0 <= value <= 0xFF:
        raise ValueError(f"{value} does not fit a byte")
    return bytes((value,))


def encode_u16(value: int) -> bytes:
    if not 0 <= value <= 0xFFFF:
        raise ValueError(f"{value} does not fit a two byte integer")
    return value.to_bytes(2)


def encode_u32(value: int) -> bytes:
    if not 0 <= value <= 0xFFFFFFFF:
        raise ValueError(f"{value} does not fit a four byte integer")
    return value.to_bytes(4)


def encode_binary(value: bytes) -> bytes:
    if len(value) > 0xFFFF:
        raise ValueError(f"{len(value)} bytes do not fit a two byte length prefix")
    return len(value).to_bytes(2) + value


def encode_string(value: str) -> bytes:
    """``value`` as a UTF-8 Encoded String; lone surrogates and U+0000 are refused."""
    if "\x00" in value:
        raise ValueError("U+0000 is not allowed in an MQTT string")
    return encode_binary(value.encode())
