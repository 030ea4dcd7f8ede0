"""Helpers for sessions that resynchronise on a start marker after bad bytes."""

from __future__ import annotations

from parser.events import Action, Reject


def find_sync(buf: bytes, start: int, markers: tuple[bytes, ...]) -> tuple[int, bool]:
    """Where the next marker starts at or after ``start``, and whether one was found.

    When none is found the returned offset keeps the longest tail of ``buf`` that could still be
    the beginning of a marker, so a marker split across two reads is not skipped.
    """
    best = -1
    for marker in markers:
        # Search no further than the best hit so far: a marker absent from a large hostile
        # buffer would otherwise cost a full scan on every call (quadratic in the read size).
        stop = best + len(marker) - 1 if best >= 0 else len(buf)
        i = buf.find(marker, start, stop)
        if i >= 0:
            best = i
    if best >= 0:
        return best, True
    end = len(buf)
    longest = max(len(m) for m in markers) - 1
    for k in range(min(longest, end - start), 0, -1):
        tail = buf[end - k :]
        if any(m.startswith(tail) for m in markers):
            return end - k, False
    return end, False


def garbage(skipped: int) -> Reject:
    """The reject reported once for a run of bytes skipped while looking for a frame start."""
    return Reject(
        "garbage", f"skipped {skipped} bytes before a frame start", Action.RESYNC, skipped
    )
