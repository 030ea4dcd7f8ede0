"""Replies batched per port: what a written batch released leaves in one write per connection.

A sink batch settles the tickets of frames from many connections; each ticket's reply is queued
on its connection (in frame order, :class:`~gateway.transport.reply_order.ReplyOrder`), which
registers here. Once the pipeline has settled the whole batch it tells the port
(:meth:`ReplyBatcher.batch_settled`) and every connection writes its replies at once: one
``write`` per connection per batch, not one per frame. Replies earned within a read are
written at the end of that read by the connection itself.
"""

from __future__ import annotations

from typing import Protocol


class ReplyOutbox(Protocol):
    def flush_replies(self) -> None: ...


class ReplyBatcher:
    """Connections holding replies to write; flushed once per batch settled."""

    __slots__ = ("_pending",)

    def __init__(self) -> None:
        self._pending: set[ReplyOutbox] = set()

    def add(self, outbox: ReplyOutbox) -> None:
        self._pending.add(outbox)

    def discard(self, outbox: ReplyOutbox) -> None:
        """A closed connection: not kept until the next batch settles (under ``accepted`` no
        batch may settle for as long as the devices are silent)."""
        self._pending.discard(outbox)

    def batch_settled(self) -> None:
        if self._pending:
            pending, self._pending = self._pending, set()
            for outbox in pending:
                outbox.flush_replies()
