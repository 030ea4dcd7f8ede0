"""One error tree for the protocol layer.

Hostile bytes never escape a session as an exception: a session yields a
:class:`parser.events.Reject` event carrying the reaction it calls for (its ``action``).
:class:`DecodeError` is raised by a codec's pure ``decode`` and travels inside a
:class:`parser.events.Frame` (the raw record survives).
"""

from __future__ import annotations


class ProtocolError(Exception):
    """Root of every error raised by ``parser``."""


class DecodeError(ProtocolError):
    """A frame framed and passed its checks but its body could not be decoded into readings.

    ``code`` is a short, bounded token fit for a metric label (``unknown_type``,
    ``unsupported_codec``, ``bad_body``); ``detail`` is for humans.
    """

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail


class LayoutError(ProtocolError):
    """A codec layout file is invalid; the message names the file and the offending key."""
