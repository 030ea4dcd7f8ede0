"""MQTT sessions of one listener: QoS 2 packet ids awaiting PUBREL and granted subscriptions,
kept across reconnects for persistent sessions, bounded in number, size and lifetime.

MQTT 3.1.1 §3.1.2.4 / 5.0 §3.1.2.4: a client that connects with Clean Session 0 (5.0: Clean
Start 0 and a Session Expiry Interval above 0) resumes its session. For an ingest-only server
the state worth keeping is the QoS 2 exchange: a packet id whose PUBREC was sent stays known
until its PUBREL, so a PUBLISH resent with that id after a reconnect is not stored twice
(exactly once, [MQTT-4.3.3-2]). A second CONNECT with the same client id takes the session over
and the first connection is closed ([MQTT-3.1.4-3]; 5.0 with reason 0x8E).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Protocol

from gateway.common.tickets import Outcome, Ticket

SESSION_EXPIRY_NEVER = 0xFFFFFFFF  # 5.0 §3.1.2.11.2
# Completed QoS 2 packet ids a session keeps awaiting their PUBREL: the bound on a session's
# memory (tens of bytes an id) now that the receive window is 65535. Forgetting one costs at
# most a 0x92 answer to its late PUBREL, or a duplicate if its PUBLISH is resent after a PUBREC.
MAX_QOS2_IDS = 1024


class SessionOwner(Protocol):
    def qos2_written(self, packet_id: int, number: int | None) -> None: ...
    def qos2_lost(self, packet_id: int) -> None: ...
    def taken_over(self) -> None: ...


# What a QoS 2 message's ticket notes: its packet id, its place among the replies of the
# connection that received it (None: no reply waits in order), and that connection.
Qos2Note = tuple[int, int | None, SessionOwner | None]


class Session:
    """One client id's state. ``qos2``: packet id -> True once its frame was accepted under the
    listener's ACK policy (PUBREC owed or sent), False while it is still being written."""

    __slots__ = ("client_id", "expiry_s", "identity", "max_qos2", "owner", "qos2", "subscriptions")

    def __init__(self, client_id: str, identity: str | None, max_qos2: int) -> None:
        self.client_id = client_id
        self.identity = identity
        self.max_qos2 = max_qos2
        self.expiry_s = 0.0  # how long the session outlives its connection (0: not at all)
        self.owner: SessionOwner | None = None
        self.qos2: dict[int, bool] = {}
        self.subscriptions: dict[str, int] = {}  # granted filter -> QoS

    def qos2_started(self, packet_id: int) -> None:
        """A new QoS 2 message is being accepted. Bounded: past ``max_qos2`` ids the oldest
        completed one is forgotten (its late PUBREL is then answered 0x92; no data is lost)."""
        if len(self.qos2) >= self.max_qos2:
            oldest = next((pid for pid, done in self.qos2.items() if done), None)
            if oldest is not None:
                del self.qos2[oldest]
        self.qos2[packet_id] = False

    def ticket(self, packet_id: int, number: int) -> Ticket[Qos2Note]:
        """The ticket of the message with ``packet_id``, received by the owner now, where it is
        ``number`` among the replies (see ``qos2_written``); this session is its finalizer."""
        return Ticket(self, (packet_id, number, self.owner))

    def accepted(self, packet_id: int) -> None:
        """The message with ``packet_id`` is accepted under the policy at once (``accepted``)."""
        self.settled((packet_id, None, self.owner), Outcome.WRITTEN)

    def settled(self, note: Qos2Note, outcome: Outcome) -> None:
        """The end of one QoS 2 message's write: the PUBREC goes to whichever connection owns
        the session by then (in its place among the replies of the connection that received
        the message, if that one still owns it); a message lost to the sink forgets its id."""
        packet_id, number, received_by = note
        qos2, owner = self.qos2, self.owner
        if outcome is Outcome.WRITTEN:
            if packet_id in qos2:
                qos2[packet_id] = True
                if owner is not None:
                    owner.qos2_written(packet_id, number if owner is received_by else None)
        # Kept, the id would make every resend a "duplicate" of a message never stored: no
        # PUBREC ever, the id and its receive-maximum slot blocked. Forgotten, the resend is new.
        elif qos2.get(packet_id) is False:
            del qos2[packet_id]
            if owner is not None:
                owner.qos2_lost(packet_id)


class SessionStore:
    """Live sessions by client id, and detached persistent ones until they expire."""

    def __init__(self, max_sessions: int, max_expiry_s: float) -> None:
        self.max_sessions = max_sessions
        self.max_expiry_s = max_expiry_s
        self.live: dict[str, Session] = {}
        # Detached sessions in the order they expire (each expiry is capped by max_expiry_s,
        # but a shorter one may follow a longer one: the sweep checks them all).
        self._detached: OrderedDict[str, tuple[Session, float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self.live) + len(self._detached)

    def attach(
        self, owner: SessionOwner, client_id: str, identity: str | None, clean: bool,
        expiry_s: float, max_qos2: int,
    ) -> tuple[Session, bool, SessionOwner | None]:  # fmt: skip
        """The session for a CONNECT: (session, session present, connection taken over)."""
        previous = self.live.pop(client_id, None)
        taken_over = None
        if previous is not None:
            # Its connection no longer owns it, whether it is resumed or discarded here.
            taken_over, previous.owner = previous.owner, None
        else:
            detached = self._detached.pop(client_id, None)
            previous = detached[0] if detached is not None else None
        present = previous is not None and not clean
        session = previous if present and previous is not None else None
        if session is None:
            session = Session(client_id, identity, max_qos2)
        session.owner = owner
        session.identity = identity
        session.max_qos2 = max_qos2
        session.expiry_s = min(expiry_s, self.max_expiry_s)
        self.live[client_id] = session
        return session, present, taken_over

    def detach(self, session: Session, owner: SessionOwner, now: float) -> None:
        """``owner``'s connection ended; the session is kept if it persists and nobody took it."""
        if session.owner is not owner:
            return  # taken over: the new connection owns it now
        session.owner = None
        if self.live.get(session.client_id) is session:
            del self.live[session.client_id]
        if session.expiry_s <= 0 or self.max_sessions == 0:
            return
        while len(self) >= self.max_sessions and self._detached:
            self._detached.popitem(last=False)  # the oldest goes first
        self._detached[session.client_id] = (session, now + session.expiry_s)

    def identity_of(self, client_id: str) -> str | None:
        """Who holds ``client_id`` now (live or detached), if anyone identified."""
        session = self.live.get(client_id)
        if session is None:
            detached = self._detached.get(client_id)
            session = detached[0] if detached is not None else None
        return session.identity if session is not None else None

    def sweep(self, now: float) -> None:
        expired = [cid for cid, (_, until) in self._detached.items() if until <= now]
        for client_id in expired:
            del self._detached[client_id]
