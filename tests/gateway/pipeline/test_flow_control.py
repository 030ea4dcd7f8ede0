"""One memory budget pauses and resumes every reader, with hysteresis."""

from __future__ import annotations

from gateway.pipeline.flow_control import FlowControl


class FakeReader:
    def __init__(self) -> None:
        self.paused = False
        self.calls = 0

    def pause_reading(self) -> None:
        self.paused = True
        self.calls += 1

    def resume_reading(self) -> None:
        self.paused = False
        self.calls += 1


def test_watermarks_pause_and_resume_all_readers() -> None:
    now = [0.0]
    flow = FlowControl(high_water_bytes=100, low_water_bytes=40, clock=lambda: now[0])
    readers = [FakeReader() for _ in range(3)]
    for r in readers:
        flow.register(r)
    flow.consumed(99)
    assert not flow.paused
    flow.consumed(1)
    assert flow.paused and all(r.paused for r in readers)
    late = FakeReader()
    flow.register(late)  # a connection opened while paused starts paused
    assert late.paused
    now[0] = 2.5
    flow.released(50)  # 50 left: above the low watermark, still paused
    assert flow.paused
    flow.released(10)
    assert not flow.paused and not any(r.paused for r in [*readers, late])
    assert flow.paused_seconds == 2.5
    assert all(r.calls == 2 for r in readers)


def test_unregistered_readers_are_left_alone() -> None:
    flow = FlowControl(10, 5, clock=lambda: 0.0)
    reader = FakeReader()
    flow.register(reader)
    flow.unregister(reader)
    flow.consumed(20)
    assert not reader.paused


def test_a_full_budget_holds_readers_paused_until_every_budget_has_room() -> None:
    now = [0.0]
    flow = FlowControl(high_water_bytes=100, low_water_bytes=40, clock=lambda: now[0])
    reader = FakeReader()
    flow.register(reader)
    flow.hold("journal", True)
    assert flow.paused and reader.paused
    flow.consumed(100)  # the memory budget fills too
    now[0] = 1.0
    flow.hold("journal", False)  # the journal has room, memory does not: still paused
    assert flow.paused and reader.paused
    flow.released(60)
    assert not flow.paused and not reader.paused
    flow.hold("journal", True)
    flow.hold("journal", True)  # said twice, paused once
    assert reader.calls == 3
    now[0] = 3.0
    flow.hold("journal", False)
    assert flow.paused_seconds == 3.0
