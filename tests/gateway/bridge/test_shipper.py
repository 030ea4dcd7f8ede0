"""A destination shipper's position, without brokers: it moves only past messages the
destination confirmed, in journal order."""

from __future__ import annotations

from gateway.bridge.publisher import Outgoing
from gateway.bridge.shipper import InOrder


def out(offset: int, size: int) -> Outgoing:
    return Outgoing("t", b"x", 1, None, offset, offset + size)


def test_the_offset_moves_only_past_messages_confirmed_in_order() -> None:
    position = InOrder(100)
    a, b, c, d = out(100, 10), out(110, 20), out(130, 5), out(135, 7)
    for message in (a, b, c, d):
        position.add(message)
    assert not position.confirmed(c)  # a and b are still out: c's confirmation waits
    assert position.offset == 100
    assert not position.confirmed(b)
    assert position.offset == 100
    assert position.confirmed(a)  # a, then b and c confirmed before it
    assert (position.offset, len(position)) == (135, 1)
    assert position.oldest() is d
    assert position.confirmed(d)
    assert (position.offset, len(position), position.oldest()) == (142, 0, None)


def test_a_restart_resumes_at_the_offset_with_nothing_out() -> None:
    position = InOrder(0)
    first = out(0, 10)
    position.add(first)
    position.add(out(10, 10))
    position.confirmed(first)
    # What a restart sees: the saved offset; the unconfirmed second message is read again.
    again = InOrder(position.offset)
    assert (again.offset, len(again)) == (10, 0)
