"""GT06 frames shared by the codec tests and the gateway process tests: the doc's login, a frame
builder with a correct length and CRC, the server's short reply, and the doc's alarm blocks."""

from __future__ import annotations

from parser.crc import crc16_x25
from parser.events import Event, Frame
from tests.parser.streams import load_vectors

LOGIN = next(
    bytes.fromhex(case["hex"])
    for case in load_vectors("gt06")
    if case["name"] == "gt06_login_doc_example"
)
LOGIN_IMEI = "123456789012345"

# The doc's alarm example (5.3.1): GPS block, then the LBS block without its length byte.
GPS = bytes.fromhex("0b0b0f0e241dcf027ac8870c4657e6001402")
LBS = bytes.fromhex("01cc00287d001f72")
STATUS = bytes((0x46, 3, 2, 0x01, 2))


def build(protocol: int, content: bytes, serial: int = 1, *, long: bool = False) -> bytes:
    """A well-formed frame with a correct length field and CRC."""
    length = 1 + len(content) + 2 + 2
    head = length.to_bytes(2 if long else 1, "big")
    body = head + bytes((protocol,)) + content + serial.to_bytes(2, "big")
    marker = b"\x79\x79" if long else b"\x78\x78"
    return marker + body + crc16_x25(body).to_bytes(2, "big") + b"\r\n"


def short_reply(protocol: int, serial: int) -> bytes:
    """The doc's server response (login, status, alarm), computed here apart from the codec."""
    body = bytes((5, protocol)) + serial.to_bytes(2, "big")
    return b"\x78\x78" + body + crc16_x25(body).to_bytes(2, "big") + b"\r\n"


def only_frame(events: list[Event]) -> Frame:
    assert len(events) == 1, events
    event = events[0]
    assert isinstance(event, Frame), event
    return event
