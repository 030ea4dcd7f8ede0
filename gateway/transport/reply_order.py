"""Replies released in the order their frames arrived, one :class:`ReplyOrder` per connection."""

from __future__ import annotations

from typing import Protocol

from gateway.common.tickets import Outcome, Ticket

# What a frame's ticket notes for its reply: its number (:meth:`ReplyOrder.reserve`), the reply
# owed, when the frame was accepted (for the ACK latency), and how many replies the bytes hold
# (the frames of one read may share a ticket and leave as one buffer).
PendingReply = tuple[int, bytes, float, int]


class Replier(Protocol):
    """The connection a :class:`ReplyOrder` releases replies to (``DeviceConnection``)."""

    def send_reply(self, reply: bytes, accepted_at: float, count: int = 1) -> None: ...

    def frame_lost(self) -> None: ...


class ReplyOrder:
    """A connection's replies, released strictly in the order their frames arrived.

    A frame's records go to up to four streams, each with its own writer, so frames finish out
    of order: one that did not decode also waits for ``errors/`` and was ACKed after the frame
    behind it. Devices read an ACK as "this and what came before is saved", and MQTT requires
    PUBACKs in the order of the PUBLISHes ([MQTT-4.6.0-2]). So a frame owing a reply takes the
    next number when it is accepted (:meth:`ticket`; a TCP read's frames share one number and
    one ticket, see ``TcpDeviceHandler.feed``); its ticket reports to this object, its
    finalizer, once its records are written, and the reply leaves when every earlier one has.

    Cheap on the hot path: frames finishing in order (the common case) touch two integers, no
    allocation; only a frame finishing early waits, in a dict keyed by its number. A frame given
    up on (dead-lettered) never finishes: its outcome ``LOST`` tells the connection
    (``frame_lost``), which closes it after writing the replies released so far, so the device
    reconnects and resends what was not ACKed instead of waiting behind a reply that will never
    come.
    """

    __slots__ = ("_conn", "_early", "_next", "_released")

    def __init__(self, conn: Replier) -> None:
        self._conn = conn
        self._next = 0  # the number the next frame owing a reply takes
        self._released = 0  # the lowest number whose reply has not left yet
        # Finished, behind an unfinished one; made on first use (64 bytes per connection saved:
        # most connections never have a frame finish early).
        self._early: dict[int, tuple[bytes, float, int]] | None = None

    def reserve(self) -> int:
        """The number of the frame just accepted (its place among the replies)."""
        number = self._next
        self._next = number + 1
        return number

    def ticket(self, reply: bytes, accepted_at: float) -> Ticket[PendingReply]:
        """The ticket of a frame just accepted that owes ``reply`` once written."""
        return Ticket(self, (self.reserve(), reply, accepted_at, 1))

    def settled(self, note: PendingReply, outcome: Outcome) -> None:
        """A frame's ticket is settled: written, release what is in order; lost, its reply
        never comes (the connection closes, see :meth:`Replier.frame_lost`)."""
        if outcome is Outcome.LOST:
            self._conn.frame_lost()
            return
        self.release(*note)

    def release(self, number: int, reply: bytes, accepted_at: float, count: int = 1) -> None:
        """Frame ``number`` (or ``count`` frames under it) is written: its reply leaves once
        every earlier one has."""
        if number != self._released:
            self._wait(number, reply, accepted_at, count)
            return
        send = self._conn.send_reply
        send(reply, accepted_at, count)
        number += 1
        early = self._early
        while early and number in early:
            send(*early.pop(number))
            number += 1
        self._released = number

    def now(self, reply: bytes, accepted_at: float) -> None:
        """A reply owed at once (a login, ACK policy ``accepted``): after those still owed."""
        if self._released == self._next:
            self._conn.send_reply(reply, accepted_at)
        else:
            self._wait(self.reserve(), reply, accepted_at, 1)

    def _wait(self, number: int, reply: bytes, accepted_at: float, count: int) -> None:
        """Frame ``number`` finished behind an unfinished one: its reply waits."""
        if self._early is None:
            self._early = {}
        self._early[number] = (reply, accepted_at, count)
