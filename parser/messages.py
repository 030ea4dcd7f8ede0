"""Frames that arrive whole, one per message (an MQTT PUBLISH, a bridged message).

A message transport already frames the data and knows the sender, so the codec's session only
has to confirm that the payload is exactly one valid frame; the device id comes from the
transport's identity. A login frame inside the payload must name that same device: a device may
only publish under its own identity.
"""

from __future__ import annotations

from parser.codec import Codec
from parser.events import Action, Frame, Login, Reject
from parser.layout_codec import LayoutCodec


def message_frame(codec: Codec, device_id: str, payload: bytes) -> Frame | Reject:
    """The frame carried by one message from ``device_id``, or why it is not one.

    A frame that framed but did not decode is still a ``Frame`` (with ``error_code`` set), so
    its raw record is kept. The codec's reply is dropped: the transport acknowledges itself.
    """
    fast = codec.whole_frame(payload, device_id) if isinstance(codec, LayoutCodec) else None
    if isinstance(fast, Frame):
        return fast  # stamped already: no second Frame per message
    if isinstance(fast, Login):
        return _stamped(fast, device_id)
    session = codec.session()
    events = [*session.feed(payload), *session.eof()]
    if len(events) != 1 or isinstance(events[0], Reject):
        problems = [e for e in events if isinstance(e, Reject)]
        detail = (
            f"{problems[0].reason}: {problems[0].detail}"
            if problems
            else f"{len(events)} frames in one message"
        )
        return Reject("not_one_frame", detail, Action.RESYNC)
    event = events[0]
    assert not isinstance(event, Reject)
    return _stamped(event, device_id)


def _stamped(event: Frame | Login, device_id: str) -> Frame | Reject:
    if isinstance(event, Login):
        if event.device_id != device_id:
            return Reject(
                "identity_mismatch",
                f"login for {event.device_id} published by {device_id}",
                Action.CLOSE,
            )
        return Frame(device_id, event.payload, b"", event.readings)
    return Frame(
        device_id, event.payload, b"", event.readings, event.error_code, event.error_detail
    )
