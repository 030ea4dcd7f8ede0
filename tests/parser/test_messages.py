import msgspec

from parser.events import Action, Frame, Reject
from parser.messages import message_frame
from tests.parser.streams import (
    CODECS_DIR,
    evb1_frame,
    evb1_heartbeat,
    evb1_login,
    layout_codec,
)

EVB1 = layout_codec("evb1")


def test_one_frame_is_stamped_with_the_publishers_identity() -> None:
    event = message_frame(EVB1, "dev-1", evb1_heartbeat(7))
    assert isinstance(event, Frame)
    assert event.device_id == "dev-1"
    assert event.payload == evb1_heartbeat(7)
    assert event.reply == b""
    assert event.readings
    assert event.error_code is None


def test_login_must_name_the_publisher() -> None:
    own = message_frame(EVB1, "356307042441013", evb1_login("356307042441013"))
    assert isinstance(own, Frame)
    assert own.device_id == "356307042441013"
    other = message_frame(EVB1, "356307042441099", evb1_login("356307042441013"))
    assert isinstance(other, Reject)
    assert (other.reason, other.action) == ("identity_mismatch", Action.CLOSE)


def test_anything_but_exactly_one_frame_is_refused() -> None:
    two = message_frame(EVB1, "d", evb1_heartbeat(1) + evb1_heartbeat(2))
    assert isinstance(two, Reject)
    assert two.reason == "not_one_frame"
    assert "2 frames" in two.detail
    for payload in (b"", b"junk", evb1_heartbeat(1)[:-1], evb1_heartbeat(1) + b"x"):
        event = message_frame(EVB1, "d", payload)
        assert isinstance(event, Reject), payload
        assert event.reason == "not_one_frame"


def test_a_frame_that_does_not_decode_keeps_its_raw_bytes() -> None:
    unknown_type = evb1_frame(0x55, 1, b"\x00\x01")
    event = message_frame(EVB1, "d", unknown_type)
    assert isinstance(event, Frame)
    assert event.error_code is not None
    assert event.payload == unknown_type


def test_the_fast_path_gives_what_a_session_gives() -> None:
    samples = (CODECS_DIR / "samples" / "evb1.hex").read_text().split()
    frames = [bytes.fromhex(line) for line in samples]
    frames += [evb1_frame(0x55, 1, b"\x00\x01"), evb1_login("356307042441013")]
    for frame in frames:
        session = EVB1.session()
        (expected,) = session.feed(frame)
        # The fast path owes no reply: the message transport acknowledges itself.
        assert EVB1.whole_frame(frame, None) == msgspec.structs.replace(expected, reply=b"")
    broken = bytearray(frames[0])
    broken[-1] ^= 0xFF
    assert EVB1.whole_frame(bytes(broken), None) is None  # the session path names the problem
    assert EVB1.whole_frame(frames[0] + b"x", None) is None
