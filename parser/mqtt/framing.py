"""Cutting a byte stream into MQTT packets, bounded, for both sides of a connection.

A packet is a fixed header (type and flags, then the Remaining Length as a Variable Byte
Integer of at most 4 bytes, 3.1.1 §2.2.3 / 5.0 §1.5.5) and that many bytes. The incomplete tail
is kept in one buffer; a packet whose header announces more than ``max_packet_bytes`` is refused
as soon as its header is read, so the buffer never holds more than that. Many small reads stay
O(n): until the announced size is there, a read is only appended.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

from parser.mqtt.errors import MqttError, ProtocolViolation
from parser.mqtt.packets import Packet, ReasonCode
from parser.mqtt.wire import MAX_VARINT, read_varint

# The largest packet MQTT can frame: 1 type byte, 4 length bytes, the largest remaining length.
MAX_PACKET_BYTES = 1 + 4 + MAX_VARINT


class PacketFramer(ABC):
    """The framing half of a connection; subclasses read each packet and build error replies.

    After an :class:`MqttError` the stream cannot be trusted: every later ``feed`` raises it
    again.
    """

    def __init__(self, max_packet_bytes: int) -> None:
        # 5 bytes: the longest fixed header, so a partial header always fits the bound.
        if not 5 <= max_packet_bytes <= MAX_PACKET_BYTES:
            raise ValueError(f"max_packet_bytes must be in 5..{MAX_PACKET_BYTES}")
        self.max_packet_bytes = max_packet_bytes
        self._buffer = bytearray()
        self._need_bytes = 0  # the buffer cannot complete a packet below this size
        self._error: MqttError | None = None

    @property
    def buffered_bytes(self) -> int:
        """Bytes of an incomplete packet held back; never more than ``max_packet_bytes``."""
        return len(self._buffer)

    def feed(self, data: bytes | bytearray | memoryview) -> list[Packet]:
        """The packets ``data`` completes, in order. Raises the connection's ``MqttError``
        (``reply`` and ``packets`` set) for bytes the spec does not allow.

        Packets keep slices of ``data`` (payloads), so a reused receive buffer is copied first.
        """
        if self._error is not None:
            raise self._error
        if type(data) is not bytes:
            data = bytes(data)
        buffer = self._buffer
        if buffer:
            buffer += data
            if len(buffer) < self._need_bytes:
                return []
            data = bytes(buffer)
            buffer.clear()
        packets: list[Packet] = []
        append = packets.append
        read_packet = self._read_packet
        pos = 0
        size = len(data)
        limit = self.max_packet_bytes
        need = 0
        try:
            while pos < size:
                if pos + 1 == size:
                    need = 2
                    break
                length = data[pos + 1]
                body = pos + 2
                if length & 0x80:
                    if pos + 2 < size and data[pos + 2] < 0x80:
                        # The common 2-byte length (128..16,383) inline, the function otherwise.
                        length = (length & 0x7F) | data[pos + 2] << 7
                        body = pos + 3
                    else:
                        length, body = read_varint(data, pos + 1, size)
                        if length < 0:
                            need = size - pos + 1
                            break
                end = body + length
                if end - pos > limit:
                    raise ProtocolViolation(
                        f"{end - pos}-byte packet, limit {limit}", ReasonCode.PACKET_TOO_LARGE
                    )
                if end > size:
                    need = end - pos
                    break
                append(read_packet(data, data[pos], body, end))
                pos = end
        except MqttError as error:
            error.packets = packets
            error.reply = self._error_reply(error, data[pos:])
            self._error = error
            raise
        if pos < size:
            buffer += memoryview(data)[pos:]
            self._need_bytes = need
        return packets

    @abstractmethod
    def _read_packet(self, data: bytes, header: int, start: int, end: int) -> Packet:
        """The packet whose first byte is ``header`` and body is ``data[start:end]``."""

    @abstractmethod
    def _error_reply(self, error: MqttError, rest: bytes) -> bytes:
        """What to write before closing; ``rest`` starts with the offending packet."""
