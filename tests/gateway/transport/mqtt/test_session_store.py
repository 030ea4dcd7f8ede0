"""The session store alone: resume, discard, takeover, expiry and its bounds; the delayed
wills beside it (no sockets)."""

from __future__ import annotations

import functools

from gateway.transport.mqtt.sessions import SessionStore
from gateway.transport.mqtt.wills import PendingWills


class Owner:
    def __init__(self) -> None:
        self.pubrecs: list[int] = []
        self.lost: list[int] = []

    def qos2_written(self, packet_id: int, number: int | None = None) -> None:
        self.pubrecs.append(packet_id)

    def qos2_lost(self, packet_id: int) -> None:
        self.lost.append(packet_id)

    def taken_over(self) -> None:
        pass


def test_a_persistent_session_resumes_and_a_clean_one_starts_over() -> None:
    store = SessionStore(max_sessions=10, max_expiry_s=60)
    one = Owner()
    session, present, taken = store.attach(one, "c", "dev", False, 30, max_qos2=4)
    assert (present, taken) == (False, None)
    session.qos2_started(7)
    session.accepted(7)
    assert one.pubrecs == [7] and session.qos2 == {7: True}
    store.detach(session, one, now=0.0)
    two = Owner()
    resumed, present, _ = store.attach(two, "c", "dev", False, 30, max_qos2=4)
    assert resumed is session and present
    store.detach(resumed, two, now=1.0)
    fresh, present, _ = store.attach(Owner(), "c", "dev", True, 30, max_qos2=4)
    assert fresh is not session and not present and fresh.qos2 == {}


def test_takeover_hands_the_session_to_the_new_connection() -> None:
    store = SessionStore(max_sessions=10, max_expiry_s=60)
    old, new = Owner(), Owner()
    session, _, _ = store.attach(old, "c", None, False, 30, max_qos2=4)
    session.qos2_started(1)
    written = session.ticket(1, 0)
    written.pending = 1
    same, present, taken = store.attach(new, "c", None, False, 30, max_qos2=4)
    assert same is session and present and taken is old
    written.part_done()  # the write finishes after the takeover: the new owner is told
    assert (old.pubrecs, new.pubrecs) == ([], [1])
    store.detach(session, old, now=0.0)  # the old connection's end changes nothing
    assert store.live["c"] is session

    # A clean takeover discards the session; the old connection's end must not revive it.
    other, _, taken = store.attach(Owner(), "c", None, True, 30, max_qos2=4)
    assert taken is new and other is not session
    store.detach(session, new, now=0.0)
    assert store.live["c"] is other and len(store) == 1


def test_sessions_expire_and_are_bounded() -> None:
    store = SessionStore(max_sessions=2, max_expiry_s=10)
    for index, expiry in enumerate((5.0, float("inf"), 0.0)):
        owner = Owner()
        session, _, _ = store.attach(owner, f"c{index}", None, False, expiry, max_qos2=4)
        store.detach(session, owner, now=0.0)
    assert len(store) == 2  # c2 asked for none: gone at once
    store.sweep(now=6.0)
    assert len(store) == 1  # c0 expired; c1's "never" was capped at 10 s
    store.sweep(now=11.0)
    assert len(store) == 0
    for index in range(3):
        owner = Owner()
        session, _, _ = store.attach(owner, f"d{index}", f"dev{index}", False, 5, max_qos2=4)
        store.detach(session, owner, now=0.0)
    held = [store.identity_of(f"d{index}") for index in range(3)]
    assert held == [None, "dev1", "dev2"]  # the oldest went first


def test_qos2_ids_per_session_are_bounded() -> None:
    store = SessionStore(max_sessions=1, max_expiry_s=10)
    session, _, _ = store.attach(Owner(), "c", None, False, 5, max_qos2=2)
    for packet_id in (1, 2, 3):
        session.qos2_started(packet_id)
        session.accepted(packet_id)
    assert list(session.qos2) == [2, 3]  # the oldest completed id was forgotten


def test_a_qos2_message_lost_to_the_sink_forgets_its_id() -> None:
    store = SessionStore(max_sessions=1, max_expiry_s=10)
    owner = Owner()
    session, _, _ = store.attach(owner, "c", None, False, 5, max_qos2=4)
    for packet_id in (1, 2):
        session.qos2_started(packet_id)
    done, lost = session.ticket(1, 0), session.ticket(2, 1)
    done.pending, lost.pending = 1, 2  # (what the pipeline sets: the frames' record counts)
    for ticket in (done, lost):
        ticket.part_done()
    lost.part_lost()
    lost.part_lost()  # a second lost record of the same frame changes nothing
    lost.part_done()
    assert session.qos2 == {1: True} and (owner.pubrecs, owner.lost) == ([1], [2])


def test_pending_wills_are_bounded_and_the_oldest_is_stored_rather_than_dropped() -> None:
    stored: list[str] = []
    wills = PendingWills(max_pending=2)
    for client_id, due in (("a", 30.0), ("b", 10.0), ("c", 20.0)):
        wills.defer(client_id, due, functools.partial(stored.append, client_id))
    assert stored == ["a"] and len(wills) == 2  # over the bound: the oldest at once
    wills.cancel("b")  # back within its delay
    wills.sweep(19.0)
    assert stored == ["a"]
    wills.sweep(20.0)
    assert stored == ["a", "c"] and len(wills) == 0
    PendingWills(max_pending=0).defer("d", 5.0, lambda: stored.append("d"))
    assert stored == ["a", "c", "d"]
