"""Will messages waiting out their delay (5.0 §3.1.2.5, §3.1.3.2.2 Will Delay Interval).

The gateway has no subscribers to hand a will to: it stores the will like a PUBLISH on its topic
(same routes, codecs and identity rules) when a connection ends without a normal DISCONNECT.
A 5.0 client may ask for a delay, so that a short network drop does not read as the device
going away: the will then waits here until the delay (or its session, if shorter) ends, and a
new connection with the same client id cancels it (5.0 §3.1.3.2.2).

Bounded: at most ``max_pending`` wait (each at most ``max_will_bytes`` of the listener); past
that the oldest is stored at once rather than dropped.
"""

from __future__ import annotations

from collections.abc import Callable


class PendingWills:
    """Delayed wills by client id; ``store`` is what publishes one (accepts its frame)."""

    def __init__(self, max_pending: int) -> None:
        self.max_pending = max_pending
        self._pending: dict[str, tuple[float, Callable[[], None]]] = {}

    def __len__(self) -> int:
        return len(self._pending)

    def defer(self, client_id: str, due: float, store: Callable[[], None]) -> None:
        if client_id in self._pending:  # (a client id has one connection, so one will)
            self._pending.pop(client_id)[1]()
        while self._pending and len(self._pending) >= self.max_pending:
            oldest = next(iter(self._pending))
            self._pending.pop(oldest)[1]()
        if self.max_pending > 0:
            self._pending[client_id] = (due, store)
        else:
            store()

    def cancel(self, client_id: str) -> None:
        """The client connected again within the delay: its will is not published."""
        self._pending.pop(client_id, None)

    def sweep(self, now: float) -> None:
        """Store every will whose delay has ended."""
        due = [cid for cid, (at, _) in self._pending.items() if at <= now]
        for client_id in due:
            self._pending.pop(client_id)[1]()
