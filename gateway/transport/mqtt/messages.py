"""What a device's messages and subscriptions are owed, decided without I/O: a PUBLISH's frame
and the reason code of its acknowledgement, which acknowledgement packet that is, and which
subscriptions are granted. The connection applies what these decide."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

import structlog

from gateway.transport.mqtt.routes import Resolved, Router
from gateway.transport.mqtt.sessions import Session
from parser.events import Frame
from parser.messages import message_frame
from parser.mqtt.connection import MqttServerConnection
from parser.mqtt.packets import ReasonCode, Subscribe, Unsubscribe

log = structlog.get_logger("gateway.transport.mqtt")

# Why a payload is not one frame (message_frame's rejects), as the 5.0 reason code of the
# acknowledgement of a message kept anyway; any other reason is 0x99.
_PAYLOAD_REFUSALS = {"identity_mismatch": ReasonCode.NOT_AUTHORIZED}


def message_event(
    resolved: Resolved, device_id: str, payload: bytes, v5: bool
) -> tuple[Frame, ReasonCode]:
    """A message's frame and the reason code of its acknowledgement."""
    event = message_frame(resolved.route.codec, device_id, payload)
    if isinstance(event, Frame):
        return event, ReasonCode.SUCCESS
    # Not one frame of the codec: kept anyway as a frame that did not decode (a raw record
    # plus an errors/ record with the reason, as TCP keeps one, to re-parse after a codec
    # fix) and acknowledged, else a device that resends it on every reconnect would loop
    # forever (3.1.1 has no negative acknowledgement but a close). 5.0 is told why in the
    # reason code; the message still counts as handled.
    code = ReasonCode.SUCCESS
    if v5:
        code = _PAYLOAD_REFUSALS.get(event.reason, ReasonCode.PAYLOAD_FORMAT_INVALID)
    return Frame(device_id, payload, b"", (), event.reason, event.detail), code


def will_event(resolved: Resolved, device_id: str, payload: bytes, v5: bool, peer: str) -> Frame:
    """A will's frame. A codec bug raising here leaves nobody to resend the will, so it is kept
    as a frame that did not decode (as the bridge keeps such a message), not lost."""
    try:
        return message_event(resolved, device_id, payload, v5)[0]
    except Exception as exc:
        log.exception("mqtt will failed to decode", peer=peer, device_id=device_id)
        detail = f"{type(exc).__name__}: {exc}"
        return Frame(device_id, payload, b"", (), "codec_error", detail)


def acknowledgement(
    mqtt: MqttServerConnection,
    qos: int,
    packet_id: int,
    code: ReasonCode,
    reason_codes: Counter[tuple[str, str]],
) -> bytes:
    """The PUBACK (QoS 1) or PUBREC (QoS 2) answering a PUBLISH with ``code``; any code but
    success is counted in ``reason_codes``."""
    if qos == 1:
        reply, packet = mqtt.puback(packet_id, code), "PUBACK"
    else:
        reply, packet = mqtt.pubrec(packet_id, code), "PUBREC"
    if code:
        reason_codes[packet, code.name] += 1
    return reply


def granted(
    router: Router, session: Session, subscribe: Subscribe, claim: Callable[[str], bool]
) -> list[ReasonCode]:
    """SUBACK codes: only the device's own command topic is granted (and kept in its
    session); ``claim`` says whether the connection speaks for a device."""
    codes = []
    for sub in subscribe.subscriptions:
        device_id = router.command_device(sub.topic_filter)
        if device_id is not None and claim(device_id):
            session.subscriptions[sub.topic_filter] = sub.qos
            codes.append(ReasonCode(sub.qos))  # granted QoS 0, 1 or 2
        else:
            codes.append(ReasonCode.NOT_AUTHORIZED)
    return codes


def unsubscribed(session: Session, unsubscribe: Unsubscribe) -> list[ReasonCode]:
    """UNSUBACK codes, the filters dropped from the session."""
    return [
        ReasonCode.SUCCESS
        if session.subscriptions.pop(f, None) is not None
        else ReasonCode.NO_SUBSCRIPTION_EXISTED
        for f in unsubscribe.topic_filters
    ]
