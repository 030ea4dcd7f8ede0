"""A target's queue: order per device, devices independent of each other, backoff, attempts,
TTL and overflow, driven by a fake clock."""

from __future__ import annotations

from gateway.notify.queue import ACCEPTED, Outcome, Outgoing, TargetQueue, Verdict
from gateway.notify.settings import RetrySettings
from tests.gateway.notify.notes import outgoing

RETRY = Verdict(Outcome.RETRY, "HTTP 503")
OTHER = "356307042441021"  # a second device


class FullDelay:
    """Jitter pinned to its top, so delays are exact."""

    def uniform(self, a: float, b: float) -> float:
        return b


def queue(**retry: float) -> TargetQueue:
    settings = RetrySettings.model_validate({"first_s": 1.0, "max_s": 8.0, **retry})
    return TargetQueue(settings, rng=FullDelay())


def raw_ids(items: list[Outgoing]) -> list[str]:
    return [i.note.raw_id for i in items]


def test_backoff_doubles_to_its_cap_and_holds_the_devices_line() -> None:
    q = queue()
    q.push(outgoing(raw_id="a"))
    q.push(outgoing(raw_id="a2"))
    now = 0.0
    delays = []
    for _ in range(6):
        assert q.wait_s(now) == 0.0
        batch = q.batch(10, now)
        assert raw_ids(batch) == ["a"]  # a2 never overtakes a
        settled = q.settle(batch, [RETRY], now)
        assert settled.retried == 1 and not settled.dead
        delays.append(q.wait_s(now))
        assert q.batch(10, now) == []  # backing off
        now += delays[-1] or 0.0
    assert delays == [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    assert q.wait_s(now - 0.5) == 0.5
    assert raw_ids(q.settle(q.batch(10, now), [ACCEPTED], now).accepted) == ["a"]
    assert raw_ids(q.settle(q.batch(10, now), [ACCEPTED], now).accepted) == ["a2"]
    assert len(q) == 0 and q.wait_s(now) is None


def test_a_failing_device_holds_back_no_other_device() -> None:
    """A global line kept every device behind one receiver error (issue 13, item 10)."""
    q = queue()
    q.push(outgoing(raw_id="a"))
    q.push(outgoing(raw_id="b", device_id=OTHER))
    q.push(outgoing(raw_id="a2"))
    [a] = q.batch(1, 0.0)
    q.settle([a], [RETRY], 0.0)
    [b] = q.batch(1, 0.0)  # while a backs off
    assert raw_ids([b]) == ["b"]
    assert raw_ids(q.settle([b], [ACCEPTED], 0.0).accepted) == ["b"]
    assert q.batch(10, 0.5) == [] and q.wait_s(0.5) == 0.5


def test_a_device_has_one_delivery_in_flight_and_others_go_beside_it() -> None:
    q = queue()
    q.push(outgoing(raw_id="a"))
    q.push(outgoing(raw_id="a2"))
    first = q.batch(1, 0.0)
    assert raw_ids(first) == ["a"] and q.in_flight == 1
    assert q.batch(1, 0.0) == [] and q.wait_s(0.0) is None  # a2 waits for a's verdict
    q.push(outgoing(raw_id="b", device_id=OTHER))
    second = q.batch(1, 0.0)
    assert raw_ids(second) == ["b"] and q.in_flight == 2
    q.settle(second, [ACCEPTED], 0.0)
    q.settle(first, [ACCEPTED], 0.0)
    assert q.in_flight == 0 and raw_ids(q.batch(10, 0.0)) == ["a2"]


def test_a_partial_failure_keeps_the_failed_ones_in_front_of_their_devices() -> None:
    q = queue()
    for raw_id, device in zip("abcd", ("d1", "d2", "d3", "d4"), strict=True):
        q.push(outgoing(raw_id=raw_id, device_id=device))
    q.push(outgoing(raw_id="a2", device_id="d1"))
    batch = q.batch(3, 0.0)
    assert raw_ids(batch) == ["a", "b", "c"]
    settled = q.settle(batch, [RETRY, ACCEPTED, RETRY], 0.0)
    assert raw_ids(settled.accepted) == ["b"] and settled.retried == 2
    assert raw_ids(q.batch(10, 0.0)) == ["d"]
    assert raw_ids(q.batch(10, 1.0)) == ["a", "c"]  # after their backoff, a before a2


def test_a_batch_holds_one_notification_per_device() -> None:
    """[open(dev), clear(dev)] in one batch with verdicts [RETRY, ACCEPTED] would deliver the
    clear first: the clear waits for a batch after the open's."""
    q = queue()
    q.push(outgoing(raw_id="open", device_id="dev"))
    q.push(outgoing(raw_id="other", device_id="dev2"))
    q.push(outgoing(raw_id="clear", device_id="dev"))
    q.push(outgoing(raw_id="later", device_id="dev3"))
    batch = q.batch(10, 0.0)
    assert raw_ids(batch) == ["open", "other", "later"]
    settled = q.settle(batch, [RETRY, ACCEPTED, ACCEPTED], 0.0)
    assert raw_ids(settled.accepted) == ["other", "later"]
    assert q.batch(10, 0.0) == []  # "clear" is behind "open" again
    assert raw_ids(q.settle(q.batch(10, 10.0), [ACCEPTED], 10.0).accepted) == ["open"]
    assert raw_ids(q.batch(10, 10.0)) == ["clear"]


def test_out_of_attempts_is_dead_with_the_last_error() -> None:
    q = queue(max_attempts=3)
    q.push(outgoing())
    now = 0.0
    for _ in range(2):
        assert not q.settle(q.batch(1, now), [RETRY], now).dead
        now += 100.0
    [dead] = q.settle(q.batch(1, now), [RETRY], now).dead
    assert dead.reason == "expired"
    assert dead.detail == "out of attempts after 3 attempts; last error: HTTP 503"
    assert len(q) == 0


def test_refused_and_lost_are_dead_at_once() -> None:
    q = queue()
    q.push(outgoing(raw_id="a"))
    q.push(outgoing(raw_id="b", device_id=OTHER))
    refused = Verdict(Outcome.REFUSED, "HTTP 400")
    lost = Verdict(Outcome.LOST, "dead-lettered by the Kinesis sink")
    settled = q.settle(q.batch(2, 0.0), [refused, lost], 0.0)
    assert [(d.reason, d.detail, d.item.attempts) for d in settled.dead] == [
        ("refused", "HTTP 400", 1),
        ("lost", "dead-lettered by the Kinesis sink", 1),
    ]
    assert settled.retried == 0 and len(q) == 0


def test_ttl_counts_from_the_frames_arrival() -> None:
    q = queue(ttl_s=60.0)
    q.push(outgoing(arrived_at=0.0, raw_id="old"))
    q.push(outgoing(arrived_at=0.5, raw_id="old2"))
    q.push(outgoing(arrived_at=30.0, raw_id="new", device_id=OTHER))
    q.settle(q.batch(1, 1.0), [RETRY], 1.0)
    assert q.take_dead() == []
    # When old's line comes up again it is past its ttl; old2, behind it, is not yet.
    assert raw_ids(q.batch(5, 60.0)) == ["new", "old2"]
    [dead] = q.take_dead()
    assert (dead.item.note.raw_id, dead.reason) == ("old", "expired")
    assert dead.detail == "not delivered within 60 s after 1 attempts; last error: HTTP 503"
    assert len(q) == 2


def test_a_full_queue_dead_letters_the_newcomer() -> None:
    q = queue(queue_max=2)
    for raw_id in "abc":
        q.push(outgoing(raw_id=raw_id))
    assert len(q) == 2
    [dead] = q.take_dead()
    assert (dead.item.note.raw_id, dead.reason) == ("c", "queue_full")
    assert q.take_dead() == []
