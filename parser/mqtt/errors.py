"""The MQTT codec's errors: the peer's fault, with the bytes owed on the wire before closing.

5.0 §4.13: on a Malformed Packet or Protocol Error the receiver MUST close the connection; it
MAY first send a CONNACK (error in the CONNECT) or SHOULD send a DISCONNECT (any later packet)
carrying the reason code. 3.1.1 §4.8 only closes, except the CONNACK return codes 1 and 2 it
owes for an unacceptable protocol level or client identifier ([MQTT-3.1.2-2], [MQTT-3.1.3-9]).
The connection fills in ``reply`` for the version it negotiated; the runtime writes it, then
closes.
"""

from __future__ import annotations

from collections.abc import Sequence

from parser.errors import ProtocolError
from parser.mqtt.packets import Packet, ReasonCode


class MqttError(ProtocolError):
    """Root of the MQTT codec's errors.

    ``reason_code`` says what went wrong (fit for a metric label as ``reason_code.name``),
    ``reply`` is what to write before closing (possibly ``b""``: just close), and ``packets``
    are the whole packets that arrived before the bad bytes in the same ``feed`` (the runtime may
    still handle them, e.g. keep QoS 0 data; none of them has been acknowledged).
    """

    def __init__(self, reason_code: ReasonCode, detail: str) -> None:
        super().__init__(f"{reason_code.name}: {detail}")
        self.reason_code = reason_code
        self.detail = detail
        self.reply = b""
        self.packets: Sequence[Packet] = ()


class MalformedPacket(MqttError):
    """Bytes that cannot be parsed by the spec (5.0 §1.2 "Malformed Packet")."""

    def __init__(self, detail: str, reason_code: ReasonCode = ReasonCode.MALFORMED_PACKET) -> None:
        super().__init__(reason_code, detail)


class ProtocolViolation(MqttError):
    """A well-formed packet the peer must not send now or with these values (5.0 §1.2
    "Protocol Error"); ``reason_code`` may be more specific (0x84, 0x85, 0x93, 0x94, 0x95 …)."""

    def __init__(self, detail: str, reason_code: ReasonCode = ReasonCode.PROTOCOL_ERROR) -> None:
        super().__init__(reason_code, detail)
