"""Device bytes written as hex text (captures pasted from logs): ``gateway decode`` and
``gateway replay --capture`` read them the same way."""

from __future__ import annotations


class InputError(ValueError):
    """The bytes to decode could not be read or are not valid hex."""


def parse_hex(text: str) -> bytes:
    """The bytes of ``text``: hex digits, whitespace anywhere, an optional ``0x`` in front."""
    cleaned = "".join(text.split())
    if cleaned[:2].lower() == "0x":
        cleaned = cleaned[2:]
    try:
        return bytes.fromhex(cleaned)
    except ValueError:
        bad = next((c for c in cleaned if c not in "0123456789abcdefABCDEF"), None)
        why = f"invalid character {bad!r}" if bad else "odd number of hex digits"
        raise InputError(f"invalid hex input: {why}") from None
