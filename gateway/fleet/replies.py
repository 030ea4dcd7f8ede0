"""Readers of what the gateway sends back to a device: EVB1 ACKs, GT06 replies, Teltonika counts.

Pure bytes logic, fed with whatever a read returned. Bytes that are not a valid reply (a bad CRC,
an unknown frame) are skipped as a real unit would ignore them; buffers are bounded.
"""

from __future__ import annotations

import struct

from parser.crc import crc16_ccitt_false, crc16_x25

# Nothing the gateway sends a device is longer than this; more unparsed bytes are garbage.
MAX_BUFFER_BYTES = 4096

_EVB1_SYNC = b"EV\x01"
_EVB1_HEADER = struct.Struct(">2sBBHH")  # magic, version, type, seq, len
_EVB1_ACK_TYPE = 0x80
_EVB1_MAX_BODY = 1024
_GT06_START = b"\x78\x78"
_GT06_STOP = b"\r\n"
_GT06_REPLY_LENGTH = 5  # protocol + serial + crc
_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")


class Evb1AckReader:
    """EVB1 frames from the gateway; yields ``(seq, acked type)`` of each valid ACK."""

    __slots__ = ("_rest",)

    def __init__(self) -> None:
        self._rest = b""

    def feed(self, data: bytes) -> list[tuple[int, int]]:
        buf = self._rest + data if self._rest else data
        acks: list[tuple[int, int]] = []
        pos, end = 0, len(buf)
        while end - pos >= _EVB1_HEADER.size:
            if not buf.startswith(_EVB1_SYNC, pos):
                found = buf.find(_EVB1_SYNC, pos + 1)
                pos = found if found >= 0 else max(pos, end - len(_EVB1_SYNC) + 1)
                continue
            _, _, type_id, seq, length = _EVB1_HEADER.unpack_from(buf, pos)
            if length > _EVB1_MAX_BODY:
                pos += 1
                continue
            size = _EVB1_HEADER.size + length + 2
            if end - pos < size:
                break
            (crc,) = _U16.unpack_from(buf, pos + size - 2)
            if crc != crc16_ccitt_false(buf[pos + 2 : pos + size - 2]):
                pos += 1
                continue
            if type_id == _EVB1_ACK_TYPE and length == 1:
                acks.append((seq, buf[pos + _EVB1_HEADER.size]))
            pos += size
        self._rest = _bounded(buf[pos:])
        return acks


class Gt06ReplyReader:
    """GT06 server replies ``7878 05 <protocol> <serial> <crc> 0d0a``: yields (protocol, serial).

    Other frames from the server (commands) are skipped whole when their CRC checks.
    """

    __slots__ = ("_rest",)

    def __init__(self) -> None:
        self._rest = b""

    def feed(self, data: bytes) -> list[tuple[int, int]]:
        buf = self._rest + data if self._rest else data
        replies: list[tuple[int, int]] = []
        pos, end = 0, len(buf)
        while end - pos >= 3:
            if not buf.startswith(_GT06_START, pos):
                found = buf.find(_GT06_START, pos + 1)
                pos = found if found >= 0 else max(pos, end - 1)
                continue
            length = buf[pos + 2]
            size = 2 + 1 + length + 2  # marker, length, body (through the CRC), 0d0a
            if end - pos < size:
                break
            (crc,) = _U16.unpack_from(buf, pos + size - 4)
            if (
                length < _GT06_REPLY_LENGTH
                or not buf.startswith(_GT06_STOP, pos + size - 2)
                or crc != crc16_x25(buf[pos + 2 : pos + size - 4])
            ):
                pos += 1
                continue
            if length == _GT06_REPLY_LENGTH:
                replies.append((buf[pos + 3], _U16.unpack_from(buf, pos + 4)[0]))
            pos += size
        self._rest = _bounded(buf[pos:])
        return replies


class TeltonikaAckReader:
    """Teltonika server bytes: one login answer (``01``/``00``), then 4-byte record counts."""

    __slots__ = ("_login", "_rest")

    def __init__(self) -> None:
        self._rest = b""
        self._login = True

    def reset(self) -> None:
        """A new connection: the next byte answers the login."""
        self._rest = b""
        self._login = True

    def feed(self, data: bytes) -> tuple[bool | None, list[int]]:
        """The login answer if these bytes hold it (``None`` if not), and the counts."""
        login: bool | None = None
        if self._login and data:
            login = data[0] == 1
            self._login = False
            data = data[1:]
        buf = self._rest + data if self._rest else data
        whole = len(buf) - len(buf) % 4
        counts = [_U32.unpack_from(buf, at)[0] for at in range(0, whole, 4)]
        self._rest = buf[whole:]
        return login, counts


def _bounded(rest: bytes) -> bytes:
    return rest if len(rest) <= MAX_BUFFER_BYTES else rest[-MAX_BUFFER_BYTES:]
